"""A SCIM facade over the plugin over the in-process Coupa sandbox (rate limit off, the plugin
on virtual time), and an HTTP client holding its bearer token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from coupa_plugin.refhost._manager import Host, PluginHooks
from coupa_plugin.refhost._scim.server import ScimFacade
from coupa_plugin.sandbox import CoupaSandbox, Operations, generate_tenant
from tests.kit import plugin_for, tenant

TOKEN = "scim-test-token-4b1d"


@pytest.fixture
def sandbox() -> CoupaSandbox:
    return CoupaSandbox(generate_tenant(users=40, seed=3), operations=Operations(rate_limit=False))


def hooks_for(sandbox: CoupaSandbox, state_dir: Path, mode: str = "provisioning") -> PluginHooks:
    """The plugin's hooks for a tenant of ``sandbox``, as the reference host calls them."""
    host = Host()
    host.register(plugin_for(sandbox), "coupa")
    return host.hooks(tenant("scim", mode=mode, state_dir=str(state_dir)), "coupa")


@pytest.fixture
def facade(sandbox: CoupaSandbox, tmp_path: Path) -> Iterator[ScimFacade]:
    with ScimFacade(hooks_for(sandbox, tmp_path / "state"), TOKEN) as running:
        yield running


@pytest.fixture
def client(facade: ScimFacade) -> Iterator[httpx.Client]:
    assert facade.url is not None
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=facade.url, headers=headers, timeout=30) as http:
        yield http
