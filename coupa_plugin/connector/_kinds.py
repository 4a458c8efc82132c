"""Entitlement kinds: one record per kind, the single home of what each one is in Coupa.

Mapping (entitlement ids, grants), sync (which user association carries which grants),
provisioning (the key of the list on ``PUT /api/users/:id``, per-item or whole-list writes),
the journal (which lists a rewrite may touch), the catalog facts (the listing that shows one
item, the listing the sync reads, the scope ``configure`` probes it for) and the settings (the
resource types) all read this registry; none declares a table of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final, Literal

import attrs

from coupa_plugin.coupa import (
    ACCOUNT_GROUP_SCOPE,
    CONTENT_GROUP_SCOPE,
    USER_LIST_KEYS,
    CoupaClient,
    LookupCollection,
    UserList,
)

__all__ = ["KINDS", "LIST_KINDS", "EntitlementKind", "by_name"]

# how one item is added or removed: a user-group membership record (POST/DELETE
# /api/user_group_memberships), the user's content-group routes (PUT
# /api/users/:id/business_groups/:id/add|remove), the whole list on PUT /api/users/:id, or a
# flag on the user; the per-item routes fall back to the whole list where Coupa lacks them
Writes = Literal["membership", "business_group_route", "list", "flag"]


@attrs.frozen(kw_only=True)
class EntitlementKind:
    """What one kind of entitlement is in Coupa."""

    name: str  # the resource type, e.g. "role"
    slug: str  # the entitlement id's last part: "member" or "assigned"
    label: str  # how messages name one item, e.g. "user group"
    attribute: UserList | None  # the User model's list holding the items (None: a flag)
    item_path: LookupCollection | None  # GET /api/<item_path>/:id shows one item
    writes: Writes  # how one item is added or removed (see Writes)
    # every item of the kind, as the sync reads it beside the users: one page at a time (the
    # user pages keep the rate limit busy; a page ahead would only risk one past the end).
    # None: no catalog of its own (approval groups are user groups; licenses are user flags)
    catalog: Callable[[CoupaClient], Iterator[Any]] | None = None
    # the OAuth scope the catalog most likely needs, which Coupa does not document: configure
    # reads the catalog's first page to learn whether it is granted (None: not probed)
    catalog_scope: str | None = None

    @property
    def per_item(self) -> bool:
        """Whether one item has a route of its own (the whole list is the fallback)."""
        return self.writes in {"membership", "business_group_route"}

    @property
    def put_key(self) -> str | None:
        """The list's key on ``PUT /api/users/:id`` (the client's fact), which also names
        the list in journal entries and messages; None for a license flag."""
        return None if self.attribute is None else USER_LIST_KEYS[self.attribute]


KINDS: Final = (
    EntitlementKind(
        name="role",
        slug="member",
        label="role",
        attribute="roles",
        item_path=None,  # roles are listed by GraphQL only
        writes="list",
        catalog=CoupaClient.roles,
    ),
    EntitlementKind(
        name="group",
        slug="member",
        label="user group",
        attribute="user_groups",
        item_path="user_groups",
        writes="membership",
        catalog=lambda client: client.user_groups(in_flight=1),
    ),
    EntitlementKind(
        name="content_group",
        slug="member",
        label="content group",
        attribute="content_groups",
        item_path="business_groups",
        writes="business_group_route",
        catalog=lambda client: client.business_groups(in_flight=1),
        catalog_scope=CONTENT_GROUP_SCOPE,
    ),
    EntitlementKind(
        name="account_group",
        slug="member",
        label="account group",
        attribute="account_groups",
        item_path="account_groups",
        writes="list",
        catalog=lambda client: client.account_groups(in_flight=1),
        catalog_scope=ACCOUNT_GROUP_SCOPE,
    ),
    EntitlementKind(
        name="approval_group",
        slug="member",
        label="approval group",
        attribute="approval_groups",
        item_path="user_groups",  # approval groups are user groups that can approve
        writes="list",
    ),
    EntitlementKind(
        name="license",
        slug="assigned",
        label="license",
        attribute=None,
        item_path=None,
        writes="flag",
    ),
)
# the kinds held as lists on the user record, in the order messages list them
LIST_KINDS: Final = tuple(kind for kind in KINDS if kind.put_key is not None)
_BY_NAME: Final = {kind.name: kind for kind in KINDS}


def by_name(name: str) -> EntitlementKind | None:
    return _BY_NAME.get(name)
