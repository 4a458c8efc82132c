"""How long a tenant's connector lives: the calls and streams using it, counted.

A connector is retired when its tenant is disabled, released, dropped or reconfigured; it
closes (threads and sockets released) once the last call or stream begun on it has ended, so
that work handed out under the old settings finishes on the connector it began on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from coupa_plugin.coupa import tenant_context

__all__ = ["Leased", "Uses", "tenant_context"]

T = TypeVar("T")


class Uses:
    """The calls and streams that use one resource; ``close`` runs once, when the resource
    is retired and no use remains."""

    def __init__(self, close: Callable[[], None]) -> None:
        self._close = close
        self._lock = threading.Lock()
        self._count = 0
        self._retired = False
        self._closed = False

    @property
    def count(self) -> int:
        return self._count

    @property
    def retired(self) -> bool:
        return self._retired

    @property
    def closed(self) -> bool:
        return self._closed

    def enter(self) -> None:
        """One more use (a call or a stream begins)."""
        with self._lock:
            self._count += 1

    def exit(self) -> None:
        """One use ended; closes the resource when it was the last of a retired one."""
        with self._lock:
            self._count -= 1
            last = self._retired and not self._count and not self._closed
            self._closed = self._closed or last
        if last:
            self._close()

    def retire(self) -> None:
        """No new use will come: close now when unused, else when the last use ends."""
        with self._lock:
            self._retired = True
            now = not self._count and not self._closed
            self._closed = self._closed or now
        if now:
            self._close()

    @contextmanager
    def using(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.exit()


class Leased(Iterator[T]):
    """A stream handed to a host, holding one use of ``uses`` from the moment it is made
    until it ends, fails, is closed or is dropped (garbage-collected) — whether or not it
    was ever read from. Each step runs for ``tenant``: what it logs names the tenant."""

    def __init__(self, items: Iterator[T], uses: Uses, tenant: str = "") -> None:
        self._items = items
        self._uses: Uses | None = uses
        self._tenant = tenant
        uses.enter()

    def __next__(self) -> T:
        if self._uses is None:
            raise StopIteration
        try:
            with tenant_context(self._tenant):
                return next(self._items)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the stream (its background reads too) and give back its use."""
        uses, self._uses = self._uses, None
        if uses is None:
            return
        try:
            close = getattr(self._items, "close", None)
            if close is not None:
                with tenant_context(self._tenant):
                    close()
        finally:
            uses.exit()

    def __del__(self) -> None:
        self.close()
