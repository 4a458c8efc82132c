"""Account lifecycle: create, update, enable and disable a Coupa user."""

from __future__ import annotations

from functools import partial

import attrs

from coupa_plugin.connector._mapping import check_grantable
from coupa_plugin.connector._provisioning.command import (
    DRY_RUN,
    CreateAccount,
    EntitlementRef,
    SetActive,
    UpdateAccount,
)
from coupa_plugin.connector._provisioning.facts import TenantFacts
from coupa_plugin.connector._provisioning.guards import Guards
from coupa_plugin.connector._provisioning.session import UserSession, ids_of
from coupa_plugin.coupa import CoupaClient, CoupaError, ProfileChanges
from coupa_plugin.host.errors import NotFoundError, ProvisioningError
from coupa_plugin.host.model import ProvisionResult

__all__ = ["Accounts", "Created"]



def _shown(changes: ProfileChanges) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in sorted(changes.items()))


@attrs.frozen(kw_only=True)
class Created:
    """A user Coupa created (or had already, the create's answer lost); what the create
    carried and what is left to grant one by one."""

    user_id: int
    change: str
    roles: frozenset[int]
    flags: frozenset[str]
    later: tuple[EntitlementRef, ...]


class Accounts:
    """Create, update, enable and disable accounts."""

    def __init__(self, client: CoupaClient, facts: TenantFacts, guards: Guards) -> None:
        self.client = client
        self.facts = facts
        self.guards = guards

    def update(self, s: UserSession, command: UpdateAccount) -> ProvisionResult:
        record = s.read()
        diff = record.profile.differs(command.changes)
        if not diff:
            return s.result("unchanged", "every attribute already has that value")
        self.guards.refuse_protected(record.user)
        change = f"update user {s.user_id}: {_shown(diff)}"
        if command.dry_run:
            s.changes.append(change)
            return s.result("planned", DRY_RUN)

        def applied() -> bool:
            return s.last_profile is not None and not s.last_profile.differs(diff)

        s.write(
            lambda: s.send(partial(self.client.update_profile, s.user_id, diff), change),
            lambda _user: applied(),
            change,
        )
        after = s.last_profile
        ignored = sorted(after.differs(diff)) if after is not None else sorted(diff)
        if ignored:
            detail = ", ".join(
                f"{name} is {repr(after.get(name) if after is not None else None)[:80]}"
                for name in ignored
            )
            raise s.failure(
                f"Coupa did not apply {ignored} to user {s.user_id} (it ignores unknown "
                f"references and some clears): {detail}"
            )
        return s.result("applied", "")

    def set_active(self, s: UserSession, command: SetActive) -> ProvisionResult:
        active = command.active
        user = s.user()
        if user.active == active:
            return s.result(
                "unchanged", f"user {s.user_id} is already {'active' if active else 'inactive'}"
            )
        self.guards.refuse_protected(user)
        if not active:
            self.guards.refuse_last_admin(user, ids_of(user, "roles"))
        change = f"set active = {str(active).lower()} on user {s.user_id}"
        if command.dry_run:
            s.changes.append(change)
            return s.result("planned", DRY_RUN)
        after = s.write(
            lambda: s.send(partial(self.client.set_active, s.user_id, active=active), change),
            lambda u: u.active == active,
            change,
        )
        if after.active != active:
            raise s.failure(f"Coupa ignored {change}")
        return s.result("applied", "")

    def create(self, command: CreateAccount, kinds: frozenset[str]) -> ProvisionResult | Created:
        """Create the user with the profile, roles and license flags the create can carry;
        a result when nothing is to be created (it exists as asked, or a dry run)."""
        login = command.login
        self.guards.refuse_login(login)
        roles, flags, later = self._split_entitlements(command.entitlements, kinds)
        existing = self._find_login(login)
        if existing is not None:
            s = UserSession(self.client, self.facts, existing, kinds)
            record = s.read()
            if (
                not record.profile.differs(command.profile)
                and roles <= ids_of(record.user, "roles")
                and all(record.user.licenses.get(f) for f in flags)
                and not later
            ):
                return s.result(
                    "unchanged", f"user {existing} ({login}) already exists with these attributes"
                )
            raise ProvisioningError(
                f"login {login} is already taken by user {existing}; nothing was written"
            )
        carried: list[str] = [name for name in command.profile if name != "login"]
        carried += (["roles"] if roles else []) + sorted(flags)
        change = f"create user {login} with " + ", ".join(sorted(carried))
        if command.dry_run:
            return ProvisionResult(
                status="planned",
                changes=(change, *(f"grant {ref.id} to the new user" for ref in later)),
                message=DRY_RUN,
            )
        try:
            new_id = self.client.create_user(command.profile, roles=roles, licenses=flags)
        except CoupaError as exc:
            # the create may have landed (a dropped answer, an odd shape): Coupa decides
            found = self._find_login(login)
            if found is None:
                raise ProvisioningError(
                    f"{change} failed ({exc}); no user with login {login} exists, so nothing "
                    "was created"
                ) from None
            new_id = found
        return Created(user_id=new_id, change=change, roles=roles, flags=flags, later=later)

    def verify_created(
        self, s: UserSession, created: Created, changes: list[str], profile: ProfileChanges
    ) -> ProvisionResult:
        """Read the new user back: every attribute, role and flag the create carried must be
        there."""
        record = s.read()
        s.changes.extend(changes)
        wrong: list[str] = sorted(record.profile.differs(profile))
        wrong += [f"role {r}" for r in sorted(created.roles - ids_of(record.user, "roles"))]
        wrong += [f"license {f}" for f in sorted(created.flags) if not record.user.licenses.get(f)]
        if wrong:
            login = profile.get("login")
            raise s.failure(
                f"user {created.user_id} ({login}) was created, but Coupa did not apply {wrong}"
            )
        return s.result("applied", f"created user {created.user_id}")

    def _split_entitlements(
        self, refs: tuple[EntitlementRef, ...], kinds: frozenset[str]
    ) -> tuple[frozenset[int], frozenset[str], tuple[EntitlementRef, ...]]:
        """Roles and license flags (which the create itself carries) apart from the rest
        (granted once the user exists); every one checked first."""
        roles: set[int] = set()
        flags: set[str] = set()
        later: list[EntitlementRef] = []
        for ref in refs:
            if ref.kind.name not in kinds:
                raise NotFoundError(f"unknown entitlement {ref.id!r}; nothing was written")
            check_grantable(ref.kind.name, ref.key)
            if ref.kind.name == "role":
                self.guards.catalog.require_exists("role", ref.target)
                roles.add(ref.target)
            elif ref.kind.name == "license":
                flags.add(ref.key)
            else:
                self.guards.catalog.require_exists(ref.kind.name, ref.target)
                later.append(ref)
        if flags:
            unknown = sorted(flags - self.client.discover_license_flags())
            if unknown:
                raise NotFoundError(f"unknown license flag(s) {unknown}; nothing was written")
        return frozenset(roles), frozenset(flags), tuple(later)

    def _find_login(self, login: str) -> int | None:
        try:
            return self.client.user_id_by_login(login)
        except CoupaError as exc:
            raise ProvisioningError(f"looking up login {login} failed: {exc}") from None
