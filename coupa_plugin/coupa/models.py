"""Typed Coupa records and the one converter that maps Coupa's kebab-case JSON onto them.

The converter ignores keys it does not know (Coupa adds fields every release) and reads a
``null`` list as empty. License flags are not a closed list: every boolean ``*-user`` key of a
user payload except the account-type markers is a license.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

__all__ = [
    "ACCOUNT_TYPE_FLAGS",
    "KNOWN_LICENSE_FLAGS",
    "READ_ONLY_LICENSE_FLAGS",
    "AccountGroup",
    "BusinessGroup",
    "Membership",
    "Ref",
    "Role",
    "User",
    "UserGroup",
    "converter",
    "is_license_flag",
    "structure_user",
    "unstructure_user",
]

ACCOUNT_TYPE_FLAGS: Final = frozenset({"api-user", "supplier-user", "support-user", "msp-user"})
# Flags documented in Coupa's R39 user schema and seen in newer payloads. Only used to ask for
# them in ``fields=``; what a tenant has is read from its payloads.
KNOWN_LICENSE_FLAGS: Final = (
    "purchasing-user",
    "expense-user",
    "sourcing-user",
    "inventory-user",
    "contracts-user",
    "clm-advanced-user",
    "analytics-user",
    "aic-user",
    "spend-guard-user",
    "ccw-user",
    "risk-assess-user",
    "supply-chain-user",
    "travel-user",
    "treasury-user",
    "invoicing-user",
    "category-planner-user",
    "intake-user",
)
# Flags Coupa's R39 schema marks readOnly: Coupa ignores writes to them, so they are not
# grantable.
READ_ONLY_LICENSE_FLAGS: Final = frozenset({"category-planner-user"})


def is_license_flag(key: str, value: object) -> bool:
    """True for a boolean ``*-user`` key that is a license, not an account-type marker."""
    return isinstance(value, bool) and key.endswith("-user") and key not in ACCOUNT_TYPE_FLAGS


@attrs.frozen(kw_only=True)
class Ref:
    """A reference to a related record as it appears inside another one."""

    id: int
    name: str | None = None
    login: str | None = None


@attrs.frozen(kw_only=True)
class Role:
    id: int
    name: str
    description: str | None = None
    omnipotent: bool = False
    system_role: bool | None = None


@attrs.frozen(kw_only=True)
class UserGroup:
    id: int
    name: str
    description: str | None = None
    active: bool = True
    can_approve: bool = False


@attrs.frozen(kw_only=True)
class BusinessGroup:
    id: int
    name: str
    description: str | None = None


@attrs.frozen(kw_only=True)
class AccountGroup:
    id: int
    name: str
    description: str | None = None
    active: bool = True


@attrs.frozen(kw_only=True)
class Membership:
    id: int
    user_id: int
    user_group_id: int


@attrs.frozen(kw_only=True)
class User:
    """A Coupa user with the associations that carry access."""

    id: int
    login: str
    email: str | None = None
    firstname: str | None = None
    lastname: str | None = None
    fullname: str | None = None
    employee_number: str | None = None
    active: bool = True
    authentication_method: str | None = None
    sso_identifier: str | None = None
    api_user: bool = False
    support_user: bool = False
    supplier_user: bool = False
    msp_user: bool = False
    manager: Ref | None = None
    updated_by: Ref | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    roles: tuple[Ref, ...] = ()
    user_groups: tuple[Ref, ...] = ()
    content_groups: tuple[Ref, ...] = ()
    account_groups: tuple[Ref, ...] = ()
    approval_groups: tuple[Ref, ...] = ()
    licenses: Mapping[str, bool] = attrs.field(factory=dict)


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)

    def parse_datetime(value: Any, _: type) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value)
        return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)

    conv.register_structure_hook(datetime, parse_datetime)
    conv.register_unstructure_hook(datetime, lambda d: d.isoformat())

    # Hand-written hooks for the shapes that occur tens of thousands of times per sync.
    def ref(value: Any, _: type = Ref) -> Ref:
        return Ref(id=int(value["id"]), name=value.get("name"), login=value.get("login"))

    def refs(value: Any, _: type) -> tuple[Ref, ...]:
        return tuple(ref(item) for item in value) if value else ()

    def optional_str(value: Any, _: type) -> str | None:
        return value if value is None or isinstance(value, str) else str(value)

    conv.register_structure_hook(Ref, ref)
    conv.register_structure_hook_func(lambda t: t == tuple[Ref, ...], refs)
    conv.register_structure_hook_func(lambda t: t == (str | None), optional_str)
    conv.register_structure_hook_func(
        lambda t: t == Mapping[str, bool], lambda value, _: dict(value)
    )

    def renames(cls: type) -> dict[str, Any]:
        overrides: dict[str, Any] = {
            a.name: override(rename=_kebab(a.name)) for a in attrs.fields(cls) if "_" in a.name
        }
        return overrides

    def structure_factory(cls: type) -> Any:
        return make_dict_structure_fn(cls, conv, **renames(cls))

    def unstructure_factory(cls: type) -> Any:
        return make_dict_unstructure_fn(cls, conv, **renames(cls))

    conv.register_structure_hook_factory(attrs.has, structure_factory)
    conv.register_unstructure_hook_factory(attrs.has, unstructure_factory)
    return conv


converter: Final = _make_converter()


def _text(value: Any) -> str | None:
    return value if value is None or isinstance(value, str) else str(value)


def _flag(value: Any, default: bool) -> bool:
    return default if value is None else bool(value)


def _when(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    text = str(value)
    return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)


def _ref(value: Any) -> Ref | None:
    if not isinstance(value, Mapping):
        return None
    return Ref(id=int(value["id"]), name=value.get("name"), login=value.get("login"))


def _refs(value: Any) -> tuple[Ref, ...]:
    if not value:
        return ()
    return tuple(
        Ref(id=int(item["id"]), name=item.get("name"), login=item.get("login")) for item in value
    )


def _user_hook(payload: Any, _: type = User) -> User:
    """Structure hook for :class:`User`: the hot path of every sync, written out by hand."""
    get = payload.get
    return User(
        id=int(payload["id"]),
        login=str(payload["login"]),
        email=_text(get("email")),
        firstname=_text(get("firstname")),
        lastname=_text(get("lastname")),
        fullname=_text(get("fullname")),
        employee_number=_text(get("employee-number")),
        active=_flag(get("active"), True),
        authentication_method=_text(get("authentication-method")),
        sso_identifier=_text(get("sso-identifier")),
        api_user=_flag(get("api-user"), False),
        support_user=_flag(get("support-user"), False),
        supplier_user=_flag(get("supplier-user"), False),
        msp_user=_flag(get("msp-user"), False),
        manager=_ref(get("manager")),
        updated_by=_ref(get("updated-by")),
        created_at=_when(get("created-at")),
        updated_at=_when(get("updated-at")),
        roles=_refs(get("roles")),
        user_groups=_refs(get("user-groups")),
        content_groups=_refs(get("content-groups")),
        account_groups=_refs(get("account-groups")),
        approval_groups=_refs(get("approval-groups")),
        licenses={
            k: v
            for k, v in payload.items()
            if v.__class__ is bool and k[-5:] == "-user" and k not in ACCOUNT_TYPE_FLAGS
        },
    )


converter.register_structure_hook(User, _user_hook)


def structure_user(payload: Mapping[str, Any]) -> User:
    """Build a :class:`User` from a payload, collecting its license flags.

    :raises ValueError: the payload is not a user record (no id or login, wrong types).
    """
    try:
        user: User = converter.structure(payload, User)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        ident = payload.get("id") if isinstance(payload, Mapping) else None
        raise ValueError(
            f"user record {ident!r} is malformed: {type(exc).__name__}: {exc}"
        ) from None
    return user


def unstructure_user(user: User) -> dict[str, Any]:
    """The payload form of a :class:`User` (license flags as top-level keys again)."""
    data: dict[str, Any] = converter.unstructure(user)
    data.update(data.pop("licenses"))
    return data
