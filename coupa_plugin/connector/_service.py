"""One tenant's Coupa connector: the object behind the four hooks."""

from __future__ import annotations

import functools
import logging
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Final, TypeVar

import attrs
import httpx

from coupa_plugin.connector._boundary import describe
from coupa_plugin.connector._inputs import check_sync_request
from coupa_plugin.connector._kinds import KINDS, by_name
from coupa_plugin.connector._lifecycle import Leased, Uses
from coupa_plugin.connector._provisioning import (
    Permits,
    Provisioner,
    ProvisionerConfig,
    Recovery,
    default_state_dir,
    parse_command,
)
from coupa_plugin.connector._provisioning.command import GROUP_ACTIONS, Refused, UserCommand
from coupa_plugin.connector._provisioning.repair import Wait
from coupa_plugin.connector._provisioning.store import StateStore
from coupa_plugin.connector._settings import CoupaSettings
from coupa_plugin.connector._shared_state import (
    RedisStore,
    cleartext_warning,
    connect,
    pace_key,
)
from coupa_plugin.connector._statefiles import Seal
from coupa_plugin.connector._sync import Begun, TenantSync, begin, catalog_listings
from coupa_plugin.connector._telemetry import (
    Instruments,
    Telemetry,
    measure_stream,
    provisioned,
)
from coupa_plugin.coupa import (
    COUPA_RATE,
    OPTIONAL_SCOPES,
    WRITE_SCOPES,
    ClientConfig,
    CoupaAuthError,
    CoupaClient,
    CoupaError,
    CoupaHTTPError,
    RateLimiter,
    RedisRateLimiter,
    ScopeError,
    ScopeGrant,
    attach_tenant_filter,
    deadline,
    inherit_deadline,
)
from coupa_plugin.host.errors import (
    AuthenticationError,
    ConfigurationError,
    PluginError,
    ProvisioningError,
    ReadOnlyError,
)
from coupa_plugin.host.model import (
    PROVISION_ACTIONS,
    ConnectorStatus,
    Grant,
    ProvisionRequest,
    ProvisionResult,
    Resource,
    SyncRequest,
)

__all__ = ["PLUGIN_NAME", "CoupaConnector"]

PLUGIN_NAME = "coupa"
log = logging.getLogger("coupa_plugin.connector")
T = TypeVar("T")
CONNECTOR_LOGGERS: Final = (
    "coupa_plugin.connector",
    "coupa_plugin.connector.provisioning",
    "coupa_plugin.connector.shared_state",
)
attach_tenant_filter(*CONNECTOR_LOGGERS)  # a record logged for a tenant names it


@contextmanager
def _usable(tenant_id: str) -> Iterator[None]:
    """Open what a tenant's settings name (the shared rate-limit file, the Redis store, the
    state directory): one that cannot be used is a :class:`ConfigurationError`."""
    try:
        yield
    except (OSError, sqlite3.Error, ValueError) as exc:
        raise ConfigurationError(
            f"tenant {tenant_id[:80]}: the settings cannot be used: {describe(exc)}"
        ) from exc


class CoupaConnector:
    """Settings, client, status and sync state of one tenant."""

    def __init__(
        self,
        tenant_id: str,
        settings: CoupaSettings,
        transport: httpx.BaseTransport | None = None,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        instruments: Instruments | None = None,
        repair_wait: Wait | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.telemetry = Telemetry(instruments, tenant_id, clock)
        self.settings = settings
        self._clock = clock  # the sync's too: how long configure's first pages stay fresh
        self._lock = threading.Lock()
        # the calls and streams using this connector: it closes once retired and unused
        self.uses = Uses(self._release)
        self._status: ConnectorStatus | None = None
        self._sync: TenantSync | None = None
        self._begun: dict[str, Begun[Any]] = {}  # catalog listings configure's probes began
        self._flags: frozenset[str] | None = None  # license flags configure read
        config = settings.client_config(tenant=tenant_id)
        with _usable(tenant_id):  # the files and servers the settings name
            self._redis, store, limiter = self._shared_state(tenant_id, settings, config, sleep)
            self.client = CoupaClient(
                config,
                transport,
                clock=clock,
                limiter=limiter,
                sleep=sleep,
                telemetry=self.telemetry,
            )
            provisioning = ProvisionerConfig(
                tenant_id=tenant_id,
                instance=settings.base_url,
                state_dir=settings.state_dir or default_state_dir(),
                seal=Seal(settings.client_secret.reveal(), f"{tenant_id}\0{settings.base_url}"),
                protected_logins=settings.protected_logins,
                integration_login=settings.integration_login,
                journal_max_age_s=settings.journal_max_age_s,
                wall_clock=wall_clock,
                clock=clock,
                store=store,
                repair_wait=repair_wait,
            )
            self.provisioner = Provisioner(self.client, provisioning)

    @staticmethod
    def _shared_state(
        tenant_id: str,
        settings: CoupaSettings,
        config: ClientConfig,
        sleep: Callable[[float], None],
    ) -> tuple[Any, StateStore | None, RateLimiter | None]:
        """With ``shared_state``: the Redis client, the provisioning store and the pacer every
        worker of the tenant shares (no connection is opened until first use). Each Redis
        call ends within ``timeout_s`` and the hook's deadline; the pacer's within a second."""
        url = settings.shared_state
        if url is None:
            return None, None, None
        if warning := cleartext_warning(url):
            log.warning(warning, extra={"tenant": tenant_id})
        client = connect(url, timeout_s=config.timeout_s)
        store = RedisStore(
            client, url, tenant_id, settings.base_url, call_timeout_s=config.timeout_s
        )
        limiter = RedisRateLimiter(
            client,
            pace_key(settings.base_url),
            settings.requests_per_second,
            burst=config.burst,
            sleep=sleep,
            call_timeout_s=min(config.timeout_s, 1.0),
        )
        return client, store, limiter

    def _decided(self, status: ConnectorStatus) -> ConnectorStatus:
        """Keep ``status`` and tell the provisioner what it allows."""
        self._status = status
        self.provisioner.permit(
            Permits(
                kinds=status.resource_types - {"user"},
                writes=self.settings.mode != "read-only" and status.mode == "provisioning",
            )
        )
        return status

    def close(self) -> None:
        """Retire the connector: its threads and sockets are released now when no call or
        stream uses it, else once the last one ends (a tenant reconfigured, disabled or
        released mid-call must not break the call or the stream already running). Its
        self-repair thread stops at once: what it left pending is repaired by the next
        connector of the tenant, at its first hook call."""
        self.provisioner.close()
        self.uses.retire()

    @property
    def closed(self) -> bool:
        return self.uses.closed

    def _release(self) -> None:
        try:
            self.client.close()
        finally:
            if self._redis is not None:
                self._redis.close()
        log.info("connector closed", extra={"tenant": self.tenant_id})

    def _streaming(self, items: Iterator[T]) -> Iterator[T]:
        return Leased(items, self.uses, self.tenant_id)

    # -- configure -------------------------------------------------------------------------

    def configure(self, *, refresh: bool = False) -> ConnectorStatus:
        """Authenticate, detect scopes and decide the mode. Kept for the other hooks;
        ``refresh`` (what the ``configure`` hook asks for) checks again, then recovers the
        journal's pending entries. That recovery takes users' locks, so it runs outside the
        connector's lock: a provision call holding a user's lock may ask for the status."""
        status = self._status
        if status is not None and not refresh:
            return status
        # configure's budget: every request it makes, retries included, ends by then
        with deadline(self.client.config.retry_timeout_s):
            with self._lock:
                if self._status is None or refresh:
                    self._decided(self._configure(refresh=refresh))
                    assert self._status is not None
                    recover = refresh and self._status.mode == "provisioning"
                    if self._sync is None:
                        self._sync = TenantSync(
                            self.client, self.tenant_id, self._status.resource_types, self._clock
                        )
                    else:
                        self._sync.enabled_types = self._status.resource_types
                    self._sync.carry_on(self._begun, self._flags)
                    self._begun, self._flags = {}, None
                else:
                    recover = False
                status = self._status
            if recover:
                status = self._recover_pending(status)
                with self._lock:
                    self._decided(status)
        return status

    def _configure(self, *, refresh: bool) -> ConnectorStatus:
        try:
            grant = self.client.connect(refresh=refresh)
        except ScopeError as exc:
            raise ConfigurationError(f"tenant {self.tenant_id}: {exc}") from None
        except CoupaAuthError as exc:
            raise AuthenticationError(f"tenant {self.tenant_id}: {exc}") from None
        except CoupaError as exc:
            raise PluginError(
                f"tenant {self.tenant_id}: cannot reach Coupa at {self.settings.base_url}: {exc}"
            ) from None
        try:
            types, warnings = self._resource_types(grant)
        except CoupaError as exc:
            raise PluginError(
                f"tenant {self.tenant_id}: configure could not check which resource types "
                f"Coupa serves: {exc}"
            ) from None
        if self.settings.requests_per_second > COUPA_RATE:
            warnings.append(
                f"requests_per_second {self.settings.requests_per_second:g} is above Coupa's "
                f"documented limit of {COUPA_RATE:g} requests/s: expect 429s"
            )
        capabilities = {"discover_resources", "sync_grants", "incremental_sync", "targeted_sync"}
        if grant.mode == "provisioning":
            capabilities |= {f"provision:{action}" for action in PROVISION_ACTIONS}
            if "group" not in types:  # group actions write user groups only
                capabilities -= {f"provision:{action}" for action in GROUP_ACTIONS}
        status = ConnectorStatus(
            plugin=PLUGIN_NAME,
            tenant_id=self.tenant_id,
            mode=grant.mode,
            capabilities=frozenset(capabilities),
            granted_scopes=grant.scopes,
            resource_types=types,
            warnings=tuple(warnings),
        )
        log.info(
            "configured",
            extra={
                "tenant": self.tenant_id,
                "mode": grant.mode,
                "resource_types": ",".join(sorted(types)),
            },
        )
        return status

    def _recover_pending(self, status: ConnectorStatus) -> ConnectorStatus:
        """Recover every rewrite a dead process left half-done; summarise in the warnings."""
        if self.settings.mode == "read-only":
            return status
        try:
            outcomes = self.recover()
        except PluginError as exc:  # the shared state is down: syncs still work
            return attrs.evolve(
                status, warnings=(*status.warnings, f"journal recovery did not run: {exc}")
            )
        if not outcomes:
            return status
        warnings = [f"journal recovery: {o.outcome}: {o.detail}" for o in outcomes[:20]]
        if len(outcomes) > 20:
            warnings.append(f"journal recovery: {len(outcomes) - 20} more outcome(s) logged")
        return attrs.evolve(status, warnings=(*status.warnings, *warnings))

    def recover(self) -> list[Recovery]:
        """Apply the journal's recovery rule to every pending entry of this tenant."""
        return self.provisioner.recover_now()

    def _repair_if_due(self) -> None:
        """At the start of every hook call of a provisioning tenant: recover what earlier calls
        or a dead process left pending, when an attempt is due (never in read-only mode)."""
        status = self.configure()
        if status.mode == "provisioning" and self.settings.mode != "read-only":
            with deadline(self.client.config.retry_timeout_s):
                self.provisioner.repair_if_due()

    def _resource_types(self, grant: ScopeGrant) -> tuple[frozenset[str], list[str]]:
        types = set(self.settings.resource_types)
        warnings = []
        if grant.documented_missing:
            warnings.append(
                "the OAuth client lacks "
                + ", ".join(sorted(grant.documented_missing))
                + " from the documented scope set; what needs them is off"
            )
        for kind in KINDS:  # a scope outside the documented sets: off unless granted
            scope = kind.catalog_scope
            if kind.name in types and scope in OPTIONAL_SCOPES and scope not in grant.scopes:
                types.discard(kind.name)
                warnings.append(
                    f"{kind.label}s are off: the OAuth client lacks {scope}; grant it to sync "
                    f"{kind.label}s"
                )
        # Which scope each listing needs is undocumented: ask Coupa once, every probe at once.
        # Each probe is the first page of its listing, which the next sync carries on.
        catalogs = catalog_listings(self.client)
        probed = [kind for kind in KINDS if kind.catalog_scope and kind.name in types]
        probes: list[Callable[[], Any]] = [
            functools.partial(self._refused, kind.name, catalogs[kind.name]) for kind in probed
        ]
        if "role" in types:
            probes.append(self._check_role_catalog)
        if types & {"user", "license"}:
            probes.append(self._read_license_flags)  # the sync's first read, done meanwhile
        results = self._concurrently(probes)
        for kind, refusal in zip(probed, results, strict=False):
            if refusal:
                types.discard(kind.name)
                warnings.append(
                    f"{kind.label}s are off: Coupa answered GET /api/{kind.item_path} with "
                    f"{refusal}; grant {kind.catalog_scope} to the OAuth client to sync them"
                )
        if "role" in types:
            warnings += results[len(probed)]
        if grant.mode == "read-only" and self.settings.mode == "auto":
            missing = ", ".join(sorted(WRITE_SCOPES - grant.scopes))
            warnings.append(
                f"read-only mode: the OAuth client lacks {missing or 'write scopes'}, so "
                "provisioning is off"
            )
        return frozenset(types), warnings

    @staticmethod
    def _concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
        """The results of ``calls``, run at once (each is one request); the first failure is
        raised after all have finished."""
        if len(calls) < 2:
            return [call() for call in calls]
        with ThreadPoolExecutor(len(calls), thread_name_prefix="coupa-probe") as pool:
            # each probe ends by configure's deadline, not by one of its own thread's
            futures = [pool.submit(inherit_deadline(call)) for call in calls]
        return [future.result() for future in futures]

    def _refused(self, kind: str, listing: Callable[[], Iterable[Any]]) -> str | None:
        """``HTTP <status>`` when Coupa refuses a listing (401, 403, 404), else None (and the
        listing, begun, is kept for the next sync). Any other failure leaves the type on: the
        sync reads the listing afresh and reports what still fails."""
        try:
            self._begun[kind] = begin(listing)
        except CoupaHTTPError as exc:
            if exc.status in {401, 403, 404}:
                return f"HTTP {exc.status}"
            self._probe_failed(kind, exc)
        except CoupaError as exc:
            self._probe_failed(kind, exc)
        return None

    def _read_license_flags(self) -> None:
        try:
            self._flags = self.client.newest_users()
        except CoupaError as exc:
            self._probe_failed("license", exc)

    def _probe_failed(self, kind: str, exc: CoupaError) -> None:
        log.warning(
            "catalog probe failed; the sync reads the listing afresh",
            extra={"tenant": self.tenant_id, "kind": kind, "error": str(exc)[:200]},
        )

    def _check_role_catalog(self) -> list[str]:
        try:
            self._begun["role"] = begin(catalog_listings(self.client)["role"])
        except CoupaError as exc:
            return [
                f"the role catalog (GraphQL) is unavailable ({str(exc)[:120]}); roles that "
                "nobody holds will be missing"
            ]
        return []

    def diagnose(self, probes: int = 5) -> dict[str, Any]:
        """What ``doctor`` shows: settings, authentication, scopes and mode with the reason,
        which resource types are on or off (and the scope that turns one on), the measured
        round trip and the rate-limit headroom."""
        report: dict[str, Any] = {
            "settings": {
                "base_url": self.settings.base_url,
                "mode": self.settings.mode,
                "requests_per_second": self.settings.requests_per_second,
                "max_in_flight": self.settings.max_in_flight,
            },
        }
        started = time.monotonic()
        status = self.configure(refresh=True)
        report["authentication"] = {
            "ok": True,
            "configure_ms": round((time.monotonic() - started) * 1000, 1),
            "tokens_minted": self.client.tokens.minted,
        }
        report["scopes"] = sorted(status.granted_scopes)
        missing_write = sorted(WRITE_SCOPES - status.granted_scopes)
        report["mode"] = {
            "mode": status.mode,
            "why": (
                "the OAuth client has every provisioning scope"
                if status.mode == "provisioning"
                else "settings ask for read-only"
                if self.settings.mode == "read-only"
                else f"the OAuth client lacks {', '.join(missing_write)}"
            ),
        }
        types: dict[str, str] = {}
        # the kinds behind a scope outside the documented sets are listed even when not asked
        optional = {kind.name for kind in KINDS if kind.catalog_scope in OPTIONAL_SCOPES}
        for name in sorted(self.settings.resource_types | optional):
            scope = known.catalog_scope if (known := by_name(name)) is not None else None
            if name in status.resource_types:
                types[name] = "on"
            elif name not in self.settings.resource_types:
                types[name] = "off (not in resource_types)"
            else:
                types[name] = f"off (grant {scope} to turn it on)" if scope else "off"
        report["resource_types"] = types
        timings = []
        throttled_before = self.client.limiter.throttled
        for _ in range(probes):
            started = time.monotonic()
            self.client.ping()
            timings.append((time.monotonic() - started) * 1000)
        report["round_trip_ms"] = {
            "median": round(statistics.median(timings), 1),
            "max": round(max(timings), 1),
            "probes": probes,
        }
        report["rate_limit"] = {
            "coupa_limit_per_s": COUPA_RATE,
            "configured_per_s": self.settings.requests_per_second,
            "headroom_per_s": round(COUPA_RATE - self.settings.requests_per_second, 2),
            "throttled_during_check": self.client.limiter.throttled - throttled_before,
            "sustainable_per_s_at_this_latency": round(
                min(
                    self.settings.requests_per_second,
                    self.settings.max_in_flight / (statistics.median(timings) / 1000 or 1e-9),
                ),
                1,
            ),
        }
        report["warnings"] = list(status.warnings)
        return report

    @property
    def sync(self) -> TenantSync:
        self.configure()
        assert self._sync is not None
        return self._sync

    # -- hooks -----------------------------------------------------------------------------

    def discover_resources(self, request: SyncRequest) -> Iterator[Resource]:
        check_sync_request(request, "discover_resources")
        self._repair_if_due()
        items = self.sync.discover(request)
        return self._streaming(measure_stream(items, self.telemetry, "discover_resources"))

    def sync_grants(self, request: SyncRequest) -> Iterator[Grant]:
        check_sync_request(request, "sync_grants")
        self._repair_if_due()
        items = self.sync.grants(request)
        return self._streaming(measure_stream(items, self.telemetry, "sync_grants"))

    def provision(self, request: ProvisionRequest) -> ProvisionResult:
        """:meth:`_provision`, counted by action and status (the error's type on failure)."""
        action = request.action if request.action in PROVISION_ACTIONS else "invalid"
        try:
            result = self._provision(request)
        except Exception as exc:
            provisioned(self.telemetry, action, type(exc).__name__)
            raise
        provisioned(self.telemetry, action, result.status)
        return result

    def _provision(self, request: ProvisionRequest) -> ProvisionResult:
        # read once: a request that is not well formed is refused here, before anything is
        # sent; one asking for what cannot be done is refused by the provisioner, in its turn
        command = parse_command(request)
        if self.settings.mode == "read-only":
            raise ReadOnlyError(
                f"tenant {self.tenant_id} is configured read-only; nothing was sent"
            )
        status = self.configure()
        if status.mode != "provisioning":
            raise ReadOnlyError(
                f"tenant {self.tenant_id} runs in read-only mode (the OAuth client lacks the "
                "write scopes); nothing was sent"
            )
        self.sync.forget_pass()  # grants seen before this change must not be replayed
        # the call's own user is recovered inside the call (its result says so); the tenant's
        # other pending users right after it, whatever the call's outcome
        try:
            result = self.provisioner.provision(command)
        except PluginError:
            if not command.dry_run:
                self._repair_if_due()
            raise
        except Exception as exc:
            # the last guard: a failure nobody foresaw, possibly after a write; say what the
            # user holds now
            user_id = command.user_id if isinstance(command, UserCommand | Refused) else None
            state = "" if user_id is None else " " + self.provisioner.statement(user_id)
            raise ProvisioningError(
                f"tenant {self.tenant_id}: {request.action} could not complete: "
                f"{describe(exc)}.{state}"
            ) from exc
        if not command.dry_run:  # a dry run writes nothing, repairs included
            self._repair_if_due()
        return result
