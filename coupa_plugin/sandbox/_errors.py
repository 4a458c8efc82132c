"""The sandbox's errors. The tree::

    SandboxError            base of the errors a route raises to answer a request
    ├── HttpError           an answer other than success: status, payload and headers
    └── QueryError          a query parameter the sandbox cannot understand (a 400)

    BaseException
    └── SimulatedCrash      stands for the client process dying mid-request

``SimulatedCrash`` derives from :class:`BaseException` on purpose: an in-process sandbox
raises it into the calling thread, and a simulated process death must pass every
``except Exception`` in the client and the connector, as a real one does, so tests see what a
killed process leaves behind (its journal entries, a write applied or not).
"""

from __future__ import annotations

from typing import Any

__all__ = ["HttpError", "QueryError", "SandboxError", "SimulatedCrash"]


class SandboxError(Exception):
    """Base class of the errors a sandbox route raises; each becomes an HTTP answer."""


class HttpError(SandboxError):
    """An answer other than success, raised by a route: status, payload and headers."""

    def __init__(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.payload, self.headers = status, payload, headers or {}


class QueryError(SandboxError):
    """A query parameter the sandbox cannot understand (rendered as a 400)."""


class SimulatedCrash(BaseException):
    """Raised into the calling thread of an in-process sandbox to stand for the client process
    dying mid-request. A BaseException, so no ``except Exception`` in the client stops it."""
