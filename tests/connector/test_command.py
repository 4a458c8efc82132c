"""A provisioning request parsed once into a typed command: what each action becomes, and the
typed error naming what is wrong with a request, before anything reaches Coupa."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupa_plugin.connector._provisioning.command import (
    MAX_CREATE_ENTITLEMENTS,
    ChangeAccess,
    CreateAccount,
    CreateGroup,
    DeactivateGroup,
    Refused,
    SetActive,
    UpdateAccount,
    UpdateGroup,
    parse_command,
)
from coupa_plugin.host.errors import (
    NotFoundError,
    PluginError,
    ProvisioningError,
)
from coupa_plugin.host.model import PROVISION_ACTIONS, ProvisionRequest

NEW_USER = {"login": "ada", "email": "ada@example.com", "firstname": "Ada", "lastname": "L"}


def request(**fields: Any) -> ProvisionRequest:
    return ProvisionRequest(**fields)


def test_grant_and_revoke_become_a_change_of_access() -> None:
    grant = parse_command(
        request(action="grant", principal_id="17", entitlement_id="role:5:member")
    )
    assert isinstance(grant, ChangeAccess)
    assert (grant.user_id, grant.granting, grant.action) == (17, True, "grant")
    assert grant.dry_run is False
    assert (grant.entitlement.kind.name, grant.entitlement.target) == ("role", 5)
    revoke = parse_command(
        request(
            action="revoke",
            principal_id="17",
            entitlement_id="license:expense-user:assigned",
            dry_run=True,
        )
    )
    assert isinstance(revoke, ChangeAccess)
    assert (revoke.granting, revoke.dry_run) == (False, True)
    assert (revoke.entitlement.kind.name, revoke.entitlement.key) == ("license", "expense-user")


def test_account_actions_carry_typed_fields() -> None:
    update = parse_command(
        request(
            action="update_account",
            principal_id="3",
            attributes={"employee_number": "E-1", "manager": None, "middlename": ""},
        )
    )
    assert update == UpdateAccount(
        user_id=3, changes={"employee_number": "E-1", "manager": None, "middlename": ""}
    )
    assert parse_command(request(action="disable_account", principal_id="3")) == SetActive(
        user_id=3, active=False
    )
    assert parse_command(request(action="enable_account", principal_id="3")) == SetActive(
        user_id=3, active=True
    )
    create = parse_command(
        request(
            action="create_account",
            attributes={**NEW_USER, "entitlements": ["role:2:member", "group:4:member"]},
        )
    )
    assert isinstance(create, CreateAccount)
    assert create.login == "ada"
    assert [e.id for e in create.entitlements] == ["role:2:member", "group:4:member"]
    assert "entitlements" not in create.profile


@pytest.mark.parametrize("given_as", [1, "1"])
def test_security_types_are_whole_numbers_as_coupa_holds_them(given_as: object) -> None:
    command = parse_command(
        request(
            action="update_account",
            principal_id="3",
            attributes={"account_security_type": given_as, "business_group_security_type": 0},
        )
    )
    assert isinstance(command, UpdateAccount)
    assert command.changes == {"account_security_type": 1, "business_group_security_type": 0}


@pytest.mark.parametrize("value", ["one", -1, 1.5, True, "\uff11"])  # a full-width one
def test_a_security_type_that_is_not_a_whole_number_is_refused(value: object) -> None:
    command = parse_command(
        request(
            action="update_account", principal_id="3", attributes={"account_security_type": value}
        )
    )
    assert isinstance(command, Refused)
    assert command.user_id == 3  # refused once the user's interrupted rewrites are recovered
    assert type(command.error) is ProvisioningError
    assert "account_security_type: expected a whole number" in str(command.error)


@pytest.mark.parametrize("empty", ["", " "])
def test_an_empty_security_type_clears_it_as_coupa_reads_it(empty: str) -> None:
    command = parse_command(
        request(
            action="update_account",
            principal_id="3",
            attributes={"business_group_security_type": empty},
        )
    )
    assert command == UpdateAccount(user_id=3, changes={"business_group_security_type": None})


def test_group_actions_become_group_commands() -> None:
    assert parse_command(
        request(action="create_group", attributes={"name": "Buyers", "description": "d"})
    ) == CreateGroup(name="Buyers", description="d")
    update = parse_command(
        request(action="update_group", entitlement_id="group:9:member", attributes={"name": "B2"})
    )
    assert isinstance(update, UpdateGroup)
    assert (update.entitlement.target, update.changes) == (9, {"name": "B2"})
    deactivate = parse_command(
        request(action="deactivate_group", entitlement_id="role:9:member")
    )  # a role is well formed; that Coupa lets no role be changed is the provisioner's refusal
    assert isinstance(deactivate, DeactivateGroup)
    assert deactivate.entitlement.kind.name == "role"


ROLE = {"entitlement_id": "role:1:member"}
USER = {"principal_id": "1"}
MALFORMED: list[tuple[dict[str, Any], type[PluginError], str]] = [
    ({"action": "grant", "principal_id": "1"}, ProvisioningError, "needs entitlement_id"),
    (
        {"action": "grant", "entitlement_id": "role:1:member"},
        ProvisioningError,
        "needs principal_id",
    ),
    (
        {"action": "grant", "principal_id": "01", "entitlement_id": "role:1:member"},
        NotFoundError,
        "unknown principal",
    ),
    (
        {"action": "grant", **USER, "entitlement_id": "role:x:member"},
        NotFoundError,
        "unknown entitlement",
    ),
    (
        {"action": "grant", **USER, "entitlement_id": "role:1:assigned"},
        NotFoundError,
        "unknown entitlement",
    ),
    ({"action": "fly", "principal_id": "1"}, ProvisioningError, "unknown action 'fly'"),
    (
        {"action": "update_account", **USER, "attributes": {"shoe": "9"}},
        ProvisioningError,
        "unknown attribute(s) ['shoe']",
    ),
    (
        {"action": "update_account", **USER, "attributes": {"active": False}},
        ProvisioningError,
        "enable_account or disable_account",
    ),
    (
        {"action": "update_account", **USER, "attributes": {"email": ""}},
        ProvisioningError,
        "email is required",
    ),
    (
        {"action": "update_account", **USER, "attributes": {"firstname": 5}},
        ProvisioningError,
        "firstname is required",
    ),
    (
        {"action": "update_account", **USER, "attributes": {"middlename": 5}},
        ProvisioningError,
        "middlename: expected a string",
    ),
    (
        {"action": "update_account", **USER, "attributes": {"entitlements": []}},
        ProvisioningError,
        "only be given to create_account",
    ),
    (
        {"action": "create_account", "attributes": {"login": "a"}},
        ProvisioningError,
        "create_account needs ['email', 'firstname', 'lastname']",
    ),
    (
        {"action": "create_account", "attributes": {**NEW_USER, "entitlements": "role:1:member"}},
        ProvisioningError,
        "expected a list of entitlement ids",
    ),
    (
        {
            "action": "create_account",
            "attributes": {**NEW_USER, "entitlements": ["role:1:member"] * 2},
        },
        ProvisioningError,
        "distinct entitlement ids",
    ),
    (
        {
            "action": "create_account",
            "attributes": {
                **NEW_USER,
                "entitlements": [f"role:{i}:member" for i in range(1, MAX_CREATE_ENTITLEMENTS + 2)],
            },
        },
        ProvisioningError,
        f"at most {MAX_CREATE_ENTITLEMENTS}",
    ),
    (
        {"action": "create_group", "attributes": {"description": "d"}},
        ProvisioningError,
        "create_group needs a name",
    ),
    ({"action": "create_group", "attributes": {"name": " "}}, ProvisioningError, "non-empty text"),
    (
        {"action": "create_group", "attributes": {"name": "x" * 256}},
        ProvisioningError,
        "longer than 255",
    ),
    (
        {"action": "create_group", "attributes": {"name": "x", "colour": "red"}},
        ProvisioningError,
        "unknown group attribute(s) ['colour']",
    ),
    (
        {"action": "update_group", "entitlement_id": "group:1:member"},
        ProvisioningError,
        "needs name or description",
    ),
    (
        {
            "action": "deactivate_group",
            "entitlement_id": "group:1:member",
            "attributes": {"name": "x"},
        },
        ProvisioningError,
        "takes no attributes",
    ),
    (
        {"action": "grant", **USER, **ROLE, "dry_run": "yes"},
        ProvisioningError,
        "dry_run: expected true or false",
    ),
    (
        {"action": "grant", **USER, **ROLE, "attributes": None},
        ProvisioningError,
        "attributes: expected a mapping",
    ),
    (
        {"action": "update_account", **USER, "attributes": {"email": "a\x1bb"}},
        ProvisioningError,
        "control character U+001B",
    ),
]


# what a well-formed request cannot have: refused by the provisioner in its turn (after the
# tenant's mode is known and the user's interrupted rewrites are recovered); the rest of the
# table is refused at once, before the tenant is looked at
IN_TURN = frozenset(
    {
        "needs entitlement_id",
        "needs principal_id",
        "unknown attribute(s) ['shoe']",
        "enable_account or disable_account",
        "email is required",
        "firstname is required",
        "middlename: expected a string",
        "only be given to create_account",
        "create_account needs ['email', 'firstname', 'lastname']",
        "create_group needs a name",
        "unknown group attribute(s) ['colour']",
        "needs name or description",
        "takes no attributes",
    }
)


def refusal(**fields: Any) -> tuple[PluginError, bool]:
    """The error a request gets and whether it came at once (raised by parsing)."""
    try:
        command = parse_command(request(**fields))
    except PluginError as exc:
        return exc, True
    assert isinstance(command, Refused), command
    return command.error, False


@pytest.mark.parametrize(("fields", "error", "words"), MALFORMED)
def test_a_malformed_request_gets_a_typed_error_naming_what_is_wrong(
    fields: dict[str, Any], error: type[PluginError], words: str
) -> None:
    found, at_once = refusal(**fields)
    assert type(found) is error
    assert words in str(found)
    assert str(found).endswith("nothing was written")
    assert at_once is (words not in IN_TURN)


def test_something_that_is_not_a_request_is_refused() -> None:
    with pytest.raises(ProvisioningError, match="expected a ProvisionRequest, got dict"):
        parse_command({"action": "grant"})


junk = st.one_of(
    st.none(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
attribute_names = st.sampled_from(
    ["login", "email", "firstname", "lastname", "manager", "middlename", "entitlements", "name",
     "description", "active", "account_security_type", "x"]
)  # fmt: skip
entitlement_ids = st.sampled_from(
    ["role:1:member", "group:2:member", "license:expense-user:assigned", "role:01:member", ""]
)


@given(
    action=st.sampled_from(sorted(PROVISION_ACTIONS)) | junk,
    entitlement_id=st.none() | entitlement_ids | junk,
    principal_id=st.none() | st.sampled_from(["1", "42", "0", "-1", "1e3"]) | junk,
    attributes=st.dictionaries(
        attribute_names, junk | st.lists(entitlement_ids, max_size=3), max_size=5
    )
    | junk,
    dry_run=st.booleans() | junk,
)
def test_any_request_is_a_command_or_a_plugin_error(
    action: object,
    entitlement_id: object,
    principal_id: object,
    attributes: object,
    dry_run: object,
) -> None:
    """Whatever a host sends, parsing ends in a command of the action asked for, or in one of
    the contract's errors: never an exception of Python's own."""
    raw = ProvisionRequest(
        action=action,  # type: ignore[arg-type]
        entitlement_id=entitlement_id,  # type: ignore[arg-type]
        principal_id=principal_id,  # type: ignore[arg-type]
        attributes=attributes,  # type: ignore[arg-type]
        dry_run=dry_run,  # type: ignore[arg-type]
    )
    try:
        command = parse_command(raw)
    except PluginError as exc:
        said = str(exc)
    else:
        said = command.error.args[0] if isinstance(command, Refused) else "nothing was written"
        assert command.action == action
        assert command.dry_run is dry_run
    assert said.endswith("nothing was written")
