"""Keeping the rate limit busy: no pages past a known end, catalogs in the background while
users stream (stopped when the host abandons the stream), configure's probes at once."""

from __future__ import annotations

import heapq
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from coupa_plugin.connector._sync import HEAD_START_TTL_S, begin
from coupa_plugin.coupa._errors import PacingTimeout
from coupa_plugin.coupa._paging import PageSize, read_all
from coupa_plugin.coupa._ratelimit import RateLimiter
from coupa_plugin.host.model import SyncRequest
from coupa_plugin.plugin import CoupaPlugin
from coupa_plugin.sandbox import CoupaSandbox, Operations, generate_tenant
from coupa_plugin.sandbox._server import SandboxTransport
from tests.kit import VirtualTime, tenant, truth_resources


def listing(rows: int, offsets: list[int]) -> Any:
    def fetch(offset: int, limit: int) -> list[dict[str, Any]]:
        offsets.append(offset)
        return [{"id": i + 1} for i in range(offset, min(offset + limit, rows))]

    return fetch


def test_a_short_page_ends_a_listing_once_another_showed_the_page_size() -> None:
    shared = PageSize()
    with ThreadPoolExecutor(4) as pool:
        users: list[int] = []
        assert len(list(read_all(listing(120, users), pool, page_size=shared))) == 120
        groups: list[int] = []
        assert len(list(read_all(listing(7, groups), pool, page_size=shared))) == 7
        alone: list[int] = []
        assert len(list(read_all(listing(7, alone), pool, page_size=PageSize()))) == 7
    assert shared.served_in_full == 50
    assert groups == [0], "the short page is the end: no page requested past it"
    assert alone == [0, 7], "without a full page seen, a short page is confirmed"


def test_a_saturated_pacer_keeps_the_pipeline_from_deepening() -> None:
    offsets: list[int] = []
    with ThreadPoolExecutor(4) as pool:
        rows = list(read_all(listing(1_020, offsets), pool, in_flight=8, saturated=lambda: True))
    assert len(rows) == 1_020
    assert offsets == list(range(0, 1_050, 50)), "no page past the short one at 1,000"


class Gate(httpx.BaseTransport):
    """The sandbox, with the requests to one path held until released; counts every path."""

    def __init__(self, sandbox: CoupaSandbox, held: str) -> None:
        self.inner = SandboxTransport(sandbox)
        self.held = held
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.changed:
            self.seen[request.url.path] += 1
            self.changed.notify_all()
        if request.url.path == self.held:
            self.arrived.set()
            assert self.release.wait(10), "the held request was never released"
        return self.inner.handle_request(request)

    def wait_for(self, path: str, count: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.seen[path] >= count, timeout=10)


def gated(users: int, held: str) -> tuple[CoupaSandbox, Gate, CoupaPlugin]:
    sandbox = CoupaSandbox(
        generate_tenant(users=users, seed=3), operations=Operations(rate_limit=False)
    )
    gate = Gate(sandbox, held)
    return sandbox, gate, CoupaPlugin(transport_factory=lambda _settings: gate)


def test_catalogs_are_read_in_the_background_while_users_stream() -> None:
    sandbox, gate, plugin = gated(120, "/api/user_groups")
    t = tenant()
    plugin.configure(tenant=t)
    stream = iter(plugin.discover_resources(tenant=t, request=SyncRequest()) or [])
    users = [next(stream) for _ in range(len(sandbox.state.users))]
    assert {r.type for r in users} == {"user"}, "every user streamed while groups were held"
    assert gate.arrived.wait(10), "the group listing started while users streamed"
    # the other catalogs do not wait for the held one
    connector = plugin.connector(t)
    assert connector is not None and connector.sync.catalog_fetch is not None
    fetch = connector.sync.catalog_fetch
    assert len(fetch.result("content_group")) == len(sandbox.state.business_groups)
    assert len(fetch.result("account_group")) == len(sandbox.state.account_groups)
    gate.release.set()
    resources = users + list(stream)
    assert {(r.type, r.id) for r in resources} == truth_resources(sandbox.state)
    plugin.close()


def test_an_abandoned_stream_stops_the_catalog_listings() -> None:
    _sandbox, gate, plugin = gated(2_000, "/api/user_groups")  # 54 groups: two pages
    t = tenant()
    stream = plugin.discover_resources(tenant=t, request=SyncRequest())
    assert stream is not None
    first = next(iter(stream))
    assert first.type == "user"
    assert gate.arrived.wait(10)
    stream.close()  # type: ignore[attr-defined]  # the host walks away mid-stream
    gate.release.set()
    connector = plugin.connector(t)
    assert connector is not None
    fetch = connector.sync.catalog_fetch
    assert fetch is not None and fetch.wait(10)
    assert gate.seen["/api/user_groups"] == 1, "no further group page after the stream closed"
    plugin.close()


class Rendezvous(httpx.BaseTransport):
    """Holds each of configure's probes until all three have arrived: sequential probes would
    never meet."""

    def __init__(self, sandbox: CoupaSandbox) -> None:
        self.inner = SandboxTransport(sandbox)
        self.meeting = threading.Barrier(3, timeout=10)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        probe = (
            request.url.path in {"/api/business_groups", "/api/account_groups"}
            and request.url.params.get("offset") == "0"
        ) or (request.url.path == "/api/graphql" and b"id[gt]=0" in request.read())
        if probe:
            self.meeting.wait()
        return self.inner.handle_request(request)


def test_configure_sends_its_probes_at_once() -> None:
    sandbox = CoupaSandbox(generate_tenant(users=10), operations=Operations(rate_limit=False))
    transport = Rendezvous(sandbox)
    plugin = CoupaPlugin(transport_factory=lambda _settings: transport)
    status = plugin.configure(tenant=tenant())
    assert status is not None
    assert {"content_group", "account_group", "role"} <= status.resource_types
    # the kit's tenant runs far above Coupa's 25/s (an in-process sandbox), which is warned of
    assert [w for w in status.warnings if "requests_per_second" not in w] == []
    assert transport.meeting.n_waiting == 0 and not transport.meeting.broken
    plugin.close()


def sparse_listing(ids: list[int], offsets: list[int]) -> Any:
    def fetch(offset: int, limit: int) -> list[dict[str, Any]]:
        offsets.append(offset)
        return [{"id": i} for i in ids[offset : offset + limit]]

    return fetch


def test_the_largest_id_keeps_pages_from_being_requested_past_the_end() -> None:
    offsets: list[int] = []
    with ThreadPoolExecutor(8) as pool:
        rows = list(read_all(listing(1_000, offsets), pool, in_flight=8, last_id=1_000))
    assert len(rows) == 1_000
    assert sorted(offsets) == list(range(0, 1_050, 50)), "only the empty page confirms the end"


def in_flight_together(fetch: Any, held: Callable[[int], bool], parties: int) -> Any:
    """``fetch``, whose pages at the offsets ``held`` picks wait until ``parties`` of them are
    in flight at once (a broken barrier fails the listing after 10 s)."""
    together = threading.Barrier(parties, timeout=10)

    def gated_fetch(offset: int, limit: int) -> list[dict[str, Any]]:
        if held(offset):
            together.wait()
        page: list[dict[str, Any]] = fetch(offset, limit)
        return page

    return gated_fetch


def test_a_bounded_listing_of_a_known_page_size_starts_two_pages_deep() -> None:
    # the first two pages are both requested before either has come back
    offsets: list[int] = []
    # the barrier breaks (and fails the listing) unless both are in flight
    fetch = in_flight_together(listing(1_000, offsets), lambda offset: offset < 2 * 50, parties=2)
    with ThreadPoolExecutor(8) as pool:
        proven = PageSize(served_in_full=50)
        rows = list(read_all(fetch, pool, in_flight=8, page_size=proven, last_id=1_000))
    assert [r["id"] for r in rows] == list(range(1, 1_001))
    assert sorted(offsets) == list(range(0, 1_050, 50))


def test_the_last_window_of_a_bounded_listing_is_asked_for_at_once() -> None:
    # once the rows still possible fit in in_flight pages, every one of them is in flight
    offsets: list[int] = []
    # the last eight pages (650 … 1,000, the empty one) together
    fetch = in_flight_together(listing(1_000, offsets), lambda offset: offset >= 650, parties=8)
    with ThreadPoolExecutor(8) as pool:
        proven = PageSize(served_in_full=50)
        rows = list(read_all(fetch, pool, in_flight=8, page_size=proven, last_id=1_000))
    assert [r["id"] for r in rows] == list(range(1, 1_001))
    assert sorted(offsets) == list(range(0, 1_050, 50)), "nothing past the end"


def test_a_full_pipeline_sends_no_page_past_the_last_id_even_at_the_start() -> None:
    offsets: list[int] = []
    with ThreadPoolExecutor(8) as pool:
        proven = PageSize(served_in_full=50)
        rows = list(
            read_all(listing(102, offsets), pool, in_flight=8, page_size=proven, last_id=102)
        )
    assert len(rows) == 102
    assert sorted(offsets) == [0, 50, 100], "the short page ends it; nothing past it"


def test_gaps_in_ids_keep_the_bound_safe() -> None:
    ids = [i * 3 for i in range(1, 401)]  # 400 rows, ids up to 1,200
    offsets: list[int] = []
    with ThreadPoolExecutor(8) as pool:
        rows = list(read_all(sparse_listing(ids, offsets), pool, in_flight=8, last_id=1_200))
    assert [r["id"] for r in rows] == ids
    assert max(offsets) >= 400, "the end was confirmed"


def test_a_wrong_bound_is_dropped_and_every_row_read() -> None:
    # a bound below the real ids (a server that ignored dir=desc, or users added since)
    for bound in (1, 130):
        offsets: list[int] = []
        with ThreadPoolExecutor(8) as pool:
            rows = list(read_all(listing(1_000, offsets), pool, in_flight=8, last_id=bound))
        assert [r["id"] for r in rows] == list(range(1, 1_001))
        assert 1_000 in offsets


def test_a_listing_begun_before_the_page_size_was_known_ends_at_its_short_page() -> None:
    shared = PageSize()
    offsets: list[int] = []
    with ThreadPoolExecutor(4) as pool:
        groups = read_all(listing(7, offsets), pool, page_size=shared)
        first = next(groups)  # begun (configure's probe) before any full page was seen
        assert len(list(read_all(listing(120, []), pool, page_size=shared))) == 120
        rest = list(groups)
    assert [first, *rest] == [{"id": i} for i in range(1, 8)]
    assert offsets == [0], "the short page was the end once another listing showed the size"


class Counting(httpx.BaseTransport):
    def __init__(self, sandbox: CoupaSandbox) -> None:
        self.inner = SandboxTransport(sandbox)
        self.seen: Counter[str] = Counter()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen[f"{request.method} {request.url.path}"] += 1
        return self.inner.handle_request(request)


def counted(
    users: int, virtual: VirtualTime | None = None
) -> tuple[CoupaSandbox, Counting, CoupaPlugin]:
    sandbox = CoupaSandbox(
        generate_tenant(users=users, seed=5), operations=Operations(rate_limit=False)
    )
    transport = Counting(sandbox)
    clocks: dict[str, Any] = (
        {} if virtual is None else {"clock": virtual.clock, "sleep": virtual.sleep}
    )
    return sandbox, transport, CoupaPlugin(transport_factory=lambda _settings: transport, **clocks)


def test_a_full_sync_sends_the_fewest_requests_but_two() -> None:
    sandbox, transport, plugin = counted(1_020)
    t = tenant()
    plugin.configure(tenant=t)
    resources = list(plugin.discover_resources(tenant=t, request=SyncRequest()) or [])
    assert {(r.type, r.id) for r in resources} == truth_resources(sandbox.state)
    state = sandbox.state

    def pages(rows: int) -> int:
        return rows // 50 + 1

    fewest = {
        "POST /oauth2/token": 1,
        "GET /api/users": pages(len(state.users)),
        "GET /api/user_groups": pages(len(state.user_groups)),
        "GET /api/business_groups": pages(len(state.business_groups)),
        "GET /api/account_groups": pages(len(state.account_groups)),
        "POST /api/graphql": pages(len(state.roles)),
    }
    # configure's probes were the catalogs' first pages; what remains beyond the fewest is
    # the newest users' page (unfiltered: flags not known here, the listing's bound and the
    # page size; the pass itself names every known flag) and GraphQL's own read-only token
    # (provisioning mode). The roles end without an empty page: the first one showed the
    # largest role id (GraphQL's page size is undocumented)
    extra = dict(transport.seen - Counter(fewest))
    assert extra == {"GET /api/users": 1, "POST /oauth2/token": 1}
    assert not Counter(fewest) - transport.seen
    plugin.close()


@pytest.mark.parametrize(
    "start",
    [
        0.0,
        # just below 2**16 s, where (t + 60) - t can round to less than 60: the outcome
        # must not hang on where the clock stands (the machine's uptime, for a real one)
        2.0**16 - 30.0,
    ],
)
@pytest.mark.parametrize(("later", "fresh"), [(HEAD_START_TTL_S + 1.0, 1), (1.0, 0)])
def test_a_sync_long_after_configure_reads_the_catalogs_afresh(
    start: float, later: float, fresh: int
) -> None:
    # the plugin's clock is the sync's: no private attribute patched, no real time waited
    virtual = VirtualTime(real=False, start=start)
    sandbox, transport, plugin = counted(120, virtual)
    t = tenant()
    plugin.configure(tenant=t)
    first = dict(transport.seen)
    virtual.sleep(later)  # the sync starts that much later
    resources = list(plugin.discover_resources(tenant=t, request=SyncRequest()) or [])
    assert {(r.type, r.id) for r in resources} == truth_resources(sandbox.state)
    assert transport.seen["GET /api/business_groups"] == first["GET /api/business_groups"] + fresh
    assert transport.seen["GET /api/account_groups"] == first["GET /api/account_groups"] + fresh
    plugin.close()


def test_a_begun_listing_dropped_unread_closes_the_listing() -> None:
    closed: list[bool] = []

    def listing() -> Iterator[int]:
        try:
            yield from range(3)
        finally:
            closed.append(True)

    rows = listing()
    begun = begin(lambda: rows)  # the test keeps its own reference: no refcount closes it
    begun.close()
    assert closed == [True]
    assert list(begun) == []
    assert list(begin(listing)) == [0, 1, 2]
    assert list(begin(lambda: iter(()))) == []


def test_a_failed_catalog_probe_leaves_the_type_on_and_the_sync_reads_it() -> None:
    sandbox = CoupaSandbox(
        generate_tenant(users=60, seed=5), operations=Operations(rate_limit=False)
    )
    inner = SandboxTransport(sandbox)
    failures = [0]

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/business_groups" and failures[0] < 8:
            failures[0] += 1  # every attempt configure makes
            return httpx.Response(503)
        return inner.handle_request(request)

    transport = httpx.MockTransport(flaky)
    plugin = CoupaPlugin(transport_factory=lambda _settings: transport)
    t = tenant()
    status = plugin.configure(tenant=t)
    assert failures[0] == 8, "configure's probe failed after every attempt"
    assert status is not None and "content_group" in status.resource_types
    resources = list(plugin.discover_resources(tenant=t, request=SyncRequest()) or [])
    assert {(r.type, r.id) for r in resources} == truth_resources(sandbox.state)
    plugin.close()


def simulate(workers: int, requests: int = 108, in_flight: int = 3) -> tuple[float, float]:
    """Uncoordinated pacers (nothing shared, Coupa's 25/s bucket holding 20, answers 0.1 s
    after a request leaves, a 429 retried after its one-second Retry-After), in simulated
    time: (share of the bound reached together, share of 429s). Deterministic."""
    rate, capacity, rtt = 25.0, 20.0, 0.1
    pacers = [RateLimiter(24.0, burst=16, clock=lambda: 0.0) for _ in range(workers)]
    left = [requests] * workers
    level = drained_at = end = 0.0
    accepted = rejected = 0
    # (time, worker, what, when the request left): ask for a slot, leave, be answered
    events = [(0.0, i, "ask", 0.0) for i in range(workers) for _ in range(in_flight)]
    heapq.heapify(events)
    while events:
        now, i, what, left_at = heapq.heappop(events)
        pacer = pacers[i]
        if what == "ask":
            pacer._state, leave = pacer._take(pacer._state, now)
            heapq.heappush(events, (leave, i, "leave", leave))
        elif what == "leave":
            if now < pacer._state.hold_until:  # a window opened meanwhile: wait it out
                heapq.heappush(events, (now, i, "ask", now))
                continue
            level = max(0.0, level - (now - drained_at) * rate)
            drained_at = now
            ok = level + 1 <= capacity
            level += ok
            heapq.heappush(events, (now + rtt, i, "ok" if ok else "429", now))
        elif what == "ok":
            accepted += 1
            left[i] -= 1
            end = now
            if left[i] >= in_flight:
                heapq.heappush(events, (now, i, "ask", now))
        else:
            rejected += 1
            pacer._state = pacer._throttle(pacer._state, now, left_at, 1.0)
            heapq.heappush(events, (now + 1.0, i, "ask", now + 1.0))
    return workers * requests / rate / end, rejected / (accepted + rejected)


def test_uncoordinated_pacers_find_the_limit_with_few_429s() -> None:
    for workers in (2, 4):
        share_of_bound, share_429 = simulate(workers)
        assert share_of_bound > 0.8, workers
        # the rules before reacted to the nominal rate and climbed back fast: 4.4 % and 7.7 %
        assert share_429 < 0.035, workers


def test_a_pacer_left_alone_climbs_back_quickly() -> None:
    limiter = RateLimiter(24.0, burst=16, clock=lambda: 0.0)
    state = limiter._state._replace(hold_until=10.0, floor=4.8)  # a fifth of the target
    assert limiter.rate_at(state, 10.0 + 5.0) < 12.0, "slow at first"
    assert limiter.rate_at(state, 10.0 + 20.0) == 24.0, "back at the target within 20 s"


def test_the_pacer_never_holds_a_request_past_its_callers_budget() -> None:
    virtual = VirtualTime(real=False)
    limiter = RateLimiter(10.0, burst=1, clock=virtual.clock, sleep=virtual.sleep)
    limiter.acquire()
    limiter.throttled_by_server(60.0)  # Coupa said: come back in a minute
    with pytest.raises(PacingTimeout, match="deadline"):
        limiter.acquire(max_wait=5.0)
    assert virtual.slept < 5.0, "it did not sit out the hold it could not finish"
    assert limiter.acquire(max_wait=None) >= 55.0, "without a budget it waits as before"
