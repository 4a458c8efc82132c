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

import os
import stat
import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter", "SharedRateLimiter", "private_file"]


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


_SHARED_SCHEMA = """
CREATE TABLE IF NOT EXISTS pacing (
    instance    TEXT PRIMARY KEY,
    tat         REAL NOT NULL,
    hold_until  REAL NOT NULL,
    rate        REAL NOT NULL,
    successes   INTEGER NOT NULL,
    throttled   INTEGER NOT NULL
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
    one budget: point them at the same file and each request takes its turn from it. State is
    kept per ``instance`` (the base URL), in wall-clock time; ``rate`` should be the budget of
    the instance as a whole.
    """

    def __init__(
        self,
        path: str,
        instance: str,
        rate: float,
        burst: int = 5,
        *,
        min_rate: float = 1.0,
        recover_after: int = 50,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(
            rate,
            burst,
            min_rate=min_rate,
            recover_after=recover_after,
            clock=time.time,
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
                    "INSERT OR IGNORE INTO pacing VALUES (?, 0, 0, ?, 0, 0)", (instance, rate)
                )
                break
            except sqlite3.OperationalError:
                if attempt == 49:
                    raise
                time.sleep(0.02)

    def close(self) -> None:
        self._db.close()

    def _update(
        self,
        change: Callable[[float, float, float, int, int], tuple[float, float, float, int, int]],
    ) -> tuple[float, float, float, int, int]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT tat, hold_until, rate, successes, throttled FROM pacing"
                    " WHERE instance = ?",
                    (self.instance,),
                ).fetchone()
                new = change(*row)
                self._db.execute(
                    "UPDATE pacing SET tat = ?, hold_until = ?, rate = ?, successes = ?,"
                    " throttled = ? WHERE instance = ?",
                    (*new, self.instance),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self.rate, self.throttled = new[2], new[4]
            return new

    def acquire(self) -> float:
        now = self._clock()
        send_at = now

        def take(
            tat: float, hold: float, rate: float, ok: int, thr: int
        ) -> tuple[float, float, float, int, int]:
            nonlocal send_at
            interval = 1.0 / rate
            start = max(tat, now, hold)
            send_at = max(now, hold, start - (self.burst - 1) * interval)
            return start + interval, hold, rate, ok, thr

        self._update(take)
        wait = send_at - now
        if wait > 0:
            self._sleep(wait)
            self.waited_s += wait
        return max(wait, 0.0)

    def throttled_by_server(self, retry_after: float | None) -> None:
        pause = retry_after if retry_after is not None else 1.0
        now = self._clock()
        self._update(
            lambda tat, hold, rate, ok, thr: (
                tat,
                max(hold, now + pause),
                max(self.min_rate, rate * 0.7),
                0,
                thr + 1,
            )
        )

    def succeeded(self) -> None:
        def recover(
            tat: float, hold: float, rate: float, ok: int, thr: int
        ) -> tuple[float, float, float, int, int]:
            if rate >= self.target:
                return tat, hold, rate, ok, thr
            ok += 1
            if ok >= self._recover_after:
                return tat, hold, min(self.target, rate * 1.1), 0, thr
            return tat, hold, rate, ok, thr

        if self.rate < self.target:
            self._update(recover)
