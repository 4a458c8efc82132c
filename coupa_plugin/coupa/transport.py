"""The HTTP layer in one place: pacing every request (token requests included) through the
tenant's rate limiter."""

from __future__ import annotations

import email.utils
import time

import httpx

from coupa_plugin.coupa.ratelimit import RateLimiter

__all__ = ["PacedTransport", "retry_after_seconds"]


def retry_after_seconds(response: httpx.Response, cap: float = 60.0) -> float | None:
    """The ``Retry-After`` of a response in seconds (seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - time.time()
    return min(max(seconds, 0.0), cap)


class PacedTransport(httpx.BaseTransport):
    """Waits for the rate limiter before each request and tells it about 429s."""

    def __init__(self, inner: httpx.BaseTransport, limiter: RateLimiter) -> None:
        self.inner = inner
        self.limiter = limiter

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.limiter.acquire()
        response = self.inner.handle_request(request)
        if response.status_code == 429:
            self.limiter.throttled_by_server(retry_after_seconds(response))
        else:
            self.limiter.succeeded()
        return response

    def close(self) -> None:
        self.inner.close()
