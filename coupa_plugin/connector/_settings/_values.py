"""Readers of one settings value: each checks a value's type and content and returns it in the
form :class:`~coupa_plugin.connector._settings.CoupaSettings` holds, or raises a
:class:`~coupa_plugin.host.errors.ConfigurationError` naming the key. A secret is never echoed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

import attrs

from coupa_plugin.connector._inputs import unsendable
from coupa_plugin.coupa import Secret
from coupa_plugin.host.errors import ConfigurationError

Reader = Callable[[str, object], object]
"""How one setting's value is read: ``reader(key, value)``."""

# no setting is a long text: a longer value is a mistake (or an attack), not a setting
MAX_SETTING_CHARS: Final = 4_096


def shown(number: float) -> str:
    """A number as messages and docs show it: ``0.1``, ``256``, ``7,776,000``."""
    return f"{int(number):,}" if number == int(number) else f"{number:g}"


@attrs.frozen
class Range:
    """The values a numeric setting accepts, both ends included."""

    low: float
    high: float

    def __str__(self) -> str:
        return f"from {shown(self.low)} to {shown(self.high)}"


def string(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"{key}: expected a string, got {type(value).__name__}")
    if len(value) > MAX_SETTING_CHARS:
        raise ConfigurationError(f"{key}: longer than {MAX_SETTING_CHARS:,} characters")
    if why := unsendable(value):
        raise ConfigurationError(f"{key}: {why}")
    return value


def nonempty(key: str, value: object) -> str:
    text = string(key, value).strip()
    if not text:
        raise ConfigurationError(f"{key}: must not be empty")
    return text


def boolean(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{key}: expected true or false, got {type(value).__name__}")
    return value


def number(key: str, value: object, within: Range) -> float:
    """A finite number in ``within``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{key}: expected a number, got {type(value).__name__}")
    if not within.low <= value <= within.high:  # also refuses nan
        raise ConfigurationError(f"{key}: must be {within}")
    return float(value)


def integer(key: str, value: object, within: Range) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{key}: expected an integer, got {type(value).__name__}")
    if not within.low <= value <= within.high:
        raise ConfigurationError(f"{key}: must be {within}")
    return value


def choice(key: str, value: object, choices: tuple[str, ...]) -> str:
    text = string(key, value)
    if text in choices:
        return text
    raise ConfigurationError(f"{key}: expected one of {list(choices)}, got {text!r}")


def string_list(key: str, value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise ConfigurationError(f"{key}: expected a list of strings, got {type(value).__name__}")
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(
                f"{key}: expected a list of strings, found a {type(item).__name__}"
            )
        if why := unsendable(item):
            raise ConfigurationError(f"{key}: an item {why}")
    return items


def secret(key: str, value: object) -> Secret:
    if isinstance(value, Secret):
        found = value
    elif isinstance(value, str):
        found = Secret(string(key, value).strip())  # the same checks, never echoing it
    else:
        raise ConfigurationError(f"{key}: expected a string, got {type(value).__name__}")
    if not found:
        raise ConfigurationError(f"{key}: must not be empty")
    return found


def path(key: str, value: object) -> Path:
    text = nonempty(key, value)
    if "\x00" in text or len(text) > MAX_SETTING_CHARS:
        raise ConfigurationError(f"{key}: not a usable path")
    try:
        found = Path(text).expanduser()
    except RuntimeError:  # ~nosuchuser/...
        raise ConfigurationError(f"{key}: cannot expand '~' in {text[:80]!r}") from None
    if found.is_symlink():
        raise ConfigurationError(f"{key}: {str(found)[:200]} is a symbolic link; name the target")
    return found
