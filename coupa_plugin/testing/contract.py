"""Contract checks for any plugin of the ``iga.plugins`` entry-point group, in the spirit of
datasette's own plugin tests: every hook is documented, every plugin registers cleanly and
declares its hooks the way pluggy calls them, every hook stays silent for a tenant that does
not configure the plugin, and every hook is exercised by a test.

Run the ready-made tests against whatever plugins are installed::

    pytest --pyargs coupa_plugin.testing.contract_tests

or call the functions from a test suite of your own.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from coupa_plugin.host.model import ProvisionRequest, SyncRequest, Tenant
from coupa_plugin.host.spec import ENTRY_POINT_GROUP, HOOK_NAMES, PROJECT_NAME, HostSpec

__all__ = [
    "installed_plugins",
    "plugin_problems",
    "silence_problems",
    "spec_documentation_problems",
    "untested_hooks",
]


def installed_plugins(group: str = ENTRY_POINT_GROUP) -> list[tuple[str, Any]]:
    """``(name, object)`` of every plugin of the entry-point group."""
    return [(ep.name, ep.load()) for ep in entry_points(group=group)]


def spec_documentation_problems() -> list[str]:
    """Hookspecs without a docstring that documents arguments, return value and an example."""
    problems = []
    for name in HOOK_NAMES:
        doc = inspect.getdoc(getattr(HostSpec, name)) or ""
        for part in (":param tenant:", ":returns:", "Example::"):
            if part not in doc:
                problems.append(f"hookspec {name}: docstring lacks {part!r}")
    return problems


def plugin_problems(name: str, plugin: object) -> list[str]:
    """What keeps ``plugin`` from working under a pluggy host of project ``iga``."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(HostSpec)
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        return [f"{name}: {exc}"]
    problems = []
    for caller in pm.get_hookcallers(plugin) or []:
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            spec_args = inspect.signature(getattr(HostSpec, caller.name)).parameters
            params = inspect.signature(impl.function).parameters
            for param in params.values():
                if param.name == "self":
                    continue
                if param.default is not inspect.Parameter.empty:
                    problems.append(
                        f"{name}.{caller.name}: parameter {param.name!r} has a "
                        "default, so pluggy never passes it"
                    )
                if param.kind is inspect.Parameter.KEYWORD_ONLY:
                    problems.append(
                        f"{name}.{caller.name}: keyword-only parameter "
                        f"{param.name!r} is ignored by pluggy"
                    )
                if param.name not in spec_args:
                    problems.append(f"{name}.{caller.name}: unknown parameter {param.name!r}")
    return problems


def silence_problems(name: str, plugin: object) -> list[str]:
    """Hooks that answer for a tenant that has no section for the plugin, or disables it."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(HostSpec)
    pm.register(plugin, name=name)
    problems = []
    for plugins in ({}, {name: {"enabled": False}}):
        tenant = Tenant(id="contract-check", plugins=plugins)
        results = {
            "configure": pm.hook.configure(tenant=tenant),
            "discover_resources": pm.hook.discover_resources(tenant=tenant, request=SyncRequest()),
            "sync_grants": pm.hook.sync_grants(tenant=tenant, request=SyncRequest()),
            "provision": pm.hook.provision(
                tenant=tenant, request=ProvisionRequest(action="enable_account", principal_id="1")
            ),
        }
        for hook, result in results.items():
            if result not in ([], None):
                problems.append(f"{name}.{hook} answered for a tenant with plugins={plugins}")
    return problems


def untested_hooks(test_paths: Iterable[Path], hooks: Iterable[str] = HOOK_NAMES) -> list[str]:
    """Hooks with no test function named ``test_hook_<hook>…`` under ``test_paths``."""
    names: set[str] = set()
    for root in test_paths:
        files = [root] if root.is_file() else sorted(root.rglob("test_*.py"))
        for path in files:
            tree = ast.parse(path.read_text("utf-8"))
            names |= {
                node.name
                for node in ast.walk(tree)
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            }
    return [
        hook
        for hook in hooks
        if not any(n == f"test_hook_{hook}" or n.startswith(f"test_hook_{hook}_") for n in names)
    ]
