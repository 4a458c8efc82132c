"""The settings' declarations: each default passes its own reader, each range is enforced and
named, and the client's configuration is the settings' (by their declared links)."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupa_plugin.connector._settings import (
    SETTINGS,
    ClientLink,
    CoupaSettings,
    Range,
    Setting,
    parse_settings,
)
from coupa_plugin.coupa import ClientConfig, Secret
from coupa_plugin.host.errors import ConfigurationError

GOOD = {"domain": "acme.coupahost.com", "client_id": "cid", "client_secret": "s3cret"}
NUMERIC = [s for s in SETTINGS if s.range is not None]
BY_NAME = {s.name: s for s in SETTINGS}
WITH_DEFAULTS = [s for s in SETTINGS if s.default is not None]


@pytest.mark.parametrize("setting", WITH_DEFAULTS, ids=lambda s: s.name)
def test_every_declared_default_passes_its_own_reader(setting: Setting) -> None:
    read = setting.reader(setting.name, setting.default)
    expected = frozenset(setting.default) if isinstance(setting.default, list) else setting.default
    assert read == expected


@pytest.mark.parametrize("setting", WITH_DEFAULTS, ids=lambda s: s.name)
def test_every_declared_default_is_the_parsed_sections(setting: Setting) -> None:
    """Writing a default out changes nothing: the section parses as without it."""
    assert parse_settings({**GOOD, setting.name: setting.default}) == parse_settings(GOOD)


def test_the_numeric_settings_are_declared_with_ranges() -> None:
    assert {s.name for s in NUMERIC} == {
        "requests_per_second",
        "max_in_flight",
        "timeout_s",
        "max_response_mb",
        "journal_max_age_s",
    }
    for setting in NUMERIC:
        assert setting.range is not None
        assert setting.range.low <= setting.default <= setting.range.high, setting.name


@st.composite
def out_of_range(draw: st.DrawFn) -> tuple[Setting, float | int]:
    setting = draw(st.sampled_from(NUMERIC))
    assert setting.range is not None
    low, high = setting.range.low, setting.range.high
    below = st.floats(max_value=low, exclude_max=True, allow_nan=False)
    above = st.floats(min_value=high, exclude_min=True)
    if setting.type == "integer":
        below = st.integers(max_value=math.ceil(low) - 1)
        above = st.integers(min_value=math.floor(high) + 1)
    return setting, draw(st.one_of(below, above, st.just(math.nan)))


@given(case=out_of_range())
def test_a_value_out_of_its_declared_range_is_refused_naming_key_and_range(
    case: tuple[Setting, float | int],
) -> None:
    setting, value = case
    if setting.type == "integer" and isinstance(value, float):
        message = f"{setting.name}: expected an integer, got float"
    else:
        message = f"{setting.name}: must be {setting.range}"
    with pytest.raises(ConfigurationError) as caught:
        parse_settings({**GOOD, setting.name: value})
    assert str(caught.value) == message


@given(data=st.data(), setting=st.sampled_from(NUMERIC))
def test_a_value_inside_its_declared_range_is_taken(data: st.DataObject, setting: Setting) -> None:
    assert setting.range is not None
    low, high = setting.range.low, setting.range.high
    if setting.type == "integer":
        value: float = data.draw(st.integers(int(low), int(high)))
    else:
        value = data.draw(st.floats(low, high))
    parsed = parse_settings({**GOOD, setting.name: value})
    assert getattr(parsed, setting.name) == value


def test_a_range_reads_as_the_docs_and_messages_say_it() -> None:
    assert str(Range(0.1, 10_000.0)) == "from 0.1 to 10,000"
    assert str(Range(0.0, 90 * 86_400.0)) == "from 0 to 7,776,000"
    assert str(Range(0.001, 1_024.0)) == "from 0.001 to 1,024"


def test_several_problems_are_reported_in_declaration_order() -> None:
    section = {**GOOD, "timeout_s": 0, "mode": "x", "max_in_flight": 0}
    with pytest.raises(ConfigurationError) as caught:
        parse_settings(section)
    named = [part.split(":")[0] for part in str(caught.value).split("; ")]
    assert named == ["mode", "max_in_flight", "timeout_s"]


def test_a_declaration_without_a_way_to_read_it_is_refused() -> None:
    with pytest.raises(TypeError, match="reader"):
        Setting(name="x", type="string", description="d", doc="d")
    with pytest.raises(TypeError, match="range"):
        Setting(name="x", type="number", description="d", doc="d")
    with pytest.raises(TypeError, match="range"):
        Setting(name="x", type="boolean", range=Range(0, 1), description="d", doc="d")


def test_every_client_link_names_a_client_field_and_a_settings_attribute() -> None:
    client_fields = {a.name for a in attrs.fields(ClientConfig)}
    settings_fields = {a.name for a in attrs.fields(CoupaSettings)}
    links = [(s.name, s.client) for s in SETTINGS if s.client is not None]
    assert links, "the client is configured from the settings"
    for name, link in links:
        assert link.field in client_fields, name
        assert name in settings_fields, name


def test_the_linked_defaults_are_the_clients() -> None:
    """Left unset, every linked setting gives the client its own default."""
    config = parse_settings(GOOD).client_config(tenant="t")
    checked = []
    for setting in SETTINGS:
        link = setting.client
        if link is None:
            continue
        default = attrs.fields_dict(ClientConfig)[link.field].default
        if default is attrs.NOTHING:  # where Coupa is and who asks: no default anywhere
            assert setting.default is None, setting.name
            continue
        assert getattr(config, link.field) == default, setting.name
        assert link.to_client(setting.default) == default, setting.name
        checked.append(setting.name)
    assert "requests_per_second" in checked and "max_response_mb" in checked


def test_the_client_config_carries_every_linked_setting(tmp_path: Any) -> None:
    section = {
        **GOOD,
        "mode": "read-only",
        "requests_per_second": 7.5,
        "max_in_flight": 3,
        "timeout_s": 12.0,
        "max_response_mb": 2.5,
        "shared_rate_limit_file": str(tmp_path / "pace.sqlite"),
    }
    config = parse_settings(section).client_config(tenant="acme")
    assert config == ClientConfig(
        base_url="https://acme.coupahost.com",
        client_id="cid",
        client_secret=Secret("s3cret"),
        mode="read-only",
        requests_per_second=7.5,
        max_in_flight=3,
        timeout_s=12.0,
        max_body_bytes=int(2.5 * 1024 * 1024),
        tenant="acme",
        shared_rate_limit_file=str(tmp_path / "pace.sqlite"),
    )
    assert config.client_secret.reveal() == "s3cret"


def test_a_sandbox_url_reaches_the_client() -> None:
    section = {
        "client_id": "c",
        "client_secret": "s",
        "base_url": "http://127.0.0.1:8080/",
        "allow_insecure_base_url": True,
    }
    assert parse_settings(section).client_config(tenant="t").base_url == "http://127.0.0.1:8080"


def test_a_link_converts_both_ways() -> None:
    link = BY_NAME["max_response_mb"].client
    assert isinstance(link, ClientLink) and link.field == "max_body_bytes"
    assert link.to_client(link.from_client(16 * 1024 * 1024)) == 16 * 1024 * 1024
