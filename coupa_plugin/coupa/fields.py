"""``fields=`` selections that adapt to what a tenant's Coupa release has.

Coupa shows newer fields only when they are named in ``fields=``, and what it does with a
name its schema lacks is undocumented: it may drop it or answer 400. A :class:`FieldSpec`
says what a request wants and which names it cannot do without; :class:`TenantFields`
remembers, per tenant and endpoint, the names Coupa refused, so each is refused at most once.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from coupa_plugin.coupa.errors import CoupaError, CoupaHTTPError

__all__ = ["FieldSpec", "FieldsRefusedError", "TenantFields", "snake"]

Selection = tuple[Any, ...]  # names and {association: [names]} objects, snake_case
_TOKEN: Final = re.compile(r"[A-Za-z][A-Za-z0-9_?-]*")


def snake(name: str) -> str:
    """The form Coupa's query arguments use: dashes become underscores."""
    return name.replace("-", "_").rstrip("?")


@attrs.frozen
class FieldSpec:
    """What one kind of read asks for.

    ``endpoint`` keys what is learnt (``users`` for every user read); ``required`` names
    top-level fields without which the read is useless (nested ``id``s are always required).
    """

    endpoint: str
    wanted: Selection
    required: frozenset[str] = frozenset({"id"})

    def plus(self, names: Iterable[str], nested: Mapping[str, tuple[str, ...]] = {}) -> FieldSpec:
        """This spec with the extra top-level ``names`` and ``nested`` associations (name ->
        its fields), kept in order, no repeats."""
        present = {item for item in self.wanted if isinstance(item, str)} | {
            key for item in self.wanted if isinstance(item, dict) for key in item
        }
        extra = tuple(dict.fromkeys(snake(n) for n in names if snake(n) not in present))
        more = tuple(
            {snake(key): list(fields)}
            for key, fields in nested.items()
            if snake(key) not in present
        )
        return attrs.evolve(self, wanted=(*self.wanted, *extra, *more))


class FieldsRefusedError(CoupaError):
    """Coupa refused a field the read cannot do without."""

    def __init__(self, endpoint: str, names: Iterable[str], detail: str) -> None:
        self.names = tuple(sorted(names))
        super().__init__(
            f"Coupa refused the required field(s) {', '.join(self.names)} of {endpoint} ({detail})"
        )


def _error_text(error: CoupaHTTPError) -> str:
    parts: list[str] = [error.excerpt]
    if error.errors:
        for messages in error.errors.values():
            items = messages if isinstance(messages, list) else [messages]
            parts += [str(m) for m in items]
    return " ".join(parts)


def _prune(wanted: Selection, refused: frozenset[str]) -> Selection:
    out: list[Any] = []
    for item in wanted:
        if isinstance(item, str):
            if item not in refused:
                out.append(item)
            continue
        for name, sub in item.items():
            if name in refused:
                continue
            out.append({name: [s for s in sub if f"{name}.{s}" not in refused]})
    return tuple(out)


class TenantFields:
    """The names one tenant refused, per endpoint (one instance per client, so per tenant)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refused: dict[str, frozenset[str]] = {}

    def refused(self, endpoint: str) -> frozenset[str]:
        """Refused names of ``endpoint``: ``name`` or ``association.name``."""
        with self._lock:
            return self._refused.get(endpoint, frozenset())

    def selection(self, spec: FieldSpec) -> Selection:
        return _prune(spec.wanted, self.refused(spec.endpoint))

    def render(self, spec: FieldSpec) -> str:
        """The ``fields=`` value for ``spec``, without what this tenant refused."""
        return json.dumps(list(self.selection(spec)), separators=(",", ":"))

    def learn(self, spec: FieldSpec, error: CoupaHTTPError) -> frozenset[str]:
        """Remember the optional names a 400 ``error`` names; returns them (empty: the
        error names none of the fields asked for, so it is about something else).

        :raises FieldsRefusedError: the error names only fields the read cannot do without.
        """
        tokens = {snake(t) for t in _TOKEN.findall(_error_text(error))}
        selection = self.selection(spec)
        named: set[str] = set()
        required: set[str] = set()
        for item in selection:
            entries: Mapping[str, list[str]] = {item: []} if isinstance(item, str) else item
            for name, sub in entries.items():
                if name in tokens:
                    (required if name in spec.required else named).add(name)
                for leaf in sub:
                    if leaf in tokens:
                        (required if leaf == "id" else named).add(f"{name}.{leaf}")
        if not named:
            if required:
                raise FieldsRefusedError(spec.endpoint, required, _error_text(error)[:200])
            return frozenset()
        # a required name may just be a word of the message: drop the optional ones first
        with self._lock:
            self._refused[spec.endpoint] = self._refused.get(spec.endpoint, frozenset()) | named
        return frozenset(named)
