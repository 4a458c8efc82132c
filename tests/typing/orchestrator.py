"""The host contract as an orchestrator uses it, checked by ``mypy --strict`` (``scripts/test``
runs mypy on this file) and run against the sandbox by ``tests/test_typing_orchestrator.py``.

An orchestrator depends on ``coupa_plugin.host`` only: it builds a pluggy ``PluginManager``
for the project, adds :class:`HostSpec`, loads the ``iga.plugins`` entry points and calls the
hooks with keyword arguments. A change to the contract that breaks such code (a renamed
field, a changed type, a hook's signature) fails the type check here before it reaches one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, assert_type

import pluggy

from coupa_plugin.host.errors import (
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    PluginError,
    ProvisioningError,
    ReadOnlyError,
    SyncError,
)
from coupa_plugin.host.model import (
    ConnectorStatus,
    Entitlement,
    Grant,
    ProvisionRequest,
    ProvisionResult,
    Resource,
    SyncRequest,
    Tenant,
)
from coupa_plugin.host.spec import (
    ENTRY_POINT_GROUP,
    HOOK_NAMES,
    PROJECT_NAME,
    HostSpec,
    hookimpl,
    hookspec,
)

# the hooks' signatures, as an orchestrator relies on them
CONFIGURE: Callable[[HostSpec, Tenant], ConnectorStatus | None] = HostSpec.configure
DISCOVER: Callable[[HostSpec, Tenant, SyncRequest], Iterable[Resource] | None] = (
    HostSpec.discover_resources
)
SYNC: Callable[[HostSpec, Tenant, SyncRequest], Iterable[Grant] | None] = HostSpec.sync_grants
PROVISION: Callable[[HostSpec, Tenant, ProvisionRequest], ProvisionResult | None] = (
    HostSpec.provision
)
assert_type(hookspec, pluggy.HookspecMarker)
assert_type(hookimpl, pluggy.HookimplMarker)
assert_type(PROJECT_NAME, str)
assert_type(ENTRY_POINT_GROUP, str)
assert_type(HOOK_NAMES, tuple[str, str, str, str])


def plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with every installed plugin of the entry-point group."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(HostSpec)
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    pm.check_pending()
    return pm


def configure(pm: pluggy.PluginManager, tenant: Tenant) -> list[ConnectorStatus]:
    results: list[Any] = pm.hook.configure(tenant=tenant)
    statuses = [s for s in results if isinstance(s, ConnectorStatus)]
    for status in statuses:
        assert_type(status.mode, str)
        assert_type(status.capabilities, frozenset[str])
        assert_type(status.warnings, tuple[str, ...])
    return statuses


def snapshot(pm: pluggy.PluginManager, tenant: Tenant, request: SyncRequest) -> dict[str, int]:
    """Count what the plugins stream; a ``SyncError`` means the snapshot is incomplete."""
    counts: dict[str, int] = {}
    try:
        for stream in pm.hook.discover_resources(tenant=tenant, request=request):
            for resource in stream:
                assert isinstance(resource, Resource)
                entitlements: tuple[Entitlement, ...] = resource.entitlements
                counts[resource.type] = counts.get(resource.type, 0) + 1
                counts["entitlement"] = counts.get("entitlement", 0) + len(entitlements)
        for stream in pm.hook.sync_grants(tenant=tenant, request=request):
            for grant in stream:
                assert isinstance(grant, Grant)
                assert_type(grant.principal_id, str)
                counts["grant"] = counts.get("grant", 0) + 1
    except SyncError:
        counts.clear()  # never keep a partial stream as if complete
        raise
    return counts


def provision(pm: pluggy.PluginManager, tenant: Tenant, request: ProvisionRequest) -> str:
    """What happened, as an orchestrator would record it; errors by kind."""
    try:
        result: ProvisionResult | None = pm.hook.provision(tenant=tenant, request=request)
    except ReadOnlyError as exc:
        return f"refused: read-only ({exc})"
    except NotFoundError as exc:
        return f"unknown: {exc}"
    except ProvisioningError as exc:
        return f"failed, Coupa left as: {exc}"
    except (ConfigurationError, AuthenticationError) as exc:
        return f"fix the tenant's settings: {exc}"
    except PluginError as exc:
        return f"plugin error: {exc}"
    if result is None:
        return "no plugin handled it"
    changes: tuple[str, ...] = result.changes
    return f"{result.status}: {'; '.join(changes) or 'nothing to write'}"


def run(tenant: Tenant, principal_id: str, entitlement_id: str) -> tuple[str, dict[str, int]]:
    """Configure, plan a grant (dry run), then take a snapshot."""
    pm = plugin_manager()
    configure(pm, tenant)
    planned = provision(
        pm,
        tenant,
        ProvisionRequest(
            action="grant", entitlement_id=entitlement_id, principal_id=principal_id, dry_run=True
        ),
    )
    return planned, snapshot(pm, tenant, SyncRequest(resource_types=frozenset({"user", "role"})))
