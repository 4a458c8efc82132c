"""The reference host's plugin manager: loads plugins from entry points, toggles them per
tenant and runs them.

The host validates what plugins return (the object types of the contract) and names the plugin
at fault when one breaks the contract, so a misbehaving plugin is found quickly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any, TypeVar

import attrs
import pluggy

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
from coupa_plugin.host.spec import ENTRY_POINT_GROUP, HOOK_NAMES, PROJECT_NAME, HostSpec
from coupa_plugin.refhost._errors import ContractViolation
from coupa_plugin.refhost._logfmt import HOST_LOGGER

__all__ = [
    "ENTRY_POINT_GROUP",
    "Host",
    "LoadFailure",
    "PluginHooks",
]

log = logging.getLogger(HOST_LOGGER)
T = TypeVar("T")


@attrs.frozen
class LoadFailure:
    """An entry point that could not be loaded or registered."""

    name: str
    value: str
    error: str


class PluginHooks:
    """The hooks of one plugin for one tenant (a pluggy subset caller per hook)."""

    def __init__(self, pm: pluggy.PluginManager, name: str, tenant: Tenant) -> None:
        self.name = name
        self.tenant = tenant
        plugin = pm.get_plugin(name)
        others = [p for p in pm.get_plugins() if p is not plugin]
        self._callers = {
            hook: pm.subset_hook_caller(hook, remove_plugins=others) for hook in HOOK_NAMES
        }

    def _single(self, hook: str, results: list[Any]) -> Any:
        if len(results) > 1:
            raise ContractViolation(f"plugin {self.name!r}: {hook} returned {len(results)} results")
        return results[0] if results else None

    def configure(self) -> ConnectorStatus | None:
        status = self._single("configure", self._callers["configure"](tenant=self.tenant))
        if status is not None and not isinstance(status, ConnectorStatus):
            raise ContractViolation(
                f"plugin {self.name!r}: configure returned {type(status).__name__}, "
                "expected ConnectorStatus or None"
            )
        return status

    def _stream(self, hook: str, kind: type[T], request: SyncRequest) -> Iterator[T] | None:
        result = self._single(hook, self._callers[hook](tenant=self.tenant, request=request))
        if result is None:
            return None
        if not isinstance(result, Iterable) or isinstance(result, str | bytes | Mapping):
            raise ContractViolation(
                f"plugin {self.name!r}: {hook} returned {type(result).__name__}, "
                "expected an iterable"
            )
        return self._checked(hook, kind, result)

    def _checked(self, hook: str, kind: type[T], items: Iterable[Any]) -> Iterator[T]:
        for item in items:
            if not isinstance(item, kind):
                raise ContractViolation(
                    f"plugin {self.name!r}: {hook} yielded {type(item).__name__}, "
                    f"expected {kind.__name__}"
                )
            yield item

    def discover_resources(self, request: SyncRequest) -> Iterator[Resource] | None:
        return self._stream("discover_resources", Resource, request)

    def sync_grants(self, request: SyncRequest) -> Iterator[Grant] | None:
        return self._stream("sync_grants", Grant, request)

    def provision(self, request: ProvisionRequest) -> ProvisionResult | None:
        result = self._callers["provision"](tenant=self.tenant, request=request)
        if result is not None and not isinstance(result, ProvisionResult):
            raise ContractViolation(
                f"plugin {self.name!r}: provision returned {type(result).__name__}, "
                "expected ProvisionResult or None"
            )
        return result


class Host:
    """A pluggy plugin manager for the ``iga`` project with per-tenant toggles."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(HostSpec)
        self.load_failures: list[LoadFailure] = []

    def register(self, plugin: object, name: str) -> None:
        """Register ``plugin`` under ``name`` and check its hooks against the spec."""
        self.pm.register(plugin, name=name)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError:
            self.pm.unregister(name=name)
            raise

    def load_entry_points(
        self,
        group: str = ENTRY_POINT_GROUP,
        *,
        loader: Callable[[str], Iterable[Any]] | None = None,
    ) -> list[str]:
        """Load and register every plugin of the entry-point group.

        A plugin that fails to import or to register is logged, recorded in
        :attr:`load_failures` and skipped; the others still load.
        """
        found = loader(group) if loader else entry_points(group=group)
        loaded = []
        for ep in found:
            if self.pm.has_plugin(ep.name) or self.pm.is_blocked(ep.name):
                continue
            try:
                self.register(ep.load(), ep.name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the host
                failure = LoadFailure(ep.name, ep.value, f"{type(exc).__name__}: {exc}")
                self.load_failures.append(failure)
                log.error("plugin %s (%s) failed to load: %s", ep.name, ep.value, failure.error)
                continue
            loaded.append(ep.name)
        return loaded

    def plugin_names(self) -> list[str]:
        return sorted(name for name, _ in self.pm.list_name_plugin())

    def enabled_plugins(self, tenant: Tenant) -> list[str]:
        """Plugins that have a section for ``tenant`` that does not say ``enabled = false``."""
        return [
            name
            for name in self.plugin_names()
            if name in tenant.plugins and section_enabled(tenant.plugins[name])
        ]

    def hooks(self, tenant: Tenant, plugin: str) -> PluginHooks:
        """The hooks of one enabled plugin for ``tenant``; other plugins are never called."""
        if plugin not in self.enabled_plugins(tenant):
            raise LookupError(f"plugin {plugin!r} is not enabled for tenant {tenant.id!r}")
        return PluginHooks(self.pm, plugin, tenant)
