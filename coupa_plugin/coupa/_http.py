"""The request loop of the Coupa client: one request paced, sent with a wall-clock
deadline per attempt and per call, retried where that is safe, its answer read within the
size limit and decoded; typed errors for what cannot succeed."""

from __future__ import annotations

import json
import logging
import math
import random
import threading
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import quote, urlencode

import httpx
import orjson
import stamina

from coupa_plugin.coupa._config import ClientConfig
from coupa_plugin.coupa._errors import (
    CoupaHTTPError,
    CoupaResponseError,
    CoupaTimeoutError,
    CoupaTransportError,
    excerpt,
)
from coupa_plugin.coupa._logs import tenant_context
from coupa_plugin.coupa._ratelimit import RateLimiter
from coupa_plugin.coupa._telemetry import Outcome, Telemetry
from coupa_plugin.coupa._transport import (
    deadline,
    pacing_budget,
    read_body,
    retry_after_seconds,
    seconds_left,
)

__all__ = ["GRAPHQL_PATH", "RequestLoop"]

log = logging.getLogger("coupa_plugin.coupa")
GRAPHQL_PATH: Final = "/api/graphql"
_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
_NEVER_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_STATS_EVERY: Final = 50
# h11's words for an answer it cannot parse (as opposed to a connection closed early)
_UNPARSEABLE: Final = (
    "illegal",
    "malformed",
    "invalid",
    "too long",
    "can't handle",
    "bad ",
    "conflicting",
    "is supported",
    "multiple transfer-encoding",
    "should be in range",
)
_WAIT_INITIAL_S: Final = 0.5
_WAIT_MAX_S: Final = 30.0
_WAIT_JITTER_S: Final = 1.0

Answer = tuple[int, httpx.Headers, bytes]


class _Retryable(Exception):
    """Internal: a failed attempt worth another try."""

    def __init__(
        self,
        reason: str,
        answer: Answer | None = None,
        wait: float | None = None,
        *,
        timed_out: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason, self.answer, self.wait, self.timed_out = reason, answer, wait, timed_out


def _dropped(exc: httpx.RemoteProtocolError) -> bool:
    """The server closed the connection early (worth a retry), as opposed to sending
    something HTTP cannot parse, such as a header h11 rejects (the same next time)."""
    text = str(exc).lower()
    return not any(marker in text for marker in _UNPARSEABLE)


def _server_date(value: str | None) -> float | None:
    """An HTTP Date header as seconds since the epoch, or None when absent or malformed."""
    if not value or len(value) > 64:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    stamp = moment.timestamp()
    return stamp if math.isfinite(stamp) else None


class RequestLoop:
    """Sends one tenant's requests: ``api`` carries the REST token, ``graphql`` GraphQL's
    own; both go through the tenant's pacer (``limiter``). Counts requests and retries."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        api: httpx.Client,
        graphql: httpx.Client,
        limiter: RateLimiter,
        clock: Callable[[], float],
        telemetry: Telemetry | None = None,
    ) -> None:
        self.config = config
        self.telemetry = telemetry or Telemetry(None, config.tenant, clock)
        self._http, self._graphql_http = api, graphql
        self.limiter = limiter
        self._clock = clock
        self._lock = threading.Lock()
        # the retry waits' jitter: this tenant's own generator (the global one is shared by
        # everything in the process)
        self._jitter = random.Random()
        self.requests = 0
        self.retries = 0
        # a moving average of how long an answer takes (send to whole body), once one came
        self.round_trip_s: float | None = None
        # Coupa's clock (seconds since the epoch) by the Date of its latest answer
        self.server_time: float | None = None

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None,
        body: Any,
        safe: bool,
    ) -> Any:
        """One request, retried while that is ``safe`` (sending it again leaves the same
        state), within ``timeout_s`` per attempt and ``retry_timeout_s`` per call. Whatever
        it logs (stamina's retries too) names the client's tenant."""
        with tenant_context(self.config.tenant):
            content = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if content is not None else None
            url = self._url(path, params)
            started = self._clock()
            until = started + self.config.retry_timeout_s
            made = 0
            try:
                for attempt in stamina.retry_context(
                    on=self._backoff_until(until),
                    attempts=self.config.retry_attempts,
                    timeout=None,
                ):
                    with attempt:
                        made = attempt.num
                        if attempt.num > 1:
                            with self._lock:
                                self.retries += 1
                        left = self._left(until)
                        if left <= 0:
                            raise _Retryable("the time budget is spent", timed_out=True)
                        with (
                            deadline(min(self.config.timeout_s, left)),
                            pacing_budget(left),
                            self.telemetry.request(
                                method, self.config.base_url, path, made
                            ) as seen,
                        ):
                            return self._attempt(
                                method, path, url, content, headers, safe=safe, attempt=made,
                                outcome=seen,
                            )
            except _Retryable as exc:
                spent = self._clock() - started
                tries = f"{made} attempt{'s' if made != 1 else ''} in {spent:.1f} s"
                if exc.answer is not None:
                    raise self._http_error(method, path, *exc.answer, tries=tries) from None
                if spent >= self.config.retry_timeout_s or exc.timed_out:
                    raise CoupaTimeoutError(
                        f"{method} {path} did not complete within its time budget "
                        f"(timeout_s={self.config.timeout_s:g} per attempt, "
                        f"{self.config.retry_timeout_s:g} s per call); {tries}: {exc.reason}"
                    ) from None
                raise CoupaTransportError(
                    f"{method} {path} failed after {tries}: {exc.reason}"
                ) from None
            raise AssertionError("unreachable")  # pragma: no cover

    def _left(self, until: float) -> float:
        """Seconds left before ``until`` (this client's clock) or the thread's outer deadline
        (a hook's budget), whichever comes first."""
        left = until - self._clock()
        outer = seconds_left()
        return left if outer is None else min(left, outer)

    def _backoff_until(self, until: float) -> Callable[[Exception], bool | float]:
        """stamina's retry predicate: how long to wait before the next attempt, or False when
        the failure is final or the wait would not end before ``until``."""
        failures = 0

        def on(exc: Exception) -> bool | float:
            nonlocal failures
            if not isinstance(exc, _Retryable):
                return False
            failures += 1
            wait = exc.wait
            if wait is None:
                wait = min(_WAIT_MAX_S, _WAIT_INITIAL_S * 2 ** (failures - 1))
                wait += self._jitter.uniform(0, _WAIT_JITTER_S)
            return wait if wait < self._left(until) else False

        return on

    def _attempt(  # noqa: C901 - one branch per retry decision of an answer
        self,
        method: str,
        path: str,
        url: httpx.URL,
        content: bytes | None,
        headers: dict[str, str] | None,
        *,
        safe: bool,
        attempt: int,
        outcome: Outcome,
    ) -> Any:
        started = self._clock()
        with self._lock:
            self.requests += 1
            report = self.requests % _STATS_EVERY == 0
        if report:
            self.log_stats()
        what = f"{method} {path}"
        http = self._graphql_http if path == GRAPHQL_PATH else self._http
        try:
            response = http.send(
                http.build_request(method, url, content=content, headers=headers),
                stream=True,
            )
            data = read_body(response, self.config.max_body_bytes, what)
        except httpx.TransportError as exc:
            reason = outcome.error = type(exc).__name__
            log.info(
                "request failed",
                extra={
                    "tenant": self.config.tenant,
                    "method": method,
                    "path": path,
                    "error": reason,
                    "attempt": attempt,
                },
            )
            if isinstance(exc, httpx.LocalProtocolError) or (
                isinstance(exc, httpx.RemoteProtocolError) and not _dropped(exc)
            ):
                # a malformed request or answer is the same on the next try
                raise CoupaResponseError(
                    f"{what} failed ({reason}: {excerpt(str(exc), 120)})"
                    + ("" if safe else "; Coupa may or may not have applied it")
                ) from None
            if safe or isinstance(exc, _NEVER_SENT):
                raise _Retryable(
                    reason, timed_out=isinstance(exc, httpx.TimeoutException)
                ) from None
            raise CoupaTransportError(
                f"{what} failed ({reason}); Coupa may or may not have applied it"
            ) from None
        elapsed_s = max(0.0, self._clock() - started)
        elapsed_ms = round(elapsed_s * 1000, 1)
        seen = self.round_trip_s
        self.round_trip_s = elapsed_s if seen is None else 0.8 * seen + 0.2 * elapsed_s
        status = outcome.status = response.status_code
        log.debug(
            "request",
            extra={
                "tenant": self.config.tenant,
                "method": method,
                "path": path,
                "status": status,
                "attempt": attempt,
                "elapsed_ms": elapsed_ms,
            },
        )
        self.server_time = _server_date(response.headers.get("date")) or self.server_time
        answer = (status, response.headers, data)
        if status == 401 and safe:
            # the auth flow already re-minted once; a token can still be revoked between the
            # mint and the retry, so safe requests get another round
            raise _Retryable("HTTP 401", answer)
        # a 500 on a read is as transient as a 502-504; a write answered 500 is reported (the
        # caller's read-back tells what Coupa holds)
        if (status in _RETRY_STATUSES and (safe or status == 429)) or (
            status == 500 and (method == "GET" or path == GRAPHQL_PATH)
        ):
            log.info(
                "retrying",
                extra={
                    "tenant": self.config.tenant,
                    "method": method,
                    "path": path,
                    "status": status,
                    "attempt": attempt,
                },
            )
            wait = retry_after_seconds(response) if status == 429 else None
            raise _Retryable(f"HTTP {status}", answer, wait)
        if status >= 300 or status < 200:
            raise self._http_error(method, path, *answer)
        if not data.strip():
            return None
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            problem = f"{what}: invalid JSON in the response ({excerpt(data, 80)})"
            kind = response.headers.get("content-type", "").split(";")[0].lower()
            if safe and "html" not in kind and "xml" not in kind:
                raise _Retryable(problem) from None  # a truncated body may come whole next time
            raise CoupaResponseError(
                problem + ("" if safe else "; Coupa may or may not have applied it")
            ) from None

    def _url(self, path: str, params: Mapping[str, Any] | None) -> httpx.URL:
        """The absolute, percent-encoded URL, built once: httpx validates a URL character by
        character each time it parses or merges one, and ``fields=[…]`` makes it long."""
        query = urlencode(params, quote_via=quote) if params else ""
        return httpx.URL(f"{self.config.base_url}{path}{'?' + query if query else ''}")

    @staticmethod
    def _http_error(
        method: str,
        path: str,
        status: int,
        headers: httpx.Headers,
        body: bytes,
        *,
        tries: str = "",
    ) -> CoupaHTTPError:
        errors = None
        try:
            payload = orjson.loads(body)
            if isinstance(payload, dict) and isinstance(payload.get("errors"), dict):
                errors = payload["errors"]
        except orjson.JSONDecodeError:
            pass
        detail = excerpt(body)
        if 300 <= status < 400:
            location = excerpt(headers.get("location", ""), 120)
            detail = f"a redirect (to {location or 'nowhere'}) where an answer was expected"
        if tries:
            detail += f" ({tries})"
        return CoupaHTTPError(method, path, status, detail, errors)

    def log_stats(self) -> None:
        """One INFO record with the request counters (``requests``, ``retries``,
        ``throttled``, ``rate``): the reference host shows them as progress."""
        log.info(
            "request stats",
            extra={
                "tenant": self.config.tenant,
                "requests": self.requests,
                "retries": self.retries,
                "throttled": self.limiter.throttled,
                "rate": round(self.limiter.rate, 2),
            },
        )
