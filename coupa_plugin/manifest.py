"""Read the plugin manifest (plugin.toml) that ships inside the package."""

from __future__ import annotations

import tomllib
from importlib.resources import files
from typing import Any

__all__ = ["load_manifest"]


def load_manifest() -> dict[str, Any]:
    """The parsed manifest of the installed plugin."""
    return tomllib.loads(files("coupa_plugin").joinpath("plugin.toml").read_text("utf-8"))
