"""plugin.toml says what the code does."""

from __future__ import annotations

import tomllib
from importlib.metadata import entry_points, version
from pathlib import Path

import pluggy

from coupa_plugin import __version__
from coupa_plugin.connector.settings import RESOURCE_TYPES, SETTINGS_SCHEMA, parse_settings
from coupa_plugin.coupa import scopes
from coupa_plugin.host.model import PROVISION_ACTIONS
from coupa_plugin.host.spec import HostSpec
from coupa_plugin.manifest import load_manifest
from coupa_plugin.plugin import plugin

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = load_manifest()


def test_top_level_and_packaged_manifests_are_identical() -> None:
    top = tomllib.loads((ROOT / "plugin.toml").read_text("utf-8"))
    assert top == MANIFEST


def test_identity_and_version() -> None:
    assert MANIFEST["schema_version"] == 1
    assert MANIFEST["id"] == "coupa"
    assert MANIFEST["version"] == __version__ == version("coupa-plugin")
    ep = MANIFEST["entry_point"]
    [found] = [e for e in entry_points(group=ep["group"]) if e.name == ep["name"]]
    assert found.value == ep["object"] and ep["name"] == MANIFEST["id"]


def test_hooks_listed_are_the_hooks_registered() -> None:
    pm = pluggy.PluginManager("iga")
    pm.add_hookspecs(HostSpec)
    pm.register(plugin, name="coupa")
    registered = {h.name for h in pm.get_hookcallers(plugin) or []}
    assert set(MANIFEST["hooks"]) == registered


def test_capabilities() -> None:
    caps = MANIFEST["capabilities"]
    assert caps["resource_types"] == list(RESOURCE_TYPES)
    assert set(caps["provisioning_actions"]) == PROVISION_ACTIONS


def test_scope_sets_are_the_ones_the_client_uses() -> None:
    assert set(MANIFEST["scopes"]["read_only"]) == scopes.READ_ONLY_SCOPES
    assert set(MANIFEST["scopes"]["provisioning"]) == scopes.PROVISIONING_SCOPES
    assert set(MANIFEST["scopes"]["optional"]) == scopes.OPTIONAL_SCOPES


def test_settings_schema_matches_the_parser() -> None:
    documented = MANIFEST["settings"]
    assert list(documented) == [s.name for s in SETTINGS_SCHEMA]
    for spec in SETTINGS_SCHEMA:
        entry = documented[spec.name]
        assert entry["type"] == spec.type
        assert entry["required"] == spec.required
        assert entry["secret"] == spec.secret
        assert entry.get("default") == spec.default
    # every documented key is accepted by the parser, and the documented defaults hold
    section = {
        "client_id": "c",
        "client_secret": "s",
        "domain": "a.coupahost.com",
        **{name: e["default"] for name, e in documented.items() if "default" in e},
    }
    parsed = parse_settings(section)
    assert parsed == parse_settings(
        {"client_id": "c", "client_secret": "s", "domain": "a.coupahost.com"}
    )
