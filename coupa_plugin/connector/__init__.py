"""The Coupa domain mapped onto the host model: settings, sync and provisioning.

Its users are :mod:`coupa_plugin.plugin`, which adapts the hooks to what ``__all__`` names
here (a tenant's connector, its settings, the boundary every hook call passes and the
instrumentation hooks), and :mod:`coupa_plugin.manifest`, which writes the settings'
declarations into ``plugin.toml`` and the docs. Every module is private.
"""

from coupa_plugin.connector._boundary import boundary, describe
from coupa_plugin.connector._lifecycle import tenant_context
from coupa_plugin.connector._provisioning.repair import Wait
from coupa_plugin.connector._service import PLUGIN_NAME, CoupaConnector
from coupa_plugin.connector._settings import (
    MODES,
    RESOURCE_TYPES,
    SETTINGS,
    CoupaSettings,
    parse_settings,
)
from coupa_plugin.connector._settings._docs import settings_table
from coupa_plugin.connector._telemetry import Instruments, hook_span

__all__ = [
    "MODES",
    "PLUGIN_NAME",
    "RESOURCE_TYPES",
    "SETTINGS",
    "CoupaConnector",
    "CoupaSettings",
    "Instruments",
    "Wait",
    "boundary",
    "describe",
    "hook_span",
    "parse_settings",
    "settings_table",
    "tenant_context",
]
