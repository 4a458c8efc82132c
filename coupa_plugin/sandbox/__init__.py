"""An emulator of the parts of Coupa's API a governance connector uses.

It is a Coupa, not a client: nothing here imports the plugin's client or connector. Use it
in-process (:class:`SandboxTransport`) for fast tests, or as a real HTTP server on loopback
(:class:`SandboxServer`, or ``python -m coupa_plugin.sandbox``) for integration tests::

    from coupa_plugin.sandbox import CoupaSandbox, SandboxServer, generate_tenant

    sandbox = CoupaSandbox(generate_tenant(users=1_000, seed=7))
    with SandboxServer(sandbox) as server:
        print(server.url)   # http://127.0.0.1:<port>; client "sandbox-client" / "sandbox-secret"
"""

from coupa_plugin.sandbox._app import CoupaSandbox, RequestLogEntry, SandboxRequest, SandboxResponse
from coupa_plugin.sandbox._config import Operations, Quirks
from coupa_plugin.sandbox._server import SandboxServer, SandboxTransport
from coupa_plugin.sandbox._state import (
    LICENSE_FLAGS,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    TenantState,
    generate_tenant,
)

__all__ = [
    "LICENSE_FLAGS",
    "SANDBOX_CLIENT_ID",
    "SANDBOX_CLIENT_SECRET",
    "CoupaSandbox",
    "Operations",
    "Quirks",
    "RequestLogEntry",
    "SandboxRequest",
    "SandboxResponse",
    "SandboxServer",
    "SandboxTransport",
    "TenantState",
    "generate_tenant",
]
