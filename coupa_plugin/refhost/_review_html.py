"""The access review as one self-contained HTML file.

The page is Jinja2 templates (package data: ``refhost/templates``), with the styles and the
script (``refhost/assets/report.css`` and ``report.js``) and the charts (inline SVG) written
into it; a Content-Security-Policy in the page forbids loading anything, so the file opens, and
prints, with no network. Exceptions, changes, charts and the entitlement list are plain HTML
(readable without script, printable); the holders of each entitlement are embedded once as
compact JSON (users listed once, holders as gaps between user positions) and drawn into a
sortable, filterable table when opened.

This module keeps what is computed (the chart geometry, the holders' JSON, the order of the
lists); the templates hold the markup and the words. Escaping is the template engine's:
autoescaping is on, and every value a template writes first has its control characters and
bidirectional overrides shown as U+FFFD (`safe_text`, the environment's ``finalize``), so a
name never reads as another. Only plain values pass through it: a value a template turns into
markup first (``|e``, ``|safe``, ``join`` over markup) would not, so templates write values as
they are (tests/refhost/test_review_html.py puts hostile text in every field).

The templates are written in indented lines for the reader and the page comes out as one
line: a line break and the indentation around it vanish next to a tag and become one space
inside running text (`_Joined`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from importlib.resources import files
from typing import Any

import attrs
from jinja2 import Environment, PackageLoader, StrictUndefined
from jinja2.ext import Extension
from markupsafe import Markup

from coupa_plugin.refhost._reports import safe_text
from coupa_plugin.refhost._review import Review

__all__ = ["CSP", "render_review"]

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)
FILTER_ROWS = 10  # longer lists get a filter box
SCROLL_ROWS = 12  # longer lists scroll in a box on screen
STATIC_ROWS = 2_000  # longest list written as static rows; the rest is counted
CHART_BARS = 15


def _asset(name: str) -> str:
    """A file of the report's presentation, shipped as package data (``refhost/assets``)."""
    return files("coupa_plugin.refhost").joinpath("assets", name).read_text("utf-8")


_STYLE = _asset("report.css")
_SCRIPT = _asset("report.js")

_LINE_BREAK = re.compile(r"[ \t]*\n\s*")  # a line break with the indentation around it
_MARKUP_BEFORE = (">", "%}", "#}")
_MARKUP_AFTER = ("<", "{%", "{#")


class _Joined(Extension):
    """Template source in lines, the page in one: a line break and its indentation vanish
    where a tag or a template statement stands on either side, and become one space between
    words (so running text may wrap in the source)."""

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        return _LINE_BREAK.sub(_join, source.strip())


def _join(match: re.Match[str]) -> str:
    source, start, end = match.string, match.start(), match.end()
    if source.endswith(_MARKUP_BEFORE, 0, start) or source.startswith(_MARKUP_AFTER, end):
        return ""
    return " "


def _shown(value: object) -> object:
    """What a template writes for ``value`` (autoescaping then escapes it): nothing for None,
    text with control characters and bidirectional overrides as U+FFFD; markup as it is."""
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    return safe_text(str(value))


def _when(stamp: str | None) -> str:
    """An ISO time stamp as a reader writes it, in UTC."""
    if not stamp:
        return ""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _num(value: int) -> str:
    return f"{value:,}"


def _row_order(field: str, row: dict[str, object]) -> tuple[int, int, str]:
    text = str(row[field])
    return (0, int(text), "") if text.isascii() and text.isdigit() else (1, 0, text)


def _by_user_id(rows: list[dict[str, object]], field: str) -> list[dict[str, object]]:
    """Rows by user id, in numeric order (the snapshot keeps ids as text)."""
    return sorted(rows, key=partial(_row_order, field))


_ENV = Environment(
    loader=PackageLoader("coupa_plugin.refhost", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    finalize=_shown,
    extensions=[_Joined],
    auto_reload=False,
)
_ENV.filters.update(num=_num, when=_when, by_user_id=_by_user_id)
_ENV.globals.update(
    static_rows=STATIC_ROWS,
    filter_rows=FILTER_ROWS,
    scroll_rows=SCROLL_ROWS,
)


# -- chart geometry -----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _Bar:
    series: str
    value: int
    x: float
    width: float


@attrs.frozen(kw_only=True)
class _BarRow:
    label: str
    short: str  # the label as it fits beside the bars
    values: tuple[int, ...]
    y: int
    bars: tuple[_Bar, ...]  # the values that are not zero
    end: float  # where the bars end


@attrs.frozen(kw_only=True)
class _BarChart:
    ident: str
    title: str
    series: tuple[str, ...]
    legend: tuple[tuple[str, int], ...]  # (series, x)
    rows: tuple[_BarRow, ...]
    width: int
    height: int
    label_width: int


@attrs.frozen(kw_only=True)
class _Column:
    label: str
    x: float
    added: int | None
    removed: int | None
    top: float  # of the added bar
    bottom: float  # of the removed bar
    added_height: float
    removed_height: float


@attrs.frozen(kw_only=True)
class _ColumnChart:
    ident: str
    title: str
    columns: tuple[_Column, ...]
    peak: int
    width: int
    height: int
    left: int
    mid: int


def _bars(
    ident: str, title: str, rows: Sequence[tuple[str, Sequence[int]]], series: Sequence[str]
) -> _BarChart:
    """Horizontal bars, one per row, stacked by series."""
    label_w, bar_w, row_h, width, top = 230, 330, 20, 640, 22
    peak = max((sum(v) for _, v in rows), default=0) or 1
    drawn = []
    for n, (label, values) in enumerate(rows):
        x, bars = float(label_w), []
        for name, value in zip(series, values, strict=True):
            w = bar_w * value / peak
            if value:
                bars.append(_Bar(series=name, value=value, x=x, width=max(w, 1)))
            x += w
        drawn.append(
            _BarRow(
                label=label,
                short=label if len(label) <= 36 else label[:35] + "…",
                values=tuple(values),
                y=top + n * row_h,
                bars=tuple(bars),
                end=x,
            )
        )
    return _BarChart(
        ident=ident,
        title=title,
        series=tuple(series),
        legend=tuple((name, label_w + n * 110) for n, name in enumerate(series)),
        rows=tuple(drawn),
        width=width,
        height=top + row_h * max(len(rows), 1) + 6,
        label_width=label_w,
    )


def _columns(
    ident: str,
    title: str,
    labels: Sequence[str],
    added: Sequence[int | None],
    removed: Sequence[int | None],
) -> _ColumnChart:
    """Added (up) and removed (down) grants per run, side by side."""
    width, height, left, mid = 640, 220, 50, 110
    slot = (width - left - 10) / max(len(labels), 1)
    peak = max([*(a or 0 for a in added), *(r or 0 for r in removed), 1])
    scale = 90 / peak
    columns = [
        _Column(
            label=label,
            x=left + n * slot + slot / 2,
            added=up,
            removed=down,
            top=mid - (up or 0) * scale,
            bottom=mid + (down or 0) * scale,
            added_height=max((up or 0) * scale, 0.5),
            removed_height=max((down or 0) * scale, 0.5),
        )
        for n, (label, up, down) in enumerate(zip(labels, added, removed, strict=True))
    ]
    return _ColumnChart(
        ident=ident,
        title=title,
        columns=tuple(columns),
        peak=peak,
        width=width,
        height=height,
        left=left,
        mid=mid,
    )


def _charts(review: Review) -> dict[str, Any]:
    top = sorted(review.entitlements, key=lambda e: (-len(e.holders), e.name))[:CHART_BARS]
    history = review.history
    return {
        "held": _bars(
            "c1",
            "Accounts per entitlement, active and disabled",
            [(e.name, (e.active, e.disabled)) for e in top],
            ("active", "disabled"),
        ),
        "types": _bars(
            "c2",
            "Grants per entitlement type",
            [(t, (n,)) for t, n in review.grant_counts.items()],
            ("grants",),
        ),
        "licenses": _bars(
            "c3",
            "Licenses held by active and disabled accounts",
            [(u.name, (u.active, u.disabled)) for u in review.licenses],
            ("active", "disabled"),
        ),
        "history": _columns(
            "c4",
            "Grants added and removed per full run",
            [str(p.run_id) for p in history],
            [p.added for p in history],
            [p.removed for p in history],
        ),
    }


def _data(review: Review) -> Markup:
    """The holders of each entitlement as compact JSON, safe inside a ``<script>`` element."""
    kinds = {"person": "p", "API account": "a", "support account": "s"}
    status = {"enabled": "e", "disabled": "d"}
    holders = {}
    for ent in review.entitlements:
        gaps, last = [], -1
        for i in ent.holders:
            gaps.append(i - last)
            last = i
        if gaps:  # under the id its holders button carries
            holders[safe_text(ent.id)] = gaps
    payload = {
        "users": [
            [
                safe_text(u.id),
                safe_text(u.login),
                safe_text(u.name),
                status.get(u.status, "u"),
                kinds.get(u.kind, "p"),
            ]
            for u in review.users
        ],
        "holders": holders,
    }
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    # nothing in the data can close the script element or open a comment
    safe = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(safe)  # noqa: S704 - no "<", ">" or "&" is left to read as markup


def render_review(review: Review) -> str:
    """The whole report as one HTML document."""
    types = sorted(set(review.resource_counts) | set(review.grant_counts))
    return _ENV.get_template("review.html").render(
        review=review,
        paid_licenses=sum(len(d.licenses) for d in review.disabled_holding),
        resource_types=types,
        charts=_charts(review),
        data=_data(review),
        csp=Markup(CSP),  # noqa: S704 - a constant of this module
        style=Markup(_STYLE),  # noqa: S704 - package data
        script=Markup(_SCRIPT),  # noqa: S704 - package data
    )
