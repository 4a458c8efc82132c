"""What a provision call does with a request it refuses, and with a user whose profile Coupa
holds in an odd form: the refusal comes where the call reaches it (a read-only tenant says so
first; the user's interrupted rewrites are recovered first), with its type and wording, and an
odd profile value never keeps a user from being provisioned or repaired."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coupa_plugin.host.errors import NotFoundError, PluginError, ReadOnlyError, RefusedError
from coupa_plugin.host.model import ProvisionRequest, ProvisionResult, Tenant
from coupa_plugin.plugin import CoupaPlugin
from coupa_plugin.sandbox import CoupaSandbox, Operations, generate_tenant
from tests.connector.test_recovery import KEPT, crash_during_revoke, entries, roles
from tests.connector.test_recovery import world as merging_world
from tests.kit import plugin_for, tenant

USER = 7


def make(tmp_path: Path, **settings: Any) -> tuple[CoupaSandbox, CoupaPlugin, Tenant]:
    sandbox = CoupaSandbox(
        generate_tenant(users=12, seed=3), operations=Operations(rate_limit=False)
    )
    return sandbox, plugin_for(sandbox), tenant(state_dir=str(tmp_path / "s"), **settings)


def call(plugin: CoupaPlugin, t: Tenant, **request: Any) -> ProvisionResult:
    result = plugin.provision(tenant=t, request=ProvisionRequest(**request))
    assert result is not None
    return result


# -- a profile value in an odd form ---------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        {"action": "grant", "entitlement_id": "role:8:member"},
        {"action": "disable_account"},
        {"action": "update_account", "attributes": {"firstname": "Zed"}},
    ],
)
def test_a_text_security_type_does_not_block_other_writes(
    tmp_path: Path, request_: dict[str, Any]
) -> None:
    sandbox, plugin, t = make(tmp_path)
    sandbox.state.users[USER]["active"] = True
    sandbox.state.users[USER]["account-security-type"] = "1"  # text, as a Coupa may answer
    assert call(plugin, t, principal_id=str(USER), **request_).status == "applied"


def test_a_security_type_held_as_text_is_read_as_its_number(tmp_path: Path) -> None:
    """A Coupa (the sandbox included) may hold what it was sent as text: such a user is read and
    provisioned like any other."""
    sandbox, plugin, t = make(tmp_path)
    body_value = "1"
    sandbox.state.users[USER]["account-security-type"] = body_value
    result = call(
        plugin,
        t,
        action="grant",
        entitlement_id="license:sourcing-user:assigned",
        principal_id=str(USER),
    )
    assert result.status in {"applied", "unchanged"}


# -- a refused request still recovers and repairs -------------------------------------------


def test_a_refused_update_for_a_stripped_user_still_recovers_it() -> None:
    sandbox, t, state_dir = merging_world()
    crash_during_revoke(sandbox, t)
    assert roles(sandbox) == []
    with pytest.raises(PluginError):
        call(
            plugin_for(sandbox),
            t,
            action="update_account",
            principal_id="7",
            attributes={"nope": "x"},
        )
    assert roles(sandbox) == KEPT, "recovered before the refusal"
    assert not entries(state_dir)


def test_a_malformed_call_about_another_user_still_repairs_the_stripped_user() -> None:
    sandbox, t, state_dir = merging_world()
    crash_during_revoke(sandbox, t)
    with pytest.raises(PluginError):
        call(plugin_for(sandbox), t, action="grant", principal_id="9")  # no entitlement_id
    assert roles(sandbox) == KEPT, "pending users repaired after the refusal"
    assert not entries(state_dir)


# -- which error a request gets ---------------------------------------------------------------


def test_a_bad_entitlement_without_principal_is_not_found(tmp_path: Path) -> None:
    _, plugin, t = make(tmp_path)
    with pytest.raises(NotFoundError, match="unknown entitlement 'bogus'"):
        call(plugin, t, action="grant", entitlement_id="bogus")


def test_updating_a_role_is_refused_whatever_its_attributes(tmp_path: Path) -> None:
    _, plugin, t = make(tmp_path)
    with pytest.raises(RefusedError):
        call(plugin, t, action="update_group", entitlement_id="role:3:member", attributes={})
    with pytest.raises(RefusedError):
        call(
            plugin,
            t,
            action="deactivate_group",
            entitlement_id="role:3:member",
            attributes={"name": "x"},
        )


def test_group_actions_on_a_tenant_without_groups_are_not_found(tmp_path: Path) -> None:
    _, plugin, t = make(tmp_path, resource_types=["user", "role", "license"])
    with pytest.raises(NotFoundError, match="'group' is not enabled"):
        call(plugin, t, action="create_group", attributes={"foo": 1})
    with pytest.raises(NotFoundError, match="'group' is not enabled"):
        call(
            plugin,
            t,
            action="deactivate_group",
            entitlement_id="group:3:member",
            attributes={"name": "x"},
        )


@pytest.mark.parametrize(
    "request_",
    [
        {"action": "update_account", "principal_id": "7", "attributes": {"nope": 1}},
        {"action": "grant", "principal_id": "7"},
        {"action": "create_account", "attributes": {"login": "x"}},
        {"action": "create_group", "attributes": {}},
    ],
)
def test_a_read_only_tenant_says_read_only_first(tmp_path: Path, request_: dict[str, Any]) -> None:
    _, plugin, t = make(tmp_path, mode="read-only")
    with pytest.raises(ReadOnlyError):
        call(plugin, t, **request_)


# -- wording -----------------------------------------------------------------------------------


def test_both_missing_fields_are_named(tmp_path: Path) -> None:
    _, plugin, t = make(tmp_path)
    with pytest.raises(
        PluginError, match="needs entitlement_id; action 'grant' needs principal_id"
    ):
        call(plugin, t, action="grant")


def test_the_first_bad_attribute_in_request_order_is_named(tmp_path: Path) -> None:
    _, plugin, t = make(tmp_path)
    with pytest.raises(PluginError, match=r"^lastname is required"):
        call(
            plugin,
            t,
            action="update_account",
            principal_id="7",
            attributes={"lastname": "", "firstname": 5},
        )


def test_an_empty_group_name_is_named_before_an_unknown_attribute(tmp_path: Path) -> None:
    _, plugin, t = make(tmp_path)
    with pytest.raises(PluginError, match="name must be non-empty text"):
        call(plugin, t, action="create_group", attributes={"name": "", "foo": 1})


def test_create_account_change_names_the_requests_attributes(tmp_path: Path) -> None:
    _, plugin, t = make(tmp_path)
    result = call(
        plugin,
        t,
        action="create_account",
        dry_run=True,
        attributes={
            "login": "newbie",
            "email": "n@x.y",
            "firstname": "N",
            "lastname": "B",
            "employee_number": "E9",
        },
    )
    assert result.changes == (
        "create user newbie with email, employee_number, firstname, lastname",
    )


def test_a_failed_user_read_keeps_its_wording(tmp_path: Path) -> None:
    sandbox, plugin, t = make(tmp_path)
    sandbox.state.users[USER]["employee-number"] = 12345
    with pytest.raises(PluginError, match=r"^reading user 7: user record 7 is malformed"):
        call(plugin, t, action="grant", entitlement_id="role:8:member", principal_id="7")


# -- an empty security type clears it --------------------------------------------------------


def test_an_empty_security_type_is_still_sent(tmp_path: Path) -> None:
    _, plugin, t = make(tmp_path)
    result = call(
        plugin,
        t,
        action="update_account",
        principal_id="7",
        attributes={"business_group_security_type": ""},
    )
    assert result.status == "applied"


# -- what a call does before its refusal (configure, forget the kept pass) -------------------


def api_requests(sandbox: CoupaSandbox) -> int:
    return sum(1 for entry in sandbox.log if entry.path.startswith("/api/"))


def test_a_refused_update_on_a_fresh_connector_still_configures_first(tmp_path: Path) -> None:
    sandbox, plugin, t = make(tmp_path)
    with pytest.raises(PluginError, match="unknown attribute"):
        call(plugin, t, action="update_account", principal_id="7", attributes={"nope": 1})
    assert api_requests(sandbox) > 0, "configured (probes) before this refusal"


def test_a_refused_update_still_drops_the_kept_discover_pass(tmp_path: Path) -> None:
    from coupa_plugin.host.model import SyncRequest

    def sync_cost(*, refuse: bool) -> int:
        sandbox, plugin, t = make(tmp_path / str(refuse))
        list(plugin.discover_resources(tenant=t, request=SyncRequest()) or [])
        if refuse:
            with pytest.raises(PluginError):
                call(plugin, t, action="update_account", principal_id="7", attributes={"nope": 1})
        before = api_requests(sandbox)
        list(plugin.sync_grants(tenant=t, request=SyncRequest()) or [])
        return api_requests(sandbox) - before

    assert sync_cost(refuse=True) > sync_cost(refuse=False), "the kept pass is forgotten"


# -- an empty entitlement id is an unknown entitlement ---------------------------------------


def test_an_empty_entitlement_id_is_not_found(tmp_path: Path) -> None:
    _, plugin, t = make(tmp_path)
    with pytest.raises(NotFoundError):
        call(plugin, t, action="grant", entitlement_id="", principal_id="7")


# -- an odd profile value does not block recovery -------------------------------------------


def test_a_stripped_user_with_a_text_security_type_is_still_recovered() -> None:
    sandbox, t, state_dir = merging_world()
    sandbox.state.users[USER]["account-security-type"] = "1"
    crash_during_revoke(sandbox, t)
    assert roles(sandbox) == []
    call(
        plugin_for(sandbox),
        t,
        action="grant",
        entitlement_id="license:sourcing-user:assigned",
        principal_id="9",
    )  # any call of the tenant repairs the stripped user
    assert roles(sandbox) == KEPT
    assert not entries(state_dir)


@pytest.mark.parametrize(
    ("field", "value"),
    [("mention-name", 42), ("default-locale", ["en"]), ("middlename", "x" * 5000)],
)
def test_an_odd_profile_field_coupa_returns_does_not_block_a_grant(
    tmp_path: Path, field: str, value: object
) -> None:
    """Profile values are compared, never required to be of one form."""
    sandbox, plugin, t = make(tmp_path)
    sandbox.state.users[USER][field] = value
    result = call(plugin, t, action="grant", entitlement_id="role:8:member", principal_id="7")
    assert result.status == "applied"


def test_create_account_failure_names_the_requests_attributes(tmp_path: Path) -> None:
    """The sandbox ignores mention-name (as update_account's own failure shows)."""
    _, plugin, t = make(tmp_path)
    with pytest.raises(PluginError, match=r"did not apply \['mention_name'\]"):
        call(
            plugin,
            t,
            action="create_account",
            attributes={
                "login": "newbie",
                "email": "n@x.y",
                "firstname": "N",
                "lastname": "B",
                "mention_name": "nb",
            },
        )


def test_an_auto_tenant_without_write_scopes_says_read_only_first(tmp_path: Path) -> None:
    from coupa_plugin.coupa import READ_ONLY_SCOPES
    from coupa_plugin.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET

    sandbox, plugin, _ = make(tmp_path)
    sandbox.state.add_client(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, READ_ONLY_SCOPES)
    t = tenant("auto-tenant", state_dir=str(tmp_path / "a"))
    with pytest.raises(ReadOnlyError, match="lacks the write scopes"):
        call(plugin, t, action="update_account", principal_id="7", attributes={"nope": 1})
