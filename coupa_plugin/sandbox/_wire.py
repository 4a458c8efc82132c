"""What passes between a client and the sandbox: requests, responses, the request log, and
the errors a route raises."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from coupa_plugin.sandbox._errors import HttpError
from coupa_plugin.sandbox._query import (
    parse_fields,
)

__all__ = [
    "RequestLogEntry",
    "SandboxRequest",
    "SandboxResponse",
    "errors",
    "parse_int",
    "request_fields",
    "route_of",
]


@attrs.frozen
class SandboxRequest:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""


@attrs.frozen
class SandboxResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    drop: bool = False


@attrs.frozen
class RequestLogEntry:
    at: float
    method: str
    route: str
    path: str
    query: str
    status: int
    client_id: str | None


def errors(status: int, resource: str, *messages: str) -> HttpError:
    """Coupa's error body: ``{"errors": {resource: [messages]}}``."""
    return HttpError(status, {"errors": {resource: list(messages)}})


def route_of(path: str) -> str:
    """The route a path matches, ids as ``:id`` (``/api/users/:id``)."""
    return re.sub(r"/\d+(?=/|$)", "/:id", path)


def parse_int(value: Any) -> int | None:
    """An id from a path or a body, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def request_fields(params: list[tuple[str, str]]) -> list[Any] | None:
    """The ``fields=`` selection of a query, if any."""
    return next((parse_fields(v) for k, v in params if k == "fields"), None)
