"""The connector's own measurements: a span per hook call, items and duration per sync stream,
provisioning calls by action and status (see :mod:`coupa_plugin.coupa._telemetry`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from coupa_plugin.coupa import TENANT, Instruments, Telemetry
from coupa_plugin.host.model import Grant, Resource

__all__ = ["Instruments", "Telemetry", "hook_span", "measure_stream", "provisioned"]

T = TypeVar("T")


@contextmanager
def hook_span(instruments: Instruments | None, tenant_id: str, hook: str) -> Iterator[None]:
    """A span for one hook call (``coupa <hook>``), current while the call runs: the requests
    it sends are its children, and it is a child of the host's current span."""
    if instruments is None or not instruments.on:
        yield
        return
    with instruments.tracer.start_as_current_span(
        f"coupa {hook}",
        attributes={TENANT: tenant_id, "coupa.hook": hook},
        record_exception=False,  # an error's text may quote a record
    ):
        yield


def _kind(item: object) -> str:
    if isinstance(item, Resource):
        return item.type
    if isinstance(item, Grant):
        return item.entitlement_id.split(":", 1)[0]
    return "other"


def measure_stream(items: Iterator[T], telemetry: Telemetry, hook: str) -> Iterator[T]:
    """``items``, counted by resource type (``coupa.sync.items``) and timed from now to its end
    (``coupa.sync.duration``, ``coupa.sync.outcome``: complete, failed or abandoned)."""
    instruments = telemetry.instruments
    if instruments is None:
        yield from items
        return
    started = telemetry.clock()
    counts: Counter[str] = Counter()
    outcome = "abandoned"
    try:
        for item in items:
            counts[_kind(item)] += 1
            yield item
        outcome = "complete"
    except GeneratorExit:
        raise
    except BaseException:
        outcome = "failed"
        raise
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()  # an abandoned stream stops its reads now
        for kind, count in counts.items():
            instruments.sync_items.add(
                count, telemetry.attributes(**{"coupa.hook": hook, "coupa.resource.type": kind})
            )
        instruments.sync_duration.record(
            max(0.0, telemetry.clock() - started),
            telemetry.attributes(**{"coupa.hook": hook, "coupa.sync.outcome": outcome}),
        )


def provisioned(telemetry: Telemetry, action: str, status: str) -> None:
    """One provisioning call: ``status`` is the result's, or the error's type."""
    if telemetry.instruments is not None:
        attributes: dict[str, Any] = {"coupa.provision.action": action}
        attributes["coupa.provision.status"] = status
        telemetry.instruments.provision_calls.add(1, telemetry.attributes(**attributes))
