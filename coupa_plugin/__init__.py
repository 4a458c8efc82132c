"""Coupa connector plugin for IGA orchestrators.

The public entry point for a host is the entry point ``iga.plugins:coupa``
(``coupa_plugin.plugin:plugin``); the host contract lives in :mod:`coupa_plugin.host`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("coupa-plugin")  # pyproject.toml holds it, once
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
