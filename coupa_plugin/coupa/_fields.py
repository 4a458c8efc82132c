"""``fields=`` selections that adapt to what a tenant's Coupa release has.

Coupa shows newer fields only when they are named in ``fields=``, and what it does with a
name its schema lacks is undocumented: it may drop it or answer 400. A :class:`FieldSpec`
says what a request wants and which names it cannot do without; :class:`TenantFields`
remembers, per tenant and endpoint, the names Coupa refused, so each is refused at most once.

Coupa's wording of a refusal is undocumented too: a message may echo every name it was sent.
So when a refusal mentions more than one name, the names it really refuses are isolated by
probing (one single-record read per test, splitting the mentioned names in halves), and only
those are dropped: a message that merely repeats ``active`` or a license flag never costs the
sync that field.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import attrs

from coupa_plugin.coupa._errors import CoupaHTTPError, FieldsRefusedError, plain

__all__ = ["FieldSpec", "TenantFields", "snake"]

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


def _error_text(error: CoupaHTTPError) -> str:
    parts: list[str] = [error.excerpt]
    if error.errors:
        for messages in list(error.errors.values())[:20]:
            items = messages if isinstance(messages, list) else [messages]
            parts += [plain(m, 2_000) for m in items[:20]]  # scalars only, bounded
    return " ".join(parts)


def _render(selection: Selection) -> str:
    return json.dumps(list(selection), separators=(",", ":"))


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

    def selection(self, spec: FieldSpec, without: frozenset[str] = frozenset()) -> Selection:
        return _prune(spec.wanted, self.refused(spec.endpoint) | without)

    def render(self, spec: FieldSpec, without: frozenset[str] = frozenset()) -> str:
        """The ``fields=`` value for ``spec``, without what this tenant refused (and
        ``without``: names as :meth:`refused` gives them)."""
        return _render(self.selection(spec, without))

    def learn(
        self,
        spec: FieldSpec,
        error: CoupaHTTPError,
        accepts: Callable[[str], bool] | None = None,
        max_probes: int = 64,
    ) -> frozenset[str]:
        """Remember the names a 400 ``error`` refuses; returns them (empty: the error is
        about something else).

        A message naming one asked-for name refuses that name. When it names several,
        ``accepts`` (does Coupa take this ``fields=`` value?) isolates the ones really
        refused, in at most ``max_probes`` calls; without it, the optional names mentioned
        are taken as refused and the required ones as words of the message.

        :raises FieldsRefusedError: a name the read cannot do without is refused.
        """
        mentioned = self._mentioned(spec, error)
        if not mentioned:
            return frozenset()
        # probes are judged against what was known when the refusal came: a name another
        # thread learns meanwhile must not make a probe's success look like this one's
        known_then = self.refused(spec.endpoint)
        if len(mentioned) == 1:
            refused = mentioned
        elif accepts is not None:
            isolated = _isolate(
                sorted(mentioned),
                lambda out: accepts(_render(_prune(spec.wanted, known_then | out))),
                max_probes,
            )
            if isolated is None:
                return frozenset()  # not a refusal of these names, or not one to pin down
            refused = isolated
        else:
            refused = frozenset(n for n in mentioned if not _required(spec, n))
        required = frozenset(n for n in refused if _required(spec, n))
        if required:
            raise FieldsRefusedError(spec.endpoint, required, _error_text(error)[:200])
        if refused:
            with self._lock:
                known = self._refused.get(spec.endpoint, frozenset())
                self._refused[spec.endpoint] = known | refused
        return refused

    def _mentioned(self, spec: FieldSpec, error: CoupaHTTPError) -> frozenset[str]:
        """The asked-for names (``name`` or ``association.name``) ``error``'s text mentions;
        an association whose fields are mentioned stands for them, not for itself."""
        tokens = {snake(t) for t in _TOKEN.findall(_error_text(error))}
        named: set[str] = set()
        for item in self.selection(spec):
            entries: Mapping[str, list[str]] = {item: []} if isinstance(item, str) else item
            for name, sub in entries.items():
                leaves = {f"{name}.{leaf}" for leaf in sub if leaf in tokens}
                named |= leaves or ({name} if name in tokens else set())
        return frozenset(named)


def _required(spec: FieldSpec, name: str) -> bool:
    """Whether ``name`` (as :meth:`TenantFields.refused` gives it) is one ``spec`` cannot do
    without: a required top-level name, or the ``id`` of an association."""
    association, _, leaf = name.partition(".")
    return leaf == "id" if leaf else association in spec.required


def _isolate(
    names: list[str], accepts: Callable[[frozenset[str]], bool], max_probes: int
) -> frozenset[str] | None:
    """The names among ``names`` whose presence gets a read refused, each refused or not on
    its own (``accepts(left_out)``: is a read without ``left_out`` taken?). None when even a
    read without all of them is refused, or ``max_probes`` did not suffice. The first
    answer's refusal is not taken as proof that one of them is refused: it is tested too."""
    everything = frozenset(names)
    probes = [0]

    def taken(left_out: frozenset[str]) -> bool:
        if probes[0] >= max_probes:
            raise _OutOfProbes
        probes[0] += 1
        return accepts(left_out)

    def find(group: list[str], *, known: bool) -> frozenset[str]:
        """The refused names of ``group`` (``known``: at least one of them is refused)."""
        if not known and taken(everything - frozenset(group)):
            return frozenset()
        if len(group) == 1:
            return frozenset(group)
        first = find(group[: len(group) // 2], known=False)
        return first | find(group[len(group) // 2 :], known=not first)

    try:
        return find(names, known=False) if taken(everything) else None
    except _OutOfProbes:
        return None


class _OutOfProbes(Exception):
    pass
