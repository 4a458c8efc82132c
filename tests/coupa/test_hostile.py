"""The client and the hooks against a hostile server on loopback (real sockets): slow drips,
huge and compressed bodies, deep JSON, malformed headers, redirects and odd statuses all end
in bounded time and memory with a typed error that names the problem.

Deadlines here are small (0.5 to 2 s) and the time assertions generous (several times the
budget), so a loaded machine does not make them flaky; what they catch is a request that
runs on for the whole drip (minutes)."""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coupa_plugin.coupa import (
    ClientConfig,
    CoupaAuthError,
    CoupaClient,
    CoupaHTTPError,
    CoupaResponseError,
    CoupaTransportError,
    Secret,
)
from coupa_plugin.coupa._errors import BodyTooLargeError, CoupaTimeoutError, PagingError
from coupa_plugin.coupa._paging import PageSize, read_all, read_keyset
from coupa_plugin.coupa._transport import (
    deadline,
    inherit_deadline,
    read_body,
    seconds_left,
)
from coupa_plugin.host.errors import PluginError, SyncError
from coupa_plugin.host.model import SyncRequest, Tenant
from coupa_plugin.plugin import CoupaPlugin
from tests.hostile import (
    HostileServer,
    Reply,
    deep_json,
    endless,
    gzip_bomb,
    json_reply,
    token_reply,
)
from tests.kit import VirtualTime

MB = 1024 * 1024
USERS = [{"id": 1, "login": "ann", "active": True}]


def serve(
    api: Callable[[str, str, bytes], Reply], token: Callable[[bytes], Reply] = token_reply
) -> HostileServer:
    def route(method: str, target: str, body: bytes) -> Reply:
        if target.startswith("/oauth2/token"):
            return token(body)
        return api(method, target, body)

    return HostileServer(route)


@pytest.fixture
def make() -> Iterator[Callable[..., CoupaClient]]:
    clients: list[CoupaClient] = []

    def build(server: HostileServer, **config: Any) -> CoupaClient:
        settings: dict[str, Any] = {
            "base_url": server.url,
            "client_id": "c",
            "client_secret": Secret("s"),
            "mode": "read-only",
            "requests_per_second": 10_000.0,
            **config,
        }
        virtual = VirtualTime()
        client = CoupaClient(ClientConfig(**settings), clock=virtual.clock, sleep=virtual.sleep)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


def api_requests(server: HostileServer) -> list[tuple[str, str]]:
    return [r for r in server.requests if not r[1].startswith("/oauth2/")]


# -- time ------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", [True, False], ids=["drip-headers", "drip-body"])
def test_a_dripping_answer_ends_at_the_attempt_deadline(
    make: Callable[..., CoupaClient], head: bool
) -> None:
    drip = Reply(body=endless(b" "), drip_s=0.05, drip_head=head)
    with serve(lambda *_: drip) as server:
        client = make(server, timeout_s=0.5, retry_attempts=2)
        client.connect()
        started = time.monotonic()
        with pytest.raises(CoupaTimeoutError, match=r"timeout_s=0\.5") as caught:
            client.get("/api/users")
        elapsed = time.monotonic() - started
    assert "2 attempts" in str(caught.value)
    assert len(api_requests(server)) == 2
    assert elapsed < 8.0  # 2 x 0.5 s budget; the drip alone would last for ever


def test_the_call_budget_is_enforced_inside_an_attempt(make: Callable[..., CoupaClient]) -> None:
    drip = Reply(body=endless(b" "), drip_s=0.05, drip_head=False)
    with serve(lambda *_: drip) as server:
        client = make(server, timeout_s=600, retry_timeout_s=1.0)
        client.connect()
        started = time.monotonic()
        with pytest.raises(CoupaTimeoutError, match="1 s per call"):
            client.get("/api/users")
        assert time.monotonic() - started < 10.0  # 1 s budget, not 600 s per attempt


def test_a_dripping_token_endpoint_ends_at_the_deadline(
    make: Callable[..., CoupaClient],
) -> None:
    drip = Reply(body=endless(b" "), drip_s=0.05)
    with serve(lambda *_: json_reply([]), token=lambda _: drip) as server:
        client = make(server, timeout_s=0.5, retry_timeout_s=1.5)
        started = time.monotonic()
        with pytest.raises(CoupaTransportError, match="time budget"):
            client.connect()
        assert time.monotonic() - started < 10.0


# -- memory ----------------------------------------------------------------------------------


def peak_bytes(action: Callable[[], object]) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    error = None
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - returned for the caller to judge
        error = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, error


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_a_huge_body_stops_at_the_limit_without_being_held(
    make: Callable[..., CoupaClient], declared: bool
) -> None:
    total = 64 * MB
    body: Any = endless(b"a" * 65536, total)
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    if declared:
        headers += (("Content-Length", str(total)),)
    with serve(lambda *_: Reply(headers=headers, body=body)) as server:
        client = make(server, max_body_bytes=1 * MB)
        client.connect()
        peak, error = peak_bytes(lambda: client.get("/api/users"))
    assert isinstance(error, BodyTooLargeError), error
    assert "1,048,576 bytes" in str(error)
    assert peak < 8 * MB, peak  # the body is 64 MB
    assert len(api_requests(server)) == 1  # the same answer next time: not retried


def test_a_huge_401_is_not_read_whole_by_the_auth_flow(make: Callable[..., CoupaClient]) -> None:
    body = endless(b"a" * 65536, 64 * MB)
    with serve(lambda *_: Reply(status=401, body=body)) as server:
        client = make(server, max_body_bytes=1 * MB)
        client.connect()
        peak, error = peak_bytes(lambda: client.get("/api/users"))
    assert isinstance(error, BodyTooLargeError), error
    assert peak < 8 * MB, peak


def test_a_gzip_bomb_stops_at_the_decompressed_limit(make: Callable[..., CoupaClient]) -> None:
    bomb = gzip_bomb(64 * MB)
    assert len(bomb) < MB
    headers = (("Content-Type", "application/json"), ("Content-Encoding", "gzip"))
    with serve(lambda *_: Reply(headers=headers, body=bomb)) as server:
        client = make(server, max_body_bytes=2 * MB)
        client.connect()
        peak, error = peak_bytes(lambda: client.get("/api/users"))
    assert isinstance(error, BodyTooLargeError), error
    assert peak < 10 * MB, peak


def test_a_compressed_answer_within_the_limit_is_read(make: Callable[..., CoupaClient]) -> None:
    body = gzip.compress(orjson.dumps(USERS))
    headers = (("Content-Type", "application/json"), ("Content-Encoding", "gzip"))
    with serve(lambda *_: Reply(headers=headers, body=body)) as server:
        client = make(server)
        assert client.get("/api/users") == USERS


def test_an_encoding_not_asked_for_is_refused(make: Callable[..., CoupaClient]) -> None:
    headers = (("Content-Type", "application/json"), ("Content-Encoding", "br"))
    with serve(lambda *_: Reply(headers=headers, body=b"\x00\x01")) as server:
        client = make(server)
        with pytest.raises(CoupaResponseError, match="content encoding"):
            client.get("/api/users")


def test_a_huge_token_is_refused(make: Callable[..., CoupaClient]) -> None:
    def giant(_: bytes) -> Reply:
        return json_reply({"access_token": "a" * (20 * MB), "expires_in": 3600})

    with serve(lambda *_: json_reply([]), token=giant) as server:
        client = make(server)
        with pytest.raises(BodyTooLargeError):
            client.connect()

    def long(_: bytes) -> Reply:
        return json_reply({"access_token": "a" * 20_000, "expires_in": 3600})

    with serve(lambda *_: json_reply([]), token=long) as server:
        client = make(server)
        with pytest.raises(CoupaResponseError, match="20,000 characters"):
            client.connect()
        assert api_requests(server) == []  # never sent as a header


# -- shapes and statuses ---------------------------------------------------------------------


def test_deep_json_is_a_typed_error_everywhere(make: Callable[..., CoupaClient]) -> None:
    deep = deep_json(100_000)
    with (
        serve(lambda *_: Reply(status=400, body=deep)) as server,
        pytest.raises(CoupaHTTPError, match="HTTP 400"),
    ):
        make(server).get("/api/users")
    with (
        serve(lambda *_: Reply(body=deep), token=lambda _: Reply(body=deep)) as server,
        pytest.raises(CoupaResponseError, match="not a token response"),
    ):
        make(server).connect()
    # nesting orjson accepts but ``repr`` would not survive
    errors = b'{"errors": {"login": [' + deep_json(900) + b"]}}"
    with (
        serve(lambda *_: Reply(status=422, body=errors)) as server,
        pytest.raises(CoupaHTTPError, match="login: <list>"),
    ):
        make(server).get("/api/users")


def test_a_redirect_is_an_error_not_an_empty_success(make: Callable[..., CoupaClient]) -> None:
    reply = json_reply([], status=302, Location="https://elsewhere.example/api/users")
    with serve(lambda *_: reply) as server:
        client = make(server)
        with pytest.raises(CoupaHTTPError, match="redirect"):
            client.get("/api/users")
        assert len(api_requests(server)) == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(headers=(("Content-Type", "text/html"),), body=b"<html>Login</html>"),
        Reply(headers=(("Content-Type", "application/xml"),), body=b"<users/>"),
        Reply(head=b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n"),
    ],
    ids=["html", "xml", "bad-header"],
)
def test_answers_that_cannot_change_are_not_retried(
    make: Callable[..., CoupaClient], reply: Reply
) -> None:
    with serve(lambda *_: reply) as server:
        client = make(server)
        with pytest.raises(CoupaResponseError):
            client.get("/api/users")
        assert len(api_requests(server)) == 1


def test_retry_after_nan_is_ignored(make: Callable[..., CoupaClient]) -> None:
    answers = iter([json_reply([], status=429, **{"Retry-After": "nan"})])

    def api(*_: Any) -> Reply:
        return next(answers, json_reply(USERS))

    with serve(api) as server:
        assert make(server).get("/api/users") == USERS


def test_token_endpoint_throttling_is_retried_and_named(
    make: Callable[..., CoupaClient],
) -> None:
    throttled = iter([Reply(status=429, body=b"slow down"), Reply(status=503, body=b"busy")])

    def token(form: bytes) -> Reply:
        return next(throttled, None) or token_reply(form)

    with serve(lambda *_: json_reply(USERS), token=token) as server:
        assert make(server).get("/api/users") == USERS

    with serve(lambda *_: json_reply(USERS), token=lambda _: Reply(status=429)) as server:
        with pytest.raises(CoupaHTTPError, match=r"HTTP 429.*after 4 attempts") as caught:
            make(server).connect()
        assert not isinstance(caught.value, CoupaAuthError)
        assert len(server.requests) == 4


def test_a_tiny_token_lifetime_is_clamped(make: Callable[..., CoupaClient]) -> None:
    with serve(
        lambda *_: json_reply(USERS), token=lambda form: token_reply(form, expires_in=1e-9)
    ) as server:
        client = make(server)
        for _ in range(3):
            client.get("/api/users")
        assert client.tokens.minted == 1


# -- hooks -----------------------------------------------------------------------------------


def hostile_tenant(server: HostileServer, **settings: Any) -> Tenant:
    section = {
        "base_url": server.url,
        "allow_insecure_base_url": True,
        "client_id": "c",
        "client_secret": "s",
        "mode": "read-only",
        "requests_per_second": 10_000,
        **settings,
    }
    return Tenant(id="hostile", plugins={"coupa": section})


@pytest.mark.parametrize(
    "refusal",
    [
        Reply(status=500, body=b"oops"),
        Reply(status=400, body=b"bad"),
        Reply(headers=(("Content-Type", "text/html"),), body=b"<html>hi</html>"),
        Reply(head=b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"),
    ],
    ids=["500", "400", "html", "dropped"],
)
def test_configure_probe_failures_are_plugin_errors(refusal: Reply) -> None:
    def api(method: str, target: str, body: bytes) -> Reply:
        if target.startswith(("/api/business_groups", "/api/account_groups")):
            return refusal
        if target.startswith("/api/graphql"):
            return json_reply({"data": {"roles": []}})
        return json_reply([])

    plugin = CoupaPlugin()
    with serve(api) as server:
        t = hostile_tenant(server, timeout_s=1)
        try:
            # a probe failing for another reason than a refusal does not fail configure: the
            # sync reads that listing afresh, and fails typed when the server still fails
            assert plugin.configure(tenant=t) is not None
            with pytest.raises(PluginError, match="business_groups"):
                list(plugin.discover_resources(tenant=t, request=SyncRequest()) or [])
        finally:
            plugin.close()


def test_discover_resources_ends_when_the_server_drips() -> None:
    drip = Reply(body=endless(b" "), drip_s=0.05, drip_head=False)

    def api(method: str, target: str, body: bytes) -> Reply:
        if target.startswith("/api/users"):
            return drip
        if target.startswith("/api/graphql"):
            return json_reply({"data": {"roles": []}})
        return json_reply([])

    plugin = CoupaPlugin()
    with serve(api) as server:
        tenant = hostile_tenant(server, timeout_s=0.2, resource_types=["user"])
        try:
            started = time.monotonic()
            with pytest.raises(SyncError, match="time budget"):
                list(plugin.discover_resources(tenant=tenant, request=SyncRequest()) or [])
            # 8 attempts of 0.2 s; the drip itself would never end
            assert time.monotonic() - started < 30.0
        finally:
            plugin.close()


def test_configure_ends_within_its_budget_when_everything_drips() -> None:
    drip = Reply(body=endless(b" "), drip_s=0.05)
    plugin = CoupaPlugin(sleep=lambda _: None)
    with HostileServer(lambda *_: drip) as server:
        try:
            started = time.monotonic()
            with pytest.raises(PluginError, match="time budget"):
                plugin.configure(tenant=hostile_tenant(server, timeout_s=0.5))
            # 4 token attempts of 0.5 s; the drip would never end
            assert time.monotonic() - started < 20.0
        finally:
            plugin.close()


def test_a_huge_user_listing_costs_no_more_than_the_limit_in_a_hook() -> None:
    huge = Reply(body=endless(b'[{"id": 1, "login": "' + b"a" * 65536, 64 * MB))

    def api(method: str, target: str, body: bytes) -> Reply:
        if target.startswith("/api/users"):
            return huge
        if target.startswith("/api/graphql"):
            return json_reply({"data": {"roles": []}})
        return json_reply([])

    plugin = CoupaPlugin(sleep=lambda _: None)
    with serve(api) as server:
        tenant = hostile_tenant(server, max_response_mb=1, resource_types=["user"])
        try:
            plugin.configure(tenant=tenant)
            peak, error = peak_bytes(
                lambda: list(plugin.discover_resources(tenant=tenant, request=SyncRequest()) or [])
            )
        finally:
            plugin.close()
    assert isinstance(error, SyncError), error
    assert "max_response_mb" in str(error)
    assert peak < 10 * MB, peak  # the answer is 64 MB


class Chunks(httpx.SyncByteStream):
    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data, self.sizes = data, sizes

    def __iter__(self) -> Iterator[bytes]:
        at, sizes = 0, iter(self.sizes)
        while at < len(self.data):
            step = next(sizes, 4096)
            yield self.data[at : at + step]
            at += step


@settings(max_examples=150)
@given(
    data=st.binary(max_size=4096) | st.builds(bytes, st.integers(0, 300_000)),
    encoding=st.sampled_from(["", "identity", "gzip", "deflate"]),
    limit=st.integers(min_value=1, max_value=200_000),
    sizes=st.lists(st.integers(min_value=1, max_value=70_000), max_size=8),
)
def test_read_body_returns_the_body_or_stops_at_the_limit(
    data: bytes, encoding: str, limit: int, sizes: list[int]
) -> None:
    sent = data
    if encoding == "gzip":
        sent = gzip.compress(data)
    elif encoding == "deflate":
        sent = zlib.compress(data)
    headers = {"Content-Encoding": encoding} if encoding else {}
    response = httpx.Response(200, headers=headers, stream=Chunks(sent, sizes))
    if len(sent) > limit or len(data) > limit:
        with pytest.raises(BodyTooLargeError, match=f"{limit:,} bytes"):
            read_body(response, limit, "GET /x")
    else:
        assert read_body(response, limit, "GET /x") == data


def test_an_excerpt_scrubs_only_the_head_of_a_crafted_body(monkeypatch: pytest.MonkeyPatch) -> None:
    # scrubbing is regex work that grows faster than the text: it must never see a whole body
    import coupa_plugin.coupa._errors as errors

    seen: list[int] = []
    real = errors.scrub

    def recording(text: str) -> str:
        seen.append(len(text))
        return real(text)

    monkeypatch.setattr(errors, "scrub", recording)
    text = errors.excerpt(b"eyJ" * 1_000_000)
    assert text.endswith("…") and len(text) <= 201
    assert seen and max(seen) <= 200 * 4 + 8_192
    assert errors.excerpt("x eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefghijk y") == (
        "x [redacted-jwt] y"
    )


def test_a_pool_thread_inherits_the_callers_deadline() -> None:
    assert inherit_deadline(seconds_left)() is None, "no deadline: nothing to inherit"
    with deadline(30.0), ThreadPoolExecutor(1) as pool:
        inherited = pool.submit(inherit_deadline(seconds_left)).result()
        alone = pool.submit(seconds_left).result()
    assert inherited is not None and 0 < inherited <= 30.0
    assert alone is None, "a pool thread has no deadline of its own"


def test_a_keyset_listing_stops_at_its_row_limit() -> None:
    def endless(cursor: int) -> list[dict[str, Any]]:
        return [{"id": cursor + i} for i in range(1, 1_001)]

    with pytest.raises(PagingError, match="more than 2500 rows"):
        list(read_keyset(endless, what="roles", max_rows=2_500))


@pytest.mark.parametrize("ident", [[1], {"id": 1}, True])
def test_a_listing_row_with_an_id_of_the_wrong_type_is_named(
    make: Callable[..., CoupaClient], ident: object
) -> None:
    def api(method: str, target: str, body: bytes) -> Reply:
        return json_reply([{"id": ident, "login": "x"}] if "offset=0" in target else [])

    with serve(api) as server, pytest.raises(PagingError, match="id is"):
        list(make(server).users())


def test_a_token_that_is_not_a_bearer_token_is_refused(make: Callable[..., CoupaClient]) -> None:
    def token(form: bytes) -> Reply:
        return json_reply({"access_token": "abc", "token_type": "mac", "expires_in": 3600})

    with (
        serve(lambda *_: json_reply(USERS), token=token) as server,
        pytest.raises(CoupaResponseError, match="not a bearer token"),
    ):
        make(server).connect()


def test_pages_read_ahead_in_a_pool_keep_the_callers_deadline() -> None:
    seen: list[float | None] = []

    def fetch(offset: int, limit: int) -> list[dict[str, Any]]:
        seen.append(seconds_left())
        return [{"id": offset + i + 1} for i in range(limit)] if offset < 200 else []

    with deadline(30.0), ThreadPoolExecutor(4) as pool:
        seen_size = PageSize(served_in_full=50)  # read ahead from the first page on
        rows = list(read_all(fetch, pool, limit=50, in_flight=4, page_size=seen_size))
    assert len(rows) == 200 and len(seen) > 4
    assert all(left is not None and left <= 30.0 for left in seen), seen


def test_a_token_padded_past_its_limit_is_refused(make: Callable[..., CoupaClient]) -> None:
    def token(form: bytes) -> Reply:
        return json_reply({"access_token": "a" + "=" * 1_000_000, "expires_in": 3600})

    with (
        serve(lambda *_: json_reply(USERS), token=token) as server,
        pytest.raises(CoupaResponseError, match="no usable access_token"),
    ):
        make(server).connect()


def test_a_catalog_listing_stops_at_its_row_limit(
    make: Callable[..., CoupaClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    import coupa_plugin.coupa._client as client_module

    monkeypatch.setattr(client_module, "MAX_CATALOG_ROWS", 500)  # 200,000 in production

    def api(method: str, target: str, body: bytes) -> Reply:
        offset = int(target.split("offset=")[1].split("&")[0]) if "offset=" in target else 0
        return json_reply([{"id": offset + i + 1, "name": "g"} for i in range(50)])

    with serve(api) as server, pytest.raises(PagingError, match="more than 500 rows"):
        for _ in make(server).user_groups():
            pass
