"""Coupa connector plugin for IGA orchestrators.

The public entry point for a host is the entry point ``iga.plugins:coupa``
(``coupa_plugin.plugin:plugin``); the host contract lives in :mod:`coupa_plugin.host`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
