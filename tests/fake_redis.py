"""A misbehaving Redis for tests: a real TCP server on loopback (threads, a real socket, TLS
when given a context) that reads RESP commands and answers them in one of these modes:

* ``ok``: ``+OK`` to everything (``+PONG`` to PING): enough for a connection to be used.
* ``hold``: reads every command, never answers.
* ``garbage``: well-formed replies of values the plugin cannot use (``nan``, huge numbers,
  arrays where a string belongs).
* ``noise``: bytes that are not RESP at all.
* ``drip``: a reply that never ends, one byte every ``drip_s``.
* ``huge``: a reply announcing ``huge_bytes`` and streaming them as fast as the client reads.
* ``echo``: errors (and, for TIME, values) quoting the password the client sent with AUTH.

AUTH is answered ``+OK`` (and HELLO refused, as a RESP2 server does) in every mode but
``hold``, ``noise`` and ``drip``, so the misbehaviour reaches the commands after it. What the
server read is kept in ``commands``; how many bytes it sent in ``sent``.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Final, Literal

__all__ = ["MODES", "FakeRedis", "Mode", "fake_redis"]

Mode = Literal["ok", "hold", "garbage", "noise", "drip", "huge", "echo"]
MODES: Final[tuple[Mode, ...]] = ("hold", "garbage", "noise", "drip", "huge", "echo")

_GARBAGE: Final = b"*7\r\n$3\r\nnan\r\n$5\r\n1e300\r\n$4\r\n-inf\r\n$1\r\nx\r\n:99\r\n*0\r\n$-1\r\n"


class _Closed(Exception):
    pass


class _Reader:
    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._buffer = b""

    def _fill(self) -> None:
        data = self._conn.recv(65536)
        if not data:
            raise _Closed
        self._buffer += data

    def line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            self._fill()
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def exact(self, size: int) -> bytes:
        while len(self._buffer) < size + 2:
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size + 2 :]
        return data

    def command(self) -> list[bytes]:
        head = self.line()
        if not head.startswith(b"*"):
            return head.split()  # an inline command
        args = []
        for _ in range(int(head[1:])):
            size = int(self.line()[1:])
            args.append(self.exact(size))
        return args


def _hang_up(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    conn.close()


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


class FakeRedis:
    """The server; use :func:`fake_redis` to run one."""

    def __init__(
        self,
        mode: Mode,
        *,
        tls: ssl.SSLContext | None = None,
        drip_s: float = 0.05,
        huge_bytes: int = 300 * 1024 * 1024,
    ) -> None:
        self.mode = mode
        self._tls = tls
        self._drip_s = drip_s
        self._huge = huge_bytes
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.commands: list[list[bytes]] = []
        self.sent = 0
        self.sent_by_connection: dict[int, int] = {}  # what each connection was sent
        self.handshake_failures = 0
        self.echoed = 0  # replies that quoted the password
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._open: list[socket.socket] = []

    def url(self, password: str, scheme: str = "redis") -> str:
        return f"{scheme}://:{password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._spawn(self._accept)

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):  # wakes the accepting thread
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            open_now = list(self._open)
        for conn in open_now:  # wakes the threads reading from them
            _hang_up(conn)
        for thread in self._threads:
            thread.join(10)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._spawn(self._serve, conn)

    def _send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        with self._lock:
            self.sent += len(data)
            key = id(conn)
            self.sent_by_connection[key] = self.sent_by_connection.get(key, 0) + len(data)

    def _serve(self, raw: socket.socket) -> None:
        conn = raw
        with self._lock:
            self._open.append(raw)
        try:
            if self._tls is not None:
                try:
                    conn = self._tls.wrap_socket(raw, server_side=True)
                    with self._lock:
                        self._open.append(conn)  # the plain socket is detached now
                except (ssl.SSLError, OSError):
                    with self._lock:
                        self.handshake_failures += 1
                    return
            reader = _Reader(conn)
            password = b""
            while not self._stop.is_set():
                command = reader.command()
                with self._lock:
                    self.commands.append(command)
                name = command[0].upper() if command else b""
                if name == b"AUTH" or b"AUTH" in (arg.upper() for arg in command[1:]):
                    password = command[-1]  # AUTH [user] pw, HELLO 3 AUTH user pw
                self._answer(conn, name, password)
        except (_Closed, OSError, ValueError):
            return
        finally:
            conn.close()

    def _answer(self, conn: socket.socket, name: bytes, password: bytes) -> None:
        friendly = (
            self.mode == "ok"
            or (self.mode in ("garbage", "huge", "echo")
            and (name in (b"AUTH", b"HELLO")))
        )
        if name == b"HELLO" and self.mode not in ("hold", "noise", "drip"):
            self._send(conn, b"-NOPROTO this server speaks RESP2 only\r\n")
        elif friendly:
            self._send(conn, b"+PONG\r\n" if name == b"PING" else b"+OK\r\n")
        elif self.mode == "garbage":
            self._send(conn, _GARBAGE)
        elif self.mode == "noise":
            self._send(conn, b"\x00\xff\xfe not redis at all\r\n")
        elif self.mode == "echo":
            self._echo(conn, name, password)
        elif self.mode == "drip":
            self._drip(conn)
        elif self.mode == "huge":
            self._stream(conn)
        # hold: never answers

    def _echo(self, conn: socket.socket, name: bytes, password: bytes) -> None:
        if password:
            with self._lock:
                self.echoed += 1
        if name == b"TIME":
            self._send(conn, b"*2\r\n" + _bulk(password) + _bulk(password))
        else:
            self._send(conn, b"-ERR " + password + b" was the password\r\n")

    def _drip(self, conn: socket.socket) -> None:
        self._send(conn, b"$1000000\r\n")
        while not self._stop.wait(self._drip_s):
            self._send(conn, b"x")

    def _stream(self, conn: socket.socket) -> None:
        self._send(conn, b"$%d\r\n" % self._huge)
        chunk = b"x" * 65536
        left = self._huge
        while left > 0 and not self._stop.is_set():
            self._send(conn, chunk[:left])
            left -= len(chunk)
        self._send(conn, b"\r\n")


@contextlib.contextmanager
def fake_redis(
    mode: Mode, *, tls: ssl.SSLContext | None = None, drip_s: float = 0.05
) -> Iterator[FakeRedis]:
    """Run a :class:`FakeRedis` on loopback; stopped (every connection closed) after."""
    server = FakeRedis(mode, tls=tls, drip_s=drip_s)
    server.start()
    try:
        yield server
    finally:
        server.stop()
