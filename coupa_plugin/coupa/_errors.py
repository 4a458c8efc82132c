"""Every error the Coupa client raises. Messages carry the method, path, status and a short,
scrubbed excerpt of the body; never a token or a secret. The tree::

    CoupaError                      base of every error the client raises
    ├── CoupaTransportError         no answer: the network failed (after retries)
    │   └── CoupaTimeoutError       a request, or the retries of one call, ran out of time
    │       └── PacingTimeout       the pacer would hold a request past its deadline; not sent
    ├── CoupaHTTPError              Coupa answered an error status (.status, .errors)
    ├── CoupaAuthError              the token endpoint refused the credentials
    │   └── ScopeError              ... or the scopes asked for (``invalid_scope``)
    ├── CoupaResponseError          an answer the client cannot understand
    │   ├── BodyTooLargeError       larger than ``max_response_mb``; reading it was stopped
    │   └── RecordError             a record with a field of the wrong type or out of range
    ├── FieldsRefusedError          Coupa refused a field a read cannot do without (.names)
    ├── GraphQLError                the GraphQL endpoint answered errors (.messages)
    ├── PagingError                 a listing did not page like one (repeats, gaps, no end)
    ├── ReadOnlyClientError         a write asked of a read-only client; nothing was sent
    └── InvalidPaceState            the shared pacer's state in Redis is not one its rules make

None derives from a builtin error other than :class:`Exception`: a ``except ValueError``
never catches a malformed record by accident. The client's private retry signals
(``_Retryable`` in :mod:`~coupa_plugin.coupa._http`, ``_MintRetry`` in
:mod:`~coupa_plugin.coupa._auth`, ``_OutOfProbes`` in :mod:`~coupa_plugin.coupa._fields`) are
raised and caught inside their module and never reach a caller.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

__all__ = [
    "BodyTooLargeError",
    "CoupaAuthError",
    "CoupaError",
    "CoupaHTTPError",
    "CoupaResponseError",
    "CoupaTimeoutError",
    "CoupaTransportError",
    "FieldsRefusedError",
    "GraphQLError",
    "InvalidPaceState",
    "PacingTimeout",
    "PagingError",
    "ReadOnlyClientError",
    "RecordError",
    "ScopeError",
    "excerpt",
    "plain",
    "scrub",
]

_SCRUB: Final = [
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[redacted]"),
    (re.compile(r"(?i)(basic\s+)[A-Za-z0-9+/=]+"), r"\1[redacted]"),
    (
        re.compile(
            r'(?i)("?(?:access_token|client_secret|refresh_token|password)"?\s*[:=]\s*"?)'
            r'[^"&\s,}]+'
        ),
        r"\1[redacted]",
    ),
    (re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"), "[redacted-jwt]"),
]


_MAX_SECRET_CHARS: Final = 8_192


def scrub(text: str) -> str:
    """Remove anything that looks like a credential from ``text``."""
    for pattern, replacement in _SCRUB:
        text = pattern.sub(replacement, text)
    return text


def excerpt(body: bytes | str, limit: int = 200) -> str:
    """A short, single-line, scrubbed excerpt of a response body.

    Only the body's head is read: enough for the excerpt plus a whole credential starting in
    it (tokens are at most 8,192 characters), so scrubbing costs the same however large, or
    however crafted, the body is."""
    window = limit * 4 + _MAX_SECRET_CHARS
    text = body[:window].decode("utf-8", "replace") if isinstance(body, bytes) else body[:window]
    text = " ".join(text.split())
    text = scrub(text)
    return text if len(text) <= limit else text[:limit] + "…"


class CoupaError(Exception):
    """Base class of the client's errors."""


class CoupaTransportError(CoupaError):
    """The request could not be completed at the network level (after retries)."""


class CoupaTimeoutError(CoupaTransportError):
    """A request (or the retries of one call) ran out of its wall-clock budget."""


class PacingTimeout(CoupaTimeoutError):
    """The pacer would hold a request past its caller's deadline; it was not sent."""


class CoupaHTTPError(CoupaError):
    """Coupa answered with an error status (after retries, for retryable ones)."""

    def __init__(
        self,
        method: str,
        path: str,
        status: int,
        body_excerpt: str,
        errors: dict[str, Any] | None = None,
    ) -> None:
        self.method, self.path, self.status = method, path, status
        self.excerpt, self.errors = body_excerpt, errors
        detail = _format_errors(errors) if errors else body_excerpt
        super().__init__(f"{method} {path} -> HTTP {status}: {detail}")


class CoupaAuthError(CoupaError):
    """The token endpoint refused the client's credentials."""


class ScopeError(CoupaAuthError):
    """The token endpoint refused the scopes asked for (``invalid_scope``)."""


class CoupaResponseError(CoupaError):
    """A response body could not be understood (truncated or invalid JSON, wrong shape)."""


class BodyTooLargeError(CoupaResponseError):
    """A response body was larger than the client's limit; reading it was stopped."""

    def __init__(self, what: str, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"{what}: the response body is larger than the limit of {limit:,} bytes "
            "(max_response_mb); reading it was stopped"
        )


class RecordError(CoupaResponseError):
    """A record from Coupa has a field of the wrong type or out of range (never coerced)."""


class FieldsRefusedError(CoupaError):
    """Coupa refused a field the read cannot do without."""

    def __init__(self, endpoint: str, names: Iterable[str], detail: str) -> None:
        self.names = tuple(sorted(names))
        super().__init__(
            f"Coupa refused the required field(s) {', '.join(self.names)} of {endpoint} ({detail})"
        )


class PagingError(CoupaError):
    """A listing did not behave like a paged listing (repeats, gaps, no end)."""


class ReadOnlyClientError(CoupaError):
    """A write was attempted through a read-only client; nothing was sent."""


class InvalidPaceState(CoupaError):
    """What Redis answered for the shared pacer is not a state the rules can produce."""


def plain(value: object, limit: int = 200) -> str:
    """``value`` as short text when it is a scalar, else only its type: a server's nested or
    huge values are never rendered whole (a deep structure would not even survive ``repr``)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float) or value is None:
        text = str(value) if not isinstance(value, int) or abs(value) < 10**30 else "<big int>"
    else:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "…"


def _format_errors(errors: dict[str, Any]) -> str:
    parts = []
    for key, messages in list(errors.items())[:20]:
        if isinstance(messages, list):
            parts.append(f"{plain(key, 60)}: " + "; ".join(plain(m) for m in messages[:10]))
        else:
            parts.append(f"{plain(key, 60)}: {plain(messages)}")
    return scrub(" | ".join(parts))[:500]


class GraphQLError(CoupaError):
    """Coupa's GraphQL endpoint answered with errors."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__("GraphQL: " + "; ".join(messages)[:500])
