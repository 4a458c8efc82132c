"""Settings that name a file: checked when the settings are read, as the code that opens the
file later will find it."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Final

from coupa_plugin.connector._settings._values import path
from coupa_plugin.host.errors import ConfigurationError

_SQLITE_HEADER: Final = b"SQLite format 3\x00"


def rate_limit_file(key: str, value: object) -> Path:
    """The shared rate-limit file: in an existing directory, itself absent, empty or a
    SQLite database (never a directory, a symbolic link or some other file)."""
    found = path(key, value)
    shown = str(found)[:200]
    if not found.parent.is_dir():
        raise ConfigurationError(f"{key}: the directory of {shown} does not exist")
    if found.exists():
        if not found.is_file():
            raise ConfigurationError(f"{key}: {shown} is not a regular file")
        try:
            with found.open("rb") as handle:
                header = handle.read(len(_SQLITE_HEADER))
        except OSError as exc:
            raise ConfigurationError(f"{key}: cannot read {shown}: {exc.strerror}") from None
        if header and header != _SQLITE_HEADER:
            raise ConfigurationError(f"{key}: {shown} exists and is not a SQLite database")
    return found


def ca_file(key: str, value: object) -> Path:
    """A readable file of PEM certificates (checked by loading it, as TLS will)."""
    found = path(key, value)
    shown = str(found)[:200]
    if not found.is_file():
        raise ConfigurationError(f"{key}: {shown} is not a regular file")
    try:
        ssl.create_default_context().load_verify_locations(cafile=str(found))
    except OSError as exc:  # ssl.SSLError included
        reason = exc.strerror or "not a PEM file of certificates"
        raise ConfigurationError(f"{key}: cannot load {shown}: {reason}") from None
    return found
