"""A thread-safe, adaptive request pacer for one Coupa instance.

Coupa allows 25 requests per second with a burst of 20 (a leaky bucket). The pacer spaces
requests with the generic cell rate algorithm: at most ``rate`` per second on average and at
most ``burst`` at once. When Coupa answers 429 anyway (another integration shares the
instance, or the clock drifts) the rate drops multiplicatively and every caller waits out a
cool-down; it creeps back towards the configured rate after a run of successes.

Fixed-window limiters let a whole window's quota through at a boundary, which overflows a
20-request bucket; that is why this small pacer is written here rather than taken from a
library.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """Paces calls to :meth:`acquire` to ``rate`` per second with bursts of ``burst``."""

    def __init__(
        self,
        rate: float,
        burst: int = 5,
        *,
        min_rate: float = 1.0,
        recover_after: int = 50,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.target = rate
        self.rate = rate
        self.burst = burst
        self.min_rate = min(min_rate, rate)
        self._recover_after = recover_after
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._tat = clock()  # theoretical arrival time of the next request
        self._hold_until = 0.0
        self._successes = 0
        self.waited_s = 0.0
        self.throttled = 0

    def acquire(self) -> float:
        """Block until a request may be sent; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            interval = 1.0 / self.rate
            start = max(self._tat, now, self._hold_until)
            send_at = max(now, self._hold_until, start - (self.burst - 1) * interval)
            self._tat = start + interval
        wait = send_at - now
        if wait > 0:
            self._sleep(wait)
            with self._lock:
                self.waited_s += wait
        return max(wait, 0.0)

    def throttled_by_server(self, retry_after: float | None) -> None:
        """Coupa said 429: slow down and let every caller wait before the next request."""
        with self._lock:
            self.throttled += 1
            self._successes = 0
            self.rate = max(self.min_rate, self.rate * 0.7)
            pause = retry_after if retry_after is not None else 1.0
            self._hold_until = max(self._hold_until, self._clock() + pause)

    def succeeded(self) -> None:
        """A request went through; after enough in a row, speed back up towards the target."""
        with self._lock:
            if self.rate >= self.target:
                return
            self._successes += 1
            if self._successes >= self._recover_after:
                self._successes = 0
                self.rate = min(self.target, self.rate * 1.1)
