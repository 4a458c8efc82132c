"""The plugin manifest (``plugin.toml``): read the copy that ships inside the package, or write
it from the code.

``plugin.toml`` is generated: its settings come from the settings' declarations, its resource
types from the entitlement kinds, its actions from the contract, its scopes from the client.
``python -m coupa_plugin.manifest --write`` (run at the top of a source tree) rewrites both
copies (the top-level one and ``coupa_plugin/plugin.toml``) and the settings table of
``docs/configuration.md``; ``--check`` says which of them differ from the code, and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any, Final

from coupa_plugin import __version__
from coupa_plugin.connector import MODES, PLUGIN_NAME, RESOURCE_TYPES, SETTINGS, settings_table
from coupa_plugin.coupa import _scopes as scopes
from coupa_plugin.host.model import PROVISION_ACTIONS
from coupa_plugin.host.spec import ENTRY_POINT_GROUP, HOOK_NAMES

__all__ = ["COMMAND", "load_manifest", "render_manifest", "render_settings_docs"]

COMMAND: Final = "python -m coupa_plugin.manifest --write"
MANIFESTS: Final = (Path("plugin.toml"), Path("coupa_plugin/plugin.toml"))
SETTINGS_DOCS: Final = Path("docs/configuration.md")
TABLE_START: Final = f"<!-- the settings table: written by `{COMMAND}`; edit the code -->\n"
TABLE_END: Final = "<!-- end of the settings table -->\n"
_DESCRIPTION: Final = (
    "Syncs Coupa users, user groups, roles, licenses, content, account and approval groups "
    "and provisions access."
)


def load_manifest() -> dict[str, Any]:
    """The parsed manifest of the installed plugin."""
    return tomllib.loads(files("coupa_plugin").joinpath("plugin.toml").read_text("utf-8"))


def _toml(value: Any) -> str:
    """``value`` as a TOML value (strings, booleans, numbers and lists of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _table(name: str, entries: dict[str, Any]) -> list[str]:
    return ["", f"[{name}]", *(f"{key} = {_toml(value)}" for key, value in entries.items())]


def _setting_entries() -> list[str]:
    lines = []
    for setting in SETTINGS:
        entry: dict[str, Any] = {"type": setting.type}
        if setting.default is not None:
            entry["default"] = setting.default
        if setting.range is not None:
            kind = int if setting.type == "integer" else float
            entry["minimum"] = kind(setting.range.low)
            entry["maximum"] = kind(setting.range.high)
        if setting.choices is not None:
            entry["choices"] = list(setting.choices)
        entry |= {
            "required": setting.required,
            "secret": setting.secret,
            "description": setting.description,
        }
        lines += _table(f"settings.{setting.name}", entry)
    return lines


def render_manifest() -> str:
    """The text of ``plugin.toml``, as the code says it."""
    head = {
        "schema_version": 1,
        "id": PLUGIN_NAME,
        "name": "Coupa",
        "version": __version__,
        "description": _DESCRIPTION,
        "host_api": ">=1,<2",
        "entry_point": {
            "group": ENTRY_POINT_GROUP,
            "name": PLUGIN_NAME,
            "object": "coupa_plugin.plugin:plugin",
        },
        "hooks": list(HOOK_NAMES),
    }
    lines = [
        "# Manifest of the Coupa connector plugin. The same file ships inside the package",
        "# (coupa_plugin/plugin.toml) so an installed plugin and its host can read it.",
        f"# Written from the code by `{COMMAND}`: edit the code, not this file.",
        *(f"{key} = {_toml(value)}" for key, value in head.items()),
        *_table(
            "capabilities",
            {
                "resource_types": list(RESOURCE_TYPES),
                "provisioning_actions": sorted(PROVISION_ACTIONS),
                "modes": [mode for mode in MODES if mode != "auto"],
            },
        ),
        *_table(
            "scopes",
            {
                "read_only": sorted(scopes.READ_ONLY_SCOPES),
                "provisioning": sorted(scopes.PROVISIONING_SCOPES),
                "optional": sorted(scopes.OPTIONAL_SCOPES),
            },
        ),
        *_setting_entries(),
    ]
    return "\n".join(lines) + "\n"


def render_settings_docs(text: str) -> str:
    """``text`` (docs/configuration.md) with the settings table between its markers
    rewritten from the code.

    :raises ValueError: the markers are missing or out of order.
    """
    start = text.find(TABLE_START)
    end = text.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"{SETTINGS_DOCS}: the settings table's markers are missing")
    return text[: start + len(TABLE_START)] + settings_table() + text[end:]


def _generated(root: Path) -> dict[Path, str]:
    """Each generated file under ``root`` and the text the code gives it."""
    manifest = render_manifest()
    docs = render_settings_docs((root / SETTINGS_DOCS).read_text("utf-8"))
    return {**dict.fromkeys(MANIFESTS, manifest), SETTINGS_DOCS: docs}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m coupa_plugin.manifest",
        description="Write (or check) plugin.toml and the settings table of the docs.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite the files")
    action.add_argument("--check", action="store_true", help="exit 1 when a file differs")
    parser.add_argument("--root", type=Path, default=Path(), help="the source tree's top")
    args = parser.parse_args(argv)
    try:
        generated = _generated(args.root)
        stale = [
            path
            for path, text in generated.items()
            if (args.root / path).read_text("utf-8") != text
        ]
    except (OSError, ValueError) as exc:
        parser.exit(2, f"error: {exc}\n")
    if args.write:
        for path in stale:
            (args.root / path).write_text(generated[path], "utf-8")
            sys.stdout.write(f"wrote {path}\n")
        return 0
    for path in stale:
        sys.stdout.write(f"{path} differs from the code; run `{COMMAND}`\n")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
