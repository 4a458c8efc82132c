"""Tenant settings: every bad input is a ConfigurationError naming the key."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupa_plugin.connector._settings import (
    RESOURCE_TYPES,
    parse_base_url,
    parse_domain,
    parse_settings,
)
from coupa_plugin.coupa import Secret
from coupa_plugin.host.errors import ConfigurationError
from coupa_plugin.sandbox import CoupaSandbox, Operations, generate_tenant
from tests.kit import plugin_for, tenant

SECRET = "super-secret-value-123"
GOOD = {"domain": "acme.coupahost.com", "client_id": "cid", "client_secret": SECRET}


@pytest.mark.parametrize(
    ("given_domain", "expected"),
    [
        ("acme.coupahost.com", "https://acme.coupahost.com"),
        ("ACME.CoupaHost.COM", "https://acme.coupahost.com"),
        ("https://acme.coupahost.com", "https://acme.coupahost.com"),
        ("HTTPS://acme.coupacloud.com/", "https://acme.coupacloud.com"),
        ("https://acme-test.coupahost.com/user/home?x=1#top", "https://acme-test.coupahost.com"),
        ("  acme.coupacloud.com/  ", "https://acme.coupacloud.com"),
        ("a1.coupahost.com", "https://a1.coupahost.com"),
    ],
)
def test_good_domains(given_domain: str, expected: str) -> None:
    assert parse_domain(given_domain) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "coupahost.com",
        "acme.example.com",
        "http://acme.coupahost.com",
        "ftp://acme.coupahost.com",
        "acme.coupahost.com:443",
        "https://acme.coupahost.com:8443",
        "acme.coupahost.com@evil.com",
        "https://user:pw@acme.coupahost.com",
        "acme.coupahost.com.evil.com",
        "evil.com/acme.coupahost.com",
        "acme.coupahost.co",
        "127.0.0.1",
        "[::1]",
        "https://10.0.0.1/",
        "a.b.coupahost.com",
        "-acme.coupahost.com",
        "acme-.coupahost.com",
        "acme.coupahost.com.",
        "acme\\@evil.coupahost.com",
        "acme.coupahost.com\\@evil.com",
        "acmé.coupahost.com",
        "acme%2ecoupahost.com",
        "javascript://acme.coupahost.com",
        "//acme.coupahost.com",
    ],
)
def test_bad_domains_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="domain"):
        parse_domain(bad)


_label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
_suffix = st.sampled_from(["coupahost.com", "coupacloud.com"])


@given(
    label=_label,
    suffix=_suffix,
    https=st.booleans(),
    upper=st.booleans(),
    tail=st.sampled_from(["", "/", "/some/path", "/?q=1", "#frag"]),
)
def test_generated_valid_hosts_are_accepted(
    label: str, suffix: str, https: bool, upper: bool, tail: str
) -> None:
    host = f"{label}.{suffix}"
    text = ("https://" if https else "") + (host.upper() if upper else host) + tail
    assert parse_domain(text) == f"https://{host}"


@given(
    label=_label,
    suffix=_suffix,
    trick=st.sampled_from(
        [
            "{h}.evil.com",
            "{h}@evil.com",
            "evil.com@{h}",
            "{h}:443",
            "http://{h}",
            "{h}.",
            "x.{h}",
            "{h}evil.com",
            "{h}:80/",
            "{h}%40evil.com",
            "{h} evil.com",
            "{h}\\evil.com",
        ]
    ),
)
def test_generated_tricks_are_refused(label: str, suffix: str, trick: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_domain(trick.format(h=f"{label}.{suffix}"))


@given(st.ip_addresses())
def test_ip_literals_are_refused(ip: Any) -> None:
    text = f"[{ip}]" if ip.version == 6 else str(ip)
    with pytest.raises(ConfigurationError):
        parse_domain(text)


@given(st.text(max_size=60))
def test_arbitrary_text_is_accepted_only_as_a_coupa_host(text: str) -> None:
    try:
        result = parse_domain(text)
    except ConfigurationError:
        return
    assert result.startswith("https://")
    assert result.endswith((".coupahost.com", ".coupacloud.com"))


def test_minimal_settings_and_defaults() -> None:
    s = parse_settings(GOOD)
    assert s.base_url == "https://acme.coupahost.com"
    assert s.mode == "auto" and s.enabled and not s.insecure
    assert s.resource_types == frozenset(RESOURCE_TYPES)
    assert s.client_secret.reveal() == SECRET


@pytest.mark.parametrize(
    ("extra", "rate"),
    [
        ({}, 24.0),  # alone: a margin below Coupa's 25/s
        ({"shared_rate_limit_file": "/tmp/pace.sqlite"}, 25.0),  # the instance's whole budget
        ({"shared_state": "redis://localhost:6379/0"}, 25.0),
        ({"shared_state": "redis://localhost:6379/0", "requests_per_second": 20}, 20.0),
        ({"requests_per_second": 10}, 10.0),
    ],
)
def test_a_shared_pacer_defaults_to_the_instances_whole_budget(
    extra: dict[str, Any], rate: float
) -> None:
    assert parse_settings({**GOOD, **extra}).requests_per_second == rate


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"colour": "blue"}, "colour"),
        ({"client_id": None}, "client_id"),
        ({"client_id": ""}, "client_id"),
        ({"client_secret": 5}, "client_secret"),
        ({"mode": "write"}, "mode"),
        ({"requests_per_second": "fast"}, "requests_per_second"),
        ({"requests_per_second": 0}, "requests_per_second"),
        ({"max_in_flight": 1.5}, "max_in_flight"),
        ({"max_in_flight": True}, "max_in_flight"),
        ({"timeout_s": -1}, "timeout_s"),
        ({"resource_types": "user"}, "resource_types"),
        ({"resource_types": ["user", "printer"]}, "resource_types"),
        ({"protected_logins": [1]}, "protected_logins"),
        ({"enabled": "yes"}, "enabled"),
        ({"base_url": "http://127.0.0.1:8080"}, "base_url"),
        ({"allow_insecure_base_url": True}, "allow_insecure_base_url"),
        ({"domain": "evil.com"}, "domain"),
    ],
)
def test_bad_settings_name_the_key(change: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named) as info:
        parse_settings({**GOOD, **change})
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("missing", ["client_id", "client_secret", "domain"])
def test_missing_required_keys_are_named(missing: str) -> None:
    section = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(ConfigurationError, match=f"{missing}: required"):
        parse_settings(section)


def test_base_url_with_allow_insecure() -> None:
    s = parse_settings(
        {
            "client_id": "c",
            "client_secret": "s",
            "base_url": "http://127.0.0.1:8080/",
            "allow_insecure_base_url": True,
        }
    )
    assert s.base_url == "http://127.0.0.1:8080" and s.insecure
    assert parse_base_url("http://sandbox") == "http://sandbox"
    assert parse_base_url("https://[::1]:9000") == "https://[::1]:9000"


@pytest.mark.parametrize(
    "bad",
    [
        "127.0.0.1:8080",
        "http://u:p@127.0.0.1",
        "http://h/path",
        "http://h:99999",
        "file:///etc/passwd",
        "http://h?x=1",
    ],
)
def test_bad_base_urls(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        parse_base_url(bad)


def test_secret_never_renders() -> None:
    settings = parse_settings(GOOD)
    for text in (
        repr(settings),
        str(settings),
        f"{settings.client_secret}",
        repr(settings.client_secret),
        str([settings]),
    ):
        assert SECRET not in text
    with pytest.raises(TypeError):
        pickle.dumps(settings.client_secret)
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")


def test_settings_errors_stay_short_whatever_the_input() -> None:
    huge = {**GOOD, "client_id": "c" * 50_000_000}
    with pytest.raises(ConfigurationError, match="client_id: longer than 4,096") as caught:
        parse_settings(huge)
    assert len(str(caught.value)) < 1_000
    with pytest.raises(ConfigurationError) as caught:
        parse_settings({**GOOD, "protected_logins": [b"x" * 10_000_000]})
    assert "found a bytes" in str(caught.value) and len(str(caught.value)) < 1_000
    with pytest.raises(ConfigurationError, match="more") as caught:
        parse_settings({**GOOD, **{f"bogus{i}": 1 for i in range(100_000)}})
    assert len(str(caught.value)) < 3_000


def test_an_unknown_key_does_not_hide_the_other_problems() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_settings({"bogus": 1, "client_id": 5, "timeout_s": "x"})
    message = str(caught.value)
    for part in (
        "unknown setting(s) ['bogus']",
        "client_id",
        "timeout_s",
        "client_secret",
        "domain: required",
    ):
        assert part in message, message


@pytest.mark.parametrize("key", ["client_id", "client_secret", "state_dir", "integration_login"])
def test_settings_text_coupa_or_a_file_system_cannot_hold_is_refused(key: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{key}: .*(surrogate|control)"):
        parse_settings({**GOOD, key: "x\ud800y"})
    with pytest.raises(ConfigurationError, match="protected_logins: an item"):
        parse_settings({**GOOD, "protected_logins": ["ok", "a\nb"]})


def test_a_named_file_that_cannot_be_opened_is_a_configuration_error(tmp_path: Path) -> None:
    """A shared rate-limit file that looks like SQLite but is not one passes the settings'
    checks; opening it at configure is a ConfigurationError naming the tenant, never a raw
    sqlite3 error."""
    broken = tmp_path / "pace.sqlite"
    broken.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    sandbox = CoupaSandbox(generate_tenant(users=5), operations=Operations(rate_limit=False))
    with pytest.raises(ConfigurationError, match=r"^tenant acme: the settings cannot be used: "):
        plugin_for(sandbox).configure(tenant=tenant(shared_rate_limit_file=str(broken)))
