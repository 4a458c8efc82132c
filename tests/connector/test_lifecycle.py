"""A tenant's life in a long-running host: threads end when idle, a disabled, released or
reconfigured tenant lets go of its connector, and work begun under old settings finishes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coupa_plugin.connector._lifecycle import Leased, Uses
from coupa_plugin.connector._locks import KeyedLocks
from coupa_plugin.connector._mapping import entitlement_id
from coupa_plugin.connector._service import CoupaConnector
from coupa_plugin.connector._settings import CoupaSettings
from coupa_plugin.host.model import Grant, ProvisionRequest, SyncRequest, Tenant
from coupa_plugin.plugin import CoupaPlugin
from coupa_plugin.sandbox import CoupaSandbox, Operations, generate_tenant
from coupa_plugin.sandbox._server import SandboxTransport
from tests.kit import VirtualTime, sync, tenant, truth_grants


def tenant_threads(tenant_id: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"coupa-{tenant_id}")]


def ended(threads: list[threading.Thread]) -> bool:
    for thread in threads:
        thread.join(10)  # bounded: a thread that does not end fails the test, never hangs it
    return not any(t.is_alive() for t in threads)


class Hold(httpx.BaseTransport):
    """The sandbox in process; the first request that ``matches`` is answered by the sandbox
    (a write lands) and then held until ``release`` is set."""

    def __init__(self, sandbox: CoupaSandbox, matches: Callable[[httpx.Request], bool]) -> None:
        self.inner = SandboxTransport(sandbox)
        self.matches = matches
        self.arrived = threading.Event()
        self.release = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if not self.arrived.is_set() and self.matches(request):
            self.arrived.set()
            assert self.release.wait(10), "the held request was never released"
        return response


def held_plugin(
    users: int, matches: Callable[[httpx.Request], bool]
) -> tuple[CoupaSandbox, Hold, CoupaPlugin]:
    """A plugin whose tenants with ``timeout_s`` 30 go through the hold, others straight."""
    sandbox = CoupaSandbox(
        generate_tenant(users=users, seed=5), operations=Operations(rate_limit=False)
    )
    hold = Hold(sandbox, matches)
    virtual = VirtualTime()

    def transport(settings: CoupaSettings) -> httpx.BaseTransport:
        return hold if settings.timeout_s == 30 else SandboxTransport(sandbox)

    plugin = CoupaPlugin(transport_factory=transport, clock=virtual.clock, sleep=virtual.sleep)
    return sandbox, hold, plugin


def closed(connector: CoupaConnector) -> bool:
    return connector.closed


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # noqa: BLE001 - the test asserts what came out
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


# -- the pieces ----------------------------------------------------------------------------------


def test_uses_close_once_retired_and_unused() -> None:
    closed: list[int] = []
    uses = Uses(lambda: closed.append(1))
    uses.enter()
    uses.retire()
    assert closed == [], "a use remains: not closed yet"
    uses.exit()
    assert closed == [1]
    uses.retire()
    assert closed == [1], "closed once"


@given(st.lists(st.sampled_from(["enter", "exit", "retire"]), max_size=30))
@settings(max_examples=200)
def test_uses_close_exactly_when_retired_and_unused(steps: list[str]) -> None:
    closed: list[int] = []
    uses = Uses(lambda: closed.append(1))
    count, retired = 0, False
    for step in steps:
        if step == "exit" and count == 0:
            continue  # never more exits than enters
        getattr(uses, step)()
        count += {"enter": 1, "exit": -1}.get(step, 0)
        retired = retired or step == "retire"
        assert closed == ([1] if retired and (count == 0 or closed) else [])


def test_a_leased_stream_holds_its_use_until_it_ends_or_is_dropped() -> None:
    closed: list[int] = []
    uses = Uses(lambda: closed.append(1))
    read = Leased(iter([1, 2]), uses)
    dropped = Leased(iter([3]), uses)
    assert uses.count == 2, "held from the moment the stream is made, before any read"
    uses.retire()
    assert list(read) == [1, 2]
    assert uses.count == 1 and closed == []
    del dropped  # never read: the host walked away
    assert uses.count == 0 and closed == [1]


def test_a_failing_stream_gives_back_its_use() -> None:
    uses = Uses(lambda: None)

    def failing() -> Any:
        yield 1
        raise ValueError("boom")

    stream = Leased(failing(), uses)
    assert next(stream) == 1
    with pytest.raises(ValueError, match="boom"):
        next(stream)
    assert uses.count == 0
    with pytest.raises(StopIteration):
        next(stream)


def test_keyed_locks_keep_only_the_keys_in_use() -> None:
    locks: KeyedLocks[int] = KeyedLocks()
    for user in range(300):
        with locks.hold(user):
            assert len(locks) == 1
    assert len(locks) == 0


def test_keyed_locks_serialise_one_key() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    inside = threading.Event()
    leave = threading.Event()
    order: list[str] = []

    def first() -> None:
        with locks.hold("u"):
            inside.set()
            leave.wait(10)
            order.append("first")

    def second() -> None:
        with locks.hold("u"):
            order.append("second")

    one = threading.Thread(target=first)
    one.start()
    assert inside.wait(10)
    two = threading.Thread(target=second)
    two.start()
    with locks.hold("other"):  # another key is not held up
        order.append("other")
    leave.set()
    one.join(10)
    two.join(10)
    assert order == ["other", "first", "second"]
    assert len(locks) == 0


# -- threads and release -------------------------------------------------------------------------


def test_a_tenant_keeps_no_thread_once_its_sync_is_done() -> None:
    sandbox, _hold, plugin = held_plugin(400, lambda _r: False)
    t = tenant("idle-threads", max_in_flight=6)
    _, grants = sync(plugin, t)
    assert grants == truth_grants(sandbox.state)
    assert ended(tenant_threads("idle-threads")), "every thread of the tenant ended, idle"
    assert plugin.tenants() == {"idle-threads"}, "the tenant itself is kept (its status)"
    plugin.close()


@pytest.mark.parametrize("how", ["disabled", "dropped", "released"])
def test_a_disabled_dropped_or_released_tenant_closes_its_connector(how: str) -> None:
    sandbox, _hold, plugin = held_plugin(60, lambda _r: False)
    t = tenant("gone")
    sync(plugin, t)
    connector = plugin.connector(t)
    assert connector is not None and not closed(connector)
    if how == "released":
        assert plugin.release("gone") is True
        assert plugin.release("gone") is False, "nothing left to release"
    else:
        section = {**t.plugins["coupa"], "enabled": False}
        off = Tenant(id="gone", plugins={"coupa": section} if how == "disabled" else {})
        assert plugin.configure(tenant=off) is None
    assert closed(connector)
    assert plugin.tenants() == frozenset()
    # the tenant comes back on its next call, on a new connector
    _, grants = sync(plugin, t)
    assert grants == truth_grants(sandbox.state)
    assert plugin.connector(t) is not connector
    plugin.close()


# -- settings changed while work is in flight ----------------------------------------------------


def test_a_provision_in_flight_finishes_on_its_connector_when_settings_change(
    tmp_path: Path,
) -> None:
    sandbox, hold, plugin = held_plugin(
        30, lambda r: r.method == "PUT" and r.url.path.startswith("/api/users/")
    )
    old = tenant("race", state_dir=str(tmp_path), timeout_s=30)
    new = tenant("race", state_dir=str(tmp_path), timeout_s=31)
    role = next(r for r in sandbox.state.roles if r not in sandbox.state.users[7]["roles"])
    before = plugin.connector(old)
    assert before is not None
    request = ProvisionRequest(
        action="grant", entitlement_id=entitlement_id("role", role), principal_id="7"
    )
    thread, outcome = in_thread(lambda: plugin.provision(tenant=old, request=request))
    assert hold.arrived.wait(10), "the write landed and its answer is held"
    status = plugin.configure(tenant=new)  # the host changes the settings meanwhile
    assert status is not None
    assert not closed(before), "the replaced connector stays open while the call runs"
    hold.release.set()
    thread.join(10)
    result = outcome[0]
    assert not isinstance(result, Exception), result
    assert result.status == "applied"
    assert role in sandbox.state.users[7]["roles"]
    assert closed(before), "closed once the call ended"
    plugin.close()


def test_configure_racing_a_call_with_other_settings_succeeds(tmp_path: Path) -> None:
    _sandbox, hold, plugin = held_plugin(30, lambda r: r.url.path == "/api/users")
    old = tenant("race", state_dir=str(tmp_path), timeout_s=30)
    new = tenant("race", state_dir=str(tmp_path), timeout_s=31)
    thread, outcome = in_thread(lambda: plugin.configure(tenant=old))
    assert hold.arrived.wait(10), "configure under the old settings is mid-request"
    assert plugin.configure(tenant=new) is not None
    hold.release.set()
    thread.join(10)
    assert not isinstance(outcome[0], Exception), outcome[0]
    assert outcome[0].tenant_id == "race"
    plugin.close()


def test_a_stream_taken_before_a_settings_change_reads_complete_after_it() -> None:
    sandbox, _hold, plugin = held_plugin(120, lambda _r: False)
    old = tenant("race", timeout_s=30)
    new = tenant("race", timeout_s=31)
    plugin.configure(tenant=old)
    before = plugin.connector(old)
    grants = plugin.sync_grants(tenant=old, request=SyncRequest())
    resources = plugin.discover_resources(tenant=old, request=SyncRequest())
    assert grants is not None and resources is not None
    assert plugin.configure(tenant=new) is not None
    assert before is not None and not closed(before)
    read = {(g.entitlement_id, g.principal_id) for g in grants}
    assert read == truth_grants(sandbox.state)
    assert not closed(before), "the discover stream, taken and not yet read, still holds it"
    del resources  # abandoned unread
    assert closed(before)
    plugin.close()


def test_a_tenant_the_host_stopped_calling_is_released_once_idle() -> None:
    sandbox = CoupaSandbox(
        generate_tenant(users=60, seed=5), operations=Operations(rate_limit=False)
    )
    virtual = VirtualTime(real=False)
    plugin = CoupaPlugin(
        transport_factory=lambda _s: SandboxTransport(sandbox),
        clock=virtual.clock,
        sleep=virtual.sleep,
        idle_release_s=900,
    )
    dropped, streaming, active = tenant("dropped"), tenant("streaming"), tenant("active")
    sync(plugin, dropped)
    stream = plugin.sync_grants(tenant=streaming, request=SyncRequest())  # held, unread
    plugin.configure(tenant=active)
    virtual.sleep(899)
    plugin.configure(tenant=active)
    assert plugin.tenants() == {"dropped", "streaming", "active"}, "not idle long enough"
    virtual.sleep(60)  # the idle are looked for once a minute
    plugin.configure(tenant=active)
    assert plugin.tenants() == {"streaming", "active"}, "the dropped tenant is released"
    assert stream is not None
    assert {(g.entitlement_id, g.principal_id) for g in stream} == truth_grants(sandbox.state)


def test_streams_of_one_tenant_read_at_once_are_each_complete() -> None:
    sandbox, _hold, plugin = held_plugin(300, lambda _r: False)
    t = tenant("shared")
    plugin.configure(tenant=t)
    streams = [plugin.sync_grants(tenant=t, request=SyncRequest()) for _ in range(3)]

    def reader(stream: Iterable[Grant] | None) -> Callable[[], set[tuple[str, str]]]:
        return lambda: {(g.entitlement_id, g.principal_id) for g in stream or []}

    threads = [in_thread(reader(s)) for s in streams]
    for thread, _ in threads:
        thread.join(30)
    assert [outcome for _, outcome in threads] == [[truth_grants(sandbox.state)]] * 3
    plugin.close()


def test_a_stream_abandoned_mid_way_leaves_no_thread_behind() -> None:
    _sandbox, _hold, plugin = held_plugin(600, lambda _r: False)
    t = tenant("walked-away", max_in_flight=6)
    stream = iter(plugin.discover_resources(tenant=t, request=SyncRequest()) or [])
    for _ in range(120):  # pages ahead in flight, the catalogs reading in the background
        next(stream)
    assert tenant_threads("walked-away"), "the listing had threads going"
    del stream  # dropped, not closed: the host walked away
    assert ended(tenant_threads("walked-away"))
    connector = plugin.connector(t)
    assert connector is not None and connector.uses.count == 0, "its use was given back"
    plugin.close()
