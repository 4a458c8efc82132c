"""Recovery and self-repair attacked: the cases an adversarial review of rule version 2 found,
each pinned with what people expect. The ones no rule can tell apart from Coupa's stamps are
known limits (strict xfail, as docs/provisioning.md lists them)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import attrs
import pytest

from coupa_plugin.connector._provisioning.repair import Repairer, RepairSchedule
from coupa_plugin.host.errors import ProvisioningError, RefusedError
from coupa_plugin.host.model import ProvisionRequest, Tenant
from coupa_plugin.plugin import CoupaPlugin
from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_ID,
    CoupaSandbox,
    Operations,
    Quirks,
    generate_tenant,
)
from coupa_plugin.sandbox._errors import SimulatedCrash
from coupa_plugin.sandbox._server import SandboxTransport
from coupa_plugin.sandbox._writes import create_membership
from tests.connector.test_finish_and_repair import (
    KEPT,
    USER,
    _an_hour_later,
    call,
    die,
    entries,
    revoke,
    roles,
    roles_put,
    unrelated,
    world,
)
from tests.kit import (
    CrashingTransport,
    VirtualTime,
    clearing,
    no_background_repair,
    plugin_for,
    tenant,
)


def holding(tmp_path: Path, held: list[int], **quirks: Any) -> tuple[CoupaSandbox, Tenant]:
    sandbox = CoupaSandbox(
        generate_tenant(users=12, seed=3),
        quirks=Quirks(list_put="merge", **quirks),
        operations=Operations(rate_limit=False),
    )
    sandbox.state.users[USER]["roles"] = list(held)
    return sandbox, tenant(state_dir=str(tmp_path / "state"))


# -- an administrator after the crash -------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "added", "expected"), [([3, 4, 5], 3, [3, 5]), ([3, 4, 5, 8], 3, [3, 5, 8])]
)
def test_an_admin_adding_a_kept_role_to_the_stripped_user_gets_the_rest_back(
    tmp_path: Path, held: list[int], added: int, expected: list[int]
) -> None:
    sandbox, t = holding(tmp_path, held)
    die(sandbox, t, roles_put(2), "after")
    assert roles(sandbox) == []
    sandbox.admin_update(USER, {"roles": [{"id": added}]})
    unrelated(plugin_for(sandbox), t)
    assert roles(sandbox) == expected


def test_a_failed_revoke_then_an_admin_readding_the_revoked_role_keeps_both(
    tmp_path: Path,
) -> None:
    """The clear lands, then Coupa's reads fail: the call raises stating the loss. An
    administrator gives the revoked role back: they mean that role, and the other comes back."""
    sandbox, t = holding(tmp_path, [4, 5])
    sandbox.state.users[9]["roles"] = [4, 5]
    revoke(plugin_for(sandbox), t, role=4, user=9)  # learns that Coupa merges
    sandbox.ops.user_reads_fail_after_write = sandbox.writes + 1
    with pytest.raises(ProvisioningError):
        revoke(plugin_for(sandbox), t, role=4)
    sandbox.ops.user_reads_fail_after_write = None
    assert roles(sandbox) == []
    sandbox.admin_update(USER, {"roles": [{"id": 4}]})
    unrelated(plugin_for(sandbox), t)
    assert roles(sandbox) == [4, 5]


@pytest.mark.parametrize("learnt", [False, True])
def test_on_a_coupa_giving_the_user_role_an_admin_edit_does_not_stop_recovery(
    tmp_path: Path, learnt: bool
) -> None:
    sandbox, t = holding(tmp_path, [3, 4, 5], empty_roles_become_user=True)
    first_put = 2
    if learnt:  # a revoke of another user taught what Coupa gives an emptied user
        sandbox.state.users[9]["roles"] = [3, 4, 5]
        revoke(plugin_for(sandbox), t, role=4, user=9)
        first_put = 1
    die(sandbox, t, roles_put(first_put), "after")
    assert roles(sandbox) == [3]
    sandbox.admin_update(USER, {"firstname": "Edited"})
    unrelated(plugin_for(sandbox), t)
    assert roles(sandbox) == [3, 5]


def test_a_fresh_install_whose_first_write_was_the_clear_recovers_on_a_user_role_coupa(
    tmp_path: Path,
) -> None:
    sandbox, t = holding(tmp_path, [3, 4, 5], empty_roles_become_user=True)
    connector = plugin_for(sandbox).connector(t)
    assert connector is not None
    connector.provisioner.facts.learn_semantics("roles", "merge")
    die(sandbox, t, roles_put(1), "after")  # the echo naming our API user never came
    assert roles(sandbox) == [3]
    plugin_for(sandbox).configure(tenant=t)
    assert roles(sandbox) == [3, 5]


def test_a_membership_added_through_its_own_api_after_a_killed_clear_is_kept(
    tmp_path: Path,
) -> None:
    """The membership API leaves the user's updated-at alone: the stamp still reads as our
    last read-back, and the list holds one more group."""
    sandbox = CoupaSandbox(
        generate_tenant(users=12, seed=3),
        quirks=Quirks(list_put="merge", membership_delete=False),
        operations=Operations(rate_limit=False),
    )
    sandbox.state.set_user_groups(USER, [1, 2, 3])
    t = tenant(state_dir=str(tmp_path / "state"))
    dying = CoupaPlugin(
        transport_factory=lambda _s: CrashingTransport(sandbox, clearing("user-groups"), "after")
    )
    with pytest.raises(SimulatedCrash):
        dying.provision(
            tenant=t,
            request=ProvisionRequest(
                action="revoke", entitlement_id="group:2:member", principal_id=str(USER)
            ),
        )
    sandbox._local.actor = 3  # an administrator
    create_membership(sandbox, {"user_id": USER, "user_group_id": 1})
    sandbox._local.actor = None
    unrelated(plugin_for(sandbox), t)
    assert sorted(sandbox.state.groups_of.get(USER, set())) == [1, 3]


_SHORT_LISTS = pytest.mark.xfail(
    strict=True,
    reason="known limit: with one or two items kept, 'our put-back landed unseen, then an "
    "administrator removed one' leaves the same list as 'our clear landed, then an "
    "administrator added one'; recovery takes the second and gives the rest back",
)


@pytest.mark.parametrize(
    ("held", "left_by_admin"),
    [
        pytest.param([3, 4], [], marks=_SHORT_LISTS),
        pytest.param([3, 4, 5], [5], marks=_SHORT_LISTS),
        ([3, 4, 5, 8], [5, 8]),
    ],
)
def test_a_role_an_admin_removes_after_our_unseen_put_back_stays_removed(
    tmp_path: Path, held: list[int], left_by_admin: list[int]
) -> None:
    sandbox, t = holding(tmp_path, held)
    die(sandbox, t, roles_put(3), "after")  # 1 probe, 2 clear, 3 put-back: landed, unseen
    sandbox.admin_update(USER, {"roles": [{"id": r} for r in left_by_admin]})
    unrelated(plugin_for(sandbox), t)
    assert roles(sandbox) == left_by_admin


@pytest.mark.xfail(
    strict=True,
    reason="known limit: if Coupa moves updated-at without changing the list or updated-by "
    "(a sign-in, say) long after our clear, the entry reads as finished since",
)
def test_a_touch_by_coupa_after_a_killed_clear(tmp_path: Path) -> None:
    sandbox, t, _ = world(tmp_path)
    die(sandbox, t, roles_put(2), "after")
    _an_hour_later(sandbox)
    unrelated(plugin_for(sandbox), t)
    assert roles(sandbox) == KEPT


# -- what a repair may and may not do ------------------------------------------------------------


def test_a_dry_run_writes_nothing_not_even_a_repair(tmp_path: Path) -> None:
    sandbox, t, state_dir = world(tmp_path)
    die(sandbox, t, roles_put(2), "after")
    writes = sandbox.writes
    result = call(
        plugin_for(sandbox),
        t,
        action="grant",
        entitlement_id="role:9:member",
        principal_id=str(USER),
        dry_run=True,
    )
    assert result.status == "planned"
    assert sandbox.writes == writes and entries(state_dir)


def test_an_entry_whose_user_is_gone_ends(tmp_path: Path) -> None:
    sandbox, t, state_dir = world(tmp_path)
    die(sandbox, t, roles_put(2), "after")
    del sandbox.state.users[USER]  # Coupa answers 404 for the user from now on
    status = plugin_for(sandbox).configure(tenant=t)
    assert status is not None
    assert any(f"Coupa has no user {USER}" in w for w in status.warnings), status.warnings
    assert not entries(state_dir)


def test_an_entry_older_than_the_bound_ends_without_reading_the_user(tmp_path: Path) -> None:
    sandbox, t, state_dir = world(tmp_path)
    die(sandbox, t, roles_put(2), "after")
    del sandbox.state.users[USER]
    later = CoupaPlugin(
        transport_factory=lambda _s: SandboxTransport(sandbox),
        wall_clock=lambda: 4_000_000_000.0,
        repair_wait=no_background_repair,
    )
    status = later.configure(tenant=t)
    assert status is not None
    assert any("older than journal_max_age_s" in w for w in status.warnings), status.warnings
    assert not entries(state_dir)


def test_a_kept_role_deleted_meanwhile_ends_the_entry_after_one_failed_call(
    tmp_path: Path,
) -> None:
    sandbox, t, state_dir = world(tmp_path)
    die(sandbox, t, roles_put(2), "after")
    del sandbox.state.roles[8]  # an administrator deletes role 8 from Coupa
    plugin = plugin_for(sandbox)
    with pytest.raises(ProvisioningError, match="may no longer exist"):
        unrelated(plugin, t)
    assert roles(sandbox) == [3, 5] and not entries(state_dir)
    assert unrelated(plugin, t).status == "applied", "the user is not blocked"


def test_revoking_from_our_own_api_user_on_a_fresh_merging_tenant_is_refused(
    tmp_path: Path,
) -> None:
    sandbox, t, _ = world(tmp_path)
    api_user = sandbox.state.client_users[SANDBOX_CLIENT_ID]
    sandbox.state.users[api_user]["roles"] = [3, 4, 5]
    with pytest.raises(RefusedError):
        revoke(plugin_for(sandbox), t, role=4, user=api_user)
    assert sorted(sandbox.state.users[api_user]["roles"]) == [3, 4, 5]


# -- the self-repair machinery -------------------------------------------------------------------


def test_a_kick_during_a_pass_is_not_forgotten() -> None:
    virtual = VirtualTime(real=False)
    in_pass, finish = threading.Event(), threading.Event()
    passes: list[int] = []

    def repair() -> bool:
        passes.append(1)
        if len(passes) == 1:
            in_pass.set()
            finish.wait(30)
        return False  # what the pass saw is repaired

    def wait(stop: threading.Event, seconds: float) -> bool:
        virtual.sleep(seconds)
        return stop.is_set()

    repairer = Repairer(RepairSchedule(virtual.clock), repair, wait=wait)
    repairer.kick()  # user A left stripped: the thread starts and its pass runs
    assert in_pass.wait(30)
    repairer.kick()  # meanwhile another call leaves user B stripped
    finish.set()
    thread = repairer._thread
    if thread is not None:
        thread.join(30)
    assert len(passes) == 2, "user B's attempt ran"
    assert repairer.schedule.wait_s() is None


def test_close_does_not_wait_for_a_pass_under_way() -> None:
    in_pass, finish = threading.Event(), threading.Event()

    def repair() -> bool:
        in_pass.set()
        finish.wait(30)
        return True

    repairer = Repairer(
        RepairSchedule(lambda: 0.0, first_s=0.0), repair, wait=lambda stop, _s: stop.is_set()
    )
    repairer.kick()
    assert in_pass.wait(30)
    repairer.close()  # returns while the pass still runs
    thread = repairer._thread
    assert thread is not None and thread.is_alive()
    finish.set()
    thread.join(30)
    assert not thread.is_alive(), "no pass after close"


def test_configure_recovers_outside_the_connectors_lock(tmp_path: Path) -> None:
    """A revoke holding a user's lock asks for the status (the connector's lock); configure's
    recovery waits for users' locks: it must not hold the connector's lock meanwhile."""
    sandbox, t, _ = world(tmp_path)
    plugin = plugin_for(sandbox)
    connector = plugin.connector(t)
    assert connector is not None
    held: list[bool] = []

    def recover_pending() -> list[Any]:
        free = connector._lock.acquire(blocking=False)
        if free:
            connector._lock.release()
        held.append(not free)
        return []

    connector.provisioner.recover_pending = recover_pending  # type: ignore[method-assign]
    plugin.configure(tenant=t)
    assert held == [False]


def test_a_tenant_turned_read_only_repairs_nothing_on_its_own(tmp_path: Path) -> None:
    """The OAuth client lost its write scopes since the entry was left: the self-repair pass
    writes nothing (a call in provisioning mode, or configure, repairs once they are back)."""
    sandbox, t, state_dir = world(tmp_path)
    die(sandbox, t, roles_put(2), "after")
    connector = plugin_for(sandbox).connector(t)
    assert connector is not None
    status = connector.configure()
    connector._decided(attrs.evolve(status, mode="read-only"))
    writes = sandbox.writes
    assert connector.provisioner._repair_pass() is False
    assert sandbox.writes == writes and entries(state_dir)
