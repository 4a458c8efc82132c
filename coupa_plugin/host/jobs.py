"""What the reference host does with a tenant: sync it into a snapshot, provision a change."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Protocol

import attrs

from coupa_plugin.host.facts import run_facts
from coupa_plugin.host.model import (
    ConnectorStatus,
    ProvisionRequest,
    ProvisionResult,
    SyncRequest,
    Tenant,
)
from coupa_plugin.host.runner import Host
from coupa_plugin.host.snapshot import SnapshotStore

__all__ = ["ProgressSink", "SyncOutcome", "provision_one", "sync_tenant"]

log = logging.getLogger("coupa_plugin.host")


class ProgressSink(Protocol):
    """Receives progress while a sync streams (``phase`` is ``resources`` or ``grants``)."""

    def begin(self, tenant_id: str, expected_items: int | None) -> None: ...

    def advance(self, tenant_id: str, phase: str, item_type: str) -> None: ...


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


def sync_tenant(
    host: Host,
    tenant: Tenant,
    plugin: str,
    store: SnapshotStore,
    request: SyncRequest | None = None,
    progress: ProgressSink | None = None,
) -> SyncOutcome:
    """configure, discover_resources and sync_grants for one plugin, streamed into ``store``.

    Exceptions from the plugin propagate after the run was recorded as failed.
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
    log.info("sync started", extra={"tenant": tenant.id, "plugin": plugin, "mode": status.mode})
    if progress:
        previous = store.last_complete(tenant.id, plugin, request)
        progress.begin(tenant.id, previous.resources + previous.grants if previous else None)
    per_type: Counter[str] = Counter()
    with store.run(tenant.id, plugin, request, status) as writer:
        for resource in hooks.discover_resources(request) or ():
            writer.add_resource(resource)
            per_type[resource.type] += 1
            if progress:
                progress.advance(tenant.id, "resources", resource.type)
        for grant in hooks.sync_grants(request) or ():
            writer.add_grant(grant)
            if progress:
                progress.advance(tenant.id, "grants", grant.entitlement_id.split(":", 1)[0])
    store.record_facts(writer.run_id, run_facts(tenant, plugin))
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
