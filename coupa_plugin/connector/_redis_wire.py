"""The socket under the Redis client of ``shared_state``, bounded like a Coupa answer.

redis-py bounds each socket operation by ``socket_timeout``, so a server that drips a byte
every few seconds, or streams a reply of hundreds of megabytes, keeps a call going for as long
as it likes. Here every command (what is sent, then its whole reply) ends by the earlier of
``timeout_s`` from when it was sent and the calling thread's deadline
(:func:`coupa_plugin.coupa._transport.deadline`, which each hook sets), and its reply may not
exceed ``max_reply_bytes``. TLS is set up here too, with the standard library's verifying
defaults (certificate chain and host name, whatever version of redis-py is installed) and an
optional private CA bundle; its handshake ends by the same deadline.

This module imports ``redis``: :func:`coupa_plugin.connector._shared_state.connect` imports it
only when a tenant uses ``shared_state``.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any, Final

from redis.connection import Connection

from coupa_plugin.connector._errors import ReplyTooLargeError
from coupa_plugin.coupa import seconds_left

__all__ = ["DEFAULT_MAX_REPLY_BYTES", "BoundedConnection", "tls_context"]

# The journal's entries are at most 4 MB each and a hash read whole holds a few of them; the
# pacer's and the lock's replies are tiny.
DEFAULT_MAX_REPLY_BYTES: Final = 16 * 1024 * 1024


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The standard library's client context: certificate and host name verified, against
    ``ca_file`` when given (a private CA) or the system's trust store."""
    context = ssl.create_default_context(cafile=ca_file)
    context.check_hostname = True  # the defaults, stated: no setting turns them off
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _until(timeout_s: float) -> float:
    """The monotonic time by which an operation started now must end."""
    until = time.monotonic() + timeout_s
    left = seconds_left()
    return until if left is None else min(until, time.monotonic() + left)


def _left(until: float) -> float:
    left = until - time.monotonic()
    if left <= 0:
        raise TimeoutError("the Redis call's deadline has passed")
    return left


class _BoundedSocket:
    """A connected socket (plain or TLS) that ends each command by its deadline: the time
    the command was sent plus ``timeout_s``, or the thread's deadline if earlier; a reply
    longer than ``max_reply_bytes`` is cut off. What redis-py sets with :meth:`settimeout`
    is kept and only ever shortened."""

    def __init__(self, sock: socket.socket, timeout_s: float, max_reply_bytes: int) -> None:
        self._sock = sock
        self._timeout_s = timeout_s
        self._max = max_reply_bytes
        self._asked: float | None = sock.gettimeout()
        self._until = _until(timeout_s)
        self._received = 0

    def settimeout(self, value: float | None) -> None:
        self._asked = value
        self._sock.settimeout(value)

    def gettimeout(self) -> float | None:
        return self._asked

    def _arm(self) -> None:
        asked = self._asked
        if asked == 0:  # a poll for what is already there: never blocks
            return
        left = _left(self._until)
        self._sock.settimeout(left if asked is None else min(asked, left))

    def _count(self, size: int) -> None:
        self._received += size
        if self._received > self._max:
            raise ReplyTooLargeError(
                f"a Redis reply was larger than the limit of {self._max:,} bytes; "
                "reading it was stopped"
            )

    def sendall(self, data: Any) -> None:
        # a new command: its deadline and its reply's size start now
        self._until = _until(self._timeout_s)
        self._received = 0
        self._arm()
        self._sock.sendall(data)

    def recv(self, size: int, flags: int = 0) -> bytes:
        self._arm()
        data = self._sock.recv(size, flags)
        if not flags & socket.MSG_PEEK:
            self._count(len(data))
        return data

    def recv_into(self, buffer: Any, size: int = 0, flags: int = 0) -> int:
        self._arm()
        got = self._sock.recv_into(buffer, size, flags)
        if not flags & socket.MSG_PEEK:
            self._count(got)
        return got

    def __getattr__(self, name: str) -> Any:  # shutdown, close, fileno, pending, …
        return getattr(self._sock, name)


class BoundedConnection(Connection):
    """redis-py's TCP connection with :class:`_BoundedSocket` under it, connect and TLS
    handshake bounded by the same deadline, and TLS through :func:`tls_context`
    (``tls=None``: plain TCP)."""

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        timeout_s: float = 10.0,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self._tls = tls
        self._timeout_s = timeout_s
        self._max_reply_bytes = max_reply_bytes
        self._connect_s = kwargs.get("socket_connect_timeout") or timeout_s

    def _connect(self) -> Any:
        until = _until(self._timeout_s)
        self.socket_connect_timeout = min(self._connect_s, _left(until))
        sock: socket.socket = super()._connect()  # type: ignore[no-untyped-call]
        if self._tls is not None:
            try:
                sock = self._handshake(sock, until)
            except BaseException:
                sock.close()
                raise
        return _BoundedSocket(sock, self._timeout_s, self._max_reply_bytes)

    def _handshake(self, sock: socket.socket, until: float) -> ssl.SSLSocket:
        assert self._tls is not None
        tls = self._tls.wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
        # the standard library bounds the whole handshake by the socket's timeout
        tls.settimeout(_left(until))
        tls.do_handshake()
        tls.settimeout(self.socket_timeout)  # what redis-py set for the connection's calls
        return tls
