"""Ready-made contract tests: ``pytest --pyargs coupa_plugin.testing.contract_tests``.

Checks every installed ``iga.plugins`` plugin against the host contract.
"""

from __future__ import annotations

from typing import Any

import pytest

from coupa_plugin.testing.contract import (
    installed_plugins,
    plugin_problems,
    silence_problems,
    spec_documentation_problems,
)

PLUGINS = installed_plugins()


def test_every_hookspec_is_documented() -> None:
    assert spec_documentation_problems() == []


def test_plugins_are_installed() -> None:
    assert PLUGINS, "no plugin is installed under the iga.plugins entry-point group"


@pytest.mark.parametrize(("name", "plugin"), PLUGINS, ids=[name for name, _ in PLUGINS])
def test_plugin_registers_and_declares_its_hooks_properly(name: str, plugin: Any) -> None:
    assert plugin_problems(name, plugin) == []


@pytest.mark.parametrize(("name", "plugin"), PLUGINS, ids=[name for name, _ in PLUGINS])
def test_plugin_is_silent_for_tenants_without_it(name: str, plugin: Any) -> None:
    assert silence_problems(name, plugin) == []
