"""Every hook against random server answers and random contract inputs.

A server here is the sandbox with hostile answers mixed in (wrong types, odd statuses, HTML,
deep JSON, compressed and oversized bodies, dropped connections, odd ``Retry-After``); the
host's inputs are random too (wrong types, ambiguous ids). Whatever happens: only PluginError
subclasses leave a hook, each hook ends within its request budget, and input the plugin
refuses sends no request at all."""

from __future__ import annotations

import gzip
import itertools
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

import attrs
import httpx
import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from coupa_plugin.connector._inputs import check_sync_request
from coupa_plugin.connector._provisioning.command import check_request
from coupa_plugin.connector._settings import parse_settings
from coupa_plugin.host.errors import PluginError, ProvisioningError
from coupa_plugin.host.model import ProvisionRequest, SyncRequest, Tenant
from coupa_plugin.plugin import CoupaPlugin
from coupa_plugin.sandbox import CoupaSandbox, Operations, generate_tenant
from coupa_plugin.sandbox._server import SandboxTransport
from tests.hostile import deep_json
from tests.kit import plugin_for, tenant

# Requests a hook may make against a hostile server: retries included, far below anything
# that would take real time; a hook that loops on an answer blows through it.
REQUEST_BUDGET = 3_000
MAX_BODY = 64 * 1024  # the tenants below accept at most this (max_response_mb)
HUGE_BODY = 16 * 1024 * 1024


@attrs.frozen
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    drop: type[httpx.TransportError] | None = None
    huge: bool = False  # HUGE_BODY bytes, generated while they are read


KEYS = [
    "id", "login", "active", "name", "email", "errors", "data", "roles", "user-groups",
    "content-groups", "access_token", "expires_in", "scope", "error", "expense-user",
    "evil:role:3-user", "updated-at", "can-approve", "description", "user-id", "user-group-id",
]  # fmt: skip
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["false", "5", "05", "\u0665", "2024-01-01T00:00:00Z", "<html>"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=6)
    ),
    max_leaves=24,
)


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    kind = draw(st.sampled_from(["json", "json", "json", "raw", "gzip", "huge", "drop"]))
    status = draw(
        st.sampled_from([200, 200, 200, 201, 204, 301, 302, 400, 401, 403, 404, 422, 429, 500, 503])
    )
    headers: list[tuple[str, str]] = [
        ("Content-Type", draw(st.sampled_from(["application/json", "text/html", "text/plain"])))
    ]
    if draw(st.booleans()):
        retry_after = ["nan", "inf", "-1", "1e308", "soon", "0", "Wed, 21 Oct 2015 07:28:00 GMT"]
        headers.append(("Retry-After", draw(st.sampled_from(retry_after))))
    if kind == "drop":
        error = draw(st.sampled_from([httpx.RemoteProtocolError, httpx.ReadTimeout]))
        return Answer(status, (), b"", error)
    if kind == "raw":
        body = draw(
            st.sampled_from(
                [
                    b"",
                    b"<html>x</html>",
                    deep_json(5_000),
                    b"\xff\xfe",
                    b"[1,",
                    b'[{"id": 1180591620717411303424, "login": "big"}]',
                    b'{"id": 18446744073709551616, "login": "big"}',
                ]
            )
        )
    elif kind == "huge":
        return Answer(status, tuple(headers), b"", huge=True)
    else:
        body = orjson.dumps(draw(json_values))
    if kind == "gzip":
        body = gzip.compress(body)
        headers.append(("Content-Encoding", "gzip"))
    return Answer(status, tuple(headers), body)


class MixedServer(httpx.BaseTransport):
    """The sandbox, with a scripted share of its answers replaced by hostile ones."""

    def __init__(self, sandbox: CoupaSandbox, script: list[Answer | None]) -> None:
        self.real = SandboxTransport(sandbox)
        self.script = itertools.chain(script, itertools.cycle(script[-24:]))
        self.lock = threading.Lock()
        self.requests = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests += 1
            answer = next(self.script)
        if answer is None:
            return self.real.handle_request(request)
        if answer.drop is not None:
            raise answer.drop("hostile", request=request)
        stream = Endless() if answer.huge else httpx.ByteStream(answer.body)
        return httpx.Response(
            answer.status, headers=list(answer.headers), stream=stream, request=request
        )


class Endless(httpx.SyncByteStream):
    """A body of HUGE_BODY bytes that never exists as a whole."""

    def __iter__(self) -> Iterator[bytes]:
        piece = b"[" + b" " * 65_535
        for _ in range(HUGE_BODY // len(piece)):
            yield piece


def small_sandbox() -> CoupaSandbox:
    return CoupaSandbox(generate_tenant(users=6, seed=3), operations=Operations(rate_limit=False))


def hostile_plugin(transport: httpx.BaseTransport) -> CoupaPlugin:
    return CoupaPlugin(transport_factory=lambda _: transport, sleep=lambda _: None)


def drain(call: Callable[[], Any]) -> str:
    """Run a hook to the end (streams included); PluginErrors are fine, nothing else is.
    Returns how it ended, for the statistics."""
    items = 0
    try:
        result = call()
        if result is not None and not attrs.has(type(result)):
            for _ in result:
                items += 1
    except PluginError as exc:
        return f"{type(exc).__name__} after {min(items, 1)}+ items"
    return f"completed with {min(items, 1)}+ items"


ids = st.sampled_from(["1", "2", "3", "05", "\u0665", "\uff15", "²", "1" * 19, "", "x"]) | st.text(
    max_size=4
)
entitlements = st.sampled_from(
    [
        "role:2:member",
        "role:3:member",
        "group:1:member",
        "content_group:1:member",
        "account_group:1:member",
        "approval_group:1:member",
        "license:expense-user:assigned",
        "license:evil:role:3-user:assigned",
        "role:\u0661:member",
        "role:05:member",
        "license:api-user:assigned",
    ]
) | st.text(max_size=12)
# values of every wrong type a host might send: typed Any, since passing them is the point
junk: st.SearchStrategy[Any] = (
    st.none() | st.integers() | st.lists(st.text(max_size=3), max_size=2) | st.floats()
)


@st.composite
def provision_requests(draw: st.DrawFn) -> ProvisionRequest:
    actions = ["grant", "revoke", "create_account", "update_account", "enable_account"]
    attributes = st.dictionaries(
        st.sampled_from(["login", "email", "firstname", "lastname", "entitlements", "manager"]),
        st.text(max_size=6) | st.lists(entitlements, max_size=2) | junk,
        max_size=4,
    )
    return ProvisionRequest(
        action=draw(st.sampled_from([*actions, "disable_account"]) | junk),
        entitlement_id=draw(st.none() | entitlements | junk),
        principal_id=draw(st.none() | ids | junk),
        attributes=draw(attributes | junk),
        dry_run=draw(st.booleans() | junk),
    )


well_formed = st.one_of(
    st.builds(
        ProvisionRequest,
        action=st.sampled_from(["grant", "revoke"]),
        entitlement_id=st.sampled_from(
            [
                "role:2:member",
                "role:3:member",
                "group:1:member",
                "group:2:member",
                "content_group:1:member",
                "account_group:1:member",
                "approval_group:1:member",
                "license:expense-user:assigned",
            ]
        ),
        principal_id=st.sampled_from(["1", "2", "3", "4"]),
        dry_run=st.booleans(),
    ),
    st.builds(
        ProvisionRequest,
        action=st.sampled_from(["enable_account", "disable_account"]),
        principal_id=st.sampled_from(["1", "2", "3"]),
    ),
    st.builds(
        ProvisionRequest,
        action=st.just("update_account"),
        principal_id=st.sampled_from(["1", "2"]),
        attributes=st.fixed_dictionaries({"email": st.sampled_from(["a@x.com", "b@x.com"])}),
    ),
    st.builds(
        ProvisionRequest,
        action=st.just("create_account"),
        attributes=st.fixed_dictionaries(
            {
                "login": st.sampled_from(["newbie", "other"]),
                "email": st.just("n@x.com"),
                "firstname": st.just("N"),
                "lastname": st.just("B"),
                "entitlements": st.lists(
                    st.sampled_from(["role:3:member", "group:1:member"]), max_size=2
                ),
            }
        ),
    ),
)


@st.composite
def sync_requests(draw: st.DrawFn) -> SyncRequest:
    types = st.frozensets(st.sampled_from(["user", "group", "role", "license", "nope"]))
    return SyncRequest(
        resource_types=draw(
            st.none() | types | junk | st.text(max_size=4).map(lambda s: cast(Any, s))
        ),
        since=draw(st.none() | st.just(datetime(2020, 1, 1, tzinfo=UTC)) | junk),
        principal_ids=draw(st.none() | st.frozensets(ids, max_size=3) | junk),
    )


@settings(max_examples=60)
@given(
    sane_first=st.integers(min_value=0, max_value=12),
    script=st.lists(st.one_of(st.none(), st.none(), answers()), min_size=1, max_size=24),
    provision=well_formed | provision_requests(),
    sync=st.just(SyncRequest()) | sync_requests(),
)
def test_only_plugin_errors_leave_the_hooks_and_each_ends_in_budget(
    sane_first: int, script: list[Answer | None], provision: ProvisionRequest, sync: SyncRequest
) -> None:
    # the first requests get sane answers, so later stages (listings, writes) meet the
    # hostile ones too
    sane: list[Answer | None] = [None] * sane_first
    server = MixedServer(small_sandbox(), sane + script)
    plugin = hostile_plugin(server)
    t = tenant(max_response_mb=MAX_BODY / 1024 / 1024, timeout_s=1)
    try:
        for name, hook in (
            ("configure", lambda: plugin.configure(tenant=t)),
            ("discover", lambda: plugin.discover_resources(tenant=t, request=sync)),
            ("grants", lambda: plugin.sync_grants(tenant=t, request=sync)),
            ("provision", lambda: plugin.provision(tenant=t, request=provision)),
        ):
            before, started = server.requests, time.monotonic()
            tracemalloc.start()
            try:
                event(f"{name}: {drain(hook)}")
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert server.requests - before < REQUEST_BUDGET
            assert time.monotonic() - started < 60.0  # milliseconds in practice
            assert peak < HUGE_BODY // 4  # a 16 MB answer is never held
    finally:
        plugin.close()


def refused(check: Callable[[], object]) -> bool:
    try:
        check()
    except PluginError:
        return True
    return False


@settings(max_examples=80)
@given(provision=provision_requests(), sync=sync_requests())
def test_refused_input_sends_no_request(provision: ProvisionRequest, sync: SyncRequest) -> None:
    server = MixedServer(small_sandbox(), [None])
    plugin = hostile_plugin(server)
    t = tenant()
    try:
        if refused(lambda: check_request(provision)):
            with pytest.raises(PluginError):
                plugin.provision(tenant=t, request=provision)
            assert server.requests == 0
        for hook in (plugin.discover_resources, plugin.sync_grants):
            if refused(lambda: check_sync_request(sync, "hook")):
                with pytest.raises(PluginError):
                    drain_strict(hook(tenant=t, request=sync))
                assert server.requests == 0
    finally:
        plugin.close()


def drain_strict(result: Any) -> None:
    for _ in result or ():
        pass


settings_values = st.one_of(
    junk,
    st.text(max_size=8),
    st.sampled_from(
        [
            1e-300,
            1e-6,
            float("nan"),
            float("inf"),
            "~nosuchuser/x",
            "http://[::1",
            "/nonexistent-dir/rl.sqlite",
            "/",
            True,
        ]
    ),
)


@settings(max_examples=80)
@given(
    changes=st.dictionaries(
        st.sampled_from(
            [
                "base_url",
                "requests_per_second",
                "timeout_s",
                "max_in_flight",
                "shared_rate_limit_file",
                "state_dir",
                "max_response_mb",
                "resource_types",
                "mode",
            ]
        ),
        settings_values,
        min_size=1,
        max_size=3,
    )
)
def test_refused_settings_send_no_request(changes: dict[str, Any]) -> None:
    t = tenant(**changes)
    section = t.plugins["coupa"]
    if not refused(lambda: parse_settings(section)):
        return
    server = MixedServer(small_sandbox(), [None])
    plugin = hostile_plugin(server)
    try:
        for hook in (
            lambda: plugin.configure(tenant=t),
            lambda: plugin.discover_resources(tenant=t, request=SyncRequest()),
            lambda: plugin.provision(
                tenant=t, request=ProvisionRequest(action="enable_account", principal_id="1")
            ),
        ):
            with pytest.raises(PluginError):
                hook()
        assert server.requests == 0
    finally:
        plugin.close()


def test_a_tenant_with_an_odd_plugins_mapping_is_a_configuration_error() -> None:
    plugin = hostile_plugin(MixedServer(small_sandbox(), [None]))
    odd = Tenant(id="odd", plugins=["coupa"])  # type: ignore[arg-type]
    with pytest.raises(PluginError, match=r"tenant\.plugins"):
        plugin.configure(tenant=odd)


def test_reconfiguring_while_a_sync_streams_does_not_break_it() -> None:
    sandbox = small_sandbox()
    plugin = hostile_plugin(SandboxTransport(sandbox))
    first = tenant()
    try:
        stream: Iterator[Any] = iter(
            plugin.discover_resources(tenant=first, request=SyncRequest()) or []
        )
        seen = [next(stream)]
        plugin.configure(tenant=tenant(timeout_s=5))  # new settings: a new connector
        seen += list(stream)
        assert sum(1 for r in seen if r.type == "user") == len(sandbox.state.users)
    finally:
        plugin.close()


@pytest.mark.parametrize(
    "granted", [["role:2:member"] * 2, [f"group:{i}:member" for i in range(1, 1_002)]]
)
def test_create_account_refuses_repeated_or_too_many_entitlements(granted: list[str]) -> None:
    sandbox = small_sandbox()
    plugin = plugin_for(sandbox)
    attributes = {"login": "n", "email": "n@x.example", "firstname": "N", "lastname": "N"}
    with pytest.raises(ProvisioningError, match="distinct entitlement ids"):
        plugin.provision(
            tenant=tenant(),
            request=ProvisionRequest(
                action="create_account", attributes={**attributes, "entitlements": granted}
            ),
        )
    assert sandbox.writes == 0


@pytest.mark.parametrize(
    ("value", "why"),
    [("x\ud800y", "lone surrogate"), ("Nia \x1b]0;PWNED\x07", r"U\+001B"), ("a\x00b", r"U\+0000")],
)
def test_text_coupa_cannot_hold_is_refused_before_any_request(value: str, why: str) -> None:
    sandbox = small_sandbox()
    with pytest.raises(ProvisioningError, match=why):
        plugin_for(sandbox).provision(
            tenant=tenant(),
            request=ProvisionRequest(
                action="update_account", principal_id="3", attributes={"lastname": value}
            ),
        )
    assert not sandbox.log, "no request was sent"


@pytest.mark.parametrize("value", [12345, True])
def test_a_text_attribute_given_a_number_is_refused_before_any_write(value: object) -> None:
    sandbox = small_sandbox()
    with pytest.raises(ProvisioningError, match="employee_number: expected a string"):
        plugin_for(sandbox).provision(
            tenant=tenant(),
            request=ProvisionRequest(
                action="update_account", principal_id="3", attributes={"employee_number": value}
            ),
        )
    assert sandbox.writes == 0
