"""Keeping the rate limit busy: no pages past a known end, catalogs in the background while
users stream (stopped when the host abandons the stream), configure's probes at once."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from coupa_plugin.coupa.paging import PageSize, read_all
from coupa_plugin.host.model import SyncRequest
from coupa_plugin.plugin import CoupaPlugin
from coupa_plugin.sandbox import CoupaSandbox, Operations, generate_tenant
from coupa_plugin.sandbox.server import SandboxTransport
from tests.kit import tenant, truth_resources


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
    # the other catalogs do not wait for the held one (configure probed each once before)
    assert gate.wait_for("/api/business_groups", 2)
    assert gate.wait_for("/api/account_groups", 2)
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
            and request.url.params.get("limit") == "1"
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
