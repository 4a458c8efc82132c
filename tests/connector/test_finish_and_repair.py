"""A rewrite is finished in the call that began it, a user left stripped is repaired without
waiting for a call about them, a repair interrupted by a crash is itself repaired, and a copy of
a finished journal entry never applies.

The expectations are the people's: an administrator's edit means what it changes, a revoke
means the one item, and nobody ends with less than they held but the item revoked.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from coupa_plugin.host.errors import ProvisioningError
from coupa_plugin.host.model import ProvisionRequest, ProvisionResult, Tenant
from coupa_plugin.plugin import CoupaPlugin
from coupa_plugin.sandbox import CoupaSandbox, Operations, Quirks, generate_tenant
from coupa_plugin.sandbox._errors import SimulatedCrash
from coupa_plugin.sandbox._server import SandboxTransport
from tests.kit import CrashingTransport, VirtualTime, clearing, plugin_for, tenant

USER = 7
ROLES = [3, 4, 5, 8]
KEPT = [3, 5, 8]


def world(tmp_path: Path, **quirks: Any) -> tuple[CoupaSandbox, Tenant, Path]:
    """A merging Coupa (revokes take two steps) where user 7 holds roles 3, 4, 5, 8."""
    sandbox = CoupaSandbox(
        generate_tenant(users=12, seed=3),
        quirks=Quirks(list_put="merge", **quirks),
        operations=Operations(rate_limit=False),
    )
    sandbox.state.users[USER]["roles"] = list(ROLES)
    state_dir = tmp_path / "state"
    return sandbox, tenant(state_dir=str(state_dir)), state_dir


def roles(sandbox: CoupaSandbox, user: int = USER) -> list[int]:
    return sorted(sandbox.state.users[user]["roles"])


def entries(state_dir: Path) -> list[Path]:
    return sorted(
        p for p in (state_dir / "journal").rglob("*.json") if not p.name.endswith(".done.json")
    )


def call(plugin: CoupaPlugin, t: Tenant, **request: Any) -> ProvisionResult:
    result = plugin.provision(tenant=t, request=ProvisionRequest(**request))
    assert result is not None
    return result


def revoke(plugin: CoupaPlugin, t: Tenant, role: int = 4, user: int = USER) -> ProvisionResult:
    return call(
        plugin, t, action="revoke", entitlement_id=f"role:{role}:member", principal_id=str(user)
    )


def unrelated(plugin: CoupaPlugin, t: Tenant, user: int = USER) -> ProvisionResult:
    return call(
        plugin,
        t,
        action="grant",
        entitlement_id="license:sourcing-user:assigned",
        principal_id=str(user),
    )


def roles_put(nth: int) -> Callable[[httpx.Request], bool]:
    """Matches the ``nth`` PUT of the user's roles (1: the probe of the semantics, 2: the
    clear, 3: the put-back, on a Coupa whose semantics are not yet known)."""
    seen: list[bool] = []

    def match(request: httpx.Request) -> bool:
        if request.method == "PUT" and b'"roles"' in request.read():
            seen.append(True)
            return len(seen) == nth
        return False

    return match


def die(
    sandbox: CoupaSandbox, t: Tenant, when: Callable[[httpx.Request], bool], point: str
) -> None:
    dying = CoupaPlugin(transport_factory=lambda _s: CrashingTransport(sandbox, when, point))
    with pytest.raises(SimulatedCrash):
        revoke(dying, t)


# -- finished in the call ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault", ["error_after_apply", "drop_after_apply", "error", "drop_before_apply"]
)
@pytest.mark.parametrize("step", [2, 3])  # the clear, the put-back (write 1 is the probe)
def test_a_write_coupa_answers_badly_does_not_end_the_revoke(
    tmp_path: Path, fault: str, step: int
) -> None:
    sandbox, t, state_dir = world(tmp_path)
    sandbox.ops.fail_writes = {step: fault}
    result = revoke(plugin_for(sandbox), t)
    assert result.status == "applied", result
    assert roles(sandbox) == KEPT, "only role 4 goes, in the call"
    assert not entries(state_dir)


def test_coupa_failing_for_the_whole_call_states_the_loss_and_keeps_the_entry(
    tmp_path: Path,
) -> None:
    sandbox, t, state_dir = world(tmp_path)
    sandbox.ops.fail_writes = dict.fromkeys(range(3, 40), "error")  # everything after the clear
    with pytest.raises(ProvisioningError) as caught:
        revoke(plugin_for(sandbox), t)
    assert "User 7 now holds roles []" in str(caught.value), caught.value
    assert "gives back [3, 5, 8] as soon as Coupa answers again" in str(caught.value)
    assert roles(sandbox) == [] and entries(state_dir)


def test_a_stripped_user_is_repaired_without_a_call_once_coupa_answers(tmp_path: Path) -> None:
    """A long-running process gives the roles back on its own: the self-repair thread waits
    (here: until the test lets it), tries, backs off while Coupa fails, and ends once
    nothing is pending."""
    sandbox, t, state_dir = world(tmp_path)
    virtual = VirtualTime(real=False)
    go = threading.Semaphore(0)
    waits: list[float] = []

    def wait(stop: threading.Event, seconds: float) -> bool:
        waits.append(seconds)
        go.acquire()
        virtual.sleep(seconds)
        return stop.is_set()

    plugin = plugin_for(sandbox, virtual, repair_wait=wait)
    sandbox.ops.fail_writes = dict.fromkeys(range(3, 40), "error")
    with pytest.raises(ProvisioningError):
        revoke(plugin, t)
    assert roles(sandbox) == []
    connector = plugin.connector(t)
    assert connector is not None
    thread = connector.provisioner.repairer._thread
    assert thread is not None and thread.is_alive()
    go.release()  # Coupa still fails: the attempt fails, the next wait is longer
    while len(waits) < 2:
        threading.Event().wait(0.001)
    assert roles(sandbox) == [] and entries(state_dir)
    sandbox.ops.fail_writes = {}
    go.release()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the thread ends once nothing is pending"
    assert roles(sandbox) == KEPT
    assert not entries(state_dir)
    assert waits[1] > waits[0], waits


def test_close_stops_the_repair_thread(tmp_path: Path) -> None:
    sandbox, t, _ = world(tmp_path)
    started = threading.Event()

    def wait(stop: threading.Event, _seconds: float) -> bool:
        started.set()
        return stop.wait(60)

    plugin = plugin_for(sandbox, repair_wait=wait)
    sandbox.ops.fail_writes = dict.fromkeys(range(3, 40), "error")
    with pytest.raises(ProvisioningError):
        revoke(plugin, t)
    connector = plugin.connector(t)
    assert connector is not None
    thread = connector.provisioner.repairer._thread
    assert thread is not None
    started.wait(timeout=30)
    plugin.close()
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_a_read_only_process_never_repairs(tmp_path: Path) -> None:
    sandbox, t, state_dir = world(tmp_path)
    die(sandbox, t, roles_put(2), "after")
    read_only = Tenant(id=t.id, plugins={"coupa": dict(t.plugins["coupa"], mode="read-only")})
    writes = sandbox.writes
    plugin = plugin_for(sandbox)
    list(plugin.discover_resources(tenant=read_only, request=_users_only()) or [])
    assert sandbox.writes == writes and entries(state_dir)


def _users_only() -> Any:
    from coupa_plugin.host.model import SyncRequest

    return SyncRequest(resource_types=frozenset({"user"}), principal_ids=frozenset({"9"}))


def test_a_sync_of_the_tenant_repairs_first(tmp_path: Path) -> None:
    sandbox, t, state_dir = world(tmp_path)
    die(sandbox, t, roles_put(2), "after")
    assert roles(sandbox) == []
    list(plugin_for(sandbox).discover_resources(tenant=t, request=_users_only()) or [])
    assert roles(sandbox) == KEPT and not entries(state_dir)


# -- crashes in recovery ---------------------------------------------------------------------


@pytest.mark.parametrize("point", ["before", "after"])
def test_a_recovery_killed_at_its_put_back_is_recovered_by_the_next_process(
    tmp_path: Path, point: str
) -> None:
    sandbox, t, state_dir = world(tmp_path)
    die(sandbox, t, roles_put(2), "after")  # the clear landed; nobody saw its answer
    assert roles(sandbox) == []
    recovering = CoupaPlugin(
        transport_factory=lambda _s: CrashingTransport(sandbox, roles_put(1), point)
    )
    with pytest.raises(SimulatedCrash):
        unrelated(recovering, t)
    assert entries(state_dir), "the recovery's own step is journaled"
    third = unrelated(plugin_for(sandbox), t)
    assert roles(sandbox) == KEPT, third
    assert not entries(state_dir)


def test_a_fresh_process_that_never_learnt_its_api_user_recovers(tmp_path: Path) -> None:
    sandbox, t, state_dir = world(tmp_path)
    sandbox.quirks.list_put = "merge"
    # the very first write of this installation is the clear: the echo that names our API
    # user never arrived
    plugin = plugin_for(sandbox)
    connector = plugin.connector(t)
    assert connector is not None
    connector.provisioner.facts.learn_semantics("roles", "merge")
    die(sandbox, t, roles_put(1), "after")
    assert roles(sandbox) == []
    unrelated(plugin_for(sandbox), t, user=9)
    assert roles(sandbox) == KEPT and not entries(state_dir)


# -- copies of finished entries ------------------------------------------------------------------


def _an_hour_later(sandbox: CoupaSandbox, user: int = USER) -> None:
    """What a change an hour later looks like: Coupa's updated-at an hour on."""
    record = sandbox.state.users[user]
    moment = datetime.fromisoformat(record["updated-at"]) + timedelta(hours=1)
    record["updated-at"] = moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _finished_revoke_keeping_copies(
    sandbox: CoupaSandbox, t: Tenant, state_dir: Path, backup: Path
) -> dict[Path, bytes]:
    """Revoke role 4; keep the entry as it was just before its clearing write, and a copy of
    the whole state_dir at that moment."""
    saved: dict[Path, bytes] = {}

    class Snapshotting(httpx.BaseTransport):
        inner = SandboxTransport(sandbox)

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if clearing("roles")(request) and not saved:
                for path in entries(state_dir):
                    saved[path] = path.read_bytes()
                shutil.copytree(state_dir, backup)
            return self.inner.handle_request(request)

    plugin = CoupaPlugin(transport_factory=lambda _s: Snapshotting())
    assert revoke(plugin, t).status == "applied"
    assert saved
    return saved


_ONE_LEFT_THEN_EDITED = pytest.mark.xfail(
    strict=True,
    reason="known limit: a copy of an entry saved before its clear, put back after the user "
    "lost all but one of the roles it kept and someone else then edited the user, reads as "
    "our clear landing followed by an administrator adding that role; Coupa's stamps hold "
    "nothing that tells the two apart",
)


@pytest.mark.parametrize(
    ("revoked_since", "admin_after"),
    [
        ((5,), False),
        ((5,), True),
        ((3, 5), False),
        pytest.param((3, 5), True, marks=_ONE_LEFT_THEN_EDITED),
    ],
)
def test_a_copied_entry_with_its_tombstone_gone_never_regrants(
    tmp_path: Path, revoked_since: tuple[int, ...], admin_after: bool
) -> None:
    """The entry saved just before its clearing write is put back, its tombstone deleted; an
    access review revoked roles since (through the plugin, an hour later), and maybe an
    administrator edited the user after that. (Left with one role, the user looks like one
    our clear emptied and Coupa gave a role: only the time of our last change tells.)"""
    sandbox, t, state_dir = world(tmp_path)
    saved = _finished_revoke_keeping_copies(sandbox, t, state_dir, tmp_path / "backup")
    for role in revoked_since:
        revoke(plugin_for(sandbox), t, role=role)
    _an_hour_later(sandbox)
    if admin_after:
        sandbox.admin_update(USER, {"firstname": "Reviewed"})
    for stone in (state_dir / "journal").rglob("*.done.json"):
        stone.unlink()
    for path, data in saved.items():
        path.write_bytes(data)
    unrelated(plugin_for(sandbox), t)
    assert roles(sandbox) == sorted(set(KEPT) - set(revoked_since)), "revoked since: stays so"
    assert not entries(state_dir)


def test_a_state_dir_restored_from_a_backup_taken_mid_rewrite_never_regrants(
    tmp_path: Path,
) -> None:
    sandbox, t, state_dir = world(tmp_path)
    backup = tmp_path / "backup"
    _finished_revoke_keeping_copies(sandbox, t, state_dir, backup)
    revoke(plugin_for(sandbox), t, role=5)
    _an_hour_later(sandbox)
    shutil.rmtree(state_dir)
    shutil.copytree(backup, state_dir)
    assert entries(state_dir)
    unrelated(plugin_for(sandbox), t)
    assert roles(sandbox) == [3, 8]
    assert not entries(state_dir)
