"""What the host hands to the sync hooks, checked before anything is sent to Coupa, and the
test of a text any setting or provisioned value must pass.

The contract types its fields, but a host is another program: a set of ids where a set of
strings belongs, a ``since`` that is not a date, a million principal ids must end in a typed
error naming the field, with no request sent, never in an ``AttributeError`` from deep inside.
(Provisioning requests are read by :mod:`._provisioning.command`.)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

from coupa_plugin.host.errors import SyncError
from coupa_plugin.host.model import SyncRequest

__all__ = ["MAX_PRINCIPAL_IDS", "check_sync_request", "type_name", "unsendable"]

# A targeted refresh names users one by one; more than this is a full sync in disguise.
MAX_PRINCIPAL_IDS: Final = 100_000

# C0 and C1 control characters (tab, newline and the rest): no Coupa user field holds them,
# and echoed to a terminal or a spreadsheet they are escape sequences
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def unsendable(text: str) -> str | None:
    """Why ``text`` cannot be written to Coupa as a field value, or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid Unicode text (a lone surrogate)"
    if match := _CONTROL.search(text):
        return f"holds the control character U+{ord(match.group()):04X}"
    return None


def type_name(value: object) -> str:
    """How a message names the type of a value a host sent."""
    return "None" if value is None else type(value).__name__


def _strings(value: object) -> bool:
    return isinstance(value, frozenset | set) and all(isinstance(item, str) for item in value)


def check_sync_request(request: object, hook: str) -> None:
    """Refuse a malformed :class:`SyncRequest` with a :class:`SyncError` naming the field."""

    def refuse(problem: str) -> SyncError:
        return SyncError(f"{hook}: malformed request: {problem}; nothing was read")

    if not isinstance(request, SyncRequest):
        raise refuse(f"expected a SyncRequest, got {type_name(request)}")
    if request.resource_types is not None and not _strings(request.resource_types):
        raise refuse(
            f"resource_types: expected a set of strings, got {type_name(request.resource_types)}"
        )
    if request.since is not None and not isinstance(request.since, datetime):
        raise refuse(f"since: expected a datetime, got {type_name(request.since)}")
    if request.since is not None:
        try:
            request.since.astimezone(UTC)  # what the filter is built from
        except (OverflowError, ValueError):
            raise refuse("since: out of the range of dates") from None
    ids = request.principal_ids
    if ids is not None:
        if not _strings(ids):
            raise refuse(f"principal_ids: expected a set of strings, got {type_name(ids)}")
        if len(ids) > MAX_PRINCIPAL_IDS:
            raise refuse(f"principal_ids: more than {MAX_PRINCIPAL_IDS:,} users")
