"""What the reference host does with a tenant: sync it into a snapshot, provision a change."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Protocol

import attrs

from coupa_plugin.host.errors import (
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    ProvisioningError,
    ReadOnlyError,
    RefusedError,
)
from coupa_plugin.host.model import (
    ConnectorStatus,
    ProvisionRequest,
    ProvisionResult,
    SyncRequest,
    Tenant,
)
from coupa_plugin.refhost._errors import UnknownTypeError, UsageError
from coupa_plugin.refhost._facts import run_facts
from coupa_plugin.refhost._logfmt import HOST_LOGGER
from coupa_plugin.refhost._manager import Host
from coupa_plugin.refhost._snapshot import SnapshotStore

__all__ = [
    "ProgressSink",
    "SyncOutcome",
    "error_kind",
    "is_refusal",
    "provision_one",
    "sync_tenant",
]

log = logging.getLogger(HOST_LOGGER)


def is_refusal(exc: BaseException) -> bool:
    """A change refused by policy before anything was written (a protected login, the
    integration's own API user, the last admin, a flag Coupa marks read-only).

    The one place that tells a refusal from a failed write: the contract's
    ``RefusedError(ProvisioningError)``.
    """
    return isinstance(exc, RefusedError)


def error_kind(exc: BaseException) -> str:
    """What kind of failure ``exc`` is for a user: ``usage``, ``configuration``,
    ``authentication``, ``refused`` or ``failed`` (the exit-code table's rows)."""
    if isinstance(exc, UsageError):
        return "usage"
    if isinstance(exc, ProvisioningError) and str(exc).startswith("unknown attribute"):
        return "usage"  # the request named an attribute the plugin does not know
    if isinstance(exc, ConfigurationError):
        return "configuration"
    if isinstance(exc, AuthenticationError):
        return "authentication"
    if isinstance(exc, ReadOnlyError | NotFoundError) or is_refusal(exc):
        return "refused"
    return "failed"


class ProgressSink(Protocol):
    """Receives progress while a sync streams (``phase`` is ``resources`` or ``grants``).

    ``expected_users`` is the number of users of the previous comparable complete run.
    """

    def begin(self, tenant_id: str, expected_users: int | None) -> None: ...

    def advance(self, tenant_id: str, phase: str, item_type: str) -> None: ...

    def finish(self, tenant_id: str, state: str) -> None: ...


@attrs.frozen(kw_only=True)
class SyncOutcome:
    """The result of syncing one plugin for one tenant."""

    tenant_id: str
    plugin: str
    run_id: int | None
    outcome: str
    status: ConnectorStatus | None
    resources: Counter[str]
    grants: int
    elapsed_s: float
    error: str | None = None


def sync_tenant(  # noqa: C901 - a run's stages and its outcome per failure
    host: Host,
    tenant: Tenant,
    plugin: str,
    store: SnapshotStore,
    request: SyncRequest | None = None,
    progress: ProgressSink | None = None,
) -> SyncOutcome:
    """configure, discover_resources and sync_grants for one plugin, streamed into ``store``.

    Resource types the plugin does not offer for the tenant are refused before a run is
    recorded (:class:`UnknownTypeError`). Exceptions from the plugin propagate after the run was
    recorded as failed (or interrupted). A targeted run that does not list every user asked
    for by id is recorded as failed (:class:`NotFoundError` naming them).
    """
    request = request or SyncRequest()
    started = time.monotonic()
    hooks = host.hooks(tenant, plugin)
    status = hooks.configure()
    if status is None:
        return SyncOutcome(
            tenant_id=tenant.id,
            plugin=plugin,
            run_id=None,
            outcome="skipped",
            status=None,
            resources=Counter(),
            grants=0,
            elapsed_s=0.0,
        )
    if request.resource_types is not None:
        unknown = sorted(request.resource_types - status.resource_types)
        if unknown:
            raise UnknownTypeError(
                f"unknown or disabled resource type(s) {unknown}; "
                f"this tenant offers {sorted(status.resource_types)}; nothing was synced"
            )
    log.info("sync started", extra={"tenant": tenant.id, "plugin": plugin, "mode": status.mode})
    if progress:
        previous = store.last_complete(tenant.id, plugin, request)
        progress.begin(tenant.id, store.count_users(previous.run_id) if previous else None)
    per_type: Counter[str] = Counter()
    lists_users = request.resource_types is None or "user" in request.resource_types
    wanted_users = set(request.principal_ids or ()) if lists_users else set()
    try:
        with store.run(tenant.id, plugin, request, status) as writer:
            for resource in hooks.discover_resources(request) or ():
                writer.add_resource(resource)
                per_type[resource.type] += 1
                if resource.type == "user":
                    wanted_users.discard(resource.id)
                if progress:
                    progress.advance(tenant.id, "resources", resource.type)
            for grant in hooks.sync_grants(request) or ():
                writer.add_grant(grant)
                if progress:
                    progress.advance(tenant.id, "grants", grant.entitlement_id.split(":", 1)[0])
            if wanted_users:  # a targeted run that misses a user it was asked for is no picture
                raise NotFoundError(
                    f"no user with id(s) {sorted(wanted_users)} in Coupa; the run is not kept"
                )
    except BaseException as exc:
        if progress:
            progress.finish(
                tenant.id, "interrupted" if isinstance(exc, KeyboardInterrupt) else "FAILED"
            )
        raise
    store.record_facts(writer.run_id, run_facts(tenant, plugin))
    if progress:
        progress.finish(tenant.id, "complete")
    elapsed = time.monotonic() - started
    log.info(
        "sync complete",
        extra={
            "tenant": tenant.id,
            "plugin": plugin,
            "run_id": writer.run_id,
            "resources": writer.resources,
            "grants": writer.grants,
            "elapsed_s": elapsed,
        },
    )
    return SyncOutcome(
        tenant_id=tenant.id,
        plugin=plugin,
        run_id=writer.run_id,
        outcome="complete",
        status=status,
        resources=per_type,
        grants=writer.grants,
        elapsed_s=elapsed,
    )


def provision_one(
    host: Host, tenant: Tenant, plugin: str, request: ProvisionRequest
) -> ProvisionResult | None:
    """Configure the plugin for ``tenant`` and send it one provisioning request."""
    hooks = host.hooks(tenant, plugin)
    if hooks.configure() is None:
        return None
    return hooks.provision(request)
