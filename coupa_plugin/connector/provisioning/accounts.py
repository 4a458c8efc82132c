"""Account lifecycle: create, update, enable and disable a Coupa user."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from coupa_plugin.connector.mapping import check_grantable, parse_entitlement_id
from coupa_plugin.connector.provisioning.guards import Guards
from coupa_plugin.connector.provisioning.session import ATTRIBUTES, UserSession, ids_of
from coupa_plugin.coupa import CoupaClient, CoupaError, CoupaResponseError
from coupa_plugin.host.errors import NotFoundError, ProvisioningError
from coupa_plugin.host.model import ProvisionRequest, ProvisionResult

__all__ = ["ATTRIBUTES", "Accounts"]

_REQUIRED: Final = ("login", "email", "firstname", "lastname")

Result = Callable[[str, UserSession, str], ProvisionResult]


def _differs(raw: Mapping[str, Any], key: str, value: Any) -> bool:
    current = raw.get(key)
    if key == "manager":
        login = current.get("login") if isinstance(current, dict) else None
        wanted = value.get("login") if isinstance(value, dict) else None
        return bool(login != wanted)
    return bool(current != value)


def attribute_body(attributes: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """Coupa's body for ``attributes``; refuses unknown names and bad values."""
    unknown = sorted(set(attributes) - set(ATTRIBUTES) - {"entitlements"})
    if unknown:
        raise ProvisioningError(
            f"unknown attribute(s) {unknown}; known: {sorted(ATTRIBUTES)}"
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
                f"{name} is required by Coupa and cannot be empty or cleared; nothing was written"
            )
        if value is not None and not isinstance(value, str):
            # every attribute is text in Coupa; a number written there breaks later reads
            raise ProvisioningError(f"{name}: expected a string; nothing was written")
        if name == "manager":
            body["manager"] = None if value is None else {"login": value}
        else:
            body[ATTRIBUTES[name]] = value
    return body


class Accounts:
    """Create, update, enable and disable accounts."""

    def __init__(
        self,
        client: CoupaClient,
        guards: Guards,
        grant_types: Callable[[], frozenset[str]],
        session: Callable[[int], UserSession],
        result: Result,
    ) -> None:
        self.client = client
        self.guards = guards
        self._grant_types = grant_types
        self._session = session
        self._result = result

    def update(self, s: UserSession, request: ProvisionRequest) -> ProvisionResult:
        if "active" in request.attributes:
            raise ProvisioningError(
                "use enable_account or disable_account to change active; nothing was written"
            )
        body = attribute_body(request.attributes, creating=False)
        user, raw = s.read()
        diff = {k: v for k, v in body.items() if _differs(raw, k, v)}
        if not diff:
            return self._result("unchanged", s, "every attribute already has that value")
        self.guards.refuse_protected(user)
        change = f"update user {s.user_id}: " + ", ".join(
            f"{k}={v!r}" for k, v in sorted(diff.items())
        )
        if request.dry_run:
            s.changes.append(change)
            return self._result("planned", s, "dry run: nothing was written")
        s.write(
            lambda: s.send_put(diff, change),
            lambda _user: not any(_differs(s.last_raw, k, v) for k, v in diff.items()),
            change,
        )
        raw_after = s.last_raw
        ignored = sorted(k for k, v in diff.items() if _differs(raw_after, k, v))
        if ignored:
            detail = ", ".join(f"{k} is {raw_after.get(k)!r}" for k in ignored)
            raise s.failure(
                f"Coupa did not apply {ignored} to user {s.user_id} (it ignores unknown "
                f"references and some clears): {detail}"
            )
        return self._result("applied", s, "")

    def set_active(self, s: UserSession, request: ProvisionRequest) -> ProvisionResult:
        active = request.action == "enable_account"
        user = s.user()
        if user.active == active:
            return self._result(
                "unchanged", s, f"user {s.user_id} is already {'active' if active else 'inactive'}"
            )
        self.guards.refuse_protected(user)
        if not active:
            self.guards.refuse_last_admin(user, ids_of(user, "roles"))
        change = f"set active = {str(active).lower()} on user {s.user_id}"
        if request.dry_run:
            s.changes.append(change)
            return self._result("planned", s, "dry run: nothing was written")
        after = s.write(
            lambda: s.send_put({"active": active}, change), lambda u: u.active == active, change
        )
        if after.active != active:
            raise s.failure(f"Coupa ignored {change}")
        return self._result("applied", s, "")

    def create(  # noqa: C901 - the create's steps in order
        self, request: ProvisionRequest, grant: Callable[[ProvisionRequest], ProvisionResult]
    ) -> ProvisionResult:
        attributes = request.attributes
        missing = [name for name in _REQUIRED if not attributes.get(name)]
        if missing:
            raise ProvisioningError(f"create_account needs {missing}; nothing was written")
        body = attribute_body(attributes, creating=True)
        login = str(body["login"])
        self.guards.refuse_login(login)
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
            s = self._session(existing)
            user, raw = s.read()
            if (
                not any(_differs(raw, k, v) for k, v in body.items() if k not in {"roles", *flags})
                and roles <= ids_of(user, "roles")
                and all(user.licenses.get(f) for f in flags)
                and not later
            ):
                return self._result(
                    "unchanged",
                    s,
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
            new_id = created.get("id") if isinstance(created, dict) else None
            if isinstance(new_id, bool) or not isinstance(new_id, int):
                raise CoupaResponseError("the answer carried no user id")
        except CoupaError as exc:
            # the create may have landed (a dropped answer, an odd shape): Coupa decides
            found = self._find_login(login)
            if found is None:
                raise ProvisioningError(
                    f"{change} failed ({exc}); no user with login {login} exists, so nothing "
                    "was created"
                ) from None
            new_id = found
        changes = [change]
        for entitlement in later:
            try:
                result = grant(
                    ProvisionRequest(
                        action="grant", entitlement_id=entitlement, principal_id=str(new_id)
                    )
                )
            except ProvisioningError as exc:
                raise ProvisioningError(
                    f"user {new_id} ({login}) was created, but granting {entitlement} failed: {exc}"
                ) from None
            changes += list(result.changes)
        s = self._session(new_id)
        user, raw = s.read()
        s.changes.extend(changes)
        wrong = sorted(
            k for k, v in body.items() if k not in {"roles", *flags} and _differs(raw, k, v)
        )
        wrong += [f"role {r}" for r in sorted(roles - ids_of(user, "roles"))]
        wrong += [f"license {f}" for f in sorted(flags) if not user.licenses.get(f)]
        if wrong:
            raise s.failure(f"user {new_id} ({login}) was created, but Coupa did not apply {wrong}")
        return self._result("applied", s, f"created user {new_id}")

    def _split_entitlements(self, ids: list[str]) -> tuple[set[int], set[str], list[str]]:
        roles: set[int] = set()
        flags: set[str] = set()
        later: list[str] = []
        for entitlement in ids:
            parsed = parse_entitlement_id(entitlement)
            if parsed is None or parsed[0] not in self._grant_types():
                raise NotFoundError(f"unknown entitlement {entitlement!r}; nothing was written")
            kind, ident, _ = parsed
            check_grantable(kind, ident)
            if kind == "role":
                self.guards.catalog.require_exists("role", int(ident))
                roles.add(int(ident))
            elif kind == "license":
                flags.add(ident)
            else:
                self.guards.catalog.require_exists(kind, int(ident))
                later.append(entitlement)
        if flags:
            unknown = sorted(flags - self.client.discover_license_flags())
            if unknown:
                raise NotFoundError(f"unknown license flag(s) {unknown}; nothing was written")
        return roles, flags, later

    def _find_login(self, login: str) -> int | None:
        try:
            return self.client.user_id_by_login(login)
        except CoupaError as exc:
            raise ProvisioningError(f"looking up login {login} failed: {exc}") from None
