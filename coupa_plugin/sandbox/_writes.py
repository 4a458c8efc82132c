"""The sandbox's writes: users created and updated as Coupa validates them, user groups,
memberships and content-group changes, stamped with the writer. Each function runs on the
sandbox it is given, seen through :class:`WriteTarget` (what the writes need of it)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, Protocol

from coupa_plugin.sandbox._errors import HttpError
from coupa_plugin.sandbox._query import (
    kebab,
)
from coupa_plugin.sandbox._state import (
    ASSOCIATIONS,
    LICENSE_FLAGS,
    blank_user,
    now_iso,
)
from coupa_plugin.sandbox._view import SandboxView
from coupa_plugin.sandbox._wire import SandboxRequest
from coupa_plugin.sandbox._wire import errors as _errors
from coupa_plugin.sandbox._wire import parse_int as _int
from coupa_plugin.sandbox._wire import request_fields as _fields

__all__ = [
    "WriteTarget",
    "create_group",
    "create_membership",
    "create_user",
    "delete_membership",
    "request_body",
    "update_group",
    "update_user",
    "user_business_groups",
]


class WriteTarget(SandboxView, Protocol):
    """What the writes need of a sandbox (:class:`~coupa_plugin.sandbox._app.CoupaSandbox`)."""

    def actor(self) -> int | None:
        """The user the current request acts as (its OAuth client's, or an administrator)."""
        ...

    def render(self, table: str, record: dict[str, Any], fields: list[Any] | None) -> Any:
        """``record`` of ``table`` as a response shows it, trimmed to ``fields``."""
        ...


_USER_WRITABLE_SCALARS: Final = frozenset(
    {
        "login",
        "email",
        "firstname",
        "lastname",
        "middlename",
        "employee-number",
        "active",
        "sso-identifier",
        "authentication-method",
        "account-security-type",
        "business-group-security-type",
        "default-locale",
        "phone-work",
        "phone-mobile",
        "country-of-residence",
        "salesforce-id",
        "custom-fields",
    }
) | frozenset(LICENSE_FLAGS)
_AUTH_METHODS: Final = frozenset({"coupa_credentials", "ldap", "saml"})


def request_body(sb: WriteTarget, request: SandboxRequest, root: str) -> dict[str, Any]:
    if "json" not in request.headers.get("content-type", "application/json"):
        raise _errors(400, "base", "The sandbox accepts JSON request bodies only")
    try:
        body = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _errors(400, "base", "Malformed JSON body") from None
    if not isinstance(body, dict):
        raise _errors(400, "base", "Expected a JSON object")
    for key in (root, kebab(root)):
        if isinstance(body.get(key), dict) and len(body) == 1:
            return dict(body[key])
    return body


def resolve_refs(sb: WriteTarget, association: str, items: Any) -> list[int]:
    """Ids of existing records named by ``{"id": …}`` or ``{"name": …}``; unknown ones are
    silently dropped, as Coupa does for references that do not exist."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise _errors(400, "user", f"{association} must be a list")
    table: dict[int, dict[str, Any]] = getattr(sb.state, ASSOCIATIONS[association])
    by_name = {r["name"]: i for i, r in table.items()}
    found = []
    for item in items:
        if isinstance(item, dict) and _int(item.get("id")) in table:
            found.append(_int(item["id"]))
        elif isinstance(item, dict) and item.get("name") in by_name:
            found.append(by_name[item["name"]])
    return [i for i in dict.fromkeys(found) if i is not None]


def validate_scalars(
    sb: WriteTarget, user_id: int | None, changes: Mapping[str, Any]
) -> list[str]:
    problems = []
    for key in ("login", "email", "firstname", "lastname"):
        if key in changes and (not isinstance(changes[key], str) or not changes[key].strip()):
            problems.append(f"{key.capitalize()} can't be blank")
    for key in ("login", "email", "employee-number", "mention-name"):
        value = changes.get(key)
        if value in (None, ""):
            continue
        for other in sb.state.users.values():
            if other["id"] != user_id and other.get(key) == value:
                problems.append(f"{key.replace('-', ' ').capitalize()} has already been taken")
                break
    method = changes.get("authentication-method")
    if method is not None and method not in _AUTH_METHODS:
        problems.append("Authentication method is not included in the list")
    for flag in (*LICENSE_FLAGS, "active"):
        if flag in changes and not isinstance(changes[flag], bool):
            problems.append(f"{flag} must be true or false")
    return problems


def apply_user(  # noqa: C901 - one branch per kind of user field
    sb: WriteTarget, record: dict[str, Any], body: Mapping[str, Any], *, creating: bool
) -> None:
    changes = {kebab(k): v for k, v in body.items()}
    problems = validate_scalars(sb, None if creating else record["id"], changes)
    if problems:
        raise _errors(400, "user", *problems)
    ignored = sb.quirks.read_only_flags | sb.renderer.lacks.get("users", frozenset())
    for key, value in changes.items():
        if key in ignored:
            continue  # read-only or not in this release: Coupa ignores the write
        if key in _USER_WRITABLE_SCALARS:
            if value is False and key in sb.quirks.sticky_licenses and not creating:
                continue
            record[key] = value
        elif key == "manager":
            target = value if isinstance(value, dict) else {}
            match = next(
                (
                    u["id"]
                    for u in sb.state.users.values()
                    if target and all(u.get(kebab(k)) == v for k, v in target.items())
                ),
                None,
            )
            if value is None or match is not None:
                record["manager"] = match
    record["fullname"] = f"{record.get('firstname', '')} {record.get('lastname', '')}".strip()
    for association in ASSOCIATIONS:
        if association not in changes:
            continue
        wanted = resolve_refs(sb, association, changes[association])
        current = (
            sorted(sb.state.groups_of.get(record["id"], set()))
            if association == "user-groups"
            else list(record.get(association, []))
        )
        if wanted and sb.quirks.list_put == "merge":
            wanted = list(dict.fromkeys(current + wanted))
        if association == "roles" and not wanted and sb.quirks.empty_roles_become_user:
            wanted = [3]
        if association == "user-groups":
            sb.state.set_user_groups(record["id"], wanted)
        else:
            record[association] = sorted(wanted)


def create_user(sb: WriteTarget, body: dict[str, Any], params: list[tuple[str, str]]) -> Any:
    missing = [
        k.capitalize() + " can't be blank"
        for k in ("login", "email", "firstname", "lastname")
        if not body.get(k)
    ]
    if missing:
        raise _errors(400, "user", *missing)
    user_id = sb.state.next_id("users")
    record = blank_user(user_id, now_iso())
    record["created-by"] = record["updated-by"] = sb.actor()
    sb.state.users[user_id] = record
    try:
        apply_user(sb, record, body, creating=True)
    except HttpError:
        del sb.state.users[user_id]
        sb.state.groups_of.pop(user_id, None)
        raise
    record["mention-name"] = record["mention-name"] or str(record["login"]).split("@")[0]
    if not record["roles"]:
        record["roles"] = [3]
    sb.state.touch()
    return sb.render("users", record, _fields(params))


def update_user(
    sb: WriteTarget, user_id: int | None, body: dict[str, Any], params: list[tuple[str, str]]
) -> Any:
    record = sb.state.users.get(user_id or -1)
    if record is None:
        raise _errors(404, "user", "Record not found")
    candidate = {**record, **{a: list(record[a]) for a in ASSOCIATIONS if a in record}}
    groups_before = set(sb.state.groups_of.get(record["id"], set()))
    try:
        apply_user(sb, candidate, body, creating=False)
    except HttpError:
        sb.state.set_user_groups(record["id"], groups_before)
        raise
    candidate["updated-at"] = now_iso()
    candidate["updated-by"] = sb.actor()
    record.clear()
    record.update(candidate)
    sb.state.touch()
    return sb.render("users", record, _fields(params))


def bump(sb: WriteTarget, user_id: int) -> None:
    if sb.quirks.membership_bumps_updated_at and user_id in sb.state.users:
        sb.state.users[user_id]["updated-at"] = now_iso()
        sb.state.users[user_id]["updated-by"] = sb.actor()


def user_business_groups(
    sb: WriteTarget, user_id: int | None, rest: list[str], method: str
) -> tuple[int, str, Any]:
    if not sb.quirks.business_group_routes:
        raise _errors(404, "base", "Not found")
    user = sb.state.users.get(user_id or -1)
    if user is None:
        raise _errors(404, "user", "Record not found")
    if method == "GET" and not rest:
        return (
            200,
            "business-groups",
            [dict(sb.state.business_groups[g]) for g in user["content-groups"]],
        )
    if method == "PUT" and len(rest) == 2 and rest[1] in {"add", "remove"}:
        group_id = _int(rest[0])
        if group_id not in sb.state.business_groups:
            raise _errors(404, "business_group", "Record not found")
        groups = set(user["content-groups"])
        before = set(groups)
        if rest[1] == "add":
            groups.add(group_id)
        else:
            groups.discard(group_id)
        user["content-groups"] = sorted(groups)
        if groups != before:
            bump(sb, user["id"])
            sb.state.touch()
        return 200, "user", sb.renderer.user(user)
    raise _errors(404, "base", "Not found")


def create_membership(sb: WriteTarget, body: dict[str, Any]) -> Any:
    changes = {kebab(k): v for k, v in body.items()}
    user_id, group_id = _int(changes.get("user-id")), _int(changes.get("user-group-id"))
    if user_id not in sb.state.users:
        raise _errors(400, "user_group_membership", "User must exist")
    if group_id not in sb.state.user_groups:
        raise _errors(400, "user_group_membership", "User group must exist")
    if user_id in sb.state.members_of.get(group_id, {}):
        raise _errors(400, "user_group_membership", "User has already been taken")
    membership_id = sb.state.add_membership(user_id, group_id)
    bump(sb, user_id)
    sb.state.touch()
    return sb.renderer.membership(membership_id)


def delete_membership(sb: WriteTarget, membership_id: int | None) -> Any:
    if membership_id is None or membership_id not in sb.state.memberships:
        raise _errors(404, "user_group_membership", "Record not found")
    rendered = sb.renderer.membership(membership_id)
    user_id, _ = sb.state.memberships[membership_id]
    sb.state.remove_membership(membership_id)
    bump(sb, user_id)
    sb.state.touch()
    return rendered


def create_group(sb: WriteTarget, body: dict[str, Any]) -> Any:
    changes = {kebab(k): v for k, v in body.items()}
    name = changes.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _errors(400, "user_group", "Name can't be blank")
    if any(g["name"] == name for g in sb.state.user_groups.values()):
        raise _errors(400, "user_group", "Name has already been taken")
    group_id = sb.state.next_id("user_groups")
    stamp = now_iso()
    sb.state.user_groups[group_id] = {
        "id": group_id,
        "name": name,
        "description": changes.get("description"),
        "active": bool(changes.get("active", True)),
        "can-approve": bool(changes.get("can-approve", False)),
        "open": bool(changes.get("open", False)),
        "type": None,
        "mention-name": name.lower().replace(" ", "_"),
        "created-at": stamp,
        "updated-at": stamp,
    }
    sb.state.touch()
    return sb.renderer.user_group(sb.state.user_groups[group_id])


def update_group(sb: WriteTarget, group_id: int | None, body: dict[str, Any]) -> Any:
    group = sb.state.user_groups.get(group_id or -1)
    if group is None:
        raise _errors(404, "user_group", "Record not found")
    changes = {kebab(k): v for k, v in body.items()}
    for key in ("name", "description", "active", "can-approve", "open"):
        if key in changes:
            group[key] = changes[key]
    if "users" in changes:
        users = changes["users"] or []
        wanted = {_int(u.get("id")) for u in users if isinstance(u, dict)} & set(sb.state.users)
        current = set(sb.state.members_of.get(group["id"], {}))
        if wanted and sb.quirks.list_put == "merge":
            wanted |= current
        for uid in current - wanted:
            sb.state.remove_membership(sb.state.members_of[group["id"]][uid])
            bump(sb, uid)
        for uid in sorted(w for w in wanted - current if w is not None):
            sb.state.add_membership(uid, group["id"])
            bump(sb, uid)
    group["updated-at"] = now_iso()
    sb.state.touch()
    return sb.renderer.user_group(group)
