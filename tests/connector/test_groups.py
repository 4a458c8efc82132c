"""Group lifecycle through ``provision``: create, update and deactivate Coupa user groups,
against the sandbox over the real HTTP client; other kinds of groups are refused."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coupa_plugin.host.errors import (
    NotFoundError,
    ProvisioningError,
    ReadOnlyError,
    RefusedError,
)
from coupa_plugin.host.model import ProvisionRequest, ProvisionResult, SyncRequest, Tenant
from coupa_plugin.plugin import CoupaPlugin
from coupa_plugin.sandbox import CoupaSandbox, Operations, generate_tenant
from tests.kit import plugin_for, tenant


def make(tmp_path: Path, **ops: Any) -> tuple[CoupaSandbox, CoupaPlugin, Tenant]:
    sandbox = CoupaSandbox(
        generate_tenant(users=8, seed=5), operations=Operations(rate_limit=False, **ops)
    )
    return sandbox, plugin_for(sandbox), tenant(state_dir=str(tmp_path / "state"))


def provision(plugin: CoupaPlugin, t: Tenant, **request: Any) -> ProvisionResult:
    result = plugin.provision(tenant=t, request=ProvisionRequest(**request))
    assert result is not None
    return result


def named(sandbox: CoupaSandbox, name: str) -> list[dict[str, Any]]:
    return [g for g in sandbox.state.user_groups.values() if g["name"] == name]


def listed_groups(plugin: CoupaPlugin, t: Tenant) -> dict[str, tuple[str, str | None]]:
    """Group id -> (name, status) as ``discover_resources`` lists them."""
    request = SyncRequest(resource_types=frozenset({"group"}))
    return {
        r.id: (r.display_name, r.status)
        for r in plugin.discover_resources(tenant=t, request=request) or ()
        if r.type == "group"
    }


def test_create_group_makes_an_active_user_group_and_names_its_entitlement(
    tmp_path: Path,
) -> None:
    sandbox, plugin, t = make(tmp_path)
    result = provision(
        plugin, t, action="create_group", attributes={"name": "Auditors", "description": "Audit"}
    )
    [group] = named(sandbox, "Auditors")
    assert group["active"] is True
    assert group["description"] == "Audit"
    assert result.status == "applied"
    assert result.entitlement_id == f"group:{group['id']}:member"
    assert result.entitlement_id in result.message
    assert result.changes == (f"create user group {group['id']} (Auditors)",)
    assert listed_groups(plugin, t)[str(group["id"])] == ("Auditors", "enabled")
    # a second identical create writes nothing and names the same group
    again = provision(plugin, t, action="create_group", attributes={"name": "Auditors"})
    assert (again.status, again.entitlement_id, again.changes) == (
        "unchanged",
        result.entitlement_id,
        (),
    )
    assert len(named(sandbox, "Auditors")) == 1


def test_configure_lists_the_group_actions_in_provisioning_mode(tmp_path: Path) -> None:
    _, plugin, t = make(tmp_path)
    status = plugin.configure(tenant=t)
    assert status is not None
    assert {"provision:create_group", "provision:update_group", "provision:deactivate_group"} <= (
        status.capabilities
    )


def test_a_dry_run_plans_and_writes_nothing(tmp_path: Path) -> None:
    sandbox, plugin, t = make(tmp_path)
    before = copy.deepcopy(sandbox.state.user_groups)
    planned = provision(
        plugin, t, action="create_group", attributes={"name": "Planned"}, dry_run=True
    )
    assert (planned.status, planned.changes) == ("planned", ("create user group 'Planned'",))
    gid = min(before)
    planned = provision(
        plugin, t, action="deactivate_group", entitlement_id=f"group:{gid}:member", dry_run=True
    )
    assert planned.status == "planned"
    assert planned.changes == (f"set active = false on user group {gid} (Coupa deletes no group)",)
    assert sandbox.state.user_groups == before


def test_a_taken_name_is_a_clear_error(tmp_path: Path) -> None:
    sandbox, plugin, t = make(tmp_path)
    first, second = sorted(sandbox.state.user_groups)[:2]
    taken = sandbox.state.user_groups[first]["name"]
    before = copy.deepcopy(sandbox.state.user_groups)
    with pytest.raises(ProvisioningError, match=f"already taken: user group {first} is named"):
        provision(
            plugin, t, action="create_group", attributes={"name": taken, "description": "other"}
        )
    with pytest.raises(ProvisioningError, match=f"already taken: user group {first}"):
        provision(
            plugin,
            t,
            action="update_group",
            entitlement_id=f"group:{second}:member",
            attributes={"name": taken},
        )
    assert sandbox.state.user_groups == before


def test_update_group_renames_and_reads_back(tmp_path: Path) -> None:
    sandbox, plugin, t = make(tmp_path)
    gid = min(sandbox.state.user_groups)
    members = dict(sandbox.state.members_of.get(gid, {}))
    result = provision(
        plugin,
        t,
        action="update_group",
        entitlement_id=f"group:{gid}:member",
        attributes={"name": "Renamed", "description": "New text"},
    )
    assert result.status == "applied"
    assert result.entitlement_id == f"group:{gid}:member"
    group = sandbox.state.user_groups[gid]
    assert (group["name"], group["description"]) == ("Renamed", "New text")
    assert sandbox.state.members_of.get(gid, {}) == members
    same = provision(
        plugin,
        t,
        action="update_group",
        entitlement_id=f"group:{gid}:member",
        attributes={"name": "Renamed"},
    )
    assert (same.status, same.changes) == ("unchanged", ())


def test_deactivate_group_sets_active_false_and_keeps_the_members(tmp_path: Path) -> None:
    sandbox, plugin, t = make(tmp_path)
    gid = max(sandbox.state.members_of, key=lambda g: len(sandbox.state.members_of[g]))
    members = dict(sandbox.state.members_of[gid])
    assert members, "the tenant has a group with members"
    result = provision(plugin, t, action="deactivate_group", entitlement_id=f"group:{gid}:member")
    assert result.status == "applied"
    assert sandbox.state.user_groups[gid]["active"] is False
    assert sandbox.state.members_of[gid] == members
    assert listed_groups(plugin, t)[str(gid)][1] == "disabled"
    again = provision(plugin, t, action="deactivate_group", entitlement_id=f"group:{gid}:member")
    assert (again.status, again.changes) == ("unchanged", ())


@pytest.mark.parametrize(
    "entitlement",
    [
        "role:2:member",
        "license:expense-user:assigned",
        "content_group:1:member",
        "account_group:1:member",
        "approval_group:1:member",
    ],
)
def test_other_kinds_are_refused_and_nothing_is_written(tmp_path: Path, entitlement: str) -> None:
    sandbox, plugin, t = make(tmp_path)
    for action, attributes in (("deactivate_group", {}), ("update_group", {"name": "X"})):
        with pytest.raises(RefusedError, match=r"Coupa does not let a .* be created, changed or"):
            provision(plugin, t, action=action, entitlement_id=entitlement, attributes=attributes)
    assert sandbox.writes == 0


def test_unknown_groups_and_malformed_requests(tmp_path: Path) -> None:
    sandbox, plugin, t = make(tmp_path)
    missing = max(sandbox.state.user_groups) + 100
    with pytest.raises(NotFoundError, match=f"no user group {missing}"):
        provision(plugin, t, action="deactivate_group", entitlement_id=f"group:{missing}:member")
    with pytest.raises(NotFoundError, match="unknown entitlement"):
        provision(plugin, t, action="update_group", entitlement_id="group:x", attributes={})
    bad: list[tuple[dict[str, Any], str]] = [
        ({}, "needs a name"),
        ({"name": "  "}, "attributes.name: a user group's name must be non-empty"),
        ({"name": 7}, "attributes.name"),
        ({"name": "N" * 256}, "longer than 255"),
        ({"name": "N", "description": 3}, "attributes.description: expected text, got int"),
        ({"name": "N", "owner": "me"}, r"unknown group attribute\(s\) \['owner'\]"),
    ]
    for attributes, problem in bad:
        with pytest.raises(ProvisioningError, match=problem):
            provision(plugin, t, action="create_group", attributes=attributes)
    with pytest.raises(ProvisioningError, match="'update_group' needs entitlement_id"):
        provision(plugin, t, action="update_group", attributes={"name": "N"})
    gid = min(sandbox.state.user_groups)
    with pytest.raises(ProvisioningError, match="takes no attributes"):
        provision(
            plugin,
            t,
            action="deactivate_group",
            entitlement_id=f"group:{gid}:member",
            attributes={"name": "N"},
        )
    assert sandbox.writes == 0


def test_group_writes_need_the_group_type_and_provisioning_mode(tmp_path: Path) -> None:
    sandbox = CoupaSandbox(
        generate_tenant(users=4, seed=5), operations=Operations(rate_limit=False)
    )
    plugin = plugin_for(sandbox)
    no_groups = tenant("nogroups", state_dir=str(tmp_path / "a"), resource_types=["role"])
    status = plugin.configure(tenant=no_groups)
    assert status is not None and status.mode == "provisioning"
    assert "provision:grant" in status.capabilities
    assert not {c for c in status.capabilities if c.endswith("_group")}
    with pytest.raises(NotFoundError, match="'group' is not enabled for this tenant"):
        provision(plugin, no_groups, action="create_group", attributes={"name": "N"})
    read_only = tenant("ro", state_dir=str(tmp_path / "b"), mode="read-only")
    with pytest.raises(ReadOnlyError):
        provision(plugin, read_only, action="create_group", attributes={"name": "N"})
    assert sandbox.writes == 0


@pytest.mark.parametrize("failure", ["error_after_apply", "drop_after_apply"])
def test_a_create_whose_answer_is_lost_is_found_by_name(tmp_path: Path, failure: str) -> None:
    sandbox, plugin, t = make(tmp_path, fail_writes={1: failure})
    result = provision(plugin, t, action="create_group", attributes={"name": "Lost answer"})
    [group] = named(sandbox, "Lost answer")
    assert (result.status, result.entitlement_id) == ("applied", f"group:{group['id']}:member")


@pytest.mark.parametrize("failure", ["error", "drop_before_apply"])
def test_a_create_that_never_landed_says_nothing_was_created(tmp_path: Path, failure: str) -> None:
    sandbox, plugin, t = make(tmp_path, fail_writes={1: failure})
    with pytest.raises(ProvisioningError, match="so nothing was created"):
        provision(plugin, t, action="create_group", attributes={"name": "Never"})
    assert named(sandbox, "Never") == []


def test_a_failed_deactivation_says_what_coupa_holds(tmp_path: Path) -> None:
    sandbox, plugin, t = make(tmp_path, fail_writes={1: "error", 2: "error", 3: "error"})
    gid = min(sandbox.state.user_groups)
    with pytest.raises(ProvisioningError, match=f"user group {gid} is named .*, active"):
        provision(plugin, t, action="deactivate_group", entitlement_id=f"group:{gid}:member")
    assert sandbox.state.user_groups[gid]["active"] is True


_NAMES = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=60
).filter(lambda s: bool(s.strip()))


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=_NAMES)
def test_any_name_round_trips(tmp_path: Path, name: str) -> None:
    sandbox, plugin, t = make(tmp_path / str(abs(hash(name))))
    result = provision(plugin, t, action="create_group", attributes={"name": name})
    assert result.entitlement_id is not None
    gid = result.entitlement_id.split(":")[1]
    assert listed_groups(plugin, t)[gid] == (name, "enabled")
    assert named(sandbox, name)[0]["id"] == int(gid)
