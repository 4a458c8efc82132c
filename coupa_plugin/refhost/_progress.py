"""Progress of sync runs: a live display on a terminal, logfmt lines otherwise.

Counts come from the streams the host consumes (resources and grants per type). Request
counters come from the plugin's log records: every record that carries ``method`` and either
``elapsed_ms`` or ``error`` is one request (the Coupa plugin logs one at DEBUG per request). The
display listens on the root logger, where every plugin's records arrive whatever its logger
namespace, and lowers the root logger to DEBUG while it runs (the log handlers keep their own
levels), ``attempt`` above 1 is a retry and ``status`` 429 a throttled answer. Records
with ``requests``/``retries``/``throttled`` totals (the client's periodic stats) are taken too,
so a plugin that logs only those still shows counts. The ETA compares the users read so far
with the users of the tenant's previous comparable complete run: users are what a sync spends
its requests on, while grants are replayed at the end without requests.

The live display is never erased: every message printed while it runs appears above it, and
its last frame (each tenant's final state) stays on screen when it closes.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TextIO

import attrs

from coupa_plugin.refhost._logfmt import HOST_LOGGER, host_handlers, logfmt_line
from coupa_plugin.refhost._reports import safe_text

__all__ = ["SyncProgress"]


@attrs.define
class _TenantProgress:
    started: float
    expected_users: int | None
    counts: Counter[tuple[str, str]] = attrs.Factory(Counter)
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    state: str = "running"
    ended: float | None = None


class _StatsHandler(logging.Handler):
    def __init__(self, progress: SyncProgress) -> None:
        super().__init__(logging.DEBUG)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        tenant = getattr(record, "tenant", None)
        if tenant is None:
            return
        tenant = str(tenant)
        if hasattr(record, "method") and (
            hasattr(record, "elapsed_ms") or hasattr(record, "error")
        ):
            attempt = getattr(record, "attempt", 1)
            self.progress.request_seen(
                tenant,
                retry=isinstance(attempt, int) and attempt > 1,
                throttled=getattr(record, "status", None) == 429,
            )
        requests = getattr(record, "requests", None)
        if isinstance(requests, int):
            self.progress.request_stats(
                tenant,
                requests,
                int(getattr(record, "retries", 0)),
                int(getattr(record, "throttled", 0)),
            )


class SyncProgress:
    """A :class:`~coupa_plugin.refhost._jobs.ProgressSink` that shows what a sync is doing.

    ``live``: a table redrawn on the terminal ``err``; otherwise one logfmt ``progress`` line
    per tenant every ``interval_s`` seconds on ``err``, whatever the log level.
    """

    def __init__(
        self,
        *,
        live: bool,
        interval_s: float = 5.0,
        err: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.live = live
        self.interval_s = interval_s
        self._err = err if err is not None else sys.stderr
        self._clock = clock
        self.tenants: dict[str, _TenantProgress] = {}
        self._lock = threading.Lock()
        self._last_report: dict[str, float] = {}
        self._live_display: Any = None
        self._handler = _StatsHandler(self)
        self._saved_level = logging.NOTSET
        self._redirected: list[tuple[logging.StreamHandler[Any], Any]] = []

    def __enter__(self) -> SyncProgress:
        logger = logging.getLogger()
        self._saved_level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self._handler)
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._live_display = Live(
                get_renderable=self._render,
                console=Console(file=self._err, highlight=False),
                refresh_per_second=4,
                transient=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live_display.start()
            # log lines written while the table is shown go above it, not through it
            for handler in host_handlers():
                self._redirected.append((handler, handler.stream))
                handler.setStream(_ConsoleStream(self._live_display.console))
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger()
        logger.removeHandler(self._handler)
        logger.setLevel(self._saved_level)
        for handler, stream in self._redirected:
            handler.setStream(stream)
        self._redirected.clear()
        if self._live_display is not None:
            self._live_display.refresh()
            self._live_display.stop()
            self._live_display = None

    # -- what the host reports --------------------------------------------------------------

    def begin(self, tenant_id: str, expected_users: int | None) -> None:
        """The run starts after ``configure``, whose requests and time stay counted (as in the
        run's own elapsed time)."""
        with self._lock:
            seen = self.tenants.get(tenant_id)
            tenant = self.tenants[tenant_id] = _TenantProgress(
                self._clock(), expected_users or None
            )
            if seen is not None:
                tenant.started, tenant.requests = seen.started, seen.requests
                tenant.retries, tenant.throttled = seen.retries, seen.throttled
            self._last_report[tenant_id] = self._clock()

    def advance(self, tenant_id: str, phase: str, item_type: str) -> None:
        with self._lock:
            self._get(tenant_id).counts[(phase, item_type)] += 1
        self._maybe_report(tenant_id)

    def finish(self, tenant_id: str, state: str) -> None:
        """The tenant's run ended (``complete``, ``FAILED``, ``interrupted``, …)."""
        with self._lock:
            tenant = self._get(tenant_id)
            tenant.state = state
            tenant.ended = self._clock()
        if not self.live:
            self._report(tenant_id)

    def message(self, text: str) -> None:
        """A line for the user (an error, a warning) that stays on screen; what a server said
        in it cannot act on the terminal."""
        text = safe_text(text)
        if self._live_display is not None:
            self._live_display.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            self._err.write(text + "\n")
            self._err.flush()

    def request_seen(self, tenant_id: str, *, retry: bool, throttled: bool) -> None:
        with self._lock:
            tenant = self._get(tenant_id)
            tenant.requests += 1
            tenant.retries += retry
            tenant.throttled += throttled
        self._maybe_report(tenant_id)

    def request_stats(self, tenant_id: str, requests: int, retries: int, throttled: int) -> None:
        with self._lock:
            tenant = self._get(tenant_id)
            tenant.requests = max(tenant.requests, requests)
            tenant.retries = max(tenant.retries, retries)
            tenant.throttled = max(tenant.throttled, throttled)

    def _get(self, tenant_id: str) -> _TenantProgress:
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            tenant = self.tenants[tenant_id] = _TenantProgress(self._clock(), None)
        return tenant

    def _maybe_report(self, tenant_id: str) -> None:
        if self.live:
            return  # the live display redraws itself
        now = self._clock()
        with self._lock:
            if now - self._last_report.get(tenant_id, now) < self.interval_s:
                return
            self._last_report[tenant_id] = now
        self._report(tenant_id)

    def _report(self, tenant_id: str) -> None:
        fields = self.summary(tenant_id)
        line = logfmt_line("info", f"{HOST_LOGGER}.progress", "progress", fields)
        self._err.write(line + "\n")
        self._err.flush()

    # -- figures ----------------------------------------------------------------------------

    def summary(self, tenant_id: str) -> dict[str, Any]:
        """The figures of one tenant's run so far (what a progress line carries)."""
        with self._lock:
            tenant = self._get(tenant_id)
            counts = dict(tenant.counts)
            requests, retries, throttled = tenant.requests, tenant.retries, tenant.throttled
            expected, state = tenant.expected_users, tenant.state
            end = tenant.ended if tenant.ended is not None else self._clock()
            elapsed = max(0.0, end - tenant.started)
        users = counts.get(("resources", "user"), 0)
        done = sum(counts.values())
        out: dict[str, Any] = {
            "tenant": tenant_id,
            "state": state,
            "users": users,
            "items": done,
            "elapsed_s": round(elapsed, 1),
            "items_per_s": round(done / elapsed, 1) if elapsed > 0 else 0.0,
            "users_per_s": round(users / elapsed, 1) if elapsed > 0 else 0.0,
            "requests_per_s": round(requests / elapsed, 1) if elapsed > 0 else 0.0,
            "requests": requests,
            "retries": retries,
            "throttled": throttled,
        }
        if expected:
            out["expected_users"] = expected
            if state == "running" and users and users < expected:
                out["eta_s"] = round(elapsed * (expected / users - 1), 1)
        out.update({f"{phase}.{kind}": n for (phase, kind), n in sorted(counts.items())})
        return out

    def _render(self) -> Any:
        """The live table, built to fit an 80-column terminal: no cell is cut short (other
        resources show as one count, requests with their rate, retries with the 429s)."""
        from rich import box
        from rich.table import Table

        table = Table(
            title="sync progress",
            expand=False,
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            collapse_padding=True,
        )
        table.add_column("tenant", overflow="fold", min_width=8)
        for column in ("state", "users", "other", "grants", "requests", "retry/429", "time", "ETA"):
            table.add_column(column, min_width=len(column), no_wrap=column not in {"grants"})
        for tenant_id in sorted(self.tenants):
            s = self.summary(tenant_id)
            others = sum(
                v for k, v in s.items() if k.startswith("resources.") and k != "resources.user"
            )
            grant_counts = [v for k, v in s.items() if k.startswith("grants.")]
            grants = str(sum(grant_counts)) if grant_counts else "after users"
            if s["state"] != "running" and not grant_counts:
                grants = "0" if s["state"] == "complete" else "-"
            users = f"{s['users']}" + (f"/{s['expected_users']}" if "expected_users" in s else "")
            eta = _short_duration(s["eta_s"]) if "eta_s" in s else "-"
            table.add_row(
                tenant_id,
                s["state"],
                users,
                str(others),
                grants,
                f"{s['requests']} {s['requests_per_s']:.0f}/s",
                f"{s['retries']}/{s['throttled']}",
                _short_duration(s["elapsed_s"]),
                eta,
            )
        return table


def _short_duration(seconds: float) -> str:
    """``87s``, ``31m``, ``5h``: at most four characters, so the table keeps its width."""
    if seconds < 100:
        return f"{seconds:.0f}s"
    if seconds < 100 * 60:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


class _ConsoleStream:
    """A text stream that prints through a rich console (above its live display)."""

    def __init__(self, console: Any) -> None:
        self._console = console

    def write(self, text: str) -> int:
        stripped = text.rstrip("\n")
        if stripped:
            self._console.print(stripped, markup=False, highlight=False, soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        return None
