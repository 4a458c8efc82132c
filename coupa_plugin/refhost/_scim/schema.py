"""What the facade publishes at ``/Schemas``, ``/ResourceTypes`` and ``/ServiceProviderConfig``:
RFC 7643's schemas cut down to the attributes Coupa holds, with Coupa's own rules (a user
needs a given name, a family name and an email; a group's name cannot be changed here).

A client reads these to learn what it may send; every attribute left out here is one the
facade would have to drop, so it is not offered.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Final

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    ETag,
    External,
    Filter,
    Pagination,
    Patch,
    Reference,
    ResourceType,
    Schema,
    ScimPolicy,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
)
from scim2_server.utils import load_json_resource

__all__ = [
    "ENTERPRISE_SCHEMA",
    "GROUP_SCHEMA",
    "MAX_RESULTS",
    "USER_SCHEMA",
    "build_provider",
]

USER_SCHEMA: Final = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA: Final = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_SCHEMA: Final = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MAX_RESULTS: Final = 200

_READ_ONLY: Final = {"mutability": "readOnly"}
_REQUIRED: Final = {"required": True}

# attribute -> what changes from RFC 7643 ("sub": the sub-attributes kept, with their changes);
# every attribute and sub-attribute not named is left out
_KEPT: Final[dict[str, dict[str, dict[str, Any]]]] = {
    USER_SCHEMA: {
        "userName": {"description": "The Coupa login. REQUIRED."},
        "name": {
            **_REQUIRED,
            "sub": {
                "familyName": {**_REQUIRED, "description": "Coupa's lastname. REQUIRED."},
                "givenName": {**_REQUIRED, "description": "Coupa's firstname. REQUIRED."},
            },
        },
        "displayName": {**_READ_ONLY, "description": "Coupa's full name. READ-ONLY."},
        "active": {**_REQUIRED, "description": "Coupa's active flag; false disables the user."},
        "emails": {
            **_REQUIRED,
            "description": "Coupa holds one email: the first is kept.",
            "sub": {
                "value": _REQUIRED,
                "type": {"canonicalValues": ["work"]},
            },
        },
        "groups": {"sub": {"value": {}, "$ref": {}, "display": {}, "type": {}}},
    },
    ENTERPRISE_SCHEMA: {
        "employeeNumber": {"description": "Coupa's employee number."},
        "manager": {
            "description": "The user's manager in Coupa.",
            "sub": {"value": {}, "$ref": {}},
        },
    },
    GROUP_SCHEMA: {
        "displayName": {
            "description": (
                "A user group's Coupa name; any other entitlement's kind and name, e.g. "
                '"Role: Buyer", which Coupa does not let be renamed over its API. REQUIRED.'
            ),
        },
        "members": {
            "description": "The Coupa users holding the entitlement.",
            "sub": {
                "value": {},
                "$ref": {"referenceTypes": ["User"]},
                "type": {"canonicalValues": ["User"]},
            },
        },
    },
}


def _cut(attributes: list[dict[str, Any]], kept: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    result = []
    for attribute in attributes:
        changes = kept.get(attribute["name"])
        if changes is None:
            continue
        attribute = copy.deepcopy(attribute)
        sub = changes.get("sub")
        attribute.update({k: v for k, v in changes.items() if k != "sub"})
        if sub is not None:
            attribute["subAttributes"] = _cut(attribute.get("subAttributes", []), sub)
        result.append(attribute)
    return result


def schemas() -> list[Schema]:
    """The three schemas, cut down to what Coupa holds."""
    published = []
    for document in load_json_resource("default-schemas.json"):
        kept = _KEPT.get(document["id"])
        if kept is None:
            continue
        document = {**document, "attributes": _cut(document["attributes"], kept)}
        published.append(Schema.model_validate(document))
    return published


def resource_types() -> list[ResourceType]:
    types = []
    for document in load_json_resource("default-resource-types.json"):
        if document["id"] == "User":
            document = {**document, "description": "Coupa user"}
        elif document["id"] == "Group":
            document = {**document, "description": "Coupa entitlement (role, group, license, ...)"}
        types.append(ResourceType.model_validate(document))
    return types


def service_provider_config() -> ServiceProviderConfig:
    return ServiceProviderConfig(
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=True),
        pagination=Pagination(
            cursor=False,
            index=True,
            default_pagination_method=Pagination.DefaultPaginationMethod.index,
            default_page_size=MAX_RESULTS,
            max_page_size=MAX_RESULTS,
        ),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="Bearer token",
                description="A static bearer token (COUPA_SCIM_TOKEN on the facade's side)",
                spec_uri=Reference[External]("https://www.rfc-editor.org/rfc/rfc6750"),
                primary=True,
            )
        ],
    )


# Attributes Coupa does not hold are dropped, not refused (Entra ID and Okta send what their
# mappings name: title, phoneNumbers, ...); PATCH as Entra ID sends it: a remove naming the
# member in its value, a filtered path that creates the entry it describes.
POLICY: Final = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)


@functools.cache
def build_provider() -> ScimProvider:
    """The facade's description of itself, as scim2-server serves it. Built once: a provider
    is immutable, the same for every facade, and building its models costs a tenth of a
    second."""
    return ScimProvider.from_discovery(
        schemas(), resource_types(), config=service_provider_config(), policy=POLICY
    )
