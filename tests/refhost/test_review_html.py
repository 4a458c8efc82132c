"""The report's page as files: templates and assets shipped as package data, every value
written as text (escaped, control characters and bidirectional overrides neutralised), the
embedded holders unable to close their script element, long lists cut where they say."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st
from markupsafe import escape

from coupa_plugin.host.model import Entitlement, Grant, Resource, SyncRequest
from coupa_plugin.refhost._reports import RunDiff, safe_text
from coupa_plugin.refhost._review import (
    EntitlementRow,
    Holding,
    Review,
    UserRow,
    gather_review,
)
from coupa_plugin.refhost._review_html import STATIC_ROWS, render_review
from coupa_plugin.refhost._snapshot import RunRecord, SnapshotStore

HOSTILE = (
    '</script><script>alert("x")</script><!-- & \' \x1b[2J\x07 \u202eevil\u2066 '
    "<img src=x onerror=alert(1)>"
)
# what a page must never carry: a terminal's controls and the overrides that reorder text
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class Scripts(HTMLParser):
    """Each script element's raw text, every attribute value, and the text outside scripts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.attributes: list[str] = []
        self.text: list[str] = []
        self._script: dict[str, str | None] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attributes.extend(v for _, v in attrs if v is not None)
        if tag == "script":
            self._script = dict(attrs)
            self.scripts.append((self._script, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            found, text = self.scripts[-1]
            self.scripts[-1] = (found, text + data)
        else:
            self.text.append(data)

    def data(self) -> str:
        [text] = [t for a, t in self.scripts if a.get("type") == "application/json"]
        return text


def _run(run_id: int, tenant: str = "t") -> RunRecord:
    return RunRecord(
        run_id=run_id,
        tenant_id=tenant,
        plugin="p",
        kind="full",
        started_at="2026-01-01T00:00:00+00:00",
        ended_at="2026-01-01T00:01:00+00:00",
        outcome="complete",
        error=None,
        mode="provisioning",
        resources=2,
        entitlements=1,
        grants=1,
    )


def _review(name: str) -> Review:
    """A one-user, one-entitlement review with ``name`` in every text the page shows."""
    user = UserRow(index=0, id=name, login=name, name=name, status=name, kind=name)
    held = [Holding(user=user, items=(name,))]
    row = {"id": name, "principal_id": name, "login": name, "display_name": name}
    entitlement = EntitlementRow(
        id=name,
        name=name,
        resource_type=name,
        resource_name=name,
        privileged=True,
        holders=(0,),
        active=1,
        disabled=0,
    )
    return Review(
        run=_run(2, tenant=name),
        against=_run(1),
        facts={"instance": name, "plugin_version": name},
        generated_at=datetime(2026, 1, 2, tzinfo=UTC),
        resource_counts={name: 1},
        grant_counts={name: 1},
        users=[user],
        entitlements=[entitlement],
        privileged=held,
        privileged_gained=held,
        never_logged_in=held,
        service_accounts=held,
        disabled_holding=[],
        changes=RunDiff(
            old_run=1,
            new_run=2,
            grants_added=[{**row, "entitlement": name, "entitlement_id": name}],
            grants_removed=[],
            users_new=[row],
            users_gone=[],
            users_enabled=[],
            users_disabled=[],
            entitlements_new=[],
            entitlements_gone=[],
            users_changed=[{**row, "was": name}],
        ),
        entitlement_changes=[],
        licenses=[],
        history=[],
    )


def test_templates_and_assets_are_package_data() -> None:
    from coupa_plugin.refhost._review_html import _ENV

    package = files("coupa_plugin.refhost")
    templates = {p.name for p in package.joinpath("templates").iterdir() if p.is_file()}
    assert {"page.html", "review.html", "macros.html"} <= templates
    assert set(_ENV.list_templates()) == templates, "the page is read from the package"
    for name in templates:  # each one compiles, used by this page or not
        _ENV.get_template(name)
    for asset in ("report.css", "report.js"):
        text = package.joinpath("assets", asset).read_text("utf-8")
        assert text.strip() and text.strip() in render_review(_review("x"))


@given(st.text(max_size=40))
@example("\x7f")
@example("enabled")
@example("API account")
@example(HOSTILE)
def test_any_name_is_text_in_the_page_and_data(name: str) -> None:
    html = render_review(_review(name))
    page = Scripts(html)
    assert len(page.scripts) == 2, "the data never closes its script element nor opens one"
    assert not UNSAFE.search(html)
    assert safe_text(name) in "".join(page.text) or not name.strip()
    data = json.loads(page.data())
    shown = safe_text(name)
    status = {"enabled": "e", "disabled": "d"}.get(name, "u")
    kind = {"API account": "a", "support account": "s"}.get(name, "p")
    assert data["users"] == [[shown, shown, shown, status, kind]]
    # the holders are found under the id the entitlement's button names
    assert data["holders"] == {shown: [1]} and f'data-entitlement="{escape(shown)}"' in html


def test_hostile_names_never_become_markup() -> None:
    html = render_review(_review(HOSTILE))
    page = Scripts(html)
    data = page.data()
    assert "<" not in data and ">" not in data and "&" not in data
    assert json.loads(data)["users"][0][2] == safe_text(HOSTILE)
    assert "<script>alert" not in html and "<img" not in html and "<!--" not in html
    assert not UNSAFE.search(html)
    shown = safe_text(HOSTILE)
    # in headings, cells, captions, chart titles and attributes alike
    assert "".join(page.text).count(shown) >= 20
    assert f"Access review: {shown}, run 2" in page.text
    assert shown in page.attributes  # the holders button's data-entitlement and data-name


def _store_with_users(path: Path, users: int) -> None:
    role = Resource(
        type="role",
        id="2",
        display_name="Admin",
        profile={"privileged": True},
        entitlements=(
            Entitlement(
                id="role:2:member",
                resource_type="role",
                resource_id="2",
                slug="member",
                display_name="Admin role",
            ),
        ),
    )
    with SnapshotStore(path) as store, store.run("t", "p", SyncRequest(), None) as writer:
        writer.add_resource(role)
        for n in range(1, users + 1):
            uid = str(n)
            writer.add_resource(
                Resource(type="user", id=uid, display_name=f"U{n}", profile={"login": uid})
            )
            writer.add_grant(Grant(entitlement_id="role:2:member", principal_id=uid))


def test_a_list_longer_than_the_page_holds_says_how_many_it_shows(tmp_path: Path) -> None:
    _store_with_users(tmp_path / "s.sqlite", STATIC_ROWS + 5)
    with SnapshotStore(tmp_path / "s.sqlite") as store:
        review = gather_review(store, "t", "p", now=datetime(2026, 1, 2, tzinfo=UTC))
    html = render_review(review)
    table = html.split('<table id="x-privileged"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 1 + STATIC_ROWS  # the header and the rows shown
    assert f"<td class=n>{STATIC_ROWS}</td>" in table and f">{STATIC_ROWS + 1}<" not in table
    after = html.split('<table id="x-privileged"', 1)[1].split("</table>", 1)[1]
    assert after.startswith('</div><p class="note">2,000 of 2,005 shown;')
    assert 'data-filter="x-privileged"' in html  # long enough for a filter box
    assert json.loads(Scripts(html).data())["holders"]["role:2:member"] == [1] * 2_005


def test_template_lines_join_into_one() -> None:
    from coupa_plugin.refhost._review_html import _ENV

    source = (
        "<p>\n  {% if x %}\n    <b>{{ x }}</b>\n  {% endif %}\n"
        "  text that\n  wraps and {{ y }}\n  ends\n</p>\n"
    )
    rendered = _ENV.from_string(source).render(x="a<", y="\u202e")
    assert rendered == "<p><b>a&lt;</b>text that wraps and \ufffd ends</p>"
