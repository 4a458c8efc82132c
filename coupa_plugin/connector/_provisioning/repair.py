"""Self-repair: a user left stripped because Coupa kept failing is given back their access once
Coupa answers again, without waiting for a call about that user.

:class:`RepairSchedule` says when the next attempt is due (at once after a call left an entry
pending, then with a doubling backoff while repairs fail; idle once nothing is pending), on the
plugin's clock. The connector runs due repairs at the start of every hook call; a
:class:`Repairer` thread runs them on its own in a long-running process. The thread starts
when something is left pending, ends as soon as nothing is, and is stopped by ``close``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

__all__ = ["RepairSchedule", "Repairer"]

log = logging.getLogger("coupa_plugin.connector.provisioning")

FIRST_DELAY_S: Final = 5.0
MAX_DELAY_S: Final = 300.0


class RepairSchedule:
    """When the next repair attempt is due. Thread-safe."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        first_s: float = FIRST_DELAY_S,
        max_s: float = MAX_DELAY_S,
    ) -> None:
        self._clock = clock
        self._first_s, self._max_s = first_s, max_s
        self._lock = threading.Lock()
        # a new process does not know what an earlier one left: its first call looks
        self._due_at: float | None = clock()
        self._delay = first_s
        self._kicks = 0  # how many times something was left pending: a pass clears only
        # what it saw

    def pending(self) -> None:
        """Something was left pending: an attempt is due after the first delay (unless one
        is due sooner)."""
        with self._lock:
            self._kicks += 1
            at = self._clock() + self._first_s
            if self._due_at is None or at < self._due_at:
                self._due_at = at
            self._delay = self._first_s

    def started(self) -> int:
        """A pass starts: the mark :meth:`ran` compares with, so that something left pending
        while the pass ran is not forgotten."""
        with self._lock:
            return self._kicks

    def due(self) -> bool:
        with self._lock:
            return self._due_at is not None and self._clock() >= self._due_at

    def wait_s(self) -> float | None:
        """Seconds until the next attempt (0 when due), or None when nothing is pending."""
        with self._lock:
            if self._due_at is None:
                return None
            return max(0.0, self._due_at - self._clock())

    def ran(self, *, left: bool, mark: int | None = None) -> None:
        """An attempt ran; ``left``: something is still pending (try again, later each time).
        ``mark`` is what :meth:`started` gave: what was left pending while the pass ran is
        not forgotten when the pass itself found nothing left."""
        with self._lock:
            if left:
                self._due_at = self._clock() + self._delay
                self._delay = min(self._delay * 2, self._max_s)
            elif mark is not None and self._kicks != mark:
                self._due_at = self._clock() + self._first_s
            else:
                self._due_at, self._delay = None, self._first_s


Wait = Callable[[threading.Event, float], bool]


def _wait(stop: threading.Event, seconds: float) -> bool:
    return stop.wait(seconds)


class Repairer:
    """Runs ``repair`` (which returns True while something is left pending) when the schedule
    says so, on a thread of its own that exists only while something is pending."""

    def __init__(
        self,
        schedule: RepairSchedule,
        repair: Callable[[], bool],
        *,
        name: str = "coupa-repair",
        wait: Wait = _wait,
    ) -> None:
        self.schedule = schedule
        self._repair = repair
        self._name = name
        self._wait = wait
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = threading.Lock()  # one repair pass at a time, thread or call

    def kick(self) -> None:
        """Something was left pending: schedule an attempt and make sure the thread runs."""
        self.schedule.pending()
        with self._lock:
            if self._stop.is_set() or self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()

    def run_if_due(self) -> None:
        """Run a repair pass now when one is due (what every hook call does first); none
        when a pass is under way on another thread."""
        if self.schedule.due():
            self._pass(block=False)

    def _pass(self, *, block: bool) -> None:
        if not self._running.acquire(blocking=block):
            return
        mark = self.schedule.started()
        try:
            left = self._repair()
        except Exception as exc:  # noqa: BLE001 - a repair pass never takes its caller down
            log.warning("self-repair failed", extra={"error": str(exc)[:200]})
            left = True
        finally:
            self._running.release()
        self.schedule.ran(left=left, mark=mark)

    def _loop(self) -> None:
        while True:
            with self._lock:
                wait = self.schedule.wait_s()
                if wait is None:  # nothing pending: the thread ends (a kick starts another)
                    self._thread = None
                    return
            if self._wait(self._stop, wait):
                return  # closed
            if self.schedule.due():
                self._pass(block=True)

    def close(self) -> None:
        """Stop the thread: it starts no pass after this (one under way ends on its own,
        within its calls' time budgets; close does not wait for it)."""
        with self._lock:
            self._stop.set()
