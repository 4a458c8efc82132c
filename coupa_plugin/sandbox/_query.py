"""Coupa's query language as the sandbox understands it: filters, ordering, ``fields``.

Filters look like ``attr=value`` or ``attr[op]=value`` (``gt``, ``lt``, ``gt_or_eq``,
``lt_or_eq``, ``not_eq``, ``in``, ``not_in``, ``contains``, ``starts_with``, ``ends_with``,
``blank``), association filters like ``roles[id]=4`` or ``manager[login]=x``. Attribute names
may be written with underscores or dashes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from coupa_plugin.sandbox._errors import QueryError

__all__ = ["compile_filters", "parse_fields", "select"]

OPERATORS: Final = frozenset(
    {
        "gt",
        "lt",
        "gt_or_eq",
        "lt_or_eq",
        "not_eq",
        "in",
        "not_in",
        "contains",
        "starts_with",
        "ends_with",
        "blank",
    }
)
_KEY_RE: Final = re.compile(r"([A-Za-z0-9_?-]+)((?:\[[A-Za-z0-9_-]*\])*)")
Record = Mapping[str, Any]
# Resolves an association on a record to the list of related records.
Resolver = Callable[[Record, str], list[Record] | None]


def kebab(name: str) -> str:
    return name.replace("_", "-")


def _parse_time(text: str) -> datetime:
    value = text.strip().replace(" ", "+")  # a "+" of an offset arrives decoded as " "
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(f"invalid date/time {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _coerce(sample: Any, raw: str, attribute: str) -> Any:
    if isinstance(sample, bool):
        if raw.lower() not in {"true", "false", "1", "0"}:
            raise QueryError(f"{attribute}: expected true or false")
        return raw.lower() in {"true", "1"}
    if isinstance(sample, int):
        try:
            return int(raw)
        except ValueError:
            raise QueryError(f"{attribute}: expected an integer") from None
    if attribute.endswith("-at"):
        return _parse_time(raw)
    return raw


def _value(record: Record, attribute: str) -> Any:
    value = record.get(attribute)
    if value is not None and attribute.endswith("-at") and isinstance(value, str):
        return _parse_time(value)
    return value


def _compare(op: str, value: Any, raw: str, attribute: str) -> bool:
    if op == "blank":
        want = raw.lower() in {"true", "1"}
        return (value is None or value == "" or value == []) == want
    if op in {"in", "not_in"}:
        items = (
            {_coerce(value, part, attribute) for part in raw.split(",")}
            if value is not None
            else set(raw.split(","))
        )
        return (value in items) == (op == "in")
    if value is None:
        return op == "not_eq"
    target = _coerce(value, raw, attribute)
    if op == "eq":
        return bool(value == target)
    if op == "not_eq":
        return bool(value != target)
    if op in {"contains", "starts_with", "ends_with"}:
        text, needle = str(value).lower(), str(target).lower()
        return {
            "contains": needle in text,
            "starts_with": text.startswith(needle),
            "ends_with": text.endswith(needle),
        }[op]
    try:
        return bool(
            {
                "gt": value > target,
                "lt": value < target,
                "gt_or_eq": value >= target,
                "lt_or_eq": value <= target,
            }[op]
        )
    except TypeError:
        raise QueryError(f"{attribute}: cannot compare") from None


def compile_filters(
    params: Iterable[tuple[str, str]], known: frozenset[str], resolve: Resolver
) -> Callable[[Record], bool]:
    """Build a predicate from query parameters (reserved ones must be removed first)."""
    tests: list[Callable[[Record], bool]] = []
    for key, raw in params:
        match = _KEY_RE.fullmatch(key)
        if not match:
            raise QueryError(f"cannot parse query parameter {key!r}")
        attribute = kebab(match.group(1))
        parts = re.findall(r"\[([^\]]*)\]", match.group(2))
        op = "eq"
        if parts and parts[-1] in OPERATORS:
            op = parts.pop()
        if len(parts) > 1:
            raise QueryError(f"unsupported nesting in {key!r}")
        if attribute not in known:
            raise QueryError(f"unknown attribute {match.group(1)!r}")
        if parts:
            sub = kebab(parts[0])

            def association_test(
                record: Record, a: str = attribute, s: str = sub, o: str = op, r: str = raw
            ) -> bool:
                related = resolve(record, a) or []
                if o == "blank":
                    return (not related) == (r.lower() in {"true", "1"})
                return any(_compare(o, _value(item, s), r, s) for item in related)

            tests.append(association_test)
        else:

            def attribute_test(
                record: Record, a: str = attribute, o: str = op, r: str = raw
            ) -> bool:
                return _compare(o, _value(record, a), r, a)

            tests.append(attribute_test)
    return lambda record: all(test(record) for test in tests)


def select(
    records: Iterable[Record],
    predicate: Callable[[Record], bool],
    order_by: str | None,
    *,
    descending: bool,
) -> list[Record]:
    """Filter and order records (default: ascending id)."""
    chosen = [r for r in records if predicate(r)]
    key = kebab(order_by) if order_by else "id"
    if key != "id" or descending:
        chosen.sort(
            key=lambda r: (r.get(key) is None, r.get(key) or 0, r["id"]), reverse=descending
        )
    return chosen


def parse_fields(raw: str) -> list[Any]:
    """Parse ``fields=[…]`` (a JSON list of names and ``{association: [names]}`` objects)."""
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError:
        raise QueryError("fields: expected a JSON list") from None
    if not isinstance(spec, list):
        raise QueryError("fields: expected a JSON list")
    for item in spec:
        if isinstance(item, dict):
            for value in item.values():
                if not isinstance(value, list):
                    raise QueryError("fields: nested selections must be lists")
        elif not isinstance(item, str):
            raise QueryError("fields: expected names or {association: [names]}")
    return spec
