"""The Coupa domain mapped onto the host model: settings, sync and provisioning.

Its one user is :mod:`coupa_plugin.plugin`, which adapts the hooks to what ``__all__`` names
here: a tenant's connector, its settings, the boundary every hook call passes and the
instrumentation hooks. Every module is private.
"""

from coupa_plugin.connector._boundary import boundary, describe
from coupa_plugin.connector._lifecycle import tenant_context
from coupa_plugin.connector._provisioning.repair import Wait
from coupa_plugin.connector._service import PLUGIN_NAME, CoupaConnector
from coupa_plugin.connector._settings import CoupaSettings, parse_settings
from coupa_plugin.connector._telemetry import Instruments, hook_span

__all__ = [
    "PLUGIN_NAME",
    "CoupaConnector",
    "CoupaSettings",
    "Instruments",
    "Wait",
    "boundary",
    "describe",
    "hook_span",
    "parse_settings",
    "tenant_context",
]
