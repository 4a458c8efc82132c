"""Group lifecycle: create, update and deactivate a Coupa user group.

Coupa lets user groups be created (``POST /api/user_groups``) and changed (``PUT``), and deletes
none: a group it should no longer grant is set ``active: false``. Roles, licenses, content,
account and approval groups are defined in Coupa itself, so asking to change one of those is
refused before anything is sent. Every write is read back, and a failure after a write says
what Coupa holds now.
"""

from __future__ import annotations

from coupa_plugin.connector._mapping import entitlement_id
from coupa_plugin.connector._provisioning.command import (
    DRY_RUN,
    CreateGroup,
    DeactivateGroup,
    EntitlementRef,
    GroupCommand,
    Refused,
    UpdateGroup,
)
from coupa_plugin.coupa import CoupaClient, CoupaError, GroupChanges, UserGroup, unheld
from coupa_plugin.host.errors import NotFoundError, ProvisioningError, RefusedError
from coupa_plugin.host.model import ProvisionResult

__all__ = ["Groups", "group_entitlement"]



def group_entitlement(group_id: int) -> str:
    """The membership entitlement of user group ``group_id``."""
    return entitlement_id("group", group_id)


def _describe(group: UserGroup) -> str:
    state = "active" if group.active else "inactive"
    text = f"user group {group.id} is named {group.name!r}, {state}"
    return text + (f", description {group.description!r}" if group.description else "")


class Groups:
    """Create, update and deactivate user groups for one tenant."""

    def __init__(self, client: CoupaClient) -> None:
        self.client = client

    def handle(self, command: GroupCommand | Refused, kinds: frozenset[str]) -> ProvisionResult:
        """Carry out ``command``; a refused one is raised after the checks of the group it
        names (the tenant has groups; only a user group can be changed)."""
        if "group" not in kinds:
            raise NotFoundError(
                f"{command.action}: resource type 'group' is not enabled for this tenant; "
                "nothing was written"
            )
        if isinstance(command, Refused):
            if command.group is not None:
                self._group_id(command.group)
            raise command.error
        if isinstance(command, CreateGroup):
            return self.create(command)
        group_id = self._group_id(command.entitlement)
        if isinstance(command, UpdateGroup):
            return self.update(group_id, command)
        return self.deactivate(group_id, command)

    @staticmethod
    def _group_id(ref: EntitlementRef) -> int:
        """The user group ``ref`` names; any other kind is defined in Coupa itself."""
        if ref.kind.name != "group":
            raise RefusedError(
                f"{ref.id}: Coupa does not let a {ref.kind.label} be created, changed or "
                "deleted through its API (only user groups); nothing was written"
            )
        return ref.target

    # -- reading -------------------------------------------------------------------------

    def _read(self, group_id: int, *, after: str | None = None) -> UserGroup:
        """The group as Coupa holds it now; ``after`` names the write this read verifies."""
        try:
            group = self.client.user_group(group_id)
        except CoupaError as exc:
            if after is None:
                raise ProvisioningError(
                    f"reading user group {group_id} failed: {exc}; nothing was written"
                ) from None
            raise ProvisioningError(
                f"{after} was sent, but reading user group {group_id} back failed ({exc}): "
                "whether it landed is unknown"
            ) from None
        if group is None:
            raise NotFoundError(f"Coupa has no user group {group_id}")
        return group

    def _named(self, name: str) -> UserGroup | None:
        try:
            found = self.client.user_groups_named(name)
        except CoupaError as exc:
            raise ProvisioningError(f"looking up user group name {name!r} failed: {exc}") from None
        return found[0] if found else None

    # -- actions -------------------------------------------------------------------------

    def create(self, command: CreateGroup) -> ProvisionResult:
        name, description = command.name, command.description
        wanted = GroupChanges(name=name)
        if description is not None:
            wanted["description"] = description
        existing = self._named(name)
        if existing is not None:
            if existing.active and (description is None or existing.description == description):
                return _result(
                    "unchanged", existing, [], f"user group {existing.id} ({name}) already exists"
                )
            raise ProvisioningError(
                f"the name {name!r} is already taken: {_describe(existing)}; nothing was written"
            )
        change = f"create user group {name!r}" + (" with a description" if description else "")
        if command.dry_run:
            return ProvisionResult(status="planned", changes=(change,), message=DRY_RUN)
        try:
            group_id = self.client.create_user_group(name=name, description=description).id
        except CoupaError as exc:
            # the create may have landed (a dropped answer): Coupa decides
            found = self._named(name)
            if found is None:
                raise ProvisioningError(
                    f"{change} failed ({exc}); Coupa has no user group named {name!r}, so "
                    "nothing was created"
                ) from None
            group_id = found.id
        group = self._read(group_id, after=change)
        wrong = sorted(unheld(group, wanted))
        if wrong or not group.active:
            raise ProvisioningError(
                f"user group {group_id} was created, but Coupa did not apply "
                f"{wrong or ['active']}: {_describe(group)}"
            )
        return _result(
            "applied",
            group,
            [f"create user group {group_id} ({name})"],
            f"created user group {group_id}: entitlement {group_entitlement(group_id)}",
        )

    def update(self, group_id: int, command: UpdateGroup) -> ProvisionResult:
        group = self._read(group_id)
        diff = unheld(group, command.changes)
        if not diff:
            return _result("unchanged", group, [], "every attribute already has that value")
        name = diff.get("name")
        if isinstance(name, str):
            holder = self._named(name)
            if holder is not None and holder.id != group_id:
                raise ProvisioningError(
                    f"the name {name!r} is already taken: {_describe(holder)}; nothing was written"
                )
        change = f"update user group {group_id}: " + ", ".join(
            f"{k}={v!r}" for k, v in sorted(diff.items())
        )
        return self._write(group, diff, change, dry_run=command.dry_run)

    def deactivate(self, group_id: int, command: DeactivateGroup) -> ProvisionResult:
        group = self._read(group_id)
        if not group.active:
            return _result("unchanged", group, [], f"user group {group_id} is already inactive")
        change = f"set active = false on user group {group_id} (Coupa deletes no group)"
        return self._write(group, GroupChanges(active=False), change, dry_run=command.dry_run)

    def _write(
        self, group: UserGroup, diff: GroupChanges, change: str, *, dry_run: bool
    ) -> ProvisionResult:
        if dry_run:
            return _result("planned", group, [change], DRY_RUN)
        try:
            self.client.update_user_group(group.id, diff)
        except CoupaError as exc:
            now = self._read(group.id, after=change)
            if unheld(now, diff):
                raise ProvisioningError(f"{change} failed ({exc}); {_describe(now)}") from None
        after = self._read(group.id, after=change)
        ignored = sorted(unheld(after, diff))
        if ignored:
            raise ProvisioningError(f"Coupa did not apply {ignored}: {_describe(after)}")
        return _result("applied", after, [change], "")


def _result(status: str, group: UserGroup, changes: list[str], message: str) -> ProvisionResult:
    return ProvisionResult(
        status=status,
        changes=tuple(changes),
        message=message,
        entitlement_id=group_entitlement(group.id),
    )
