"""Provisioning that never strips access.

Principles, in the order they are applied:

* Refuse before writing: read-only tenants, malformed requests, unknown users or
  entitlements, protected accounts (``protected_logins`` and the integration's own API user),
  and removing the last active holder of an omnipotent role.
* Read fresh, change only what was asked, and write nothing when nothing needs to change
  (``unchanged``). ``dry_run`` returns the writes it would make (``planned``).
* Prefer per-item endpoints (user-group memberships, content-group add/remove). Where only a
  whole list can be written (``PUT /api/users/:id`` with ``roles`` and the like), grant by
  writing the current list plus the new item (the same result whether Coupa replaces or
  merges lists) and revoke by writing the rest: if Coupa merged instead of replacing, the
  documented two-step rewrite (clear, then put back the rest) follows, recorded in a durable
  journal first so that a dead process is repaired by the next call.
* Verify every write by reading the user back; if Coupa ended in another state than the one
  asked for, raise :class:`ProvisioningError` saying what the user holds now.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, Literal

from coupa_plugin.connector.journal import Journal, JournalEntry
from coupa_plugin.connector.mapping import parse_entitlement_id, parse_id, user_grants
from coupa_plugin.coupa import (
    CoupaClient,
    CoupaError,
    CoupaHTTPError,
    CoupaResponseError,
    CoupaTransportError,
)
from coupa_plugin.coupa.client import GraphQLError
from coupa_plugin.coupa.models import RecordError, User, strict_id, structure_user
from coupa_plugin.host.errors import NotFoundError, ProvisioningError
from coupa_plugin.host.model import ProvisionRequest, ProvisionResult

__all__ = ["LIST_KEYS", "Provisioner"]

log = logging.getLogger("coupa_plugin.connector.provisioning")

# entitlement type -> (key of the list on PUT /api/users/:id, attribute of the User model)
LIST_KEYS: Final = {
    "role": ("roles", "roles"),
    "group": ("user-groups", "user_groups"),
    "content_group": ("content-groups", "content_groups"),
    "account_group": ("account-groups", "account_groups"),
    "approval_group": ("approval-groups", "approval_groups"),
}
_ATTR_BY_KEY: Final = dict(LIST_KEYS.values())
# update_account / create_account attributes (snake_case) -> Coupa's keys
_ATTRIBUTES: Final = {
    "login": "login",
    "email": "email",
    "firstname": "firstname",
    "lastname": "lastname",
    "middlename": "middlename",
    "employee_number": "employee-number",
    "sso_identifier": "sso-identifier",
    "authentication_method": "authentication-method",
    "default_locale": "default-locale",
    "mention_name": "mention-name",
    "business_group_security_type": "business-group-security-type",
    "account_security_type": "account-security-type",
    "manager": "manager",
}
_REQUIRED: Final = ("login", "email", "firstname", "lastname")
_REPLANS: Final = 3


class _Replan(Exception):
    """Internal: the user changed between our read and our write."""


def _describe(ids: set[int] | tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in sorted(ids)) + "]"


class Provisioner:
    """Carries out provisioning requests for one tenant."""

    def __init__(
        self,
        client: CoupaClient,
        tenant_id: str,
        journal: Journal,
        protected_logins: frozenset[str],
        grant_types: Callable[[], frozenset[str]],
    ) -> None:
        self.client = client
        self.tenant_id = tenant_id
        self.journal = journal
        self.protected_logins = protected_logins
        self._grant_types = grant_types
        self._guard = threading.Lock()
        self._user_locks: dict[int, threading.Lock] = {}
        # what a non-empty list on PUT does, learned per list key: "replace" or "merge"
        self.semantics: dict[str, str] = {}
        self.own_user_id: int | None = None

    # -- entry point -----------------------------------------------------------------------

    def provision(self, request: ProvisionRequest) -> ProvisionResult:
        problems = request.problems()
        if problems:
            raise ProvisioningError(
                "malformed request: " + "; ".join(problems) + "; nothing was written"
            )
        if not request.dry_run:
            self.recover()
        if request.action == "create_account":
            return self._create(request)
        user_id = self._user_id(request.principal_id)
        with self._locked(user_id):
            handler = {
                "grant": self._grant_or_revoke,
                "revoke": self._grant_or_revoke,
                "update_account": self._update,
                "enable_account": self._set_active,
                "disable_account": self._set_active,
            }[request.action]
            return handler(user_id, request)

    @contextmanager
    def _locked(self, user_id: int) -> Iterator[None]:
        with self._guard:
            lock = self._user_locks.setdefault(user_id, threading.Lock())
        with lock:
            yield

    @staticmethod
    def _user_id(principal_id: str | None) -> int:
        user_id = parse_id(principal_id)
        if user_id is None:
            raise NotFoundError(f"unknown principal {principal_id!r}: Coupa user ids are numbers")
        return user_id

    # -- reading ---------------------------------------------------------------------------

    def read(self, user_id: int) -> tuple[User, dict[str, Any]]:
        """The user as Coupa has it now (a full record, read fresh)."""
        try:
            raw = self.client.get(f"/api/users/{user_id}")
        except CoupaHTTPError as exc:
            if exc.status == 404:
                raise NotFoundError(f"Coupa has no user {user_id}") from None
            raise ProvisioningError(f"reading user {user_id} failed: {exc}") from None
        except CoupaError as exc:
            raise ProvisioningError(f"reading user {user_id} failed: {exc}") from None
        if not isinstance(raw, dict):
            raise ProvisioningError(f"reading user {user_id}: unexpected response")
        try:
            return structure_user(raw), raw
        except ValueError as exc:
            raise ProvisioningError(f"reading user {user_id}: {exc}") from None

    def _ids(self, user: User, attribute: str) -> set[int]:
        return {ref.id for ref in getattr(user, attribute)}

    def _current(self, user_id: int, attribute: str) -> set[int]:
        user, _ = self.read(user_id)
        return self._ids(user, attribute)

    def _result(self, status: str, user: User, changes: list[str], message: str) -> ProvisionResult:
        grants = tuple(user_grants(user, self._grant_types()))
        return ProvisionResult(
            status=status,
            grants=grants,
            changes=tuple(changes),
            message=message,
            principal_id=str(user.id),
        )

    # -- refusals --------------------------------------------------------------------------

    def _refuse_protected(self, user: User) -> None:
        if user.login.lower() in self.protected_logins:
            raise ProvisioningError(
                f"refused: user {user.id} ({user.login}) is listed in "
                "protected_logins; nothing was written"
            )
        if self.own_user_id is not None and user.id == self.own_user_id:
            raise ProvisioningError(
                f"refused: user {user.id} ({user.login}) is the API user "
                "this integration writes as; nothing was written"
            )

    def omnipotent_roles(self) -> set[int]:
        """Ids of roles with full system access (from the role catalog; Admin by default)."""
        try:
            return {role.id for role in self.client.roles() if role.omnipotent}
        except (GraphQLError, CoupaError):
            return {2}

    def _refuse_last_admin(self, user: User, losing: set[int]) -> None:
        for role_id in sorted(losing & self.omnipotent_roles()):
            try:
                others = self.client.get(
                    "/api/users",
                    {
                        "roles[id]": role_id,
                        "active": "true",
                        "id[not_eq]": user.id,
                        "limit": 50,
                        "fields": '["id","active",{"roles":["id"]}]',
                    },
                )
            except CoupaError as exc:
                raise ProvisioningError(
                    f"refused: cannot confirm that another active user holds omnipotent role "
                    f"{role_id} ({exc}); nothing was written"
                ) from None
            # the filters are checked here too: a server that ignored them must not make an
            # arbitrary user look like another admin
            if not isinstance(others, list) or not any(
                isinstance(o, dict)
                and o.get("id") != user.id
                and o.get("active") is True
                and any(
                    isinstance(r, dict) and r.get("id") == role_id for r in o.get("roles") or []
                )
                for o in others
            ):
                raise ProvisioningError(
                    f"refused: user {user.id} ({user.login}) is the last active holder of "
                    f"omnipotent role {role_id}; nothing was written"
                )

    # -- grant and revoke ------------------------------------------------------------------

    def _grant_or_revoke(self, user_id: int, request: ProvisionRequest) -> ProvisionResult:
        granting = request.action == "grant"
        parsed = parse_entitlement_id(request.entitlement_id or "")
        if parsed is None:
            raise NotFoundError(f"unknown entitlement {request.entitlement_id!r}")
        kind, ident, _ = parsed
        if kind not in self._grant_types():
            raise NotFoundError(
                f"entitlement {request.entitlement_id!r}: resource type {kind!r} "
                "is not enabled for this tenant"
            )
        user, raw = self.read(user_id)
        if kind == "license":
            return self._license(user, raw, ident, granting, request.dry_run)
        target = int(ident)
        key, attribute = LIST_KEYS[kind]
        before = self._ids(user, attribute)
        if (target in before) == granting:
            return self._result(
                "unchanged",
                user,
                [],
                f"user {user_id} already "
                f"{'holds' if granting else 'does not hold'} {request.entitlement_id}",
            )
        self._require_exists(kind, target)
        self._refuse_protected(user)
        if not granting and kind == "role":
            self._refuse_last_admin(user, {target})
        verb = "add" if granting else "remove"
        if request.dry_run:
            return self._result(
                "planned",
                user,
                [f"{verb} {kind} {target} {'to' if granting else 'from'} user {user_id}"],
                "dry run: nothing was written",
            )
        changes: list[str] = []
        if kind == "group":
            self._per_item(
                kind,
                user_id,
                target,
                granting,
                before,
                changes,
                lambda: self._membership(user_id, target, granting, changes),
            )
        elif kind == "content_group":
            self._per_item(
                kind,
                user_id,
                target,
                granting,
                before,
                changes,
                lambda: self._business_group(user_id, target, granting, changes),
            )
        else:
            desired = before | {target} if granting else before - {target}
            self._rewrite_checked(user_id, key, attribute, before, desired, changes)
        after, _ = self.read(user_id)
        now = self._ids(after, attribute)
        expected = before | {target} if granting else before - {target}
        if (target in now) != granting:
            raise ProvisioningError(
                f"Coupa did not {verb} {kind} {target} for user {user_id}: it now holds "
                f"{key} {_describe(now)}"
            )
        lost = (expected - {target}) - now if granting else expected - now
        if lost:
            raise ProvisioningError(
                f"user {user_id} lost {key} {_describe(lost)} while {kind} {target} was "
                f"{'granted' if granting else 'revoked'}; it now holds {key} {_describe(now)}"
                + self._journal_note(user_id)
            )
        return self._result("applied", after, changes, "")

    def _journal_note(self, user_id: int) -> str:
        if any(True for _ in self.journal.pending(user_id)):
            return "; the intended list is journaled and is restored on the next provision call"
        return ""

    def _require_exists(self, kind: str, target: int) -> None:
        path = {
            "group": "user_groups",
            "approval_group": "user_groups",
            "content_group": "business_groups",
            "account_group": "account_groups",
        }.get(kind)
        try:
            if kind == "role":
                data = self.client.graphql(f"{{ role(id: {target}) {{ id }} }}")
                exists = bool(data.get("role"))
            elif path is not None:
                exists = isinstance(
                    self.client.get(f"/api/{path}/{target}", {"fields": '["id"]'}), dict
                )
            else:
                exists = True
        except CoupaHTTPError as exc:
            if exc.status != 404:
                raise ProvisioningError(
                    f"checking {kind} {target} failed: {exc}; nothing was written"
                ) from None
            exists = False
        except GraphQLError:
            exists = True  # no role lookup on this tenant: the read-back verifies instead
        except CoupaError as exc:
            raise ProvisioningError(
                f"checking {kind} {target} failed: {exc}; nothing was written"
            ) from None
        if not exists:
            raise NotFoundError(f"Coupa has no {kind.replace('_', ' ')} {target}")

    def _license(
        self, user: User, raw: Mapping[str, Any], flag: str, granting: bool, dry_run: bool
    ) -> ProvisionResult:
        if flag not in user.licenses:
            raise NotFoundError(
                f"unknown license flag {flag!r}: user records of this tenant have no such flag"
            )
        held = user.licenses[flag]
        entitlement = f"license:{flag}:assigned"
        if held == granting:
            return self._result(
                "unchanged",
                user,
                [],
                f"user {user.id} already {'holds' if granting else 'does not hold'} {entitlement}",
            )
        self._refuse_protected(user)
        change = f"set {flag} = {str(granting).lower()} on user {user.id}"
        if dry_run:
            return self._result("planned", user, [change], "dry run: nothing was written")
        self._put(user.id, {flag: granting}, [], change)
        after, _ = self.read(user.id)
        if after.licenses.get(flag) != granting:
            raise ProvisioningError(
                f"Coupa ignored {change}: the flag is still "
                f"{str(after.licenses.get(flag)).lower()}; user {user.id} holds licenses "
                f"{sorted(f for f, v in after.licenses.items() if v)}"
            )
        return self._result("applied", after, [change], "")

    # -- writes ----------------------------------------------------------------------------

    def _put(self, user_id: int, body: Mapping[str, Any], changes: list[str], line: str) -> None:
        try:
            echo = self.client.update_user(
                user_id, body, fields='["id",{"updated_by":["id","login"]}]'
            )
        except CoupaError as exc:
            state = self._state_note(user_id)
            raise ProvisioningError(f"{line} failed: {exc}.{state}") from None
        changes.append(line)
        # Coupa records who made a change: after our first write that is our own API user,
        # which provisioning must never lock out
        writer = echo.get("updated-by")
        if (
            self.own_user_id is None
            and isinstance(writer, dict)
            and isinstance(writer.get("id"), int)
        ):
            self.own_user_id = writer["id"]

    def _state_note(self, user_id: int) -> str:
        try:
            user, _ = self.read(user_id)
        except Exception:  # reporting must not hide the original failure
            return " The user's current state could not be read."
        held = {key: _describe(self._ids(user, attr)) for key, attr in LIST_KEYS.values()}
        lic = sorted(f for f, v in user.licenses.items() if v)
        return (
            f" User {user_id} now holds "
            + ", ".join(f"{k} {v}" for k, v in held.items())
            + f", licenses {lic}, active={str(user.active).lower()}."
            + self._journal_note(user_id)
        )

    def _per_item(
        self,
        kind: str,
        user_id: int,
        target: int,
        granting: bool,
        before: set[int],
        changes: list[str],
        write: Callable[[], None],
    ) -> None:
        """Run a per-item ``write``; where the endpoint does not exist (404/405), write the
        user's whole list instead."""
        try:
            write()
        except CoupaHTTPError as exc:
            if exc.status not in {404, 405}:
                raise ProvisioningError(
                    f"changing {kind} {target} of user {user_id} failed: {exc}."
                    f"{self._state_note(user_id)}"
                ) from None
            log.info(
                "per-item endpoint unavailable; writing the user's list",
                extra={"tenant": self.tenant_id, "user": user_id, "kind": kind},
            )
            key, attribute = LIST_KEYS[kind]
            desired = before | {target} if granting else before - {target}
            self._rewrite_checked(user_id, key, attribute, before, desired, changes)
        except CoupaError as exc:
            raise ProvisioningError(
                f"changing {kind} {target} of user {user_id} failed: {exc}."
                f"{self._state_note(user_id)}"
            ) from None

    def _membership(self, user_id: int, group_id: int, granting: bool, changes: list[str]) -> None:
        """User-group membership through the per-item membership API."""
        if granting:
            try:
                self.client.add_membership(user_id, group_id)
            except (CoupaTransportError, CoupaResponseError):
                pass  # may have been applied (an odd answer after the write); the read-back decides
            except CoupaHTTPError as exc:
                if exc.status == 404 or group_id not in self._current(user_id, "user_groups"):
                    raise
            changes.append(
                f"added user {user_id} to user group {group_id} (POST /api/user_group_memberships)"
            )
            return
        found = [
            m
            for m in self.client.memberships(user_id=user_id, group_id=group_id)
            if m.user_id == user_id and m.user_group_id == group_id
        ]
        if not found:
            raise CoupaHTTPError("GET", "/api/user_group_memberships", 404, "no membership record")
        for membership in found:
            self.client.delete_membership(membership.id)
            changes.append(
                f"removed user {user_id} from user group {group_id} "
                f"(DELETE /api/user_group_memberships/{membership.id})"
            )

    def _business_group(
        self, user_id: int, group_id: int, granting: bool, changes: list[str]
    ) -> None:
        """Content groups through the per-user add/remove routes."""
        action: Literal["add", "remove"] = "add" if granting else "remove"
        self.client.business_group(user_id, group_id, action)
        changes.append(
            f"{action} content group {group_id} for user {user_id} "
            f"(PUT /api/users/{user_id}/business_groups/{group_id}/{action})"
        )

    def _rewrite_checked(
        self,
        user_id: int,
        key: str,
        attribute: str,
        before: set[int],
        desired: set[int],
        changes: list[str],
    ) -> set[int]:
        for _ in range(_REPLANS):
            try:
                return self.rewrite(user_id, key, attribute, before, desired, changes)
            except _Replan:
                fresh = self._current(user_id, attribute)
                removed, added = before - desired, desired - before
                before, desired = fresh, (fresh - removed) | added
        raise ProvisioningError(
            f"user {user_id} kept changing while {key} was being written; "
            "nothing further was written"
        )

    def rewrite(
        self,
        user_id: int,
        key: str,
        attribute: str,
        before: set[int],
        desired: set[int],
        changes: list[str],
    ) -> set[int]:
        """Make ``key`` of the user exactly ``desired`` (it was ``before``), whether Coupa
        replaces or merges a non-empty list. Returns the list Coupa holds afterwards."""
        if before == desired:
            return before
        body = {key: [{"id": i} for i in sorted(desired)]}
        semantics = self.semantics.get(key)
        if semantics != "merge" or not desired or desired >= before:
            # Adding only, or replacing: one write. With unknown semantics this is also the
            # probe: a merging Coupa leaves the list as it was, which loses nothing.
            self._put(
                user_id,
                body,
                changes,
                f"set {key} of user {user_id} to {_describe(desired)} (was {_describe(before)})",
            )
            now = self._current(user_id, attribute)
            if now == desired:
                if not desired >= before:
                    self.semantics[key] = "replace"
                return now
            if now == before and desired >= before:
                return now  # Coupa ignored the write; the caller reports it
            if now != before | desired:
                raise _Replan  # someone else changed the list meanwhile: plan again
            self.semantics[key] = "merge"
            log.info(
                "Coupa merges list writes; using the two-step rewrite",
                extra={"tenant": self.tenant_id, "key": key},
            )
        return self._two_step(user_id, key, attribute, before, desired, changes)

    def _two_step(
        self,
        user_id: int,
        key: str,
        attribute: str,
        before: set[int],
        desired: set[int],
        changes: list[str],
    ) -> set[int]:
        if self._current(user_id, attribute) != before:
            raise _Replan
        entry = JournalEntry(
            user_id=user_id,
            association=key,
            before=tuple(sorted(before)),
            desired=tuple(sorted(desired)),
            removed=tuple(sorted(before - desired)),
        )
        self.journal.begin(entry)
        self._put(user_id, {key: []}, changes, f"cleared {key} of user {user_id} (step 1 of 2)")
        cleared = self._current(user_id, attribute)
        if cleared and not cleared <= desired:
            self._put(
                user_id,
                {key: None},
                changes,
                f"cleared {key} of user {user_id} with null (step 1 of 2, again)",
            )
            cleared = self._current(user_id, attribute)
        if desired - cleared:
            body = {key: [{"id": i} for i in sorted(desired)]}
            self._put(
                user_id,
                body,
                changes,
                f"put back {key} {_describe(desired)} for user {user_id} (step 2 of 2)",
            )
        now = self._current(user_id, attribute)
        if now >= desired:
            self.journal.done(entry)
        return now

    # -- recovery --------------------------------------------------------------------------

    def recover(self) -> None:
        """Finish list rewrites a dead process left half-done (for every user of the tenant)."""
        for entry in list(self.journal.pending()):
            attribute = _ATTR_BY_KEY.get(entry.association)
            if attribute is None:
                self.journal.done(entry)
                continue
            with self._locked(entry.user_id):
                try:
                    current = self._current(entry.user_id, attribute)
                    desired, removed = set(entry.desired), set(entry.removed)
                    target = desired if not current else (current | desired) - removed
                    changes: list[str] = []
                    now = self.rewrite(
                        entry.user_id, entry.association, attribute, current, target, changes
                    )
                except (ProvisioningError, NotFoundError, _Replan) as exc:
                    log.warning(
                        "journal recovery failed; will retry on the next call",
                        extra={
                            "tenant": self.tenant_id,
                            "user": entry.user_id,
                            "error": str(exc)[:200],
                        },
                    )
                    continue
                if now >= target:
                    self.journal.done(entry)
                    log.info(
                        "journal entry recovered",
                        extra={
                            "tenant": self.tenant_id,
                            "user": entry.user_id,
                            "key": entry.association,
                            "writes": len(changes),
                        },
                    )

    # -- accounts --------------------------------------------------------------------------

    def _attribute_body(self, attributes: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        unknown = sorted(set(attributes) - set(_ATTRIBUTES) - {"entitlements"})
        if unknown:
            raise ProvisioningError(
                f"unknown attribute(s) {unknown}; known: {sorted(_ATTRIBUTES)}"
                + (" and entitlements" if creating else "")
                + "; nothing was written"
            )
        if "entitlements" in attributes and not creating:
            raise ProvisioningError(
                "entitlements can only be given to create_account; use "
                "grant and revoke; nothing was written"
            )
        body: dict[str, Any] = {}
        for name, value in attributes.items():
            if name == "entitlements":
                continue
            if name in _REQUIRED and (not isinstance(value, str) or not value.strip()):
                raise ProvisioningError(
                    f"{name} is required by Coupa and cannot be empty or "
                    "cleared; nothing was written"
                )
            if value is not None and not isinstance(value, str | int | bool):
                raise ProvisioningError(
                    f"{name}: expected a string, number or boolean; nothing was written"
                )
            if name == "manager":
                body["manager"] = None if value is None else {"login": value}
            else:
                body[_ATTRIBUTES[name]] = value
        return body

    @staticmethod
    def _differs(raw: Mapping[str, Any], key: str, value: Any) -> bool:
        current = raw.get(key)
        if key == "manager":
            login = current.get("login") if isinstance(current, dict) else None
            wanted = value.get("login") if isinstance(value, dict) else None
            return bool(login != wanted)
        return bool(current != value)

    def _update(self, user_id: int, request: ProvisionRequest) -> ProvisionResult:
        if "active" in request.attributes:
            raise ProvisioningError(
                "use enable_account or disable_account to change active; nothing was written"
            )
        body = self._attribute_body(request.attributes, creating=False)
        user, raw = self.read(user_id)
        diff = {k: v for k, v in body.items() if self._differs(raw, k, v)}
        if not diff:
            return self._result("unchanged", user, [], "every attribute already has that value")
        self._refuse_protected(user)
        change = f"update user {user_id}: " + ", ".join(
            f"{k}={v!r}" for k, v in sorted(diff.items())
        )
        if request.dry_run:
            return self._result("planned", user, [change], "dry run: nothing was written")
        self._put(user_id, diff, [], change)
        after, raw_after = self.read(user_id)
        ignored = sorted(k for k, v in diff.items() if self._differs(raw_after, k, v))
        if ignored:
            detail = ", ".join(f"{k} is {raw_after.get(k)!r}" for k in ignored)
            raise ProvisioningError(
                f"Coupa did not apply {ignored} to user {user_id} (it "
                f"ignores unknown references and some clears): {detail}"
            )
        return self._result("applied", after, [change], "")

    def _set_active(self, user_id: int, request: ProvisionRequest) -> ProvisionResult:
        active = request.action == "enable_account"
        user, _ = self.read(user_id)
        if user.active == active:
            return self._result(
                "unchanged",
                user,
                [],
                f"user {user_id} is already {'active' if active else 'inactive'}",
            )
        self._refuse_protected(user)
        if not active:
            self._refuse_last_admin(user, self._ids(user, "roles"))
        change = f"set active = {str(active).lower()} on user {user_id}"
        if request.dry_run:
            return self._result("planned", user, [change], "dry run: nothing was written")
        self._put(user_id, {"active": active}, [], change)
        after, _ = self.read(user_id)
        if after.active != active:
            raise ProvisioningError(
                f"Coupa ignored {change}: the user is still "
                f"{'active' if after.active else 'inactive'}"
            )
        return self._result("applied", after, [change], "")

    def _create(self, request: ProvisionRequest) -> ProvisionResult:
        attributes = request.attributes
        missing = [name for name in _REQUIRED if not attributes.get(name)]
        if missing:
            raise ProvisioningError(f"create_account needs {missing}; nothing was written")
        body = self._attribute_body(attributes, creating=True)
        login = str(body["login"])
        if login.lower() in self.protected_logins:
            raise ProvisioningError(
                f"refused: login {login} is listed in protected_logins; nothing was written"
            )
        raw_entitlements = attributes.get("entitlements") or []
        if not isinstance(raw_entitlements, list | tuple):
            raise ProvisioningError(
                "entitlements: expected a list of entitlement ids; nothing was written"
            )
        roles, flags, later = self._split_entitlements([str(e) for e in raw_entitlements])
        if roles:
            body["roles"] = [{"id": r} for r in sorted(roles)]
        body.update(dict.fromkeys(sorted(flags), True))
        existing = self._find_login(login)
        if existing is not None:
            user, raw = self.read(existing)
            if (
                not any(
                    self._differs(raw, k, v) for k, v in body.items() if k not in {"roles", *flags}
                )
                and set(roles) <= self._ids(user, "roles")
                and all(user.licenses.get(f) for f in flags)
                and not later
            ):
                return self._result(
                    "unchanged",
                    user,
                    [],
                    f"user {existing} ({login}) already exists with these attributes",
                )
            raise ProvisioningError(
                f"login {login} is already taken by user {existing}; nothing was written"
            )
        change = f"create user {login} with " + ", ".join(sorted(k for k in body if k != "login"))
        later_lines = [f"grant {e} to the new user" for e in later]
        if request.dry_run:
            return ProvisionResult(
                status="planned",
                changes=(change, *later_lines),
                message="dry run: nothing was written",
            )
        try:
            created = self.client.create_user(body)
            new_id = strict_id(created.get("id"), "POST /api/users: id")
        except CoupaTransportError:
            found = self._find_login(login)
            if found is None:
                raise ProvisioningError(
                    f"{change} failed and no user with login {login} exists; nothing was created"
                ) from None
            new_id = found
        except (CoupaError, KeyError, ValueError, TypeError) as exc:
            raise ProvisioningError(f"{change} failed: {exc}; nothing was created") from None
        changes = [change]
        for entitlement in later:
            result = self.provision(
                ProvisionRequest(
                    action="grant", entitlement_id=entitlement, principal_id=str(new_id)
                )
            )
            changes += list(result.changes)
        user, raw = self.read(new_id)
        wrong = sorted(
            k for k, v in body.items() if k not in {"roles", *flags} and self._differs(raw, k, v)
        )
        wrong += [f"role {r}" for r in sorted(roles - self._ids(user, "roles"))]
        wrong += [f"license {f}" for f in sorted(flags) if not user.licenses.get(f)]
        if wrong:
            raise ProvisioningError(
                f"user {new_id} ({login}) was created, but Coupa did not apply {wrong}"
            )
        return self._result("applied", user, changes, f"created user {new_id}")

    def _split_entitlements(self, ids: list[str]) -> tuple[set[int], set[str], list[str]]:
        roles: set[int] = set()
        flags: set[str] = set()
        later: list[str] = []
        for entitlement in ids:
            parsed = parse_entitlement_id(entitlement)
            if parsed is None or parsed[0] not in self._grant_types():
                raise NotFoundError(f"unknown entitlement {entitlement!r}; nothing was written")
            kind, ident, _ = parsed
            if kind == "role":
                self._require_exists("role", int(ident))
                roles.add(int(ident))
            elif kind == "license":
                flags.add(ident)
            else:
                self._require_exists(kind, int(ident))
                later.append(entitlement)
        if flags:
            unknown = sorted(flags - self.client.discover_license_flags())
            if unknown:
                raise NotFoundError(f"unknown license flag(s) {unknown}; nothing was written")
        return roles, flags, later

    def _find_login(self, login: str) -> int | None:
        try:
            rows = self.client.get("/api/users", {"login": login, "fields": '["id","login"]'})
        except CoupaError as exc:
            raise ProvisioningError(f"looking up login {login} failed: {exc}") from None
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and row.get("login") == login:
                try:
                    return strict_id(row.get("id"), "GET /api/users: id")
                except RecordError as exc:
                    raise ProvisioningError(f"looking up login {login} failed: {exc}") from None
        return None
