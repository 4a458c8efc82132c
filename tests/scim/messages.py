"""SCIM request bodies as the clients under test write them."""

from __future__ import annotations

from typing import Any, Final

PATCH_OP: Final = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER: Final = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE: Final = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP: Final = "urn:ietf:params:scim:schemas:core:2.0:Group"


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def only(listing: dict[str, Any]) -> dict[str, Any]:
    """The one resource of a ListResponse."""
    assert listing["totalResults"] == 1, listing
    [resource] = listing["Resources"]
    assert isinstance(resource, dict)
    return resource
