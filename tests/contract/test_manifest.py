"""plugin.toml says what the code does."""

from __future__ import annotations

import tomllib
from importlib.metadata import entry_points, version
from pathlib import Path

import pluggy
import pytest

from coupa_plugin import __version__
from coupa_plugin.connector._kinds import KINDS
from coupa_plugin.connector._settings import RESOURCE_TYPES, SETTINGS, parse_settings
from coupa_plugin.coupa import _scopes as scopes
from coupa_plugin.host.errors import ConfigurationError
from coupa_plugin.host.model import PROVISION_ACTIONS
from coupa_plugin.host.spec import HostSpec
from coupa_plugin.manifest import (
    COMMAND,
    MANIFESTS,
    SETTINGS_DOCS,
    TABLE_END,
    TABLE_START,
    load_manifest,
    main,
    render_manifest,
    render_settings_docs,
)
from coupa_plugin.plugin import plugin

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = load_manifest()


def test_top_level_and_packaged_manifests_are_identical() -> None:
    top = tomllib.loads((ROOT / "plugin.toml").read_text("utf-8"))
    assert top == MANIFEST


@pytest.mark.parametrize("shipped", MANIFESTS, ids=str)
def test_each_shipped_manifest_is_the_generated_text(shipped: Path) -> None:
    text = (ROOT / shipped).read_text("utf-8")
    assert text == render_manifest(), f"{shipped} differs from the code: run `{COMMAND}`"


def test_the_docs_settings_table_is_the_generated_one() -> None:
    text = (ROOT / SETTINGS_DOCS).read_text("utf-8")
    assert text == render_settings_docs(text), f"{SETTINGS_DOCS} differs: run `{COMMAND}`"
    table = text[text.index(TABLE_START) + len(TABLE_START) : text.index(TABLE_END)]
    keys = [row.split("`")[1] for row in table.splitlines()[2:]]
    assert keys == [s.name for s in SETTINGS]


def test_the_command_checks_writes_and_names_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tree whose files drifted fails ``--check`` with the command named; ``--write`` mends
    it, after which ``--check`` passes and the rest of the docs page is untouched."""
    for path in (*MANIFESTS, SETTINGS_DOCS):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    for path in MANIFESTS:
        (tmp_path / path).write_text("schema_version = 1\n", "utf-8")
    page = f"# Configuration\n\nbefore\n{TABLE_START}| stale |\n{TABLE_END}after\n"
    (tmp_path / SETTINGS_DOCS).write_text(page, "utf-8")
    assert main(["--check", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out.count(f"run `{COMMAND}`") == 3 and str(SETTINGS_DOCS) in out
    assert main(["--write", "--root", str(tmp_path)]) == 0
    assert main(["--check", "--root", str(tmp_path)]) == 0
    written = (tmp_path / SETTINGS_DOCS).read_text("utf-8")
    assert written.startswith("# Configuration\n\nbefore\n") and written.endswith("after\n")
    assert "| stale |" not in written and "| `requests_per_second` |" in written
    assert (tmp_path / MANIFESTS[1]).read_text("utf-8") == render_manifest()


def test_a_docs_page_without_the_markers_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / SETTINGS_DOCS).parent.mkdir(parents=True)
    (tmp_path / SETTINGS_DOCS).write_text("# Configuration\n", "utf-8")
    with pytest.raises(SystemExit) as exited:
        main(["--check", "--root", str(tmp_path)])
    assert exited.value.code == 2
    assert "markers are missing" in capsys.readouterr().err


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
    assert set(RESOURCE_TYPES) == {"user"} | {kind.name for kind in KINDS}
    assert set(caps["provisioning_actions"]) == PROVISION_ACTIONS


def test_scope_sets_are_the_ones_the_client_uses() -> None:
    assert set(MANIFEST["scopes"]["read_only"]) == scopes.READ_ONLY_SCOPES
    assert set(MANIFEST["scopes"]["provisioning"]) == scopes.PROVISIONING_SCOPES
    assert set(MANIFEST["scopes"]["optional"]) == scopes.OPTIONAL_SCOPES


def test_settings_schema_matches_the_parser() -> None:
    documented = MANIFEST["settings"]
    assert list(documented) == [s.name for s in SETTINGS]
    for spec in SETTINGS:
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


def test_the_documented_ranges_and_choices_are_the_parsers() -> None:
    """What plugin.toml tells a host about a value is what the parser takes."""
    good = {"client_id": "c", "client_secret": "s", "domain": "a.coupahost.com"}
    ranged = {n: e for n, e in MANIFEST["settings"].items() if "minimum" in e}
    assert set(ranged) == {s.name for s in SETTINGS if s.type in ("number", "integer")}
    for name, entry in ranged.items():
        for bound in (entry["minimum"], entry["maximum"]):
            assert getattr(parse_settings({**good, name: bound}), name) == bound
        step = 1 if entry["type"] == "integer" else 1e-3
        for outside in (entry["minimum"] - step, entry["maximum"] + step):
            with pytest.raises(ConfigurationError, match=f"^{name}: must be from "):
                parse_settings({**good, name: outside})
    for choice in MANIFEST["settings"]["mode"]["choices"]:
        assert parse_settings({**good, "mode": choice}).mode == choice
