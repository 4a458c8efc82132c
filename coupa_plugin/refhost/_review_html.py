"""The access review as one self-contained HTML file.

Styles and the script (package data: ``refhost/assets/report.css`` and ``report.js``) and the
charts (SVG drawn here) are inline; a Content-Security-Policy in
the page forbids loading anything, so the file opens, and prints, with no network. Exceptions,
changes, charts and the entitlement list are plain HTML (readable without script, printable);
the holders of each entitlement are embedded once as compact JSON (users listed once, holders
as gaps between user positions) and drawn into a sortable, filterable table when opened.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from functools import partial
from html import escape
from importlib.resources import files
from itertools import count

from coupa_plugin.refhost._reports import safe_text
from coupa_plugin.refhost._review import EntitlementRow, Holding, Review, UserRow

__all__ = ["CSP", "render_review"]

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)
FILTER_ROWS = 10  # longer lists get a filter box
SCROLL_ROWS = 12  # longer lists scroll in a box on screen
STATIC_ROWS = 2_000  # longest list written as static rows; the rest is counted
CHART_BARS = 15
PALETTE = {
    "grants": "#2563eb",
    "active": "#2563eb",
    "disabled": "#d97706",
    "added": "#16a34a",
    "removed": "#dc2626",
}

def _asset(name: str) -> str:
    """A file of the report's presentation, shipped as package data (``refhost/assets``)."""
    return files("coupa_plugin.refhost").joinpath("assets", name).read_text("utf-8")


_STYLE = _asset("report.css")
_SCRIPT = _asset("report.js")



def _row_order(field: str, row: dict[str, object]) -> tuple[int, int, str]:
    text = str(row[field])
    return (0, int(text), "") if text.isascii() and text.isdigit() else (1, 0, text)


def _e(value: object) -> str:
    """HTML-escaped, with control characters and bidirectional overrides shown as U+FFFD
    (a name must not read as another)."""
    return escape(safe_text("" if value is None else str(value)), quote=True)


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


def _table(
    table_id: str,
    caption: str,
    headers: Sequence[tuple[str, bool]],
    rows: Iterable[Sequence[str]],
    total: int,
    *,
    filter_label: str | None = "Filter this list",
) -> str:
    """A sortable table; cells are already-escaped HTML; headers are (text, numeric)."""
    head = "".join(
        f'<th scope="col"{" class=n" if numeric else ""}>{_e(text)}</th>'
        for text, numeric in headers
    )
    body = []
    for shown, row in enumerate(rows):
        if shown >= STATIC_ROWS:
            break
        body.append(
            "<tr>"
            + "".join(
                f"<td{' class=n' if numeric else ''}>{value}</td>"
                for value, (_, numeric) in zip(row, headers, strict=True)
            )
            + "</tr>"
        )
    more = (
        f'<p class="note">{_num(len(body))} of {_num(total)} shown; '
        "<code>coupa-iga export</code> and <code>coupa-iga diff --format csv</code> "
        "list them all.</p>"
        if total > len(body)
        else ""
    )
    search = (
        f'<input type="search" class="noprint" data-filter="{table_id}" '
        f'aria-label="{_e(filter_label)}" placeholder="{_e(filter_label)}">'
        if filter_label and total > FILTER_ROWS
        else ""
    )
    table = (
        f'<table id="{table_id}" class="sortable"><caption>{_e(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )
    if len(body) > SCROLL_ROWS:  # long lists scroll in a box on screen and print in full
        region = f'class="scroll" tabindex="0" role="region" aria-label="{_e(caption)}"'
        table = f"<div {region}>{table}</div>"
    return search + table + more


_USER_HEADERS = (("User id", True), ("Login", False), ("Name", False), ("Status", False))


def _user_cells(user: UserRow) -> list[str]:
    status = (
        _e(user.status)
        if user.status == "enabled"
        else f'<span class="tag {_e(user.status)}">{_e(user.status)}</span>'
    )
    return [_e(user.id), _e(user.login), _e(user.name), status]


def _holding_table(table_id: str, caption: str, items: str, rows: list[Holding]) -> str:
    return _table(
        table_id,
        caption,
        (*_USER_HEADERS, ("Account", False), (items, False)),
        ([*_user_cells(h.user), _e(h.user.kind), _e(", ".join(h.items))] for h in rows),
        len(rows),
    )


def _ids() -> Iterator[str]:
    return (f"c{n}" for n in count(1))


class _Svg:
    """Inline SVG charts with a title, a description and a tooltip per bar."""

    def __init__(self) -> None:
        self._ids = _ids()

    def _frame(self, title: str, desc: str, width: int, height: int, body: str) -> str:
        ident = next(self._ids)
        return (
            f'<svg role="img" aria-labelledby="{ident}t {ident}d" viewBox="0 0 {width} {height}"'
            f' width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
            f'<title id="{ident}t">{_e(title)}</title><desc id="{ident}d">{_e(desc)}</desc>'
            f"{body}</svg>"
        )

    def bars(
        self,
        title: str,
        rows: Sequence[tuple[str, Sequence[int]]],
        series: Sequence[str],
    ) -> str:
        """Horizontal bars, one per row, stacked by series."""
        label_w, bar_w, row_h, width = 230, 330, 20, 640
        top = 22
        height = top + row_h * max(len(rows), 1) + 6
        peak = max((sum(v) for _, v in rows), default=0) or 1
        parts = []
        for n, name in enumerate(series):
            parts.append(
                f'<rect x="{label_w + n * 110}" y="4" width="10" height="10" '
                f'fill="{PALETTE[name]}"/><text x="{label_w + 14 + n * 110}" y="13">'
                f"{_e(name)}</text>"
            )
        for n, (label, values) in enumerate(rows):
            y = top + n * row_h
            short = label if len(label) <= 36 else label[:35] + "…"
            parts.append(
                f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{_e(short)}</text>'
            )
            x = float(label_w)
            for name, value in zip(series, values, strict=True):
                w = bar_w * value / peak
                if value:
                    parts.append(
                        f'<rect x="{x:.1f}" y="{y + 3}" width="{max(w, 1):.1f}" height="14" '
                        f'fill="{PALETTE[name]}"><title>{_e(label)}: {_num(value)} {name}'
                        f"</title></rect>"
                    )
                x += w
            parts.append(
                f'<text x="{x + 4:.1f}" y="{y + 14}">{" / ".join(_num(v) for v in values)}</text>'
            )
        desc = "; ".join(
            f"{label}: " + ", ".join(f"{_num(v)} {s}" for s, v in zip(series, values, strict=True))
            for label, values in rows
        )
        return self._frame(title, desc or "no data", width, height, "".join(parts))

    def columns(
        self,
        title: str,
        labels: Sequence[str],
        added: Sequence[int | None],
        removed: Sequence[int | None],
    ) -> str:
        """Added (up) and removed (down) grants per run, side by side."""
        width, height, left, mid = 640, 220, 50, 110
        slot = (width - left - 10) / max(len(labels), 1)
        peak = max([*(a or 0 for a in added), *(r or 0 for r in removed), 1])
        scale = 90 / peak
        parts = [
            f'<line x1="{left}" x2="{width - 10}" y1="{mid}" y2="{mid}" stroke="#9ca3af"/>',
            f'<text x="{left - 4}" y="{mid - 80}" text-anchor="end">+{_num(peak)}</text>',
            f'<text x="{left - 4}" y="{mid + 88}" text-anchor="end">&minus;{_num(peak)}</text>',
        ]
        for n, (label, up, down) in enumerate(zip(labels, added, removed, strict=True)):
            x = left + n * slot + slot / 2
            if up is None or down is None:
                parts.append(f'<text x="{x:.1f}" y="{mid - 4}" text-anchor="middle">first</text>')
            else:
                parts.append(
                    f'<rect x="{x - 12:.1f}" y="{mid - up * scale:.1f}" width="24" '
                    f'height="{max(up * scale, 0.5):.1f}" fill="{PALETTE["added"]}"><title>'
                    f"run {_e(label)}: {_num(up)} grants added</title></rect>"
                    f'<rect x="{x - 12:.1f}" y="{mid}" width="24" '
                    f'height="{max(down * scale, 0.5):.1f}" fill="{PALETTE["removed"]}"><title>'
                    f"run {_e(label)}: {_num(down)} grants removed</title></rect>"
                    f'<text x="{x:.1f}" y="{mid - up * scale - 3:.1f}" text-anchor="middle">'
                    f"+{_num(up)}</text>"
                    f'<text x="{x:.1f}" y="{mid + down * scale + 11:.1f}" '
                    f'text-anchor="middle">&minus;{_num(down)}</text>'
                )
            parts.append(
                f'<text x="{x:.1f}" y="{height - 4}" text-anchor="middle">run {_e(label)}</text>'
            )
        desc = "; ".join(
            f"run {label}: " + ("first run shown" if up is None else f"{up} added, {down} removed")
            for label, up, down in zip(labels, added, removed, strict=True)
        )
        return self._frame(title, desc or "no runs", width, height, "".join(parts))


def _figure(caption: str, svg: str, note: str = "") -> str:
    extra = f'<p class="note">{_e(note)}</p>' if note else ""
    return f"<figure><figcaption>{_e(caption)}</figcaption>{svg}{extra}</figure>"


def _facts(review: Review) -> str:
    run, against = review.run, review.against
    items = [
        ("Tenant", run.tenant_id),
        ("Coupa instance", review.facts.get("instance", "not recorded")),
        ("Run", f"{run.run_id} ({run.kind})"),
        ("Run started", _when(run.started_at)),
        ("Run ended", _when(run.ended_at)),
        ("Mode", run.mode or "unknown"),
        ("Plugin", f"{run.plugin} {review.facts.get('plugin_version', '(version not recorded)')}"),
        (
            "Compared with",
            f"run {against.run_id} ({against.kind}, {_when(against.started_at)})"
            if against
            else "no earlier full run",
        ),
    ]
    return (
        '<dl class="facts">'
        + "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in items)
        + "</dl>"
    )


def _cards(review: Review) -> str:
    paid = sum(len(d.licenses) for d in review.disabled_holding)
    cards = [
        (_num(len(review.users)), "accounts", False),
        (_num(review.users_enabled), "enabled", False),
        (_num(review.users_disabled), "disabled", False),
        (_num(sum(review.grant_counts.values())), "grants", False),
        (_num(len(review.entitlements)), "entitlements", False),
        (_num(len(review.privileged)), "privileged holders", bool(review.privileged)),
        (
            _num(len(review.service_accounts)),
            "API/support accounts with access",
            bool(review.service_accounts),
        ),
        (_num(paid), "licenses held by disabled accounts", bool(paid)),
    ]
    if review.privileged_gained is not None:
        cards.append(
            (
                _num(len(review.privileged_gained)),
                "gained privileged access",
                bool(review.privileged_gained),
            )
        )
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card{" bad" if bad else ""}"><b>{value}</b><span>{_e(label)}</span></div>'
            for value, label, bad in cards
        )
        + "</div>"
    )


def _counts(review: Review) -> str:
    types = sorted(set(review.resource_counts) | set(review.grant_counts))
    return _table(
        "counts",
        "Resources and grants per type",
        (("Type", False), ("Resources", True), ("Grants", True)),
        (
            [_e(t), _num(review.resource_counts.get(t, 0)), _num(review.grant_counts.get(t, 0))]
            for t in types
        ),
        len(types),
    )


def _exceptions(review: Review) -> str:
    since = f"run {review.against.run_id}" if review.against else ""
    parts = [
        '<section id="exceptions" aria-labelledby="h-exceptions">',
        '<h2 id="h-exceptions">Exceptions</h2>',
    ]
    held = _num(len(review.privileged))
    parts.append(f"<h3>Holders of privileged (omnipotent) roles: {held}</h3>")
    parts.append(
        _holding_table(
            "x-privileged",
            "Accounts holding a privileged role",
            "Privileged roles",
            review.privileged,
        )
    )
    parts.append(
        "<h3>Gained privileged access since the previous full run"
        + (
            f" ({_e(since)}): {_num(len(review.privileged_gained))}"
            if review.privileged_gained is not None
            else ""
        )
        + "</h3>"
    )
    if review.privileged_gained is None:
        parts.append('<p class="note">No earlier complete full run to compare with.</p>')
    else:
        parts.append(
            _holding_table(
                "x-gained",
                f"Privileged grants added since {since}",
                "Gained",
                review.privileged_gained,
            )
        )
    parts.append(
        "<h3>Active API and support accounts with access: "
        f"{_num(len(review.service_accounts))}</h3>"
    )
    parts.append(
        _holding_table(
            "x-service",
            "Enabled API and support accounts holding access",
            "Holds",
            review.service_accounts,
        )
    )
    parts.append(
        "<h3>Active accounts that never signed in"
        + (f": {_num(len(review.never_logged_in))}" if review.never_logged_in is not None else "")
        + "</h3>"
    )
    if review.never_logged_in is None:
        parts.append(
            '<p class="note">Not available: the user records of this run carry no sign-in '
            "time (Coupa's user API does not report one). Check Coupa's own user report "
            "for last sign-in dates.</p>"
        )
    else:
        parts.append(
            _holding_table(
                "x-never",
                "Enabled accounts with access that never signed in",
                "Holds",
                review.never_logged_in,
            )
        )
    paid = sum(len(d.licenses) for d in review.disabled_holding)
    parts.append(
        "<h3>Disabled accounts that still hold licenses or roles: "
        f"{_num(len(review.disabled_holding))} "
        f"({_num(paid)} licenses)</h3>"
    )
    parts.append(
        _table(
            "x-disabled",
            "Disabled accounts still holding licenses or roles",
            (*_USER_HEADERS, ("Licenses", True), ("License names", False), ("Roles", False)),
            (
                [
                    *_user_cells(d.user),
                    _num(len(d.licenses)),
                    _e(", ".join(d.licenses)),
                    _e(", ".join(d.roles)),
                ]
                for d in review.disabled_holding
            ),
            len(review.disabled_holding),
        )
    )
    parts.append("</section>")
    return "".join(parts)


def _changes(review: Review) -> str:
    head = '<section id="changes" aria-labelledby="h-changes"><h2 id="h-changes">Changes'
    if review.changes is None or review.against is None:
        return (
            head + '</h2><p class="note">No earlier complete full run to compare with; '
            "the next full run will show what changed.</p></section>"
        )
    diff = review.changes
    parts = [
        head + f" since run {review.against.run_id} ({_e(_when(review.against.started_at))})</h2>"
    ]
    counts = [
        ("grants added", len(diff.grants_added)),
        ("grants removed", len(diff.grants_removed)),
        ("accounts new", len(diff.users_new)),
        ("accounts gone", len(diff.users_gone)),
        ("accounts enabled", len(diff.users_enabled)),
        ("accounts disabled", len(diff.users_disabled)),
        ("profiles changed", len(diff.users_changed)),
        ("entitlements new", len(diff.entitlements_new)),
        ("entitlements gone", len(diff.entitlements_gone)),
    ]
    parts.append(
        '<div class="cards">'
        + "".join(
            f'<div class="card"><b>{_num(n)}</b><span>{_e(label)}</span></div>'
            for label, n in counts
        )
        + "</div>"
    )
    parts.append("<h3>Grants added and removed per entitlement</h3>")
    parts.append(
        _table(
            "ch-entitlements",
            "Grants added and removed per entitlement",
            (("Entitlement", False), ("Id", False), ("Added", True), ("Removed", True)),
            (
                [_e(c.name), _e(c.id), _num(c.added), _num(c.removed)]
                for c in review.entitlement_changes
            ),
            len(review.entitlement_changes),
            filter_label="Filter entitlements",
        )
    )
    users = (("User id", True, "id"), ("Login", False, "login"), ("Name", False, "display_name"))
    grants = (
        ("User id", True, "principal_id"),
        ("Login", False, "login"),
        ("Entitlement", False, "entitlement"),
        ("Id", False, "entitlement_id"),
    )
    for key, title, caption, columns in (
        ("users_new", "Accounts new", "Accounts this run has and the earlier run had not", users),
        ("users_gone", "Accounts gone", "Accounts of the earlier run missing from this run", users),
        ("users_enabled", "Accounts enabled", "Accounts enabled since the earlier run", users),
        ("users_disabled", "Accounts disabled", "Accounts disabled since the earlier run", users),
        (
            "users_changed",
            "Profiles changed",
            "Accounts whose name, login, e-mail, manager or other profile fields changed",
            (*users, ("Changed", False, "was")),
        ),
        ("grants_added", "Grants added", "Grants added since the earlier run", grants),
        ("grants_removed", "Grants removed", "Grants removed since the earlier run", grants),
    ):
        # by user id, in numeric order (the snapshot keeps ids as text)
        rows = sorted(getattr(diff, key), key=partial(_row_order, columns[0][2]))
        parts.append(f"<h3>{_e(title)}: {_num(len(rows))}</h3>")
        if rows:
            parts.append(
                _table(
                    f"ch-{key}",
                    caption,
                    [(name, numeric) for name, numeric, _ in columns],
                    ([_e(row[field]) for _, _, field in columns] for row in rows),
                    len(rows),
                )
            )
    parts.append("</section>")
    return "".join(parts)


def _charts(review: Review) -> str:
    svg = _Svg()
    top = sorted(review.entitlements, key=lambda e: (-len(e.holders), e.name))[:CHART_BARS]
    figures = [
        _figure(
            f"Accounts per entitlement (the {len(top)} most held)",
            svg.bars(
                "Accounts per entitlement, active and disabled",
                [(e.name, (e.active, e.disabled)) for e in top],
                ("active", "disabled"),
            ),
        ),
        _figure(
            "Grants per type",
            svg.bars(
                "Grants per entitlement type",
                [(t, (n,)) for t, n in review.grant_counts.items()],
                ("grants",),
            ),
        ),
        _figure(
            "Licenses held by active and disabled accounts",
            svg.bars(
                "Licenses held by active and disabled accounts",
                [(u.name, (u.active, u.disabled)) for u in review.licenses],
                ("active", "disabled"),
            ),
            "Disabled accounts holding a license may still be paid for.",
        ),
        _figure(
            "Grants added and removed over the last full runs",
            svg.columns(
                "Grants added and removed per full run",
                [str(p.run_id) for p in review.history],
                [p.added for p in review.history],
                [p.removed for p in review.history],
            ),
            " · ".join(
                f"run {p.run_id}: {_num(p.users)} accounts, {_num(p.grants)} grants"
                for p in review.history
            ),
        ),
    ]
    return (
        '<section id="charts" aria-labelledby="h-charts"><h2 id="h-charts">Charts</h2>'
        f'<div class="charts">{"".join(figures)}</div></section>'
    )


def _entitlement_row(ent: EntitlementRow) -> str:
    priv = ' <span class="tag priv">privileged</span>' if ent.privileged else ""
    button = (
        f'<button type="button" class="holders" aria-expanded="false" '
        f'data-entitlement="{_e(ent.id)}" data-name="{_e(ent.name)}">holders</button>'
        if ent.holders
        else ""
    )
    return (
        f"<tr><td>{_e(ent.name)}{priv}</td><td>{_e(ent.resource_type)}</td>"
        f"<td>{_e(ent.id)}</td><td class=n>{_num(len(ent.holders))}</td>"
        f"<td class=n>{_num(ent.active)}</td><td class=n>{_num(ent.disabled)}</td>"
        f"<td>{button}</td></tr>"
    )


def _entitlements(review: Review) -> str:
    rows = "".join(_entitlement_row(e) for e in review.entitlements)
    return (
        '<section id="entitlements" aria-labelledby="h-entitlements">'
        '<h2 id="h-entitlements">Entitlements and their holders</h2>'
        '<p class="note noscript">The holder lists need JavaScript; '
        "<code>coupa-iga export</code> lists every grant.</p>"
        '<input type="search" class="noprint" data-filter="entitlements-table" '
        'aria-label="Filter entitlements" placeholder="Filter entitlements">'
        '<table id="entitlements-table" class="sortable"><caption>'
        f"Every entitlement of run {review.run.run_id} ({_num(len(review.entitlements))}); "
        "sort by a column, open holders for the accounts</caption><thead><tr>"
        '<th scope="col">Entitlement</th><th scope="col">Type</th><th scope="col">Id</th>'
        '<th scope="col" class=n>Holders</th><th scope="col" class=n>Active</th>'
        '<th scope="col" class=n>Disabled</th><th scope="col">Accounts</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></section>"
    )


def _data(review: Review) -> str:
    kinds = {"person": "p", "API account": "a", "support account": "s"}
    status = {"enabled": "e", "disabled": "d"}
    holders = {}
    for ent in review.entitlements:
        gaps, last = [], -1
        for i in ent.holders:
            gaps.append(i - last)
            last = i
        if gaps:
            holders[ent.id] = gaps
    payload = {
        "users": [
            [
                u.id,
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
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_review(review: Review) -> str:
    """The whole report as one HTML document."""
    run = review.run
    title = f"Access review: {run.tenant_id}, run {run.run_id}"
    what = run.kind if run.kind != "full" else run.scope  # an incremental run, or the types
    warning = (
        f'<p class="warn">Run {run.run_id} is not a full run ({_e(what)}): it holds only what '
        "that run read, so counts and lists cover that only.</p>"
        if run.kind != "full" or run.partial
        else ""
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>{_e(title)}</h1>{_facts(review)}{warning}{_cards(review)}"
        '<nav aria-label="Sections"><ul><li><a href="#exceptions">Exceptions</a></li>'
        '<li><a href="#changes">Changes</a></li><li><a href="#charts">Charts</a></li>'
        '<li><a href="#entitlements">Entitlements</a></li><li><a href="#counts-h">Counts</a>'
        "</li></ul></nav></header><main>"
        f"{_exceptions(review)}{_changes(review)}{_charts(review)}{_entitlements(review)}"
        '<section aria-labelledby="counts-h"><h2 id="counts-h">Counts</h2>'
        f"{_counts(review)}</section></main>"
        f"<footer>Generated {_e(_when(review.generated_at.isoformat()))} by "
        "coupa-iga report from the snapshot of run "
        f"{run.run_id}. Self-contained: this file loads nothing from the network.</footer>"
        f'<script type="application/json" id="review-data">{_data(review)}</script>'
        f"<script>{_SCRIPT}</script></body></html>"
    )
