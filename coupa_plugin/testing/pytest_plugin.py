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

pytest loads this module in every environment where the package is installed (the ``pytest11``
entry point), an orchestrator's plain install included. So it imports nothing beyond pytest
and the contract model at load time: the sandbox (the ``sandbox`` extra, graphql-core) is
imported by the fixtures when a test asks for one, and a missing extra fails that test with a
message saying what to install, while the test session and every other test run unaffected.

Example::

    def test_my_host_syncs_coupa(coupa_tenant):
        host = MyHost.from_entry_points()
        snapshot = host.sync(coupa_tenant)
        assert snapshot.count("user") == 52
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

from coupa_plugin.host.model import Tenant

if TYPE_CHECKING:
    from coupa_plugin.sandbox import CoupaSandbox, SandboxServer

MISSING_SANDBOX: str = (
    "the coupa_sandbox fixtures need the sandbox extra (graphql-core): "
    "pip install 'coupa-plugin[sandbox]'"
)


def _sandbox() -> ModuleType:
    """:mod:`coupa_plugin.sandbox`, or a failed test naming the extra to install."""
    try:
        import coupa_plugin.sandbox as sandbox
    except ModuleNotFoundError as exc:
        pytest.fail(f"{MISSING_SANDBOX} ({exc})", pytrace=False)
    return sandbox


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
    sandbox = _sandbox()
    made: CoupaSandbox = sandbox.CoupaSandbox(
        sandbox.generate_tenant(users=options.get("users", 50), seed=options.get("seed", 0)),
        quirks=sandbox.Quirks(**options.get("quirks", {})),
        operations=sandbox.Operations(**operations),
    )
    return made


@pytest.fixture
def coupa_sandbox_server(coupa_sandbox: CoupaSandbox) -> Iterator[SandboxServer]:
    """``coupa_sandbox`` served over HTTP on a free loopback port for the test's duration."""
    with _sandbox().SandboxServer(coupa_sandbox) as server:
        yield server


@pytest.fixture
def coupa_tenant(coupa_sandbox_server: SandboxServer, tmp_path: Path) -> Tenant:
    """A ``Tenant`` whose ``coupa`` section points at ``coupa_sandbox_server`` (sandbox
    credentials, a per-test ``state_dir``), ready for a host loading the plugin."""
    sandbox = _sandbox()
    return Tenant(
        id="coupa-sandbox",
        plugins={
            "coupa": {
                "base_url": coupa_sandbox_server.url,
                "allow_insecure_base_url": True,
                "client_id": sandbox.SANDBOX_CLIENT_ID,
                "client_secret": sandbox.SANDBOX_CLIENT_SECRET,
                "state_dir": str(tmp_path / "coupa-state"),
            }
        },
    )
