"""A thread-safe, adaptive request pacer for one Coupa instance.

Coupa allows 25 requests per second with a burst of 20 (a leaky bucket). The pacer spaces
requests with the generic cell rate algorithm (GCRA) and adapts to 429s. The rules, applied by
the pure state updates :meth:`RateLimiter.rate_at`, :meth:`RateLimiter._take` and
:meth:`RateLimiter._throttle` (the shared pacer applies them to its row in SQLite; any other
backend must apply exactly these):

* State: ``tat`` (the theoretical arrival time of the next request), ``hold_until`` (the end
  of the last 429 event's hold window), ``floor`` (the rate that event set), ``throttled``
  (429s seen), ``sent_rate`` and ``sent_at`` (a measure of the rate requests are asked for:
  an exponentially decaying count with time constant ``TAU_S``, as of ``sent_at``).
* Rate in force at ``now``: ``target`` when ``floor >= target``; ``floor`` until
  ``hold_until``; after it, with ``t = now - hold_until``, the climb ``c(t) = floor +
  RECOVER_PER_S * target * max(0, t) * (1 + t / ACCEL_S)`` (slow at first, 2 % of the target
  per second, quickening the longer no 429 comes), which pauses for ``PAUSE_S`` at ``p =
  PAUSE_AT * floor / CUT`` (90 % of the rate sent when the 429 came): the rate is ``c(t)``
  while ``c(t) <= p``, else ``max(p, c(t - PAUSE_S))``; never above ``target``. Several
  workers that do not know of each other so stay just below the instance's limit for a
  while after they have found it, and a worker left alone when the others finish is back at
  the target within about twenty seconds.
* Taking a slot at ``now``: ``interval = 1 / rate``; the burst is ``burst`` at the full rate
  and 1 (none) below it; ``start = max(tat, now, hold_until)``; the request may leave at
  ``max(now, hold_until, start - (burst - 1) * interval)``; ``tat = start + interval``. The
  measure is decayed to ``now`` (``sent_rate * exp(-(now - sent_at) / TAU_S)``), then grows
  by ``1 / TAU_S``; ``sent_at = now``.
* A 429 to a request sent before ``hold_until`` belongs to the event that opened that window:
  it only counts (``throttled + 1``). Any other 429 opens an event: ``hold_until = max(
  hold_until, now + Retry-After)`` (one second without the header), ``tat = now +
  Retry-After``, and ``floor = max(min_rate, CUT * min(rate in force, measured rate))``: 70 %
  of what this pacer was really sending, not of a nominal rate it may never have reached.

A caller already waiting when a window opens waits for the window too. Fixed-window limiters
let a whole window's quota through at a boundary, which overflows a 20-request bucket; that is
why this small pacer is written here rather than taken from a library.
"""

from __future__ import annotations

import math
import os
import stat
import threading
import time
from collections.abc import Callable
from typing import Final, NamedTuple

from coupa_plugin.coupa._errors import PacingTimeout

__all__ = [
    "COUPA_BURST",
    "COUPA_RATE",
    "MAX_RATE",
    "MIN_RATE",
    "PaceState",
    "RateLimiter",
    "SharedRateLimiter",
    "private_file",
]

COUPA_RATE: Final = 25.0  # Coupa's documented limit: requests per second per instance
COUPA_BURST: Final = 20  # and its burst
MIN_RATE: Final = 0.1  # the range of a pacer's rate (the setting requests_per_second)
MAX_RATE: Final = 10_000.0

CUT: Final = 0.7  # the share of the rate really sent kept after a 429 event
RECOVER_PER_S: Final = 0.02  # share of the target regained per second after the window
TAU_S: Final = 1.0  # time constant of the measured rate
ACCEL_S: Final = 8.0  # how soon the climb back quickens (see the rules above)
PAUSE_AT: Final = 0.9  # the climb pauses at this share of the rate sent when the 429 came
PAUSE_S: Final = 5.0  # for this long


class PaceState(NamedTuple):
    """What a pacer remembers; the shared pacer keeps it in SQLite."""

    tat: float  # theoretical arrival time of the next request
    hold_until: float  # no request leaves before this (the last 429 event's window)
    floor: float  # the rate set by the last 429 event; it grows back after the window
    throttled: int  # 429s seen
    sent_rate: float = 0.0  # the measured rate requests are asked for, as of ``sent_at``
    sent_at: float = 0.0


class RateLimiter:
    """Paces calls to :meth:`acquire` to ``rate`` per second with bursts of ``burst``."""

    def __init__(
        self,
        rate: float,
        burst: int = 5,
        *,
        min_rate: float = 1.0,
        recover_per_s: float = RECOVER_PER_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1 or recover_per_s <= 0:
            raise ValueError("rate and recover_per_s must be positive and burst at least 1")
        self.target = rate
        self.burst = burst
        self.min_rate = min(min_rate, rate)
        self.recover_per_s = recover_per_s
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._local = threading.local()
        start = clock()
        self._state = PaceState(tat=start, hold_until=0.0, floor=rate, throttled=0, sent_at=start)
        self.waited_s = 0.0

    # -- the pacing rules, on a state (the shared pacer applies them to the row in SQLite) ---

    def rate_at(self, state: PaceState, now: float) -> float:
        """The rate in force at ``now``: the floor during the hold window, then growing by
        ``recover_per_s`` of the target each second until it is back at the target."""
        if state.floor >= self.target or now <= state.hold_until:
            return min(state.floor, self.target)
        t = now - state.hold_until
        pause_at = PAUSE_AT * state.floor / CUT  # 90 % of the rate sent when the 429 came
        grown = self._climb(state.floor, t)
        if grown > pause_at:
            grown = max(pause_at, self._climb(state.floor, t - PAUSE_S))
        return min(self.target, grown)

    def _climb(self, floor: float, t: float) -> float:
        return floor + self.recover_per_s * self.target * max(0.0, t) * (1.0 + t / ACCEL_S)

    @staticmethod
    def measured(state: PaceState, now: float) -> float:
        """The measured rate requests are asked for, decayed to ``now``."""
        return state.sent_rate * math.exp(-max(0.0, now - state.sent_at) / TAU_S)

    def _take(self, state: PaceState, now: float) -> tuple[PaceState, float]:
        """Reserve the next slot: the new state and the time the request may leave."""
        rate = self.rate_at(state, now)
        interval = 1.0 / rate
        burst = self.burst if rate >= self.target else 1
        start = max(state.tat, now, state.hold_until)
        send_at = max(now, state.hold_until, start - (burst - 1) * interval)
        sent_rate = self.measured(state, now) + 1.0 / TAU_S
        return state._replace(tat=start + interval, sent_rate=sent_rate, sent_at=now), send_at

    def _throttle(
        self, state: PaceState, now: float, sent_at: float | None, retry_after: float | None
    ) -> PaceState:
        state = state._replace(throttled=state.throttled + 1)
        if sent_at is not None and sent_at < state.hold_until:
            return state  # sent before the current window opened: the same event
        hold = now + (retry_after if retry_after is not None else 1.0)
        sending = min(self.rate_at(state, now), self.measured(state, now))
        floor = max(self.min_rate, sending * CUT)
        return state._replace(hold_until=max(hold, state.hold_until), floor=floor, tat=hold)

    # -- the in-process pacer -------------------------------------------------------------

    def _current(self) -> PaceState:
        return self._state

    @property
    def rate(self) -> float:
        """The rate in force now."""
        return self.rate_at(self._current(), self._clock())

    @property
    def throttled(self) -> int:
        """429s seen (by every process sharing the state, for the shared pacer)."""
        return self._current().throttled

    def saturated(self) -> bool:
        """True when requests already leave at the full rate: one more would only queue."""
        state, now = self._current(), self._clock()
        return state.tat - now > 1.0 / self.rate_at(state, now)

    def _update_take(self, now: float) -> float:
        with self._lock:
            self._state, send_at = self._take(self._state, now)
        return send_at

    def acquire(self, max_wait: float | None = None) -> float:
        """Block until a request may be sent; returns the seconds waited.

        A caller already waiting when a 429 opens a hold window waits for the window too.
        :raises PacingTimeout: the request could not leave within ``max_wait`` seconds (its
            caller's deadline); it was not sent.
        """
        waited = 0.0
        while True:
            now = self._clock()
            wait = self._update_take(now) - now
            if wait <= 0:
                break
            if max_wait is not None and waited + wait > max_wait:
                raise PacingTimeout(
                    f"the request could not leave within its deadline ({max_wait:.1f} s): "
                    f"the pacer holds it for {wait:.1f} s more"
                )
            self._sleep(wait)
            waited += wait
            if self._clock() >= self._current().hold_until:
                break
        self._local.sent_at = self._clock()
        if waited:
            with self._lock:
                self.waited_s += waited
        return waited

    def throttled_by_server(self, retry_after: float | None) -> None:
        """Coupa said 429 to the request this thread sent last."""
        sent_at = getattr(self._local, "sent_at", None)
        with self._lock:
            self._state = self._throttle(self._state, self._clock(), sent_at, retry_after)

    def succeeded(self) -> None:
        """A request went through. Recovery depends on time, not on counts: nothing to do."""


_SHARED_SCHEMA = """
CREATE TABLE IF NOT EXISTS pace (
    instance    TEXT PRIMARY KEY,
    tat         REAL NOT NULL,
    hold_until  REAL NOT NULL,
    floor       REAL NOT NULL,
    throttled   INTEGER NOT NULL,
    sent_rate   REAL NOT NULL,
    sent_at     REAL NOT NULL
)
"""


def private_file(path: str) -> None:
    """Create ``path`` readable by its owner only (0600), or tighten it to that; refuse a
    symbolic link or anything but a regular file. SQLite gives its ``-wal`` and ``-shm``
    files the database's mode; existing ones are tightened too.

    :raises OSError: the file cannot be created or is not a regular file.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        side = path + suffix
        if os.path.isfile(side) and not os.path.islink(side):
            os.chmod(side, 0o600)


class SharedRateLimiter(RateLimiter):
    """The same pacer, with its state in a SQLite file that several processes share.

    Coupa's limit is per instance, so workers that sync one instance in parallel must share
    one budget: point them at the same file and each request takes its turn from it; a 429
    seen by one worker opens the hold window for all of them, once. State is kept per
    ``instance`` (the base URL), in wall-clock time; ``rate`` should be the budget of the
    instance as a whole.
    """

    def __init__(
        self,
        path: str,
        instance: str,
        rate: float,
        burst: int = 5,
        *,
        min_rate: float = 1.0,
        recover_per_s: float = RECOVER_PER_S,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(
            rate,
            burst,
            min_rate=min_rate,
            recover_per_s=recover_per_s,
            clock=clock,
            sleep=sleep,
        )
        import sqlite3

        self.instance = instance
        private_file(path)
        self._db = sqlite3.connect(
            path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA busy_timeout = 30000")
        # Switching to WAL needs the file to itself; several processes may open it at once,
        # so try a few times, and not at all once another process has switched it.
        for attempt in range(50):
            try:
                if self._db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(_SHARED_SCHEMA)
                self._db.execute(
                    "INSERT OR IGNORE INTO pace VALUES (?, 0, 0, ?, 0, 0, 0)", (instance, rate)
                )
                break
            except sqlite3.OperationalError:
                if attempt == 49:
                    raise
                time.sleep(0.02)

    def close(self) -> None:
        self._db.close()

    def _read(self) -> PaceState:
        row = self._db.execute(
            "SELECT tat, hold_until, floor, throttled, sent_rate, sent_at FROM pace"
            " WHERE instance = ?",
            (self.instance,),
        ).fetchone()
        return PaceState(*row)

    def _update(self, change: Callable[[PaceState], PaceState]) -> PaceState:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                new = change(self._read())
                self._db.execute(
                    "UPDATE pace SET tat = ?, hold_until = ?, floor = ?, throttled = ?,"
                    " sent_rate = ?, sent_at = ? WHERE instance = ?",
                    (*new, self.instance),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._state = new
            return new

    def _update_take(self, now: float) -> float:
        send_at = now

        def take(state: PaceState) -> PaceState:
            nonlocal send_at
            state, send_at = self._take(state, now)
            return state

        self._update(take)
        return send_at

    def _current(self) -> PaceState:
        with self._lock:
            self._state = self._read()
        return self._state

    def throttled_by_server(self, retry_after: float | None) -> None:
        sent_at = getattr(self._local, "sent_at", None)
        now = self._clock()
        self._update(lambda state: self._throttle(state, now, sent_at, retry_after))
