"""Typed Coupa records and the one converter that maps Coupa's kebab-case JSON onto them.

The converter ignores keys it does not know (Coupa adds fields every release) and reads a
``null`` list as empty. It checks the type of every field it reads and never coerces one: a
string ``"false"`` is an error, not a boolean; ``5.9`` or ``true`` is not an id. License
flags are not a closed list: every boolean ``*-user`` key of a user payload except the
account-type markers is a license, and its key must look like one (``[a-z0-9-]+-user``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal, TypedDict, TypeVar, cast, get_args

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from coupa_plugin.coupa._errors import RecordError

__all__ = [
    "ACCOUNT_TYPE_FLAGS",
    "KNOWN_LICENSE_FLAGS",
    "LICENSE_KEY_RE",
    "LICENSE_NAMES",
    "MAX_ID",
    "PROFILE_FIELDS",
    "READ_ONLY_LICENSE_FLAGS",
    "USER_LIST_KEYS",
    "AccountGroup",
    "BusinessGroup",
    "GroupChanges",
    "LookupCollection",
    "Membership",
    "Profile",
    "ProfileChanges",
    "ProfileField",
    "Ref",
    "Role",
    "Unreadable",
    "User",
    "UserGroup",
    "UserList",
    "UserRecord",
    "WriteEcho",
    "converter",
    "is_license_flag",
    "strict_id",
    "structure",
    "structure_user",
    "unheld",
    "unstructure_user",
]

ACCOUNT_TYPE_FLAGS: Final = frozenset({"api-user", "supplier-user", "support-user", "msp-user"})
# Flags documented in Coupa's R39 user schema and seen in newer payloads, with the product
# each one licenses. Only used to ask for them in ``fields=`` and to name them; what a tenant
# has is read from its payloads.
LICENSE_NAMES: Final[Mapping[str, str]] = {
    "purchasing-user": "Purchasing",
    "expense-user": "Expense",
    "sourcing-user": "Sourcing",
    "inventory-user": "Inventory",
    "contracts-user": "Contracts",
    "clm-advanced-user": "Contract Lifecycle Management Advanced",
    "analytics-user": "Analytics",
    "aic-user": "AI Classification",
    "spend-guard-user": "Spend Guard",
    "ccw-user": "Contingent Workforce",
    "risk-assess-user": "Risk Assess",
    "supply-chain-user": "Supply Chain",
    "travel-user": "Travel",
    "treasury-user": "Treasury",
    "invoicing-user": "Invoicing",
    "category-planner-user": "Category Planner",
    "intake-user": "Intake",
}
KNOWN_LICENSE_FLAGS: Final = tuple(LICENSE_NAMES)
# Flags Coupa's R39 schema marks readOnly: Coupa ignores writes to them, so they are not
# grantable.
READ_ONLY_LICENSE_FLAGS: Final = frozenset({"category-planner-user"})


# Bounds on what a record may carry: ids are at most 18 digits, text fields what a person or
# a group could plausibly have, association lists what a user could plausibly hold.
MAX_ID: Final = 10**18
MAX_TEXT_CHARS: Final = 4096
MAX_DESCRIPTION_CHARS: Final = 65_536
MAX_REFS: Final = 100_000
MAX_LICENSE_KEY_CHARS: Final = 64
LICENSE_KEY_RE: Final = re.compile(rf"(?=.{{6,{MAX_LICENSE_KEY_CHARS}}}\Z)[a-z0-9-]+-user")
T = TypeVar("T")


def is_license_flag(key: str, value: object) -> bool:
    """True for a boolean ``*-user`` key that is a license, not an account-type marker."""
    return (
        isinstance(value, bool)
        and key.endswith("-user")
        and key not in ACCOUNT_TYPE_FLAGS
        and LICENSE_KEY_RE.fullmatch(key) is not None
    )


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


# The lists of a user that carry access, by the User model's attribute; each is written whole
# with ``PUT /api/users/:id`` under its Coupa key.
UserList = Literal["roles", "user_groups", "content_groups", "account_groups", "approval_groups"]
USER_LIST_KEYS: Final[Mapping[UserList, str]] = {name: _kebab(name) for name in get_args(UserList)}

# The collections whose records can be read one by one (``GET /api/<collection>/:id``).
LookupCollection = Literal["user_groups", "business_groups", "account_groups"]

# A user's profile attributes a caller may set (``manager`` by the manager's login). Coupa
# holds the two security types as integers and every other one as text.
ProfileField = Literal[
    "login",
    "email",
    "firstname",
    "lastname",
    "middlename",
    "employee_number",
    "sso_identifier",
    "authentication_method",
    "default_locale",
    "mention_name",
    "business_group_security_type",
    "account_security_type",
    "manager",
]
PROFILE_FIELDS: Final[tuple[ProfileField, ...]] = get_args(ProfileField)
INTEGER_PROFILE_FIELDS: Final[frozenset[ProfileField]] = frozenset(
    {"business_group_security_type", "account_security_type"}
)
ProfileValue = str | int | None
ProfileChanges = Mapping[ProfileField, ProfileValue]


@attrs.frozen
class Unreadable:
    """A profile value Coupa holds in a form no caller can ask for (a list where text
    belongs, say). It equals no value a caller gives, so asking for any value writes it; its
    repr names the JSON type, never the value."""

    kind: str

    def __repr__(self) -> str:
        return f"<{self.kind}>"


@attrs.frozen
class Profile:
    """A user's profile attributes as Coupa holds them (``manager``: the manager's login).

    Reading a profile never fails: it is compared with what a caller asks for, and a value
    Coupa holds in an odd form must not keep a user from being provisioned."""

    values: Mapping[ProfileField, ProfileValue | Unreadable]

    def get(self, field: ProfileField) -> ProfileValue | Unreadable:
        return self.values.get(field)

    def differs(self, changes: ProfileChanges) -> dict[ProfileField, ProfileValue]:
        """The part of ``changes`` this profile does not already hold."""
        return {name: value for name, value in changes.items() if self.get(name) != value}


class GroupChanges(TypedDict, total=False):
    """What a write of a user group sets (``description`` None clears it)."""

    name: str
    description: str | None
    active: bool


def unheld(group: UserGroup, changes: GroupChanges) -> GroupChanges:
    """The part of ``changes`` that ``group`` does not hold already."""
    held = attrs.asdict(group)
    return cast(GroupChanges, {key: value for key, value in changes.items() if held[key] != value})


@attrs.frozen
class UserRecord:
    """One user as a provisioning read sees it: the access it holds and its profile."""

    user: User
    profile: Profile


@attrs.frozen
class WriteEcho:
    """What Coupa's answer to a write of a user says: who made it (the API user a token writes
    as; None when the answer does not say)."""

    writer_id: int | None


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def strict_id(value: Any, what: str = "id") -> int:
    """A Coupa id: a JSON integer from 1 to 18 digits (never a bool, float or string)."""
    if value.__class__ is not int:
        raise RecordError(f"{what}: expected an integer id, got {_kind(value)}")
    if not 0 < value < MAX_ID:
        raise RecordError(f"{what}: id out of range (1 to 18 digits)")
    return int(value)


def strict_text(value: Any, what: str, limit: int = MAX_TEXT_CHARS) -> str:
    if value.__class__ is not str:
        raise RecordError(f"{what}: expected a string, got {_kind(value)}")
    if len(value) > limit:
        raise RecordError(f"{what}: longer than {limit:,} characters")
    return str(value)


def _text(value: Any, what: str, limit: int = MAX_TEXT_CHARS) -> str | None:
    return None if value is None else strict_text(value, what, limit)


def _flag(value: Any, *, default: bool, what: str) -> bool:
    if value is None:
        return default
    if value.__class__ is not bool:
        raise RecordError(f"{what}: expected true or false, got {_kind(value)}")
    return bool(value)


def _when(value: Any, what: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    text = strict_text(value, what, 64)
    try:
        return datetime.fromisoformat(text)  # reads a trailing Z since Python 3.11
    except ValueError:
        raise RecordError(f"{what}: not an ISO 8601 timestamp") from None


def _ref(value: Any, what: str) -> Ref:
    if not isinstance(value, Mapping):
        raise RecordError(f"{what}: expected an object, got {_kind(value)}")
    return Ref(
        id=strict_id(value.get("id"), f"{what}.id"),
        name=_text(value.get("name"), f"{what}.name"),
        login=_text(value.get("login"), f"{what}.login"),
    )


def _refs(value: Any, what: str) -> tuple[Ref, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RecordError(f"{what}: expected a list, got {_kind(value)}")
    if len(value) > MAX_REFS:
        raise RecordError(f"{what}: more than {MAX_REFS:,} entries")
    return tuple(_ref(item, what) for item in value)


def _licenses(payload: Mapping[str, Any]) -> dict[str, bool]:
    flags: dict[str, bool] = {}
    for key, value in payload.items():
        if value.__class__ is not bool or key[-5:] != "-user" or key in ACCOUNT_TYPE_FLAGS:
            continue
        if not LICENSE_KEY_RE.fullmatch(key):
            raise RecordError(
                f"license flag {key[:60]!r}: not of the form [a-z0-9-]+-user (at most "
                f"{MAX_LICENSE_KEY_CHARS} characters)"
            )
        flags[key] = value
    return flags


def _make_converter() -> cattrs.Converter:
    """Catalog records (roles, groups, memberships): every field type-checked, never coerced
    (``"5"`` is not an id, ``"false"`` is not a boolean, a list is not a name)."""
    conv = cattrs.Converter(forbid_extra_keys=False)

    conv.register_structure_hook(datetime, lambda v, _: _when(v, "timestamp"))
    conv.register_unstructure_hook(datetime, lambda d: d.isoformat())
    conv.register_structure_hook(int, lambda v, _: strict_id(v))
    conv.register_structure_hook(str, lambda v, _: strict_text(v, "text"))
    conv.register_structure_hook(bool, lambda v, _: _flag(v, default=False, what="flag"))
    conv.register_structure_hook(Ref, lambda v, _: _ref(v, "reference"))
    conv.register_structure_hook_func(
        lambda t: t == tuple[Ref, ...], lambda v, _: _refs(v, "references")
    )
    conv.register_structure_hook_func(
        lambda t: t == (str | None), lambda v, _: _text(v, "text", MAX_DESCRIPTION_CHARS)
    )
    conv.register_structure_hook_func(
        lambda t: t == (bool | None),
        lambda v, _: None if v is None else _flag(v, default=False, what="flag"),
    )
    conv.register_structure_hook_func(
        lambda t: t == Mapping[str, bool], lambda value, _: _licenses(value)
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


def _problem(exc: BaseException, _: type | None) -> str:
    if isinstance(exc, RecordError):
        return str(exc)
    return "required field missing" if isinstance(exc, KeyError) else type(exc).__name__


def structure(payload: Any, cls: type[T]) -> T:
    """A catalog record of type ``cls`` from a payload.

    :raises RecordError: the payload is not such a record; the message names the field.
    """
    if not isinstance(payload, Mapping):
        raise RecordError(f"expected an object, got {_kind(payload)}")
    try:
        return converter.structure(payload, cls)
    except RecordError:
        raise
    except Exception as exc:  # noqa: BLE001 - cattrs groups field errors; name them, keep no payload values
        problems = (
            cattrs.transform_error(exc, format_exception=_problem)
            if isinstance(exc, cattrs.BaseValidationError)
            else []
        )
        detail = "; ".join(p[:160] for p in problems[:5]) or type(exc).__name__
        raise RecordError(f"malformed {cls.__name__.lower()} record: {detail}") from None


def _user_hook(payload: Any, _: type = User) -> User:
    """Structure hook for :class:`User`: the hot path of every sync, written out by hand."""
    get = payload.get
    return User(
        id=strict_id(get("id")),
        login=strict_text(get("login"), "login"),
        email=_text(get("email"), "email"),
        firstname=_text(get("firstname"), "firstname"),
        lastname=_text(get("lastname"), "lastname"),
        fullname=_text(get("fullname"), "fullname"),
        employee_number=_text(get("employee-number"), "employee-number"),
        active=_flag(get("active"), default=True, what="active"),
        authentication_method=_text(get("authentication-method"), "authentication-method"),
        sso_identifier=_text(get("sso-identifier"), "sso-identifier"),
        api_user=_flag(get("api-user"), default=False, what="api-user"),
        support_user=_flag(get("support-user"), default=False, what="support-user"),
        supplier_user=_flag(get("supplier-user"), default=False, what="supplier-user"),
        msp_user=_flag(get("msp-user"), default=False, what="msp-user"),
        manager=None if get("manager") is None else _ref(get("manager"), "manager"),
        updated_by=None if get("updated-by") is None else _ref(get("updated-by"), "updated-by"),
        created_at=_when(get("created-at"), "created-at"),
        updated_at=_when(get("updated-at"), "updated-at"),
        roles=_refs(get("roles"), "roles"),
        user_groups=_refs(get("user-groups"), "user-groups"),
        content_groups=_refs(get("content-groups"), "content-groups"),
        account_groups=_refs(get("account-groups"), "account-groups"),
        approval_groups=_refs(get("approval-groups"), "approval-groups"),
        licenses=_licenses(payload),
    )


converter.register_structure_hook(User, _user_hook)


def structure_user(payload: Any) -> User:
    """Build a :class:`User` from a payload, collecting its license flags.

    :raises RecordError: the payload is not a user record (no id or login, wrong types);
        the message names the field and never carries its value.
    """
    if not isinstance(payload, Mapping):
        raise RecordError(f"expected a user object, got {_kind(payload)}")
    try:
        user: User = _user_hook(payload)
    except RecordError as exc:
        ident = payload.get("id")
        shown = ident if ident.__class__ is int and 0 < ident < MAX_ID else "?"
        raise RecordError(f"user record {shown} is malformed: {exc}") from None
    return user


def _profile_value(field: ProfileField, value: Any) -> ProfileValue | Unreadable:
    if value is None:
        return None
    if field == "manager":  # the manager by login; a manager named no other way reads as none
        login = value.get("login") if isinstance(value, Mapping) else None
        return login if isinstance(login, str) else None
    if field in INTEGER_PROFILE_FIELDS:
        if value.__class__ is int:
            return int(value)
        if isinstance(value, str):  # a Coupa that answers with text: the same number
            text = value.strip()
            if not text:
                return None
            if text.isascii() and text.isdigit() and len(text) < 19:
                return int(text)
    elif isinstance(value, str):
        return value
    return Unreadable(_kind(value))


def structure_profile(payload: Mapping[str, Any]) -> Profile:
    """The :class:`Profile` in a user payload read with :data:`PROFILE_FIELDS`. The security
    types read as whole numbers (text digits included), the manager as its login, any other
    attribute as text; a value in another form is :class:`Unreadable`."""
    return Profile(
        {field: _profile_value(field, payload.get(_kebab(field))) for field in PROFILE_FIELDS}
    )


def profile_body(changes: ProfileChanges) -> dict[str, Any]:
    """Coupa's body for ``changes`` (kebab-case keys; the manager named by login)."""
    body: dict[str, Any] = {}
    for field, value in changes.items():
        if field == "manager":
            body["manager"] = None if value is None else {"login": value}
        else:
            body[_kebab(field)] = value
    return body


def unstructure_user(user: User) -> dict[str, Any]:
    """The payload form of a :class:`User` (license flags as top-level keys again)."""
    data: dict[str, Any] = converter.unstructure(user)
    data.update(data.pop("licenses"))
    return data
