"""Facts the package writes once, and the few it must write on both sides of the wire (the
sandbox is a Coupa and imports nothing of the client), held against each other."""

from __future__ import annotations

import typing
from datetime import UTC, datetime

import attrs
import pytest

from coupa_plugin.connector import _settings as settings
from coupa_plugin.coupa import _models as models
from coupa_plugin.coupa._client import ClientConfig, Mode
from coupa_plugin.coupa._transport import DEFAULT_MAX_BODY_BYTES
from coupa_plugin.host.model import Tenant, section_enabled
from coupa_plugin.plugin import settings_section
from coupa_plugin.sandbox import _state as state
from coupa_plugin.sandbox._errors import QueryError
from coupa_plugin.sandbox._query import _parse_time


def test_the_settings_defaults_are_the_clients() -> None:
    client = {a.name: a.default for a in attrs.fields(ClientConfig)}
    schema = {spec.name: spec.default for spec in settings.SETTINGS}
    for key in ("mode", "requests_per_second", "max_in_flight", "timeout_s"):
        assert schema[key] == client[key]
    assert schema["max_response_mb"] * 1024 * 1024 == DEFAULT_MAX_BODY_BYTES


def test_coupa_settings_defaults_are_the_schemas() -> None:
    schema = {spec.name: spec.default for spec in settings.SETTINGS}
    fields = {a.name: a.default for a in attrs.fields(settings.CoupaSettings)}
    renamed = {"insecure": "allow_insecure_base_url"}
    for name, default in fields.items():
        if default is attrs.NOTHING:
            continue
        key = renamed.get(name, name)
        want = schema[key]
        assert default == (frozenset(want) if isinstance(want, list) else want), name


def test_one_mode_type() -> None:
    assert settings.MODES == typing.get_args(Mode) == ("auto", "read-only", "provisioning")


def test_the_sandbox_knows_every_flag_the_client_asks_for_and_one_more() -> None:
    assert set(state.LICENSE_FLAGS) - set(models.KNOWN_LICENSE_FLAGS) == {"navi-agent-user"}
    assert set(models.KNOWN_LICENSE_FLAGS) <= set(state.LICENSE_FLAGS)
    assert set(state.ACCOUNT_TYPE_FLAGS) == models.ACCOUNT_TYPE_FLAGS


@pytest.mark.parametrize(
    ("section", "enabled"),
    [({}, True), ({"enabled": True}, True), ({"enabled": False}, False), ({"enabled": 0}, True)],
)
def test_one_enabled_rule_for_the_plugin_and_the_host(
    section: dict[str, object], enabled: bool
) -> None:
    assert section_enabled(section) is enabled
    tenant = Tenant(id="t", plugins={"coupa": section})
    assert (settings_section(tenant) is not None) is enabled


def test_a_trailing_z_is_utc_everywhere() -> None:
    moment = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert models.converter.structure("2024-05-01T12:00:00Z", datetime) == moment
    assert _parse_time("2024-05-01T12:00:00Z") == moment
    with pytest.raises(QueryError, match="invalid date/time"):
        _parse_time("2024-05-01T12:00:00Q")
