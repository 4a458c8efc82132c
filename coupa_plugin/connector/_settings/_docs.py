"""The settings table of ``docs/configuration.md``, written from the declarations."""

from __future__ import annotations

from typing import Any

from coupa_plugin.connector._settings._registry import SETTINGS, Setting


def _value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float | int):
        return f"`{int(value) if value == int(value) else value}`"  # as TOML would take it
    if isinstance(value, list):
        return f"`{value!r}`".replace("'", '"')
    return f"`{value}`"


def _type(setting: Setting) -> str:
    if setting.choices is not None:
        return r" \| ".join(f"`{choice}`" for choice in setting.choices)
    shown = "list" if setting.type == "array" else setting.type
    return f"{shown} (secret)" if setting.secret else shown


def _default(setting: Setting) -> str:
    if setting.required:
        return "required"
    return setting.shown_default.format(_value(setting.default))


def _meaning(setting: Setting) -> str:
    accepted = f" Accepted: {setting.range}." if setting.range is not None else ""
    return setting.doc + accepted


def settings_table() -> str:
    """The Markdown table of every setting: key, type, default, meaning."""
    rows = [
        "| key | type | default | meaning |",
        "| --- | --- | --- | --- |",
        *(f"| `{s.name}` | {_type(s)} | {_default(s)} | {_meaning(s)} |" for s in SETTINGS),
    ]
    return "\n".join(rows) + "\n"
