"""The typed Coupa client against the sandbox and scripted transports."""

from __future__ import annotations

import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coupa_plugin.coupa import (
    ClientConfig,
    CoupaClient,
    CoupaHTTPError,
    CoupaResponseError,
    CoupaTransportError,
    PagingError,
    ReadOnlyClientError,
    ScopeError,
    Secret,
)
from coupa_plugin.coupa._errors import CoupaAuthError, excerpt
from coupa_plugin.coupa._fields import FieldSpec, TenantFields
from coupa_plugin.coupa._models import Ref, User, structure_user, unstructure_user
from coupa_plugin.coupa._paging import read_all, read_keyset
from coupa_plugin.coupa._ratelimit import RateLimiter
from coupa_plugin.coupa._scopes import PROVISIONING_SCOPES, READ_ONLY_SCOPES
from coupa_plugin.coupa._transport import retry_after_seconds
from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    CoupaSandbox,
    Operations,
    Quirks,
    generate_tenant,
)
from coupa_plugin.sandbox._server import SandboxTransport
from tests.kit import VirtualTime

SECRET = SANDBOX_CLIENT_SECRET


def make_client(
    sandbox: CoupaSandbox,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] | None = None,
    **config: Any,
) -> CoupaClient:
    settings = {
        "base_url": "http://sandbox",
        "client_id": SANDBOX_CLIENT_ID,
        "client_secret": Secret(SECRET),
        "requests_per_second": 10_000.0,
        **config,
    }
    transport = transport or SandboxTransport(sandbox)
    virtual = VirtualTime()
    return CoupaClient(
        ClientConfig(**settings), transport, clock=virtual.clock, sleep=sleep or virtual.sleep
    )


def quiet_sandbox(users: int = 40, **quirks: Any) -> CoupaSandbox:
    return CoupaSandbox(
        generate_tenant(users=users, seed=5),
        quirks=Quirks(**quirks),
        operations=Operations(rate_limit=False),
    )


# -- paging ---------------------------------------------------------------------------------


def fake_listing(
    total: int, cap: int, calls: list[int]
) -> Callable[[int, int], list[dict[str, Any]]]:
    def fetch(offset: int, limit: int) -> list[dict[str, Any]]:
        calls.append(offset)
        size = min(limit, cap)
        return [{"id": i + 1} for i in range(offset, min(offset + size, total))]

    return fetch


@given(total=st.integers(0, 400), cap=st.integers(1, 60), in_flight=st.integers(1, 6))
@settings(max_examples=150, deadline=None)
def test_paging_is_complete_and_terminates_for_any_size_and_cap(
    total: int, cap: int, in_flight: int
) -> None:
    calls: list[int] = []
    with ThreadPoolExecutor(4) as pool:
        rows = list(read_all(fake_listing(total, cap, calls), pool, limit=50, in_flight=in_flight))
    assert [r["id"] for r in rows] == list(range(1, total + 1))
    served = min(cap, 50)
    # pages needed, one request to confirm the end, and the pages that were in flight
    assert len(calls) <= -(-total // served) + 2 + in_flight


def test_paging_detects_a_server_that_ignores_offset() -> None:
    def fetch(offset: int, limit: int) -> list[dict[str, Any]]:
        return [{"id": i} for i in range(1, 51)]

    with pytest.raises(PagingError, match="does not page with offset"):
        list(read_all(fetch, None))


def test_paging_follows_a_server_that_ignores_the_limit() -> None:
    calls: list[int] = []

    def fetch(offset: int, limit: int) -> list[dict[str, Any]]:
        calls.append(offset)
        return [{"id": i + 1} for i in range(offset, min(offset + 80, 1_000))]

    with ThreadPoolExecutor(4) as pool:
        rows = list(read_all(fetch, pool, in_flight=4))
    assert [r["id"] for r in rows] == list(range(1, 1_001))
    assert len(calls) <= 1_000 // 80 + 1 + 4


def test_keyset_paging_detects_an_ignored_cursor() -> None:
    with pytest.raises(PagingError, match="ignored the id"):
        list(read_keyset(lambda cursor: [{"id": 1}, {"id": 2}]))
    pages = {0: [{"id": 2}, {"id": 5}], 5: [{"id": 9}], 9: []}
    assert [r["id"] for r in read_keyset(pages.__getitem__)] == [2, 5, 9]


@pytest.mark.parametrize("cap", [50, 7])
def test_client_reads_every_user_whatever_the_page_cap(cap: int) -> None:
    sandbox = quiet_sandbox(users=130, page_cap=cap)
    with make_client(sandbox) as client:
        flags = client.discover_license_flags()
        ids = [u.id for u in client.users(fields=client.user_fields(flags))]
    assert ids == sorted(sandbox.state.users)


# -- models ---------------------------------------------------------------------------------


refs: st.SearchStrategy[list[dict[str, Any]]] = st.lists(
    st.builds(dict, id=st.integers(1, 10**6), name=st.text(max_size=8)), max_size=4
)


@given(
    payload=st.fixed_dictionaries(
        {"id": st.integers(1, 10**9), "login": st.text(min_size=1, max_size=20)},
        optional={
            "email": st.none() | st.text(max_size=20),
            "active": st.booleans(),
            "employee-number": st.none() | st.text(max_size=8),
            "roles": st.none() | refs,
            "user-groups": refs,
            "content-groups": refs,
            "approval-groups": refs,
            "purchasing-user": st.booleans(),
            "brand-new-user": st.booleans(),
            "api-user": st.booleans(),
            "unknown-key": st.integers(),
            "custom-fields": st.just({}),
            "updated-at": st.just("2024-05-06T07:08:09-07:00"),
        },
    )
)
def test_converter_round_trips_and_tolerates_unknown_keys(payload: dict[str, Any]) -> None:
    user = structure_user(payload)
    assert user.id == payload["id"]
    assert structure_user(unstructure_user(user)) == user
    assert set(user.licenses) == {k for k in ("purchasing-user", "brand-new-user") if k in payload}
    assert "api-user" not in user.licenses
    assert user.roles == tuple(Ref(id=r["id"], name=r["name"]) for r in payload.get("roles") or [])


def test_nulls_where_coupa_sends_them() -> None:
    user = structure_user(
        {"id": 1, "login": "a", "active": None, "roles": None, "manager": None, "user-groups": None}
    )
    assert user.active is True and user.roles == () and user.manager is None
    assert isinstance(user, User)


# -- tokens ---------------------------------------------------------------------------------


def test_concurrent_first_requests_mint_one_token() -> None:
    sandbox = quiet_sandbox()
    client = make_client(sandbox)
    barrier = threading.Barrier(12)

    def first(i: int) -> Any:
        barrier.wait()
        return client.get(f"/api/users/{i + 1}")

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(first, range(12)))
    assert all(r["id"] == i + 1 for i, r in enumerate(results))
    assert sandbox.tokens_issued == 2  # one token, and GraphQL's read token minted alongside
    client.close()


def test_token_refreshed_before_expiry_and_once_on_401() -> None:
    now = [1_000.0]
    sandbox = CoupaSandbox(
        generate_tenant(users=5),
        operations=Operations(rate_limit=False, token_ttl_s=100),
        clock=lambda: now[0],
    )
    client = CoupaClient(
        ClientConfig(
            base_url="http://s",
            client_id=SANDBOX_CLIENT_ID,
            client_secret=Secret(SECRET),
            requests_per_second=1000.0,
        ),
        SandboxTransport(sandbox),
        clock=lambda: now[0],
    )
    client.get("/api/users/1")
    assert sandbox.tokens_issued == 2  # and GraphQL's read token, minted alongside
    now[0] += 95  # past 90 % of the lifetime: refreshed before use
    client.get("/api/users/1")
    assert sandbox.tokens_issued == 3
    now[0] += 10
    sandbox.expire_tokens()  # refused although the client thinks it is valid
    assert client.get("/api/users/2")["id"] == 2
    assert sandbox.tokens_issued == 4
    client.close()


def test_a_401_on_a_brand_new_token_waits_instead_of_reminting() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "t1", "expires_in": 86399})
        if len(calls) == 2:
            return httpx.Response(401, json={"errors": {"base": ["not yet"]}})
        return httpx.Response(200, json={"id": 1})

    waits: list[float] = []
    client = make_client(
        quiet_sandbox(), httpx.MockTransport(handler), sleep=waits.append, mode="read-only"
    )
    assert client.get("/api/users/1") == {"id": 1}
    assert calls.count("/oauth2/token") == 1 and len(waits) == 1 and 0 < waits[0] <= 5


# -- scopes and modes -----------------------------------------------------------------------


class _Spy(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.scopes_asked: list[str] = []
        self.methods: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        if request.url.path == "/oauth2/token":
            form = dict(x.split("=", 1) for x in body.decode().split("&"))
            self.scopes_asked.append(form.get("scope", "").replace("+", " ").replace("%2E", "."))
        self.methods.append(request.method)
        return self.inner.handle_request(request)


def _client_with_grants(grants: set[str], **config: Any) -> tuple[CoupaClient, _Spy, CoupaSandbox]:
    sandbox = quiet_sandbox()
    sandbox.state.add_client(SANDBOX_CLIENT_ID, SECRET, grants)
    spy = _Spy(SandboxTransport(sandbox))
    return make_client(sandbox, spy, **config), spy, sandbox


def test_auto_mode_falls_back_to_read_only() -> None:
    client, spy, _ = _client_with_grants(set(READ_ONLY_SCOPES))
    grant = client.connect()
    assert grant.mode == "read-only" and grant.scopes == READ_ONLY_SCOPES
    assert grant.optional_missing == {"core.accounting.read"}
    assert len(spy.scopes_asked) == 6  # provisioning with and without offline_access first


def test_auto_mode_with_everything_is_provisioning_with_account_groups() -> None:
    client, spy, _ = _client_with_grants(set(PROVISIONING_SCOPES) | {"core.accounting.read"})
    grant = client.connect()
    assert grant.mode == "provisioning" and not grant.optional_missing
    # the full set, and GraphQL's read scopes of it, asked for at once
    full = " ".join(sorted(PROVISIONING_SCOPES | {"core.accounting.read"}))
    read = " ".join(sorted(READ_ONLY_SCOPES | {"core.accounting.read"}))
    assert sorted(spy.scopes_asked) == sorted([full, read])
    client.graphql('{ roles(query: "id[gt]=0") { id } }')
    assert len(spy.scopes_asked) == 2, "GraphQL uses the token minted alongside"


def test_a_read_only_client_takes_the_token_minted_alongside_as_its_own() -> None:
    client, spy, _ = _client_with_grants(set(READ_ONLY_SCOPES) | {"core.accounting.read"})
    grant = client.connect()
    assert grant.mode == "read-only" and not grant.optional_missing
    read = " ".join(sorted(READ_ONLY_SCOPES | {"core.accounting.read"}))
    assert spy.scopes_asked.count(read) == 1, "the read set is not asked for twice"
    assert len(spy.scopes_asked) == 5  # the four provisioning sets refused, and that one
    client.graphql('{ roles(query: "id[gt]=0") { id } }')
    client.get("/api/users", {"limit": 1})
    assert len(spy.scopes_asked) == 5


def test_read_only_mode_never_asks_for_write_scopes() -> None:
    client, spy, _ = _client_with_grants(set(PROVISIONING_SCOPES), mode="read-only")
    assert client.connect().mode == "read-only"
    assert all("write" not in asked for asked in spy.scopes_asked)


def test_provisioning_mode_names_the_missing_scopes() -> None:
    client, _, _ = _client_with_grants(set(READ_ONLY_SCOPES), mode="provisioning")
    with pytest.raises(ScopeError) as info:
        client.connect()
    for scope in ("core.user.write", "core.user_group.write", "offline_access"):
        assert scope in str(info.value)
    assert "core.user.read" not in str(info.value).split("missing:")[1]


def test_a_read_only_client_sends_no_write() -> None:
    client, spy, sandbox = _client_with_grants(set(PROVISIONING_SCOPES), mode="read-only")
    client.connect()
    for call in (
        lambda: client.set_active(5, active=False),
        lambda: client.create_user({"login": "x"}),
        lambda: client.add_membership(5, 1),
        lambda: client.delete_membership(1),
        lambda: client.business_group(5, 1, "add"),
    ):
        with pytest.raises(ReadOnlyClientError):
            call()
    assert set(spy.methods) == {"POST"} and sandbox.writes == 0  # token requests only


def test_wrong_credentials_are_an_auth_error() -> None:
    sandbox = quiet_sandbox()
    client = CoupaClient(
        ClientConfig(
            base_url="http://s", client_id=SANDBOX_CLIENT_ID, client_secret=Secret("wrong")
        ),
        SandboxTransport(sandbox),
    )
    with pytest.raises(CoupaAuthError, match="invalid_client") as info:
        client.connect()
    assert "wrong" not in str(info.value)


# -- retries and errors ---------------------------------------------------------------------


def scripted(*responses: httpx.Response | Exception) -> tuple[httpx.MockTransport, list[str]]:
    queue = list(responses)
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 86399})
        seen.append(f"{request.method} {request.url.path}")
        item = queue.pop(0) if queue else httpx.Response(200, json={"id": 1})
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handler), seen


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retryable_statuses_are_retried_for_reads(status: int) -> None:
    transport, seen = scripted(httpx.Response(status), httpx.Response(status))
    client = make_client(quiet_sandbox(), transport)
    assert client.get("/api/users/1") == {"id": 1}
    assert len(seen) == 3 and client.retries == 2


@pytest.mark.parametrize(
    "error",
    [httpx.RemoteProtocolError("dropped"), httpx.ReadError("reset"), httpx.ConnectError("refused")],
)
def test_dropped_connections_are_retried_for_reads(error: Exception) -> None:
    transport, seen = scripted(error)
    assert make_client(quiet_sandbox(), transport).get("/api/users/1") == {"id": 1}
    assert len(seen) == 2


def test_a_non_idempotent_write_is_not_retried_when_it_may_have_been_applied() -> None:
    transport, seen = scripted(httpx.RemoteProtocolError("dropped"))
    client = make_client(quiet_sandbox(), transport)
    with pytest.raises(CoupaTransportError, match="may or may not"):
        client.create_user({"login": "x"})
    assert seen == ["POST /api/users"]
    transport, seen = scripted(httpx.Response(503))
    with pytest.raises(CoupaHTTPError, match="503"):
        make_client(quiet_sandbox(), transport).create_user({"login": "x"})
    assert len(seen) == 1


def test_writes_are_retried_when_never_sent_or_idempotent() -> None:
    transport, seen = scripted(httpx.ConnectError("refused"), httpx.Response(429))
    make_client(quiet_sandbox(), transport).create_user({"login": "x"})
    assert len(seen) == 3
    transport, seen = scripted(httpx.Response(503), httpx.RemoteProtocolError("dropped"))
    make_client(quiet_sandbox(), transport).set_active(1, active=False)
    assert len(seen) == 3


def test_a_500_is_retried_on_reads_but_not_on_writes() -> None:
    transport, seen = scripted(httpx.Response(500), httpx.Response(200, json={"id": 1}))
    assert make_client(quiet_sandbox(), transport).get("/api/users/1") == {"id": 1}
    assert len(seen) == 2
    transport, seen = scripted(httpx.Response(500), httpx.Response(200, json={"id": 1}))
    with pytest.raises(CoupaHTTPError, match="HTTP 500"):
        make_client(quiet_sandbox(), transport).set_active(1, active=False)
    assert len(seen) == 1


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
def test_non_retryable_errors_surface_at_once(status: int) -> None:
    transport, seen = scripted(
        httpx.Response(status, json={"errors": {"user": ["Login has already been taken"]}})
    )
    with pytest.raises(CoupaHTTPError) as info:
        make_client(quiet_sandbox(), transport).get("/api/users/1")
    assert len(seen) == 1 and info.value.status == status
    assert "Login has already been taken" in str(info.value)


def test_retries_are_bounded_then_typed() -> None:
    transport, seen = scripted(*[httpx.Response(503)] * 20)
    with pytest.raises(CoupaHTTPError, match="HTTP 503"):
        make_client(quiet_sandbox(), transport, retry_attempts=4).get("/api/users")
    assert len(seen) == 4


@pytest.mark.parametrize(
    ("response", "kind", "fragment"),
    [
        (
            httpx.Response(502, text="<html><body><h1>Bad Gateway</h1></body></html>"),
            CoupaHTTPError,
            "Bad Gateway",
        ),
        (
            httpx.Response(400, text="<errors><error>No such thing</error></errors>"),
            CoupaHTTPError,
            "No such thing",
        ),
        (
            httpx.Response(200, text='[{"id": 1, "login": "trunc'),
            CoupaTransportError,
            "invalid JSON",
        ),
    ],
)
def test_error_bodies_become_typed_errors(
    response: httpx.Response, kind: type[Exception], fragment: str
) -> None:
    transport, _ = scripted(*[response] * 10)
    with pytest.raises(kind, match=fragment):
        make_client(quiet_sandbox(), transport, retry_attempts=3).get("/api/users")


def test_secrets_are_scrubbed_from_errors_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    leaked = "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2ln client_secret=s3cr3t"
    transport, _ = scripted(httpx.Response(400, text=leaked))
    caplog.set_level(logging.DEBUG, logger="coupa_plugin")
    client = make_client(quiet_sandbox(), transport)
    with pytest.raises(CoupaHTTPError) as info:
        client.get("/api/users")
    text = str(info.value) + repr(info.value) + caplog.text
    assert "s3cr3t" not in text and "c2lnbmF0dXJlc2ln" not in text and SECRET not in text
    assert excerpt("x" * 500).endswith("…")


def test_logs_never_carry_the_token(caplog: pytest.LogCaptureFixture) -> None:
    sandbox = quiet_sandbox()
    caplog.set_level(logging.DEBUG, logger="coupa_plugin")
    client = make_client(sandbox)
    client.get("/api/users/1")
    token = client.tokens.current().value.reveal()
    everything = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert token not in everything and SECRET not in everything
    assert any(getattr(r, "path", None) == "/api/users/1" for r in caplog.records)


def test_retry_after_is_read_and_capped() -> None:
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "3"})) == 3.0
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "9999"})) == 60.0
    assert retry_after_seconds(httpx.Response(429)) is None
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "soon"})) is None


# -- rate limiter ---------------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_limiter_allows_a_burst_then_paces() -> None:
    t = FakeTime()
    limiter = RateLimiter(20.0, burst=5, clock=t.clock, sleep=t.sleep)
    sent = []
    for _ in range(25):
        limiter.acquire()
        sent.append(t.now)
    assert sent[:5] == [0.0] * 5
    assert sent[-1] == pytest.approx(20 / 20.0)
    # no window of one second ever holds more than rate + burst requests
    assert max(sum(1 for s in sent if a <= s < a + 1) for a in sent) <= 25


class Caller:
    """A thread of its own running the actions it is given, one at a time (the pacer tells
    requests apart by the thread that sent them, as the transport reports from that thread)."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], threading.Event, list[Any]] | None]
        self._jobs = queue.Queue()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            action, done, box = job
            box.append(action())
            done.set()

    def do(self, action: Callable[[], Any]) -> Any:
        done, box = threading.Event(), []  # type: ignore[var-annotated]
        self._jobs.put((action, done, box))
        assert done.wait(10), "the action did not finish"
        return box[0]

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()


def test_limiter_cuts_the_rate_once_for_the_429s_of_requests_in_flight() -> None:
    t = FakeTime()
    limiter = RateLimiter(20.0, burst=1, clock=t.clock, sleep=t.sleep)
    a, b, c, d = (Caller() for _ in range(4))
    for _ in range(100):  # five seconds at the full rate: the measure reaches the target
        a.do(limiter.acquire)
    for caller in (a, b, c):  # three requests leave before any answer comes back
        caller.do(limiter.acquire)
    sent = t.now
    sending = min(20.0, limiter.measured(limiter._state, sent))
    assert sending > 19.0, "the measure follows the rate requests are asked for"
    for caller in (a, b, c):  # and all three come back 429
        caller.do(lambda: limiter.throttled_by_server(1.0))
    assert limiter.throttled == 3
    assert limiter.rate_at(limiter._state, sent + 1.0) == pytest.approx(0.7 * sending), "once"
    d.do(limiter.acquire)
    assert t.now >= sent + 1.0, "the next request waits out the one hold window"
    # a request sent after the window that still meets a 429 is a new event: 70 % of what
    # was really sent (little in the last second), not of the nominal rate in force
    t.now = sent + 1.1
    sending = limiter.measured(limiter._state, t.now)
    assert sending < limiter.rate_at(limiter._state, t.now)
    d.do(lambda: limiter.throttled_by_server(1.0))
    assert limiter.rate_at(limiter._state, t.now + 1.0) == pytest.approx(max(1.0, 0.7 * sending))
    for caller in (a, b, c, d):
        caller.close()


def test_limiter_recovers_with_time_not_with_successes() -> None:
    t = FakeTime()
    limiter = RateLimiter(20.0, burst=1, clock=t.clock, sleep=t.sleep, recover_per_s=0.1)
    for _ in range(100):
        limiter.acquire()
    start = t.now
    floor = 0.7 * min(20.0, limiter.measured(limiter._state, start))
    limiter.throttled_by_server(1.0)  # a window of a second at 70 % of the rate sent
    for _ in range(1_000):
        limiter.succeeded()
    assert limiter.rate == pytest.approx(floor), "successes alone change nothing"
    # then floor + recover_per_s * target * t * (1 + t / ACCEL_S), t since the window ...
    for elapsed in (0.5, 1.0):
        t.now = start + 1.0 + elapsed
        assert limiter.rate == pytest.approx(floor + 0.1 * 20.0 * elapsed * (1 + elapsed / 8.0))
    # ... pausing for five seconds at 90 % of the rate sent when the 429 came
    pause = 0.9 * floor / 0.7
    for elapsed in (2.0, 6.0):
        t.now = start + 1.0 + elapsed
        assert limiter.rate == pytest.approx(pause)
    t.now = start + 1.0 + 7.0
    assert limiter.rate == pytest.approx(floor + 0.1 * 20.0 * 2.0 * (1 + 2.0 / 8.0))
    t.now = 60.0
    assert limiter.rate == 20.0


def test_the_measured_rate_follows_what_is_asked_for() -> None:
    t = FakeTime()
    limiter = RateLimiter(10.0, burst=1, clock=t.clock, sleep=t.sleep)
    for _ in range(50):  # five seconds at 10/s
        limiter.acquire()
    assert 9.0 < limiter.measured(limiter._state, t.now) < 11.0
    t.now += 3.0  # nothing asked for three seconds: the measure decays
    assert limiter.measured(limiter._state, t.now) < 1.0


def test_limiter_callers_already_waiting_respect_a_window_opened_meanwhile() -> None:
    t = FakeTime()
    first, second = Caller(), Caller()

    def sleep(seconds: float) -> None:
        t.now += seconds / 2
        if not limiter.throttled:  # the first request's 429 arrives while the second waits
            first.do(lambda: limiter.throttled_by_server(1.0))
        t.now += seconds / 2

    limiter = RateLimiter(20.0, burst=1, clock=t.clock, sleep=sleep)
    first.do(limiter.acquire)
    second.do(limiter.acquire)
    assert t.now >= 0.025 + 1.0, "the waiting request did not go out during the window"
    first.close()
    second.close()


def test_limiter_bursts_only_at_the_full_rate() -> None:
    t = FakeTime()
    limiter = RateLimiter(20.0, burst=5, clock=t.clock, sleep=t.sleep, recover_per_s=0.01)
    limiter.throttled_by_server(0.0)
    sent = []
    for _ in range(5):
        limiter.acquire()
        sent.append(t.now)
    assert all(b > a for a, b in itertools.pairwise(sent)), "no burst below the full rate"
    t.now = 100.0  # long since recovered
    sent = []
    for _ in range(5):
        limiter.acquire()
        sent.append(t.now)
    assert sent == [100.0] * 5


def test_shared_limiter_reacts_once_to_an_event_seen_by_two_processes(tmp_path: Any) -> None:
    from coupa_plugin.coupa._ratelimit import SharedRateLimiter

    t = FakeTime()
    t.now = 1_000.0
    path = str(tmp_path / "pace.sqlite")
    one, two = (
        SharedRateLimiter(
            path, "https://acme.coupahost.com", 20.0, burst=1, clock=t.clock, sleep=t.sleep
        )
        for _ in range(2)
    )
    for _ in range(60):  # three seconds at the full rate, between them
        one.acquire()
        two.acquire()
    floor = 0.7 * min(20.0, one.measured(one._current(), t.now))
    assert floor > 13.0, "the measure counts both processes' requests"
    one.throttled_by_server(1.0)
    two.throttled_by_server(1.0)  # sent before the window opened: the same event
    assert one.throttled == two.throttled == 2
    assert two.rate == pytest.approx(floor)
    t.now += 2.0  # one second after the window
    assert one.rate == pytest.approx(floor + 0.02 * 20.0 * (1 + 1 / 8.0))
    one.close()
    two.close()


def test_graphql_errors_and_role_fallback() -> None:
    sandbox = quiet_sandbox()
    with make_client(sandbox) as client:
        roles = list(client.roles())
    assert [r.id for r in roles] == sorted(sandbox.state.roles)
    assert roles[0].name == "Admin" and roles[0].omnipotent
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 86399})
        query = json.loads(request.read())["query"]
        calls.append(query)
        if "omnipotent" in query:
            return httpx.Response(
                200,
                json={"errors": [{"message": "Cannot query field 'omnipotent' on type 'Role'."}]},
            )
        if 'id[gt]=0"' in query:
            return httpx.Response(200, json={"data": {"roles": [{"id": 2, "name": "Admin"}]}})
        return httpx.Response(200, json={"data": {"roles": []}})

    client = make_client(sandbox, httpx.MockTransport(handler))
    assert [r.name for r in client.roles()] == ["Admin"]
    assert len(calls) == 3


@settings(max_examples=25, deadline=None)
@given(
    extra_roles=st.integers(0, 70),
    cap=st.integers(1, 60),
    ordering=st.sampled_from(["honoured", "ignored", "refused"]),
)
def test_roles_are_read_whole_and_end_without_an_empty_page_when_ordering_shows_the_end(
    extra_roles: int, cap: int, ordering: str
) -> None:
    sandbox = quiet_sandbox(users=5, graphql_page_cap=cap, graphql_ordering=ordering)
    for rid in range(20_000, 20_000 + extra_roles):
        sandbox.state.roles[rid] = {"id": rid, "name": f"Role {rid}", "omnipotent": False}
    with make_client(sandbox) as client:
        roles = [r.id for r in client.roles()]
        again = [r.id for r in client.roles()]
    assert roles == again == sorted(sandbox.state.roles)
    pages = [e for e in sandbox.log if e.path == "/api/graphql"]
    total = len(sandbox.state.roles)
    full_pages = -(-total // cap)  # the pages that hold every role
    to_the_empty_page = full_pages + 1  # a short page is not taken as the end
    if ordering == "honoured" and min(cap, total) >= 2:
        expected = 2 * full_pages  # the end shows: no empty page, in either listing
    elif ordering == "refused":
        expected = 1 + 2 * to_the_empty_page  # one refusal, remembered by the client
    else:
        expected = 2 * to_the_empty_page
    assert len(pages) == expected


def test_a_bounded_listing_starts_as_deep_as_the_rate_needs_over_the_round_trip() -> None:
    with make_client(quiet_sandbox(), requests_per_second=24.0, max_in_flight=8) as client:
        assert client._start_depth() == 2  # no answer seen yet
        client.http.round_trip_s = 0.17
        assert client._start_depth() == 4  # 24/s x 0.17 s
        client.http.round_trip_s = 0.01
        assert client._start_depth() == 2
        client.http.round_trip_s = 5.0
        assert client._start_depth() == 8  # never past max_in_flight
        client.get("/api/users", {"limit": 1})
        assert client.http.round_trip_s is not None and client.http.round_trip_s < 5.0


def test_invalid_json_response_shape() -> None:
    transport, _ = scripted(httpx.Response(200, json={"not": "a list"}))
    client = make_client(quiet_sandbox(), transport)
    with pytest.raises(CoupaResponseError, match="JSON array"):
        list(client.users())


def test_pages_are_fetched_ahead_when_the_network_is_slow() -> None:
    active, peak = [0], [0]
    lock = threading.Lock()

    def fetch(offset: int, limit: int) -> list[dict[str, Any]]:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return [{"id": i + 1} for i in range(offset, min(offset + limit, 1_000))]

    with ThreadPoolExecutor(6) as pool:
        rows = list(read_all(fetch, pool, in_flight=6))
    assert len(rows) == 1_000
    assert peak[0] >= 4, "a slow server must see several pages in flight"


def test_shared_limiter_paces_several_workers_as_one(tmp_path: Any) -> None:
    from coupa_plugin.coupa._ratelimit import SharedRateLimiter

    path = str(tmp_path / "pace.sqlite")
    rate, per_worker, workers = 40.0, 10, 3
    sent: list[float] = []
    lock = threading.Lock()

    failures: list[BaseException] = []

    def worker() -> None:
        try:
            limiter = SharedRateLimiter(path, "https://acme.coupahost.com", rate, burst=1)
            for _ in range(per_worker):
                limiter.acquire()
                with lock:
                    sent.append(time.time())
            limiter.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(sent) == workers * per_worker
    sent.sort()
    # one shared budget: 30 requests at 40/s cannot take less than 29/40 s, whatever the
    # machine (a slow machine only makes it longer)
    assert sent[-1] - sent[0] >= (workers * per_worker - 1) / rate - 0.02
    other = SharedRateLimiter(path, "https://other.coupahost.com", rate, burst=1)
    started = time.time()
    other.acquire()
    assert time.time() - started < 0.5, "another instance has a budget of its own"
    other.throttled_by_server(60.0)
    assert other.rate < rate * 0.7
    again = SharedRateLimiter(path, "https://other.coupahost.com", rate, burst=1)
    assert again.rate == pytest.approx(other.rate), "a 429 slows every process down"


def test_a_refusal_with_deeply_nested_messages_is_read_without_recursion() -> None:
    deep: object = "id"
    for _ in range(5_000):
        deep = [deep]
    error = CoupaHTTPError("GET", "/api/users", 400, "bad", {"fields": [deep, "unknown: email"]})
    spec = FieldSpec("users", ("id", "login", "email"), frozenset({"id", "login"}))
    assert TenantFields().learn(spec, error) == {"email"}
