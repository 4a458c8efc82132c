"""Coupa records mapped onto the host model: plain functions, no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from coupa_plugin.connector._kinds import KINDS, LIST_KINDS, by_name
from coupa_plugin.coupa import (
    ACCOUNT_TYPE_FLAGS,
    LICENSE_KEY_RE,
    LICENSE_NAMES,
    READ_ONLY_LICENSE_FLAGS,
    AccountGroup,
    BusinessGroup,
    Ref,
    Role,
    User,
    UserGroup,
)
from coupa_plugin.host.errors import RefusedError
from coupa_plugin.host.model import Entitlement, Grant, Resource

__all__ = [
    "GRANT_SOURCES",
    "account_group_resource",
    "approval_group_resource",
    "check_grantable",
    "content_group_resource",
    "entitlement_id",
    "group_resource",
    "license_name",
    "license_resource",
    "parse_entitlement_id",
    "parse_id",
    "role_resource",
    "user_entitlements",
    "user_grants",
    "user_resource",
]

# user association -> resource type of the entitlements it carries (from the kinds' registry)
GRANT_SOURCES: Final = tuple((kind.attribute or "", kind.name) for kind in LIST_KINDS)
_ID_RE: Final = re.compile(r"[1-9][0-9]{0,17}")
_MAX_ENTITLEMENT_ID_CHARS: Final = 128
SLUGS: Final = {kind.name: kind.slug for kind in KINDS}


def entitlement_id(resource_type: str, resource_id: object) -> str:
    """``{type}:{id}:{slug}``: the one place an entitlement id is written
    (:func:`parse_entitlement_id` reads one)."""
    return f"{resource_type}:{resource_id}:{SLUGS[resource_type]}"


def parse_id(value: object) -> int | None:
    """A Coupa id given as text: canonical ASCII digits (no sign, no leading zero, no Unicode
    digits, at most 18 of them), else None: ``"05"`` or an Arabic-Indic or full-width five is
    not ``5``."""
    if isinstance(value, str) and _ID_RE.fullmatch(value):
        return int(value)
    return None


def parse_entitlement_id(value: object) -> tuple[str, str, str] | None:
    """``(type, id, slug)`` of a well-formed entitlement id of this plugin, else None: a
    canonical numeric id (:func:`parse_id`) or, for licenses, a flag key such as
    ``expense-user`` (not an account-type marker)."""
    if not isinstance(value, str) or len(value) > _MAX_ENTITLEMENT_ID_CHARS:
        return None
    parts = value.split(":")
    if len(parts) != 3 or not all(parts):
        return None
    kind, ident, slug = parts
    if SLUGS.get(kind) != slug:
        return None
    if kind == "license":
        if not LICENSE_KEY_RE.fullmatch(ident) or ident in ACCOUNT_TYPE_FLAGS:
            return None
    elif parse_id(ident) is None:
        return None
    return kind, ident, slug


def license_name(flag: str) -> str:
    """A reviewer-friendly name for a license flag, also for flags not known yet."""
    if flag in LICENSE_NAMES:
        return LICENSE_NAMES[flag]
    words = flag.removesuffix("-user").split("-")
    return " ".join(w.upper() if len(w) <= 3 else w.capitalize() for w in words)


def check_grantable(kind: str, ident: str) -> None:
    """Refuse, before anything is written, an entitlement Coupa does not let anyone change.

    :raises RefusedError: ``ident`` is a license flag Coupa marks read-only.
    """
    if kind == "license" and ident in READ_ONLY_LICENSE_FLAGS:
        raise RefusedError(
            f"refused: license flag {ident} is read-only in Coupa (its API schema marks it "
            "readOnly and Coupa ignores writes to it); change it in Coupa itself; "
            "nothing was written"
        )


def _entitlement(
    kind: str,
    ident: object,
    display: str,
    description: str | None,
    grantable_to: frozenset[str] = frozenset({"user"}),
) -> Entitlement:
    return Entitlement(
        id=entitlement_id(kind, ident),
        resource_type=kind,
        resource_id=str(ident),
        slug=SLUGS[kind],
        display_name=display,
        description=description,
        grantable_to=grantable_to,
    )


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def user_resource(user: User) -> Resource:
    name = user.fullname or " ".join(p for p in (user.firstname, user.lastname) if p) or user.login
    profile = {
        "login": user.login,
        "email": user.email,
        "firstname": user.firstname,
        "lastname": user.lastname,
        "employee_number": user.employee_number,
        "active": user.active,
        "api_user": user.api_user,
        "support_user": user.support_user,
        "authentication_method": user.authentication_method,
        "sso_identifier": user.sso_identifier,
        "manager_login": user.manager.login if user.manager else None,
        "manager_id": str(user.manager.id) if user.manager else None,
        "created_at": _iso(user.created_at),
        "updated_at": _iso(user.updated_at),
    }
    kind = "API user" if user.api_user else "support account" if user.support_user else "user"
    return Resource(
        type="user",
        id=str(user.id),
        display_name=name,
        description=f"Coupa {kind} {user.login}",
        status="enabled" if user.active else "disabled",
        profile=profile,
    )


def user_entitlements(user: User, types: frozenset[str]) -> Iterator[str]:
    """Ids of every entitlement ``user`` holds among entitlements of ``types``."""
    for attribute, kind in GRANT_SOURCES:
        if kind in types:
            refs: tuple[Ref, ...] = getattr(user, attribute)
            for ref in refs:
                yield entitlement_id(kind, ref.id)
    if "license" in types:
        for flag, held in user.licenses.items():
            if held:
                yield entitlement_id("license", flag)


def user_grants(user: User, types: frozenset[str]) -> Iterator[Grant]:
    """Every grant ``user`` holds among entitlements of ``types``."""
    principal = str(user.id)
    for entitlement in user_entitlements(user, types):
        yield Grant(entitlement_id=entitlement, principal_id=principal)


def role_resource(role: Role) -> Resource:
    privileged = bool(role.omnipotent)
    description = role.description or None
    return Resource(
        type="role",
        id=str(role.id),
        display_name=role.name,
        description=description,
        profile={
            "omnipotent": privileged,
            "privileged": privileged,
            "system_role": role.system_role,
        },
        entitlements=(
            _entitlement(
                "role",
                role.id,
                f"{role.name} role",
                f"Holds the Coupa role {role.name}"
                + (" (full system access)" if privileged else ""),
            ),
        ),
    )


def _group_resource(
    kind: str,
    group: UserGroup | BusinessGroup | AccountGroup,
    entitlement_name: str,
    profile: Mapping[str, Any] | None = None,
) -> Resource:
    known = by_name(kind)
    noun = known.label if known is not None else kind
    active = getattr(group, "active", None)
    return Resource(
        type=kind,
        id=str(group.id),
        display_name=group.name,
        description=group.description or None,
        status=None if active is None else "enabled" if active else "disabled",
        profile=dict(profile or {}),
        entitlements=(
            _entitlement(
                kind, group.id, entitlement_name, f"Member of the Coupa {noun} {group.name}"
            ),
        ),
    )


def group_resource(group: UserGroup) -> Resource:
    return _group_resource(
        "group",
        group,
        f"Member of {group.name}",
        {"active": group.active, "can_approve": group.can_approve},
    )


def approval_group_resource(group: UserGroup) -> Resource:
    return _group_resource(
        "approval_group",
        group,
        f"Approver in {group.name}",
        {"active": group.active},
    )


def content_group_resource(group: BusinessGroup) -> Resource:
    return _group_resource("content_group", group, f"Sees {group.name} content")


def account_group_resource(group: AccountGroup) -> Resource:
    return _group_resource("account_group", group, f"Uses {group.name} accounts")


def license_resource(flag: str) -> Resource:
    """A license; a flag Coupa marks read-only is listed (people hold it) but its
    entitlement is grantable to nobody (``grantable_to`` empty)."""
    name = license_name(flag)
    read_only = flag in READ_ONLY_LICENSE_FLAGS
    note = " (read-only in Coupa: not grantable here)" if read_only else ""
    return Resource(
        type="license",
        id=flag,
        display_name=f"{name} license",
        description=f"Coupa {name} license (user flag {flag}){note}",
        profile={"flag": flag, "read_only": read_only},
        entitlements=(
            _entitlement(
                "license",
                flag,
                f"{name} license assigned",
                f"The user's {flag} flag is true{note}",
                frozenset() if read_only else frozenset({"user"}),
            ),
        ),
    )
