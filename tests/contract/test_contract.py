"""The plugin as a host sees it: entry point, hookspecs, per-tenant toggles."""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points
from typing import Any

import pluggy
import pytest

from coupa_plugin.host import spec
from coupa_plugin.host.model import ProvisionRequest, SyncRequest, Tenant
from coupa_plugin.plugin import CoupaPlugin, plugin
from coupa_plugin.refhost._manager import Host


def test_entry_point_is_discoverable_and_loads_the_plugin_instance() -> None:
    [ep] = [ep for ep in entry_points(group="iga.plugins") if ep.name == "coupa"]
    assert ep.value == "coupa_plugin.plugin:plugin"
    assert ep.load() is plugin
    assert isinstance(plugin, CoupaPlugin)


def test_pluggy_loads_entry_points_and_check_pending_passes() -> None:
    pm = pluggy.PluginManager("iga")
    pm.add_hookspecs(spec.HostSpec)
    assert pm.load_setuptools_entrypoints("iga.plugins", name="coupa") == 1
    pm.check_pending()
    assert pm.get_plugin("coupa") is plugin
    impls = {hook.name for hook in pm.get_hookcallers(plugin) or []}
    assert impls == set(spec.HOOK_NAMES)


def test_hostspec_has_exactly_the_four_hooks_and_provision_is_firstresult() -> None:
    names = {n for n, _ in inspect.getmembers(spec.HostSpec, inspect.isfunction)}
    assert names == set(spec.HOOK_NAMES)
    pm = pluggy.PluginManager("iga")
    pm.add_hookspecs(spec.HostSpec)
    provision = pm.hook.provision.spec
    assert provision is not None and provision.opts["firstresult"] is True
    for name in ("configure", "discover_resources", "sync_grants"):
        assert not getattr(pm.hook, name).spec.opts["firstresult"]


@pytest.mark.parametrize("name", spec.HOOK_NAMES)
def test_every_hook_is_documented_with_an_example(name: str) -> None:
    doc = inspect.getdoc(getattr(spec.HostSpec, name)) or ""
    assert ":returns:" in doc
    assert "Example::" in doc


@pytest.mark.parametrize("name", spec.HOOK_NAMES)
def test_hookimpl_parameters_have_no_defaults(name: str) -> None:
    # pluggy never passes a parameter that has a default value.
    params = inspect.signature(getattr(CoupaPlugin, name)).parameters
    assert all(p.default is inspect.Parameter.empty for p in params.values())
    spec_params = inspect.signature(getattr(spec.HostSpec, name)).parameters
    assert list(params) == list(spec_params)


def _call_all(pm: Any, tenant: Tenant) -> list[Any]:
    return [
        pm.hook.configure(tenant=tenant),
        pm.hook.discover_resources(tenant=tenant, request=SyncRequest()),
        pm.hook.sync_grants(tenant=tenant, request=SyncRequest()),
        pm.hook.provision(
            tenant=tenant,
            request=ProvisionRequest(
                action="grant", entitlement_id="role:4:member", principal_id="1"
            ),
        ),
    ]


@pytest.mark.parametrize("plugins", [{}, {"other": {"x": 1}}, {"coupa": {"enabled": False}}])
def test_every_hook_returns_none_without_an_enabled_coupa_section(
    plugins: dict[str, Any],
) -> None:
    pm = pluggy.PluginManager("iga")
    pm.add_hookspecs(spec.HostSpec)
    pm.register(CoupaPlugin(), name="coupa")
    assert _call_all(pm, Tenant(id="t", plugins=plugins)) == [[], [], [], None]


class _Spy:
    def __init__(self) -> None:
        self.calls: list[str] = []

    @spec.hookimpl
    def configure(self, tenant: Tenant) -> None:
        self.calls.append(f"configure:{tenant.id}")


def test_a_disabled_tenant_never_reaches_the_plugin() -> None:
    host = Host()
    spy = _Spy()
    host.register(spy, "coupa")
    off = Tenant(id="off", plugins={"coupa": {"enabled": False}})
    on = Tenant(id="on", plugins={"coupa": {}})
    assert host.enabled_plugins(off) == []
    with pytest.raises(LookupError):
        host.hooks(off, "coupa")
    host.hooks(on, "coupa").configure()
    assert spy.calls == ["configure:on"]


def test_subset_callers_keep_plugins_apart_per_tenant() -> None:
    host = Host()
    first, second = _Spy(), _Spy()
    host.register(first, "coupa")
    host.register(second, "other")
    tenant = Tenant(id="t", plugins={"coupa": {}, "other": {"enabled": False}})
    assert host.enabled_plugins(tenant) == ["coupa"]
    host.hooks(tenant, "coupa").configure()
    assert first.calls == ["configure:t"]
    assert second.calls == []
