"""The hook implementations: a thin adapter from the host's hooks to :mod:`coupa_plugin.connector`.

The entry point ``iga.plugins:coupa`` loads :data:`plugin`, an instance that keeps one
:class:`~coupa_plugin.connector.CoupaConnector` per tenant id (never module-global
state shared between tenants).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

import httpx

from coupa_plugin.connector import (
    PLUGIN_NAME,
    CoupaConnector,
    CoupaSettings,
    Instruments,
    Wait,
    boundary,
    hook_span,
    parse_settings,
    tenant_context,
)
from coupa_plugin.host.errors import (
    ConfigurationError,
    PluginError,
    ProvisioningError,
    SyncError,
)
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

__all__ = ["IDLE_RELEASE_S", "PLUGIN_NAME", "CoupaPlugin", "plugin"]

TransportFactory = Callable[[CoupaSettings], httpx.BaseTransport]
IDLE_RELEASE_S: Final = 15 * 60.0  # a tenant unused this long is released (dropped by the host)
SWEEP_EVERY_S: Final = 60.0


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
        idle_release_s: float | None = IDLE_RELEASE_S,
        meter_provider: Any = None,
        tracer_provider: Any = None,
        repair_wait: Wait | None = None,
    ) -> None:
        """``transport_factory`` lets tests and integrators route a tenant's HTTP elsewhere
        (for example into an in-process sandbox); by default requests go over the network.
        ``wall_clock`` (seconds since the epoch) dates journal entries; ``clock`` (monotonic
        seconds) and ``sleep`` are how the tenants' clients measure and wait (pacing,
        Retry-After, token lifetimes and warm-up, the retry budget): a test passes a virtual
        pair so nothing waits for real. A tenant no hook has used for ``idle_release_s``
        seconds (on ``clock``) is released at the next hook call of any tenant, so a tenant
        the host dropped gives its sockets back (None: only on :meth:`release`).
        ``meter_provider`` and ``tracer_provider`` (OpenTelemetry) receive the plugin's metrics
        and spans; by default the global ones, which record nothing until the host sets an
        SDK's. ``repair_wait(stop, seconds)`` is how a tenant's self-repair thread waits for
        its next attempt (True: stop); by default it waits on ``stop`` for real, and a test
        passes one it controls."""
        self._instruments = Instruments(meter_provider, tracer_provider)
        self._instruments.observe_journal(self._journal_pending)
        self._lock = threading.Lock()
        self._connectors: dict[str, CoupaConnector] = {}
        self._transport_factory = transport_factory
        self._wall_clock = wall_clock
        self._clock = clock
        self._sleep = sleep
        self._idle_release_s = idle_release_s
        self._last_used: dict[str, float] = {}
        self._swept = clock()
        self._repair_wait = repair_wait

    def connector(self, tenant: Tenant) -> CoupaConnector | None:
        """The tenant's connector, (re)built when its settings changed; None when not enabled
        (a tenant seen disabled or without a ``coupa`` section is released)."""
        connector = self._acquire(tenant)
        if connector is not None:
            connector.uses.exit()
        return connector

    def _acquire(self, tenant: Tenant) -> CoupaConnector | None:
        """The tenant's connector with one use taken (the caller gives it back), built or
        rebuilt as :meth:`connector` says. A connector replaced by new settings is retired:
        the calls and streams begun on it finish there, and it closes after the last."""
        section = settings_section(tenant)
        if section is None:
            self.release(tenant.id)
            return None
        settings = parse_settings(section)
        for idle in self._sweep(keep=tenant.id):
            idle.close()
        with self._lock:
            self._last_used[tenant.id] = self._clock()
            current = self._connectors.get(tenant.id)
            if current is not None and current.settings == settings:
                current.uses.enter()
                return current
            transport = self._transport_factory(settings) if self._transport_factory else None
            connector = CoupaConnector(
                tenant.id,
                settings,
                transport,
                wall_clock=self._wall_clock,
                clock=self._clock,
                sleep=self._sleep,
                instruments=self._instruments,
                repair_wait=self._repair_wait,
            )
            connector.uses.enter()
            self._connectors[tenant.id] = connector
        if current is not None:
            current.close()  # outside the lock: it may close now, which takes a moment
        return connector

    def _sweep(self, keep: str) -> list[CoupaConnector]:
        """Take out the connectors of the tenants idle for ``idle_release_s`` (at most once a
        minute); the caller closes them."""
        now = self._clock()
        with self._lock:
            if self._idle_release_s is None or now - self._swept < SWEEP_EVERY_S:
                return []
            self._swept = now
            idle = [
                tenant_id
                for tenant_id, connector in self._connectors.items()
                if tenant_id != keep
                and not connector.uses.count
                and now - self._last_used.get(tenant_id, now) >= self._idle_release_s
            ]
            for tenant_id in idle:
                self._last_used.pop(tenant_id, None)
            return [self._connectors.pop(tenant_id) for tenant_id in idle]

    @contextmanager
    def _using(self, tenant: Tenant) -> Iterator[CoupaConnector | None]:
        connector = self._acquire(tenant)
        try:
            yield connector
        finally:
            if connector is not None:
                connector.uses.exit()

    def release(self, tenant_id: str) -> bool:
        """Release one tenant: its connector closes (threads and sockets) once the calls and
        streams begun on it have ended; the next hook call for the tenant starts afresh.
        True when the tenant had a connector. A hook call for a tenant that is disabled or has
        no ``coupa`` section releases it too."""
        with self._lock:
            connector = self._connectors.pop(tenant_id, None)
            self._last_used.pop(tenant_id, None)
        if connector is None:
            return False
        connector.close()
        return True

    def tenants(self) -> frozenset[str]:
        """The ids of the tenants holding a connector."""
        with self._lock:
            return frozenset(self._connectors)

    def _journal_pending(self) -> list[tuple[int, str]]:
        """(journal entries pending, tenant id) per tenant, for the metrics (no I/O)."""
        with self._lock:
            connectors = list(self._connectors.items())
        return [(c.provisioner.journal.known_pending, tid) for tid, c in connectors]

    def close(self) -> None:
        """Release every tenant (see :meth:`release`): for a host shutting down, or one that
        unregisters the plugin (``pm.unregister`` alone frees nothing)."""
        with self._lock:
            connectors = list(self._connectors.values())
            self._connectors.clear()
            self._last_used.clear()
        for connector in connectors:
            connector.close()

    def diagnose(self, tenant: Tenant) -> dict[str, Any] | None:
        """Diagnostics for ``coupa-iga doctor`` (not a hook): see
        :meth:`~coupa_plugin.connector.CoupaConnector.diagnose`."""
        with self._using(tenant) as connector:
            return None if connector is None else connector.diagnose()

    @contextmanager
    def _hook(
        self, tenant: Tenant, what: str, error: type[PluginError]
    ) -> Iterator[CoupaConnector | None]:
        """A hook call's frame: :func:`boundary` (only PluginError subclasses leave a hook)
        around one use of the tenant's connector (None when the tenant is not enabled)."""
        tenant_id = _tenant_id(tenant)
        with (
            tenant_context(tenant_id),
            hook_span(self._instruments, tenant_id, what),
            boundary(tenant_id, what, error),
            self._using(tenant) as connector,
        ):
            yield connector

    @hookimpl
    def configure(self, tenant: Tenant) -> ConnectorStatus | None:
        with self._hook(tenant, "configure", ConfigurationError) as connector:
            return None if connector is None else connector.configure(refresh=True)

    @hookimpl
    def discover_resources(self, tenant: Tenant, request: SyncRequest) -> Iterable[Resource] | None:
        with self._hook(tenant, "discover_resources", SyncError) as connector:
            return None if connector is None else connector.discover_resources(request)

    @hookimpl
    def sync_grants(self, tenant: Tenant, request: SyncRequest) -> Iterable[Grant] | None:
        with self._hook(tenant, "sync_grants", SyncError) as connector:
            return None if connector is None else connector.sync_grants(request)

    @hookimpl
    def provision(self, tenant: Tenant, request: ProvisionRequest) -> ProvisionResult | None:
        with self._hook(tenant, "provision", ProvisioningError) as connector:
            return None if connector is None else connector.provision(request)


plugin = CoupaPlugin()
