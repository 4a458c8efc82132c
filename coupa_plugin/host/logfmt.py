"""Plain structured log lines (``logfmt``): ``ts=… level=info logger=… msg="…" key=value``.

Fields passed through ``extra=`` appear as keys, so a line reads well and parses easily.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Final

__all__ = ["LogfmtFormatter", "configure_logging"]

_STANDARD: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _quote(value: object) -> str:
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    if text and all(c.isalnum() or c in "-_./:@+" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class LogfmtFormatter(logging.Formatter):
    """Formats a record as one logfmt line, extras included."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        parts = [
            f"ts={ts}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quote(record.getMessage())}",
        ]
        parts += [f"{k}={_quote(v)}" for k, v in vars(record).items() if k not in _STANDARD]
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


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
