"""The facade's copy of one tenant: users, entitlements and who holds what, read through the
plugin's hooks and kept in memory so that SCIM reads never reach Coupa.

A full refresh (``discover_resources`` and ``sync_grants`` with an empty request) replaces the
whole copy; a user refresh (the same hooks with ``principal_ids``) replaces one user and their
grants, which is how a write is made visible to the next read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Final

import attrs

from coupa_plugin.host.errors import SyncError
from coupa_plugin.host.model import Entitlement, Grant, Resource, SyncRequest
from coupa_plugin.refhost._manager import PluginHooks
from coupa_plugin.refhost._scim import LOGGER

__all__ = ["TYPE_LABELS", "Directory", "GroupEntry"]

log = logging.getLogger(LOGGER)

# entitlement kind -> the words that start a SCIM group's displayName ("Role: Buyer")
TYPE_LABELS: Final = {
    "role": "Role",
    "group": "User group",
    "license": "License",
    "content_group": "Content group",
    "account_group": "Account group",
    "approval_group": "Approval group",
}


# what a refresh notes when user groups were written while it ran (never a user id)
_USER_GROUPS: Final = "user groups"


@attrs.frozen
class GroupEntry:
    """One entitlement served as a SCIM group (``active``: the Coupa group is active)."""

    entitlement: Entitlement
    display_name: str
    active: bool = True


def _group_entry(
    entitlement: Entitlement, catalog_name: str | None, *, active: bool = True
) -> GroupEntry:
    """A user group is served by its Coupa name (what a SCIM client creates it with and reads
    back); every other kind with its label first ("Role: Buyer")."""
    name = catalog_name or entitlement.display_name
    if entitlement.resource_type == "group":
        return GroupEntry(entitlement, name, active)
    label = TYPE_LABELS.get(entitlement.resource_type, entitlement.resource_type)
    return GroupEntry(entitlement, f"{label}: {name}", active)


def _unlisted_entry(entitlement_id: str) -> GroupEntry:
    """A group for a grant whose entitlement the catalog did not list."""
    kind, _, rest = entitlement_id.partition(":")
    resource_id, _, slug = rest.rpartition(":")
    return _group_entry(
        Entitlement(
            id=entitlement_id,
            resource_type=kind,
            resource_id=resource_id,
            slug=slug,
            display_name=resource_id,
        ),
        None,
    )


@attrs.define
class _Copy:
    users: dict[str, Resource] = attrs.Factory(dict)
    groups: dict[str, GroupEntry] = attrs.Factory(dict)
    members: dict[str, set[str]] = attrs.Factory(dict)
    held: dict[str, set[str]] = attrs.Factory(dict)
    by_login: dict[str, str] = attrs.Factory(dict)

    def add_grant(self, grant: Grant) -> None:
        if grant.entitlement_id not in self.groups:
            self.groups[grant.entitlement_id] = _unlisted_entry(grant.entitlement_id)
        self.members.setdefault(grant.entitlement_id, set()).add(grant.principal_id)
        self.held.setdefault(grant.principal_id, set()).add(grant.entitlement_id)

    def drop_holdings(self, user_id: str) -> None:
        for entitlement_id in self.held.pop(user_id, set()):
            self.members.get(entitlement_id, set()).discard(user_id)

    def drop_user(self, user_id: str) -> None:
        old = self.users.pop(user_id, None)
        if old is not None:
            self.by_login.pop(_login_key(old), None)
        self.drop_holdings(user_id)

    def put_catalog(self, resource: Resource) -> None:
        active = resource.status != "disabled"
        for entitlement in resource.entitlements:
            self.groups[entitlement.id] = _group_entry(
                entitlement, resource.display_name, active=active
            )

    def put_user(self, user: Resource) -> None:
        self.users[user.id] = user
        self.by_login[_login_key(user)] = user.id


def _login_key(user: Resource) -> str:
    return str(user.profile.get("login") or "").casefold()


class Directory:
    """A tenant's users, entitlements and grants, as the plugin last reported them.

    Thread-safe: readers see either the copy before or after a refresh, never half of one.
    """

    def __init__(self, hooks: PluginHooks) -> None:
        self._hooks = hooks
        self._lock = threading.RLock()
        self._copy = _Copy()
        self._written_during_refresh: set[str] | None = None

    # -- refreshing -----------------------------------------------------

    def refresh_all(self) -> None:
        """Read the whole tenant through the hooks and replace the copy.

        Users written while the refresh ran are read again afterwards, so a write is never
        undone by a refresh that started before it. Raises ``SyncError`` (a plugin error)
        when the plugin is not enabled for the tenant.
        """
        with self._lock:
            self._written_during_refresh = set()
        try:
            fresh = self._read(SyncRequest())
        finally:
            with self._lock:
                written, self._written_during_refresh = self._written_during_refresh, None
        with self._lock:
            self._copy = fresh
        if _USER_GROUPS in (written or ()):
            self.refresh_user_groups()
        for user_id in sorted((written or set()) - {_USER_GROUPS}):
            self.refresh_user(user_id)
        log.info(
            "directory refreshed: %d users, %d groups",
            len(fresh.users),
            len(fresh.groups),
            extra={"tenant": self._hooks.tenant.id},
        )

    def _note_write(self, user_id: str) -> None:
        with self._lock:
            if self._written_during_refresh is not None:
                self._written_during_refresh.add(user_id)

    def set_holdings(self, user_id: str, grants: Iterable[Grant]) -> None:
        """Replace what one user holds with the grants a ``provision`` result reports (all
        the user holds after the write), without asking Coupa again."""
        self._note_write(user_id)
        held = [g for g in grants if g.principal_id == user_id]
        with self._lock:
            self._copy.drop_holdings(user_id)
            for grant in held:
                self._copy.add_grant(grant)

    def refresh_user(self, user_id: str) -> None:
        """Read one user and their grants again (after a write)."""
        self._note_write(user_id)
        users = self._hooks.discover_resources(
            SyncRequest(resource_types=frozenset({"user"}), principal_ids=frozenset({user_id}))
        )
        grants = self._hooks.sync_grants(SyncRequest(principal_ids=frozenset({user_id})))
        if users is None or grants is None:
            raise SyncError(f"the plugin is not enabled for tenant {self._hooks.tenant.id}")
        found = [u for u in users if u.type == "user" and u.id == user_id]
        held = [g for g in grants if g.principal_id == user_id]
        with self._lock:
            self._copy.drop_user(user_id)
            if found:
                self._copy.put_user(found[0])
                for grant in held:
                    self._copy.add_grant(grant)

    def refresh_user_groups(self) -> None:
        """Read the user groups again (after one was created, changed or deactivated); their
        members stay as they are."""
        self._note_write(_USER_GROUPS)
        resources = self._hooks.discover_resources(SyncRequest(resource_types=frozenset({"group"})))
        if resources is None:
            raise SyncError(f"the plugin is not enabled for tenant {self._hooks.tenant.id}")
        listed = [r for r in resources if r.type == "group"]
        with self._lock:
            for resource in listed:
                self._copy.put_catalog(resource)

    def _read(self, request: SyncRequest) -> _Copy:
        resources = self._hooks.discover_resources(request)
        if resources is None:
            raise SyncError(f"the plugin is not enabled for tenant {self._hooks.tenant.id}")
        fresh = _Copy()
        for resource in resources:
            if resource.type == "user":
                fresh.put_user(resource)
                continue
            fresh.put_catalog(resource)
        for grant in self._hooks.sync_grants(request) or ():
            fresh.add_grant(grant)
        return fresh

    # -- reading --------------------------------------------------------

    def user(self, user_id: str) -> Resource | None:
        with self._lock:
            return self._copy.users.get(user_id)

    def user_by_login(self, login: str) -> Resource | None:
        with self._lock:
            user_id = self._copy.by_login.get(login.casefold())
            return None if user_id is None else self._copy.users.get(user_id)

    def users(self) -> list[Resource]:
        with self._lock:
            return sorted(
                self._copy.users.values(), key=lambda u: int(u.id) if u.id.isdigit() else 0
            )

    def group(self, entitlement_id: str) -> GroupEntry | None:
        with self._lock:
            return self._copy.groups.get(entitlement_id)

    def groups(self) -> list[GroupEntry]:
        with self._lock:
            return sorted(self._copy.groups.values(), key=lambda g: g.entitlement.id)

    def members(self, entitlement_id: str) -> set[str]:
        with self._lock:
            return set(self._copy.members.get(entitlement_id, ()))

    def held(self, user_id: str) -> set[str]:
        with self._lock:
            return set(self._copy.held.get(user_id, ()))

    def groups_held_by(self, user_id: str) -> Iterator[GroupEntry]:
        for entitlement_id in sorted(self.held(user_id)):
            entry = self.group(entitlement_id)
            if entry is not None:
                yield entry

    def logins(self, user_ids: Iterable[str]) -> dict[str, str]:
        """``{user id: login}`` for the users of ``user_ids`` the copy knows."""
        with self._lock:
            return {
                uid: str(self._copy.users[uid].profile.get("login") or "")
                for uid in user_ids
                if uid in self._copy.users
            }
