"""Metrics and traces through the OpenTelemetry API, the way a library uses it.

Only ``opentelemetry-api`` is used (the extra ``otel``); without it every call here does
nothing, and with it nothing is recorded or exported until the host configures an SDK (or
passes providers of its own). No personal data goes into an attribute: the tenant id
(``coupa.tenant``), HTTP methods, route templates (``/api/users/{id}``: ids are replaced),
status codes, error types, resource types, hook names, provisioning actions and statuses.

HTTP requests follow the semantic conventions for HTTP clients: the histogram
``http.client.request.duration`` (seconds) by ``http.request.method``, ``url.template``,
``http.response.status_code``, ``server.address`` and ``error.type``, and a CLIENT span per
attempt (``http.request.resend_count`` on a resend).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final
from urllib.parse import urlsplit

from coupa_plugin import __version__

try:
    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace
except ImportError:  # the extra ``otel`` is not installed: every call here does nothing
    _metrics = None  # type: ignore[assignment]
    _trace = None  # type: ignore[assignment]

__all__ = ["TENANT", "Instruments", "Outcome", "Telemetry", "route_template"]

SCOPE: Final = "coupa_plugin"
TENANT: Final = "coupa.tenant"
# seconds: the buckets the HTTP semantic conventions advise for request durations
_DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10
)
_SYNC_BUCKETS: Final = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


def route_template(path: str) -> str:
    """``path`` with each numeric segment replaced by ``{id}``: ``/api/users/{id}``."""
    return "/".join("{id}" if part.isdigit() else part for part in path.split("/"))


class Instruments:
    """The plugin's meters and tracer, from the providers given or the global ones (a proxy
    until the host sets an SDK's). ``on`` is False without the OpenTelemetry API."""

    def __init__(self, meter_provider: Any = None, tracer_provider: Any = None) -> None:
        self.on = _metrics is not None and _trace is not None
        if not self.on:
            return
        meter = _metrics.get_meter(SCOPE, __version__, meter_provider)
        self.tracer = _trace.get_tracer(SCOPE, __version__, tracer_provider)

        def seconds(name: str, description: str, buckets: tuple[float, ...]) -> Any:
            return meter.create_histogram(
                name, unit="s", description=description, explicit_bucket_boundaries_advisory=buckets
            )

        self.request_duration = seconds(
            "http.client.request.duration", "Duration of HTTP client requests.", _DURATION_BUCKETS
        )
        self.resends = meter.create_counter(
            "coupa.http.resends", unit="{request}", description="Requests sent again (retries)."
        )
        self.rate_wait = seconds(
            "coupa.rate_limit.wait.duration",
            "Time a request waited for the pacer before it was sent (retry backoff not "
            "included).",
            _DURATION_BUCKETS,
        )
        self.throttled = meter.create_counter(
            "coupa.http.throttled", unit="{response}", description="429 answers from Coupa."
        )
        self.tokens = meter.create_counter(
            "coupa.oauth.tokens_minted", unit="{token}", description="OAuth tokens minted."
        )
        self.sync_items = meter.create_counter(
            "coupa.sync.items", unit="{item}", description="Items streamed by the sync hooks."
        )
        self.sync_duration = seconds(
            "coupa.sync.duration",
            "Duration of a sync stream, from the hook call to its end.",
            _SYNC_BUCKETS,
        )
        self.provision_calls = meter.create_counter(
            "coupa.provision.calls", unit="{call}", description="Provisioning calls."
        )
        self._meter = meter

    def observe_journal(self, pending: Callable[[], Iterable[tuple[int, str]]]) -> None:
        """The ``coupa.journal.pending`` gauge: ``pending()`` gives (entries, tenant id) per
        tenant, read from memory when the host's reader collects (no I/O in the callback)."""
        if not self.on:
            return

        def observe(_options: Any) -> Iterable[Any]:
            return [
                _metrics.Observation(count, {TENANT: tenant}) for count, tenant in pending()
            ]

        self._meter.create_observable_gauge(
            "coupa.journal.pending",
            callbacks=[observe],
            unit="{entry}",
            description="Interrupted list rewrites waiting for recovery, as this process knows "
            "them (refreshed at every recovery pass).",
        )


class Outcome:
    """What one request came to: a status code, or the type of its failure."""

    status: int | None = None
    error: str | None = None


class Telemetry:
    """One tenant's view of the :class:`Instruments`: every measurement names the tenant."""

    def __init__(
        self,
        instruments: Instruments | None,
        tenant: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.instruments = instruments if instruments is not None and instruments.on else None
        self.tenant = tenant
        self.clock = clock
        self._base: Mapping[str, str] = {TENANT: tenant}

    def attributes(self, **extra: Any) -> dict[str, Any]:
        return {**self._base, **extra}

    @contextmanager
    def request(self, method: str, url: str, path: str, attempt: int) -> Iterator[Outcome]:
        """Measure one HTTP attempt (a CLIENT span, current while it runs, and its
        duration); the caller fills the :class:`Outcome`."""
        outcome = Outcome()
        if self.instruments is None:
            yield outcome
            return
        common = self.attributes(
            **{
                "http.request.method": method,
                "url.template": route_template(path),
                "server.address": urlsplit(url).hostname or "",
            }
        )
        span_attributes = dict(common)
        if attempt > 1:
            span_attributes["http.request.resend_count"] = attempt - 1
            self.instruments.resends.add(1, self._base)
        started = self.clock()
        with self.instruments.tracer.start_as_current_span(
            f"{method} {common['url.template']}",
            kind=_trace.SpanKind.CLIENT,
            attributes=span_attributes,
            record_exception=False,  # an exception's text may quote a record
            set_status_on_exception=False,
        ) as span:
            try:
                yield outcome
            except BaseException as exc:
                outcome.error = outcome.error or type(exc).__name__
                raise
            finally:
                result = dict(common)
                if outcome.status is not None:
                    result["http.response.status_code"] = outcome.status
                    span.set_attribute("http.response.status_code", outcome.status)
                    if outcome.status >= 400:
                        outcome.error = outcome.error or str(outcome.status)
                if outcome.error is not None:
                    result["error.type"] = outcome.error
                    span.set_attribute("error.type", outcome.error)
                    span.set_status(_trace.StatusCode.ERROR)
                self.instruments.request_duration.record(
                    max(0.0, self.clock() - started), result
                )

    def waited(self, seconds: float) -> None:
        if self.instruments is not None:
            self.instruments.rate_wait.record(seconds, self._base)

    def throttled(self) -> None:
        if self.instruments is not None:
            self.instruments.throttled.add(1, self._base)

    def token_minted(self) -> None:
        if self.instruments is not None:
            self.instruments.tokens.add(1, self._base)
