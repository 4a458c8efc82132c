"""Progress of sync runs: a live display on a terminal, logfmt lines otherwise.

Counts come from the streams the host consumes (resources and grants per type). Request
counters come from log records that carry ``requests``, ``retries`` and ``throttled`` fields
(the Coupa plugin's client emits one every 50 requests and at the end of a run), so any plugin
that logs the same fields gets the same display. The ETA uses the previous complete run of the
tenant as the expected size.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

__all__ = ["SyncProgress"]

log = logging.getLogger("coupa_plugin.host.progress")


class _StatsHandler(logging.Handler):
    def __init__(self, progress: SyncProgress) -> None:
        super().__init__(logging.INFO)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        requests = getattr(record, "requests", None)
        if isinstance(requests, int):
            self.progress.request_stats(
                str(getattr(record, "tenant", "")),
                requests,
                int(getattr(record, "retries", 0)),
                int(getattr(record, "throttled", 0)),
            )


class SyncProgress:
    """A :class:`~coupa_plugin.host.jobs.ProgressSink` that shows what a sync is doing."""

    def __init__(self, live: bool, interval_s: float = 5.0) -> None:
        self.live = live
        self.interval_s = interval_s
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.requests: dict[str, tuple[int, int, int]] = {}
        self.expected: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self._lock = threading.Lock()
        self._last_report = time.monotonic()
        self._live_display: Any = None
        self._handler = _StatsHandler(self)

    def __enter__(self) -> SyncProgress:
        logging.getLogger("coupa_plugin").addHandler(self._handler)
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._live_display = Live(
                self._render(), console=Console(stderr=True), refresh_per_second=4, transient=True
            )
            self._live_display.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("coupa_plugin").removeHandler(self._handler)
        if self._live_display is not None:
            self._live_display.__exit__(None, None, None)

    def begin(self, tenant_id: str, expected_items: int | None) -> None:
        with self._lock:
            self.started[tenant_id] = time.monotonic()
            if expected_items:
                self.expected[tenant_id] = expected_items

    def request_stats(self, tenant_id: str, requests: int, retries: int, throttled: int) -> None:
        with self._lock:
            self.requests[tenant_id] = (requests, retries, throttled)

    def advance(self, tenant_id: str, phase: str, item_type: str) -> None:
        with self._lock:
            self.counts[(tenant_id, phase, item_type)] += 1
        now = time.monotonic()
        if now - self._last_report < (0.25 if self.live else self.interval_s):
            return
        self._last_report = now
        if self._live_display is not None:
            self._live_display.update(self._render())
        else:
            log.info("progress", extra=self.summary(tenant_id))

    def summary(self, tenant_id: str) -> dict[str, Any]:
        """The figures of one tenant's run so far (what a log line carries)."""
        with self._lock:
            items = {
                f"{phase}.{kind}": n
                for (t, phase, kind), n in sorted(self.counts.items())
                if t == tenant_id
            }
            requests, retries, throttled = self.requests.get(tenant_id, (0, 0, 0))
            started = self.started.get(tenant_id, time.monotonic())
            expected = self.expected.get(tenant_id)
        done = sum(items.values())
        elapsed = time.monotonic() - started
        out: dict[str, Any] = {
            "tenant": tenant_id,
            "items": done,
            "elapsed_s": round(elapsed, 1),
            "items_per_s": round(done / elapsed, 1) if elapsed > 0 else 0.0,
            "requests_per_s": round(requests / elapsed, 1) if elapsed > 0 else 0.0,
            "requests": requests,
            "retries": retries,
            "throttled": throttled,
        }
        if expected and done:
            out["eta_s"] = round(max(0.0, elapsed * (expected / done - 1)), 1)
        out.update(items)
        return out

    def _render(self) -> Any:
        from rich.table import Table

        table = Table(title="sync progress", expand=False)
        for column in (
            "tenant",
            "resources",
            "grants",
            "req",
            "req/s",
            "retries",
            "429s",
            "items/s",
            "elapsed",
            "ETA",
        ):
            table.add_column(column)
        for tenant_id in sorted(self.started):
            s = self.summary(tenant_id)
            resources = ", ".join(
                f"{k.split('.', 1)[1]}={v}" for k, v in s.items() if k.startswith("resources.")
            )
            grants = sum(v for k, v in s.items() if k.startswith("grants."))
            eta = f"{s['eta_s']:.0f}s" if "eta_s" in s else "-"
            table.add_row(
                tenant_id,
                resources,
                str(grants),
                str(s["requests"]),
                str(s["requests_per_s"]),
                str(s["retries"]),
                str(s["throttled"]),
                str(s["items_per_s"]),
                f"{s['elapsed_s']:.0f}s",
                eta,
            )
        return table
