"""Two ways to run a sandbox with the same behaviour: a threaded HTTP server on loopback, and an
in-process httpx transport."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from coupa_plugin.sandbox._app import CoupaSandbox, SandboxRequest

__all__ = ["EXPOSED_WARNING", "SandboxServer", "SandboxTransport", "is_loopback"]

log = logging.getLogger("coupa_plugin.sandbox")
EXPOSED_WARNING: Final = (
    "WARNING: the Coupa sandbox listens on {host}, not on loopback: anyone who can reach this "
    "machine can read and change its data with the sandbox's fixed, published credentials. "
    "Bind it to 127.0.0.1 unless that is what you want."
)


def is_loopback(host: str) -> bool:
    """True when ``host`` (a name or an address) only listens on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes; without this, Nagle and delayed ACKs add
    # 40 ms to every response on loopback
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # silence per-request logging
        return

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        request = SandboxRequest(
            method=self.command,
            path=split.path,
            query=split.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        response = self.server.sandbox.handle(request)
        if response.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(response.status)  # sends Date itself
        for name, value in response.headers.items():
            if name.lower() != "date":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: CoupaSandbox) -> None:
        self.sandbox = sandbox
        super().__init__(address, _Handler)


class SandboxServer:
    """Serves a sandbox on ``http://127.0.0.1:<port>`` from a background thread.

    Each connection gets its own thread, so injected latency overlaps across concurrent
    requests instead of queueing.
    """

    def __init__(self, sandbox: CoupaSandbox, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sandbox = sandbox
        self._server = _Server((host, port), sandbox)
        if not is_loopback(host):
            log.warning(EXPOSED_WARNING.format(host=host))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            daemon=True,
            name="coupa-sandbox",
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SandboxTransport(httpx.BaseTransport):
    """An httpx transport that hands requests straight to a sandbox, in process."""

    def __init__(self, sandbox: CoupaSandbox) -> None:
        self.sandbox = sandbox

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        response = self.sandbox.handle(
            SandboxRequest(
                method=request.method,
                path=request.url.path,
                query=request.url.query.decode(),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
            )
        )
        if response.drop:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        return httpx.Response(
            response.status, headers=response.headers, content=response.body, request=request
        )
