"""A string that never shows itself in reprs, str(), logs or tracebacks."""

from __future__ import annotations

from typing import Final, NoReturn

_MASK: Final = "**********"


class Secret:
    """Wraps a secret value; only :meth:`reveal` gives it back.

    ``repr``, ``str`` and ``format`` show a mask, pickling is refused (a secret must never land in
    a file by accident) and equality compares values without exposing them.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value

    def reveal(self) -> str:
        """The secret value. Pass it straight to where it is needed; never log it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")
