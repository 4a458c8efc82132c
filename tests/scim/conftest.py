"""A SCIM facade over the plugin over the in-process Coupa sandbox (rate limit off, the plugin
on virtual time), and an HTTP client holding its bearer token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from coupa_plugin.refhost.manager import Host
from coupa_plugin.refhost.scim.server import ScimFacade
from coupa_plugin.sandbox import CoupaSandbox, Operations, generate_tenant
from tests.kit import plugin_for, tenant

TOKEN = "scim-test-token-4b1d"


@pytest.fixture
def sandbox() -> CoupaSandbox:
    return CoupaSandbox(generate_tenant(users=40, seed=3), operations=Operations(rate_limit=False))


@pytest.fixture
def facade(sandbox: CoupaSandbox, tmp_path: Path) -> Iterator[ScimFacade]:
    host = Host()
    host.register(plugin_for(sandbox), "coupa")
    t = tenant("scim", mode="provisioning", state_dir=str(tmp_path / "state"))
    with ScimFacade(host.hooks(t, "coupa"), TOKEN) as running:
        yield running


@pytest.fixture
def client(facade: ScimFacade) -> Iterator[httpx.Client]:
    assert facade.url is not None
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=facade.url, headers=headers, timeout=30) as http:
        yield http
