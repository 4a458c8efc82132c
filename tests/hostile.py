"""A hostile HTTP server on loopback: a real socket server in the test process that answers
with what a broken or malicious Coupa might send (slow drips, huge and compressed bodies,
deep JSON, malformed headers, redirects, odd statuses).

It is threaded and bounded: at most ``max_connections`` handlers at once, every handler stops
when the server stops, and streaming answers are generated on the fly (a 64 MB body never
exists in the test process).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

import attrs
import orjson

Body = bytes | Callable[[], Iterable[bytes]]


@attrs.frozen
class Reply:
    """One answer. ``body`` is bytes or a factory of chunks (streamed until it ends or the
    client goes away); ``drip_s`` pauses before each chunk; ``head`` replaces the status line
    and headers byte for byte."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    body: Body = b""
    drip_s: float = 0.0
    drip_head: bool = True
    chunk: int = 64 * 1024
    head: bytes | None = None


def json_reply(payload: Any, status: int = 200, **headers: str) -> Reply:
    return Reply(
        status=status,
        headers=(("Content-Type", "application/json"), *headers.items()),
        body=orjson.dumps(payload),
    )


def token_reply(form: bytes, **extra: Any) -> Reply:
    """A valid token answer granting exactly the scopes asked for."""
    asked = parse_qs(form.decode()).get("scope", [""])[0]
    payload = {"access_token": "tok-123", "token_type": "bearer", "expires_in": 86400}
    return json_reply({**payload, "scope": asked, **extra})


def gzip_bomb(decompressed: int) -> bytes:
    """``decompressed`` zero bytes, gzip-compressed (about 1,000 times smaller)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [packer.compress(block) for _ in range(decompressed // len(block))]
    return b"".join([*parts, packer.flush()])


def endless(piece: bytes, total: int | None = None) -> Callable[[], Iterator[bytes]]:
    """A body factory repeating ``piece`` (up to ``total`` bytes, or until the client leaves)."""

    def chunks() -> Iterator[bytes]:
        sent = 0
        while total is None or sent < total:
            yield piece
            sent += len(piece)

    return chunks


def deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


Route = Callable[[str, str, bytes], Reply]


class HostileServer:
    """Serves ``route(method, path_and_query, body) -> Reply`` on 127.0.0.1."""

    def __init__(self, route: Route, *, max_connections: int = 32) -> None:
        self.route = route
        self.requests: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._slots.acquire(timeout=1):
                conn.close()
                continue
            with self._lock:
                self._open.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            request = self._read_request(conn)
            if request is None:
                return
            method, target, body = request
            with self._lock:
                self.requests.append((method, target))
            self._send(conn, self.route(method, target, body))
        except OSError:
            pass  # the client went away: that is what clients with deadlines do
        finally:
            with self._lock:
                self._open.discard(conn)
            conn.close()
            self._slots.release()

    @staticmethod
    def _read_request(conn: socket.socket) -> tuple[str, str, bytes] | None:
        data = b""
        while b"\r\n\r\n" not in data:
            piece = conn.recv(65536)
            if not piece:
                return None
            data += piece
            if len(data) > 1024 * 1024:
                return None
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        while len(body) < length:
            piece = conn.recv(65536)
            if not piece:
                break
            body += piece
        return method, target, body

    def _send(self, conn: socket.socket, reply: Reply) -> None:
        if reply.head is not None:
            head = reply.head
        else:
            lines = [f"HTTP/1.1 {reply.status} Hostile"]
            lines += [f"{k}: {v}" for k, v in reply.headers]
            if isinstance(reply.body, bytes) and not reply.drip_s:
                lines.append(f"Content-Length: {len(reply.body)}")
            lines.append("Connection: close")
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        chunks: Iterable[bytes]
        if isinstance(reply.body, bytes):
            chunks = [
                reply.body[i : i + reply.chunk] for i in range(0, len(reply.body), reply.chunk)
            ]
        else:
            chunks = reply.body()
        if reply.drip_s and reply.drip_head:
            # drip the head too, a byte at a time
            for i in range(len(head)):
                if self._stop.wait(reply.drip_s):
                    return
                conn.sendall(head[i : i + 1])
        else:
            conn.sendall(head)
        for chunk in chunks:
            if self._stop.is_set() or (reply.drip_s and self._stop.wait(reply.drip_s)):
                return
            conn.sendall(chunk)
