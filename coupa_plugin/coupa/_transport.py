"""The HTTP layer in one place: pacing every request (token requests included) through the
tenant's rate limiter, wall-clock deadlines on every socket operation, and response bodies
read with a size limit while they stream in (compressed and decompressed)."""

from __future__ import annotations

import contextvars
import email.utils
import math
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, Final, TypeVar

import httpcore
import httpx

from coupa_plugin.coupa._errors import BodyTooLargeError, CoupaResponseError, PacingTimeout
from coupa_plugin.coupa._ratelimit import RateLimiter
from coupa_plugin.coupa._telemetry import Telemetry

__all__ = [
    "ACCEPT_ENCODING",
    "DEFAULT_MAX_BODY_BYTES",
    "DeadlineTransport",
    "PacedTransport",
    "deadline",
    "inherit_deadline",
    "pacing_budget",
    "read_body",
    "retry_after_seconds",
    "seconds_left",
]

T = TypeVar("T")
DEFAULT_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
# What the client asks for: the encodings :func:`read_body` can decode with a bound.
ACCEPT_ENCODING: Final = "gzip, deflate"
_CHUNK: Final = 64 * 1024

# The wall-clock deadline (time.monotonic) of the request running in this thread, if any.
# Per thread, not per tenant: each request runs synchronously in the thread that sends it.
_local = threading.local()


def seconds_left() -> float | None:
    """Seconds until the current thread's deadline (None: no deadline is set)."""
    until: float | None = getattr(_local, "until", None)
    return None if until is None else until - time.monotonic()


@contextmanager
def pacing_budget(seconds: float) -> Iterator[None]:
    """The longest the pacer may hold this thread's requests: what is left of the call's
    budget (the per-attempt deadline bounds the network, not a wait for a slot)."""
    outer: float | None = getattr(_local, "pacing", None)
    _local.pacing = time.monotonic() + max(seconds, 0.0)
    try:
        yield
    finally:
        _local.pacing = outer


def _pacing_left() -> float | None:
    until: float | None = getattr(_local, "pacing", None)
    return None if until is None else until - time.monotonic()


def inherit_deadline(call: Callable[[], T]) -> Callable[[], T]:
    """``call``, bound to the calling thread's deadline when it has one (what another thread,
    a pool's, runs on this thread's behalf ends by the same time) and run in a copy of its
    context (the tenant its records name, the current span its requests are children of).
    Each bound call runs once."""
    until: float | None = getattr(_local, "until", None)
    context = contextvars.copy_context()
    if until is None:
        return partial(context.run, call)

    def bound() -> T:
        with deadline(until - time.monotonic()):
            return call()

    return partial(context.run, bound)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Bound every socket operation of this thread (connect, send, each read of headers and
    body) to end within ``seconds`` from now; an outer, earlier deadline still applies."""
    outer: float | None = getattr(_local, "until", None)
    until = time.monotonic() + max(seconds, 0.0)
    _local.until = until if outer is None else min(outer, until)
    try:
        yield
    finally:
        _local.until = outer


def _clamp(timeout: float | None, error: type[Exception]) -> float | None:
    left = seconds_left()
    if left is None:
        return timeout
    if left <= 0:
        raise error("the request's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(
            self._inner.start_tls(
                ssl_context, server_hostname, _clamp(timeout, httpcore.ConnectTimeout)
            )
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend with each operation's timeout cut to the thread's deadline:
    a server that drips a byte at a time cannot keep a request alive past it."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host,
            port,
            _clamp(timeout, httpcore.ConnectTimeout),
            local_address=local_address,
            socket_options=socket_options,
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:  # pragma: no cover - the client never uses unix sockets
        stream = self._inner.connect_unix_socket(
            path, _clamp(timeout, httpcore.ConnectTimeout), socket_options=socket_options
        )
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:  # pragma: no cover - used by httpcore retries only
        self._inner.sleep(seconds)


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's network transport whose sockets honour :func:`deadline`."""

    def __init__(self) -> None:
        super().__init__(retries=0)
        # httpx builds its connection pool without a way to pass a network backend; wrap the
        # one it made (tests prove that a dripping server is cut off at the deadline).
        pool = self._pool
        assert isinstance(pool, httpcore.ConnectionPool)
        pool._network_backend = _DeadlineBackend(pool._network_backend)


def retry_after_seconds(response: httpx.Response, cap: float = 60.0) -> float | None:
    """The ``Retry-After`` of a response in seconds (seconds or an HTTP date), if any.

    Anything that is not a finite number of seconds or a date (``nan``, ``inf``, words) is
    ignored, as if the header were absent.
    """
    value = response.headers.get("retry-after")
    if not value or len(value) > 64:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        seconds = moment.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), cap)


def _decoder(encoding: str, what: str) -> Any:
    names = [e.strip().lower() for e in encoding.split(",") if e.strip()]
    names = [n for n in names if n != "identity"]
    if not names:
        return None
    if len(names) > 1 or names[0] not in {"gzip", "x-gzip", "deflate"}:
        raise CoupaResponseError(
            f"{what}: the response uses a content encoding the client did not ask for "
            f"({encoding[:40]!r})"
        )
    return zlib.decompressobj(16 + zlib.MAX_WBITS if "gzip" in names[0] else zlib.MAX_WBITS)


def read_body(response: httpx.Response, limit: int, what: str) -> bytes:
    """The decoded body of a streamed ``response``, at most ``limit`` bytes both as sent and
    once decompressed; checked chunk by chunk, so a huge or highly compressed body never sits
    in memory. Raises :class:`BodyTooLargeError` naming the limit."""
    if response.is_stream_consumed:  # an in-process transport that built it from bytes
        if len(response.content) > limit:
            raise BodyTooLargeError(what, limit)
        return response.content
    declared = response.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        response.close()
        raise BodyTooLargeError(what, limit)
    decoder = _decoder(response.headers.get("content-encoding", ""), what)
    parts: list[bytes] = []
    raw_total = total = 0
    try:
        for chunk in response.iter_raw(_CHUNK):
            raw_total += len(chunk)
            if raw_total > limit:
                raise BodyTooLargeError(what, limit)
            if decoder is not None:
                try:
                    chunk = decoder.decompress(chunk, limit - total + 1)
                except zlib.error:
                    raise CoupaResponseError(f"{what}: the compressed body is corrupt") from None
                if decoder.unconsumed_tail:
                    raise BodyTooLargeError(what, limit)
            total += len(chunk)
            if total > limit:
                raise BodyTooLargeError(what, limit)
            parts.append(chunk)
    finally:
        response.close()
    return b"".join(parts)


class PacedTransport(httpx.BaseTransport):
    """Waits for the rate limiter before each request and tells it about 429s."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        limiter: RateLimiter,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.inner = inner
        self.limiter = limiter
        self.max_body_bytes = max_body_bytes
        self.telemetry = telemetry or Telemetry(None, "")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            self.telemetry.waited(self.limiter.acquire(max_wait=_pacing_left()))
        except PacingTimeout as exc:  # never sent: as safe to report as a full pool
            raise httpx.PoolTimeout(str(exc), request=request) from None
        response = self.inner.handle_request(request)
        if response.status_code == 429:
            self.telemetry.throttled()
            self.limiter.throttled_by_server(retry_after_seconds(response))
        else:
            self.limiter.succeeded()
        if response.status_code == 401:
            # httpx reads a 401's body in full before an auth flow tries again: read it here,
            # within the limit, and hand on the decoded bytes
            body = read_body(response, self.max_body_bytes, f"{request.method} (HTTP 401)")
            headers = [
                (k, v)
                for k, v in response.headers.multi_items()
                if k.lower() not in {"content-encoding", "content-length", "transfer-encoding"}
            ]
            return httpx.Response(
                401,
                headers=headers,
                content=body,
                request=request,
                extensions=response.extensions,
            )
        return response

    def close(self) -> None:
        self.inner.close()
