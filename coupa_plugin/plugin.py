"""The hook implementations: a thin adapter from the host's hooks to :mod:`coupa_plugin.connector`.

The entry point ``iga.plugins:coupa`` loads :data:`plugin`, an instance that keeps one
:class:`~coupa_plugin.connector.service.CoupaConnector` per tenant id (never module-global
state shared between tenants).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from coupa_plugin.connector.boundary import boundary, describe
from coupa_plugin.connector.provisioning.repair import Wait
from coupa_plugin.connector.service import PLUGIN_NAME, CoupaConnector
from coupa_plugin.connector.settings import CoupaSettings, parse_settings
from coupa_plugin.host.errors import ConfigurationError, ProvisioningError, SyncError
from coupa_plugin.host.model import (
    ConnectorStatus,
    Grant,
    ProvisionRequest,
    ProvisionResult,
    Resource,
    SyncRequest,
    Tenant,
    section_enabled,
)
from coupa_plugin.host.spec import hookimpl

__all__ = ["PLUGIN_NAME", "CoupaPlugin", "plugin"]

TransportFactory = Callable[[CoupaSettings], httpx.BaseTransport]


def _tenant_id(tenant: object) -> str:
    ident = getattr(tenant, "id", None)
    return ident[:80] if isinstance(ident, str) else "?"


def settings_section(tenant: Tenant) -> Mapping[str, Any] | None:
    """The tenant's ``coupa`` section, or None when it is absent or says ``enabled = false``."""
    plugins = tenant.plugins
    if not isinstance(plugins, Mapping):
        raise ConfigurationError(
            f"tenant.plugins: expected a mapping, got {type(plugins).__name__}"
        )
    section = plugins.get(PLUGIN_NAME)
    if section is None or not section_enabled(section):
        return None
    return section


class CoupaPlugin:
    """The Coupa connector plugin: per-tenant connectors behind the four hooks."""

    def __init__(
        self,
        transport_factory: TransportFactory | None = None,
        *,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        repair_wait: Wait | None = None,
    ) -> None:
        """``transport_factory`` lets tests and integrators route a tenant's HTTP elsewhere
        (for example into an in-process sandbox); by default requests go over the network.
        ``wall_clock`` (seconds since the epoch) dates journal entries; ``clock`` (monotonic
        seconds) and ``sleep`` are how the tenants' clients measure and wait (pacing,
        Retry-After, token lifetimes and warm-up, the retry budget): a test passes a virtual
        pair so nothing waits for real. ``repair_wait(stop, seconds)`` is how a tenant's
        self-repair thread waits for its next attempt (True: stop); by default it waits on
        ``stop`` for real, and a test passes one it controls."""
        self._lock = threading.Lock()
        self._connectors: dict[str, CoupaConnector] = {}
        self._transport_factory = transport_factory
        self._wall_clock = wall_clock
        self._clock = clock
        self._sleep = sleep
        self._repair_wait = repair_wait

    def connector(self, tenant: Tenant) -> CoupaConnector | None:
        """The tenant's connector, (re)built when its settings changed; None when not enabled."""
        section = settings_section(tenant)
        if section is None:
            return None
        settings = parse_settings(section)
        with self._lock:
            current = self._connectors.get(tenant.id)
            if current is not None and current.settings == settings:
                return current
            if current is not None:
                current.close()
            transport = self._transport_factory(settings) if self._transport_factory else None
            try:
                connector = CoupaConnector(
                    tenant.id,
                    settings,
                    transport,
                    wall_clock=self._wall_clock,
                    clock=self._clock,
                    sleep=self._sleep,
                    repair_wait=self._repair_wait,
                )
            except (OSError, sqlite3.Error, ValueError) as exc:
                raise ConfigurationError(
                    f"tenant {_tenant_id(tenant)}: the settings cannot be used: {describe(exc)}"
                ) from exc
            self._connectors[tenant.id] = connector
            return connector

    def close(self) -> None:
        """Close every tenant's HTTP client."""
        with self._lock:
            for connector in self._connectors.values():
                connector.close()
            self._connectors.clear()

    def diagnose(self, tenant: Tenant) -> dict[str, Any] | None:
        """Diagnostics for ``coupa-iga doctor`` (not a hook): see
        :meth:`~coupa_plugin.connector.service.CoupaConnector.diagnose`."""
        connector = self.connector(tenant)
        return None if connector is None else connector.diagnose()

    # Each hook body runs inside :func:`boundary`: only PluginError subclasses leave a hook.

    @hookimpl
    def configure(self, tenant: Tenant) -> ConnectorStatus | None:
        with boundary(_tenant_id(tenant), "configure", ConfigurationError):
            connector = self.connector(tenant)
            return None if connector is None else connector.configure(refresh=True)

    @hookimpl
    def discover_resources(self, tenant: Tenant, request: SyncRequest) -> Iterable[Resource] | None:
        with boundary(_tenant_id(tenant), "discover_resources", SyncError):
            connector = self.connector(tenant)
            return None if connector is None else connector.discover_resources(request)

    @hookimpl
    def sync_grants(self, tenant: Tenant, request: SyncRequest) -> Iterable[Grant] | None:
        with boundary(_tenant_id(tenant), "sync_grants", SyncError):
            connector = self.connector(tenant)
            return None if connector is None else connector.sync_grants(request)

    @hookimpl
    def provision(self, tenant: Tenant, request: ProvisionRequest) -> ProvisionResult | None:
        with boundary(_tenant_id(tenant), "provision", ProvisioningError):
            connector = self.connector(tenant)
            return None if connector is None else connector.provision(request)


plugin = CoupaPlugin()
