"""The last guard at the hook boundary: whatever a server or a host sends, a hook raises only
:class:`~coupa_plugin.host.errors.PluginError` subclasses.

Each failure is first turned into the right error where it starts (settings, inputs, the
client, provisioning); this guard catches what those missed, names the hook and the problem,
chains the original as the cause and keeps secrets out of the message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from coupa_plugin.coupa import CoupaError, scrub
from coupa_plugin.host.errors import PluginError

__all__ = ["boundary", "describe", "guard_stream"]

T = TypeVar("T")


def describe(exc: BaseException, limit: int = 300) -> str:
    """A short, scrubbed description of ``exc`` fit for an error message."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a hostile value may not even render
        text = ""
    text = scrub(" ".join(text[: limit * 4].split()))[:limit]
    if isinstance(exc, CoupaError):
        return text or type(exc).__name__
    return f"unexpected {type(exc).__name__}" + (f": {text}" if text else "")


@contextmanager
def boundary(tenant_id: str, what: str, error: type[PluginError]) -> Iterator[None]:
    """Let PluginErrors through; turn anything else into ``error`` naming ``what`` failed."""
    try:
        yield
    except PluginError:
        raise
    except Exception as exc:
        raise error(f"tenant {tenant_id}: {what} could not complete: {describe(exc)}") from exc


def guard_stream(
    items: Iterable[T], tenant_id: str, what: str, error: type[PluginError]
) -> Iterator[T]:
    """:func:`boundary` for a lazy stream: a failure while the host iterates is ``error`` too,
    so a host never mistakes a partial stream for a complete one."""
    with boundary(tenant_id, what, error):
        yield from items
