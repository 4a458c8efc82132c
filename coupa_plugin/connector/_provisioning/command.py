"""A provisioning request parsed once, at the hook boundary, into a typed command.

The contract types a :class:`~coupa_plugin.host.model.ProvisionRequest`'s fields, but a host is
another program: a list where a string belongs, ``attributes=None``, a 64 KB login, an
attribute Coupa does not have. :func:`parse_command` reads a request once and returns one of
the command classes below, whose every field is what its type says; the provisioner works on
commands only.

Two kinds of problem are told apart, because they are answered at different moments:

* a request that is not well formed (a field of the wrong type, an oversized or unsendable
  value, an unknown action, an id this plugin never hands out) is refused at once by
  :func:`check_request`, before the tenant is even looked at: nothing is sent to Coupa;
* a well-formed request that asks for what cannot be done (an attribute Coupa does not have, a
  field the action needs and lacks) becomes :class:`Refused`, which the provisioner raises
  where it would find the problem: after the tenant's mode is known (a read-only tenant says
  so first) and after the user's own interrupted rewrites are recovered.

What a tenant allows (which kinds are enabled, whether it may write) is the provisioner's to
check against the tenant's status.

Errors: a malformed request is a :class:`ProvisioningError`; a principal or entitlement id
this plugin never hands out a :class:`NotFoundError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Final, cast

import attrs

from coupa_plugin.connector._inputs import type_name, unsendable
from coupa_plugin.connector._kinds import EntitlementKind, by_name
from coupa_plugin.connector._mapping import parse_entitlement_id, parse_id
from coupa_plugin.coupa import (
    INTEGER_PROFILE_FIELDS,
    MAX_TEXT_CHARS,
    PROFILE_FIELDS,
    GroupChanges,
    ProfileChanges,
    ProfileField,
    ProfileValue,
)
from coupa_plugin.host.errors import NotFoundError, PluginError, ProvisioningError
from coupa_plugin.host.model import PROVISION_ACTIONS, ProvisionRequest

__all__ = [
    "DRY_RUN",
    "GROUP_ACTIONS",
    "MAX_CREATE_ENTITLEMENTS",
    "MAX_GROUP_NAME_CHARS",
    "ChangeAccess",
    "Command",
    "CreateAccount",
    "CreateGroup",
    "DeactivateGroup",
    "EntitlementRef",
    "Refused",
    "SetActive",
    "UpdateAccount",
    "UpdateGroup",
    "check_request",
    "parse_command",
]

# entitlements one create_account may grant; each costs requests of its own
MAX_CREATE_ENTITLEMENTS: Final = 1_000
# Coupa's limit on a user group's name
MAX_GROUP_NAME_CHARS: Final = 255
# the attributes Coupa requires of every user: never empty, never cleared
REQUIRED_PROFILE: Final[tuple[ProfileField, ...]] = ("login", "email", "firstname", "lastname")

# what create_group and update_group take (a group's ``active`` is deactivate_group's)
_GROUP_FIELDS: Final = ("name", "description")
_NOTHING: Final = "; nothing was written"


@attrs.frozen(kw_only=True)
class EntitlementRef:
    """A well-formed entitlement id of this plugin, split: ``role:5:member`` is kind
    ``role``, key ``"5"``; ``license:expense-user:assigned`` is kind ``license``, key
    ``"expense-user"``."""

    id: str
    kind: EntitlementKind
    key: str

    @property
    def target(self) -> int:
        """The Coupa id of a list kind's item (``key`` is canonical digits for those)."""
        return int(self.key)


@attrs.frozen(kw_only=True)
class ChangeAccess:
    """``grant`` or ``revoke`` one entitlement of one user."""

    user_id: int
    entitlement: EntitlementRef
    granting: bool
    dry_run: bool = False

    @property
    def action(self) -> str:
        return "grant" if self.granting else "revoke"


@attrs.frozen(kw_only=True)
class UpdateAccount:
    """``update_account``: set profile attributes (``None`` clears one)."""

    user_id: int
    changes: ProfileChanges
    dry_run: bool = False
    action: ClassVar[str] = "update_account"


@attrs.frozen(kw_only=True)
class SetActive:
    """``enable_account`` or ``disable_account``."""

    user_id: int
    active: bool
    dry_run: bool = False

    @property
    def action(self) -> str:
        return "enable_account" if self.active else "disable_account"


@attrs.frozen(kw_only=True)
class CreateAccount:
    """``create_account``: a user with ``profile`` (its required attributes all there) and,
    optionally, entitlements to grant it."""

    profile: ProfileChanges
    entitlements: tuple[EntitlementRef, ...] = ()
    dry_run: bool = False
    action: ClassVar[str] = "create_account"

    @property
    def login(self) -> str:
        return str(self.profile["login"])


@attrs.frozen(kw_only=True)
class CreateGroup:
    name: str
    description: str | None = None
    dry_run: bool = False
    action: ClassVar[str] = "create_group"


@attrs.frozen(kw_only=True)
class UpdateGroup:
    """``update_group``: the group as named (only a user group can be changed: the
    provisioner refuses any other kind)."""

    entitlement: EntitlementRef
    changes: GroupChanges
    dry_run: bool = False
    action: ClassVar[str] = "update_group"


@attrs.frozen(kw_only=True)
class DeactivateGroup:
    entitlement: EntitlementRef
    dry_run: bool = False
    action: ClassVar[str] = "deactivate_group"


# the actions on a group, not a user: no user lock, the group's checks first
GROUP_ACTIONS: Final = frozenset(
    command.action for command in (CreateGroup, UpdateGroup, DeactivateGroup)
)
# what a dry run's result says
DRY_RUN: Final = "dry run: nothing was written"


@attrs.frozen(kw_only=True)
class Refused:
    """A well-formed request asking for what cannot be done, and the error that says so,
    raised where the provisioner finds it: at once (``first``: a field the action needs is
    missing), after the checks of the group named (``group``), after recovering the user's
    interrupted rewrites (``user_id``), or after the provisioner's own preparations."""

    action: str
    error: PluginError
    dry_run: bool = False
    first: bool = False
    user_id: int | None = None
    group: EntitlementRef | None = None


UserCommand = ChangeAccess | UpdateAccount | SetActive
GroupCommand = CreateGroup | UpdateGroup | DeactivateGroup
Command = UserCommand | CreateAccount | GroupCommand | Refused


def _refuse(problem: str) -> ProvisioningError:
    return ProvisioningError(f"malformed request: {problem}{_NOTHING}")


def parse_command(request: object) -> Command:
    """The command ``request`` asks for. A request that is not well formed raises (see
    :func:`check_request`); one asking for what cannot be done is :class:`Refused`."""
    check_request(request)
    assert isinstance(request, ProvisionRequest)  # check_request refuses anything else
    action, dry_run = request.action, request.dry_run
    if problems := request.problems():
        error = ProvisioningError(f"malformed request: {'; '.join(problems)}{_NOTHING}")
        return Refused(action=action, error=error, dry_run=dry_run, first=True)
    try:
        return _command(request)
    except PluginError as exc:
        user_id = parse_id(request.principal_id) if action == "update_account" else None
        group = (
            entitlement_ref(str(request.entitlement_id))
            if action in {UpdateGroup.action, DeactivateGroup.action}
            else None
        )
        return Refused(action=action, error=exc, dry_run=dry_run, user_id=user_id, group=group)


def _command(request: ProvisionRequest) -> Command:
    """The command of a well-formed request whose needed fields are all there; raises what
    makes it impossible."""
    action, dry_run, attributes = request.action, request.dry_run, request.attributes
    if action == "create_account":
        missing = [name for name in REQUIRED_PROFILE if not attributes.get(name)]
        if missing:
            raise ProvisioningError(f"create_account needs {missing}{_NOTHING}")
        refs = tuple(entitlement_ref(item) for item in attributes.get("entitlements") or ())
        profile = _profile(attributes, creating=True)
        return CreateAccount(profile=profile, entitlements=refs, dry_run=dry_run)
    if action == "create_group":
        name, description = _group_fields(attributes, creating=True)
        return CreateGroup(name=name or "", description=description, dry_run=dry_run)
    if action in {UpdateGroup.action, DeactivateGroup.action}:
        group = entitlement_ref(str(request.entitlement_id))
        if action == "deactivate_group":
            if attributes:
                raise ProvisioningError(f"deactivate_group takes no attributes{_NOTHING}")
            return DeactivateGroup(entitlement=group, dry_run=dry_run)
        _group_fields(attributes, creating=False)
        group_changes = cast(GroupChanges, dict(attributes))
        return UpdateGroup(entitlement=group, changes=group_changes, dry_run=dry_run)
    user_id = _user_id(str(request.principal_id))
    if action in {"grant", "revoke"}:
        entitlement = entitlement_ref(str(request.entitlement_id))
        return ChangeAccess(
            user_id=user_id, entitlement=entitlement, granting=action == "grant", dry_run=dry_run
        )
    if action == "update_account":
        if "active" in attributes:
            raise ProvisioningError(
                f"use enable_account or disable_account to change active{_NOTHING}"
            )
        changes = _profile(attributes, creating=False)
        return UpdateAccount(user_id=user_id, changes=changes, dry_run=dry_run)
    return SetActive(user_id=user_id, active=action == "enable_account", dry_run=dry_run)


def check_request(request: object) -> None:  # noqa: C901 - one check per field of the contract, in its order
    """Refuse a request that is not well formed before anything else is looked at: wrong types
    and oversized or unsendable values are a :class:`ProvisioningError`, a principal or
    entitlement id this plugin never hands out a :class:`NotFoundError`."""
    if not isinstance(request, ProvisionRequest):
        raise _refuse(f"expected a ProvisionRequest, got {type_name(request)}")
    action = request.action
    if not isinstance(action, str) or action not in PROVISION_ACTIONS:
        shown = repr(action[:40]) if isinstance(action, str) else type_name(action)
        raise _refuse(f"unknown action {shown} (expected one of {sorted(PROVISION_ACTIONS)})")
    for name in ("entitlement_id", "principal_id"):
        value = getattr(request, name)
        if value is not None and not isinstance(value, str):
            raise _refuse(f"{name}: expected a string, got {type_name(value)}")
    if not isinstance(request.dry_run, bool):
        raise _refuse(f"dry_run: expected true or false, got {type_name(request.dry_run)}")
    attributes = request.attributes
    if not isinstance(attributes, Mapping):
        raise _refuse(f"attributes: expected a mapping, got {type_name(attributes)}")
    for key, value in attributes.items():
        if not isinstance(key, str):
            raise _refuse(f"attributes: keys must be strings, got {type_name(key)}")
        if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
            raise _refuse(f"attributes.{key[:40]}: longer than {MAX_TEXT_CHARS:,} characters")
        if isinstance(value, str) and (why := unsendable(value)):
            raise _refuse(f"attributes.{key[:40]}: {why}")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
            raise _refuse(f"attributes.{key[:40]}: number out of range")
    principal = request.principal_id
    if action != "create_account" and principal is not None and parse_id(principal) is None:
        raise NotFoundError(
            f"unknown principal {principal[:40]!r}: Coupa user ids are numbers (ASCII "
            f"digits, no leading zero, at most 18){_NOTHING}"
        )
    if action in {"create_group", "update_group"}:
        _check_group_values(attributes)
    entitlement = request.entitlement_id
    if (
        action in {"grant", "revoke", "update_group", "deactivate_group"}
        and entitlement is not None
        and parse_entitlement_id(entitlement) is None
    ):
        raise NotFoundError(f"unknown entitlement {entitlement[:80]!r}{_NOTHING}")
    granted = attributes.get("entitlements") if action == "create_account" else None
    if granted is not None:
        if not isinstance(granted, list | tuple) or not all(isinstance(e, str) for e in granted):
            raise _refuse("entitlements: expected a list of entitlement ids")
        if len(granted) > MAX_CREATE_ENTITLEMENTS or len(set(granted)) != len(granted):
            # each is checked and granted with requests of its own: no repeats, a sane count
            raise _refuse(
                f"entitlements: at most {MAX_CREATE_ENTITLEMENTS} distinct entitlement ids "
                f"(got {len(granted)}, {len(set(granted))} distinct)"
            )
        for item in granted:
            if parse_entitlement_id(item) is None:
                raise NotFoundError(f"unknown entitlement {item[:80]!r}{_NOTHING}")


def _user_id(principal_id: str) -> int:
    user_id = parse_id(principal_id)
    if user_id is None:  # check_request said so already; kept for the type
        raise NotFoundError(f"unknown principal {principal_id[:40]!r}: Coupa user ids are numbers")
    return user_id


def entitlement_ref(value: str) -> EntitlementRef:
    """``value`` split into its kind and key, or a :class:`NotFoundError`."""
    parsed = parse_entitlement_id(value)
    kind = by_name(parsed[0]) if parsed is not None else None
    if parsed is None or kind is None:
        raise NotFoundError(f"unknown entitlement {value[:80]!r}{_NOTHING}")
    return EntitlementRef(id=value, kind=kind, key=parsed[1])


def _check_group_values(attributes: Mapping[str, object]) -> None:
    """``name`` (non-empty text, at most 255 characters) and ``description`` (text or
    None) of ``create_group`` and ``update_group``, when given."""
    name = attributes.get("name")
    if "name" in attributes and (not isinstance(name, str) or not name.strip()):
        raise _refuse("attributes.name: a user group's name must be non-empty text")
    if isinstance(name, str) and len(name) > MAX_GROUP_NAME_CHARS:
        raise _refuse(f"attributes.name: longer than {MAX_GROUP_NAME_CHARS} characters")
    description = attributes.get("description")
    if description is not None and not isinstance(description, str):
        raise _refuse(f"attributes.description: expected text, got {type_name(description)}")


def _group_fields(
    attributes: Mapping[str, object], *, creating: bool
) -> tuple[str | None, str | None]:
    """``name`` and ``description`` of ``create_group`` and ``update_group`` (their values
    checked by :func:`check_request`)."""
    unknown = sorted(set(attributes) - set(_GROUP_FIELDS))
    if unknown:
        raise ProvisioningError(
            f"unknown group attribute(s) {unknown}; known: {list(_GROUP_FIELDS)}{_NOTHING}"
        )
    if creating and "name" not in attributes:
        raise ProvisioningError(f"create_group needs a name{_NOTHING}")
    if not creating and not attributes:
        raise ProvisioningError(f"update_group needs name or description in attributes{_NOTHING}")
    name, description = attributes.get("name"), attributes.get("description")
    return (
        name if isinstance(name, str) else None,
        description if isinstance(description, str) else None,
    )


def _profile_value(name: ProfileField, value: object) -> ProfileValue:
    if name in REQUIRED_PROFILE and (not isinstance(value, str) or not value.strip()):
        raise ProvisioningError(
            f"{name} is required by Coupa and cannot be empty or cleared{_NOTHING}"
        )
    if value is None:
        return None
    if name in INTEGER_PROFILE_FIELDS:
        # Coupa holds the security types as whole numbers: 0 or 1, also given as text digits;
        # empty text clears one, as Coupa reads it
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 10:
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9:
            return value
        raise ProvisioningError(f"{name}: expected a whole number such as 0 or 1{_NOTHING}")
    if not isinstance(value, str):
        # every other attribute is text in Coupa; a number written there breaks later reads
        raise ProvisioningError(f"{name}: expected a string{_NOTHING}")
    return value


def _profile(
    attributes: Mapping[str, object], *, creating: bool
) -> dict[ProfileField, ProfileValue]:
    """The profile attributes of ``attributes``, checked in the order the request gives them."""
    unknown = sorted(set(attributes) - set(PROFILE_FIELDS) - {"entitlements"})
    if unknown:
        raise ProvisioningError(
            f"unknown attribute(s) {unknown}; known: {sorted(PROFILE_FIELDS)}"
            + (" and entitlements" if creating else "")
            + _NOTHING
        )
    if "entitlements" in attributes and not creating:
        raise ProvisioningError(
            f"entitlements can only be given to create_account; use grant and revoke{_NOTHING}"
        )
    fields = {name: name for name in PROFILE_FIELDS}
    return {
        fields[key]: _profile_value(fields[key], value)
        for key, value in attributes.items()
        if key in fields
    }
