"""pytest fixtures for host developers, registered through the ``pytest11`` entry point.

``coupa_sandbox``
    A :class:`~coupa_plugin.sandbox.CoupaSandbox` with a generated tenant of 50 users (seed 0;
    Coupa's rate limit off so tests run fast). Tune it with the ``coupa_sandbox`` marker:
    ``@pytest.mark.coupa_sandbox(users=500, seed=3, quirks={"list_put": "merge"},
    operations={"rate_limit": True})``.
``coupa_sandbox_server``
    The same sandbox served on loopback for the duration of the test.
``coupa_tenant``
    A :class:`~coupa_plugin.host.model.Tenant` whose ``coupa`` section points at the server,
    with the sandbox's credentials and a provisioning journal under ``tmp_path``.

Example::

    def test_my_host_syncs_coupa(coupa_tenant):
        host = MyHost.from_entry_points()
        snapshot = host.sync(coupa_tenant)
        assert snapshot.count("user") == 52
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coupa_plugin.host.model import Tenant
from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    CoupaSandbox,
    Operations,
    Quirks,
    SandboxServer,
    generate_tenant,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "coupa_sandbox(users=50, seed=0, quirks={}, operations={}): tune the coupa_sandbox fixture",
    )


@pytest.fixture
def coupa_sandbox(request: pytest.FixtureRequest) -> CoupaSandbox:
    """An in-memory Coupa sandbox with a generated tenant (50 users, seed 0, no rate limit);
    tune it with ``@pytest.mark.coupa_sandbox(users=…, seed=…, quirks={…}, operations={…})``."""
    marker = request.node.get_closest_marker("coupa_sandbox")
    options = dict(marker.kwargs) if marker else {}
    operations = {"rate_limit": False, **options.get("operations", {})}
    return CoupaSandbox(
        generate_tenant(users=options.get("users", 50), seed=options.get("seed", 0)),
        quirks=Quirks(**options.get("quirks", {})),
        operations=Operations(**operations),
    )


@pytest.fixture
def coupa_sandbox_server(coupa_sandbox: CoupaSandbox) -> Iterator[SandboxServer]:
    """``coupa_sandbox`` served over HTTP on a free loopback port for the test's duration."""
    with SandboxServer(coupa_sandbox) as server:
        yield server


@pytest.fixture
def coupa_tenant(coupa_sandbox_server: SandboxServer, tmp_path: Path) -> Tenant:
    """A ``Tenant`` whose ``coupa`` section points at ``coupa_sandbox_server`` (sandbox
    credentials, a per-test ``state_dir``), ready for a host loading the plugin."""
    return Tenant(
        id="coupa-sandbox",
        plugins={
            "coupa": {
                "base_url": coupa_sandbox_server.url,
                "allow_insecure_base_url": True,
                "client_id": SANDBOX_CLIENT_ID,
                "client_secret": SANDBOX_CLIENT_SECRET,
                "state_dir": str(tmp_path / "coupa-state"),
            }
        },
    )
