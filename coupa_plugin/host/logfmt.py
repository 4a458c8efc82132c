"""Plain structured log lines (``logfmt``): ``ts=… level=info logger=… msg="…" key=value``.

Fields passed through ``extra=`` appear as keys, so a line reads well and parses easily.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

__all__ = ["LogfmtFormatter", "configure_logging", "logfmt_line", "parse_level"]

_STANDARD: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _quote(value: object) -> str:
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    if text and all(c.isalnum() or c in "-_./:@+" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def logfmt_line(
    level: str, logger: str, msg: str, fields: Mapping[str, object], created: float | None = None
) -> str:
    """One logfmt line: ``ts``, ``level``, ``logger``, ``msg``, then ``fields`` in order."""
    when = datetime.now(UTC) if created is None else datetime.fromtimestamp(created, UTC)
    parts = [
        f"ts={when.isoformat(timespec='milliseconds')}",
        f"level={level}",
        f"logger={logger}",
        f"msg={_quote(msg)}",
    ]
    parts += [f"{k}={_quote(v)}" for k, v in fields.items()]
    return " ".join(parts)


class LogfmtFormatter(logging.Formatter):
    """Formats a record as one logfmt line, extras included."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return logfmt_line(
            record.levelname.lower(), record.name, record.getMessage(), fields, record.created
        )


def parse_level(name: str) -> int:
    """A log level from its name (``debug``, ``INFO``, …) or number; ValueError otherwise."""
    text = name.strip()
    if text.isdigit():
        return int(text)
    level = logging.getLevelNamesMapping().get(text.upper())
    if level is None:
        raise ValueError(f"unknown log level {name!r}; use debug, info, warning or error")
    return level


def configure_logging(level: int = logging.INFO) -> None:
    """Send ``coupa_plugin`` logs at ``level`` and above to stderr as logfmt lines.

    The logger itself passes INFO records on in any case, so that progress handlers see the
    request counters even when stderr shows only warnings.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(LogfmtFormatter())
    handler.setLevel(level)
    root = logging.getLogger("coupa_plugin")
    root.handlers[:] = [handler]
    root.setLevel(min(level, logging.INFO))
    root.propagate = False
    # stamina announces each retry at WARNING; the client logs its own ``retrying`` line at
    # INFO, so stamina's go through the same formatter and only from INFO on
    retries = logging.getLogger("stamina")
    retries.handlers[:] = [handler]
    retries.setLevel(logging.WARNING if level <= logging.INFO else logging.ERROR)
    retries.propagate = False
