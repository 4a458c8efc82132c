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


def structure_user(payload: Mapping[str, Any]) -> User:
    """Build a :class:`User` from a payload, collecting its license flags."""
    data = dict(payload)
    for key in ("active", "api-user", "support-user", "supplier-user", "msp-user"):
        if data.get(key) is None:
            data.pop(key, None)
    data["licenses"] = {
        k: v
        for k, v in payload.items()
        if v.__class__ is bool and k[-5:] == "-user" and k not in ACCOUNT_TYPE_FLAGS
    }
    user: User = converter.structure(data, User)
    return user


def unstructure_user(user: User) -> dict[str, Any]:
    """The payload form of a :class:`User` (license flags as top-level keys again)."""
    data: dict[str, Any] = converter.unstructure(user)
    data.update(data.pop("licenses"))
    return data
