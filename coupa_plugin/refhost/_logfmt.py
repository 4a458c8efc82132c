"""Plain structured log lines (``logfmt``): ``ts=… level=info logger=… msg="…" key=value``.

Fields passed through ``extra=`` appear as keys, so a line reads well and parses easily.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "HOST_LOGGER",
    "LogfmtFormatter",
    "configure_logging",
    "host_handlers",
    "logfmt_line",
    "parse_level",
]

HOST_LOGGER: Final = "coupa_iga"
"""The reference host's own logger namespace (apart from every plugin's)."""

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


class _HostHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The reference host's stderr handler (told apart from handlers others installed)."""


def host_handlers() -> list[logging.StreamHandler[Any]]:
    """The handlers :func:`configure_logging` installed (the live display redirects them)."""
    return [h for h in logging.getLogger().handlers if isinstance(h, _HostHandler)]


# libraries of the host process that log every request at INFO: the command line shows their
# warnings only, whatever -v says (the plugin logs its own requests, with the tenant)
_CHATTY: Final = ("httpx", "httpcore")


def configure_logging(level: int = logging.INFO) -> None:
    """Send log records at ``level`` and above to stderr as logfmt lines.

    The reference host is an application, so it configures logging the way the standard
    library asks applications to: one handler on the *root* logger. It never names a plugin's
    logger: every plugin logs under its own namespace (the Coupa plugin under
    ``coupa_plugin``), its records propagate to the root, and showing them is the user's choice
    made with ``-v`` / ``COUPA_IGA_LOG_LEVEL``, for every plugin alike. The host's own records
    use :data:`HOST_LOGGER`. Calling it again replaces the handler it installed before and
    leaves other handlers (a test runner's, an embedding application's) in place.

    The root logger itself passes INFO records on in any case, so that progress handlers see
    the request counters even when stderr shows only warnings.
    """
    handler = _HostHandler()
    handler.setFormatter(LogfmtFormatter())
    handler.setLevel(level)
    root = logging.getLogger()
    for old in host_handlers():
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO))
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
    # stamina announces each retry at WARNING; the client logs its own ``retrying`` line at
    # INFO, so stamina's show only from INFO on
    logging.getLogger("stamina").setLevel(
        logging.WARNING if level <= logging.INFO else logging.ERROR
    )
