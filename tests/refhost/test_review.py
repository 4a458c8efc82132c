"""The access-review report: content checked against the sandbox's truth, and rendering in a
real headless browser with nothing fetched from the network."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner

import coupa_plugin
from coupa_plugin.host.errors import ConfigurationError
from coupa_plugin.host.model import Entitlement, Grant, Resource, SyncRequest
from coupa_plugin.refhost._cli import main
from coupa_plugin.refhost._facts import service_instance
from coupa_plugin.refhost._review import gather_review
from coupa_plugin.refhost._review_html import render_review
from coupa_plugin.refhost._snapshot import SnapshotStore
from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    CoupaSandbox,
    Operations,
    SandboxServer,
    generate_tenant,
)
from tests.access_changes import change_access
from tests.browser import chromium, run_headless
from tests.kit import truth_grants

ADMIN = "role:2:member"
HOSTILE = '</script><script>alert("x")</script><!--'


class Page(HTMLParser):
    """The parts of the report the tests look at: tables by id, headings, attributes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.captions: dict[str, str] = {}
        self.headings: list[str] = []
        self.urls: list[str] = []
        self.svgs: list[dict[str, str | None]] = []
        self.cards: dict[str, str] = {}
        self.meta: list[dict[str, str | None]] = []
        self.data: Any = None
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._text: list[str] | None = None
        self._what = ""
        self._last_card: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in ("src", "href", "action", "poster", "data"):
            if found.get(name) is not None:
                self.urls.append(str(found[name]))
        if tag == "meta":
            self.meta.append(found)
        if tag == "svg":
            self.svgs.append(found)
        if tag == "table" and found.get("id"):
            self._table = str(found["id"])
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag in ("h2", "h3", "caption", "b", "span") or (
            tag == "script" and found.get("type") == "application/json"
        ):
            self._text, self._what = [], tag

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == self._what and self._text is not None:
            text = "".join(self._text).strip()
            if tag in ("h2", "h3"):
                self.headings.append(text)
            elif tag == "caption" and self._table:
                self.captions[self._table] = text
            elif tag == "b":
                self._last_card = text
            elif tag == "span" and self._last_card is not None:
                self.cards[text] = self._last_card
                self._last_card = None
            elif tag == "script":
                self.data = json.loads(text)
            self._text = None

    def ids(self, table: str) -> set[str]:
        """The first column (the user id) of a table's body rows."""
        return {row[0] for row in self.tables[table][1:]}


@pytest.fixture(scope="module")
def review(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two full runs of a 150-user sandbox with access changed in between, and the report."""
    tmp = tmp_path_factory.mktemp("review")
    sandbox = CoupaSandbox(
        generate_tenant(users=150, seed=3), operations=Operations(rate_limit=False)
    )
    state = sandbox.state
    with SandboxServer(sandbox) as server:
        tenants = tmp / "tenants.toml"
        tenants.write_text(
            f'[tenants.acme.coupa]\nbase_url = "{server.url}"\nallow_insecure_base_url = true\n'
            f'client_id = "{SANDBOX_CLIENT_ID}"\nclient_secret = "{SANDBOX_CLIENT_SECRET}"\n'
        )
        snapshot = tmp / "s.sqlite"
        sync = ["sync", "--tenants", str(tenants), "--snapshot", str(snapshot)]
        assert CliRunner().invoke(main, sync).exit_code == 0
        changes = change_access(state)
        result = CliRunner().invoke(main, sync)
        assert result.exit_code == 0, result.output
        output = tmp / "review.html"
        report = ["report", "--snapshot", str(snapshot), "--tenant", "acme", "--output"]
        result = CliRunner().invoke(main, [*report, str(output)])
        assert result.exit_code == 0, result.output
        yield {
            "state": state,
            "url": server.url,
            "snapshot": snapshot,
            "html": output.read_text(encoding="utf-8"),
            "path": output,
            "promoted": changes.promoted[0],
            "leaver": changes.leavers[0],
            "mover": changes.mover,
            "left_group": changes.left_group,
            "hire": changes.hire,
        }


def test_facts_and_counts(review: dict[str, Any]) -> None:
    state, page = review["state"], Page(review["html"])
    users = state.users.values()
    assert page.cards["accounts"] == str(len(state.users))
    assert page.cards["enabled"] == f"{sum(1 for u in users if u['active']):,}"
    assert page.cards["disabled"] == f"{sum(1 for u in users if not u['active']):,}"
    assert page.cards["grants"] == f"{len(truth_grants(state)):,}"
    facts = review["html"].split('<dl class="facts">', 1)[1].split("</dl>", 1)[0]
    assert review["url"] in facts and f"coupa {coupa_plugin.__version__}" in facts
    assert "2 (full)" in facts and "run 1 (full" in facts
    counts = {row[0]: row[1:] for row in page.tables["counts"][1:]}
    assert counts["user"][0] == str(len(state.users))
    assert counts["role"][1] == f"{sum(len(u['roles']) for u in users):,}"


def test_exceptions_name_the_right_accounts(review: dict[str, Any]) -> None:
    state, page = review["state"], Page(review["html"])
    grants = truth_grants(state)
    holders = {p for _, p in grants}
    admins = {str(u) for u, rec in state.users.items() if 2 in rec["roles"]}
    assert str(review["promoted"]) in admins
    assert page.ids("x-privileged") == admins
    assert page.ids("x-gained") == {str(review["promoted"])}
    assert page.tables["x-gained"][1][-1] == "Admin role"
    service = {
        str(u)
        for u, rec in state.users.items()
        if rec["active"] and (rec["api-user"] or rec["support-user"]) and str(u) in holders
    }
    assert service and page.ids("x-service") == service
    kept = {p for e, p in grants if e.startswith(("license:", "role:"))}
    disabled = {str(u) for u, rec in state.users.items() if not rec["active"] and str(u) in kept}
    assert str(review["leaver"]) in disabled
    assert page.ids("x-disabled") == disabled
    [row] = [r for r in page.tables["x-disabled"] if r[0] == str(review["leaver"])]
    licenses = sorted(e for e, p in grants if p == str(review["leaver"]) and "license:" in e)
    assert row[4] == str(len(licenses)) and "Expense license assigned" in row[5]
    assert "Active accounts that never signed in" in page.headings
    assert "Not available" in review["html"]


def test_changes_since_the_previous_full_run(review: dict[str, Any]) -> None:
    page = Page(review["html"])
    assert any(h.startswith("Changes since run 1") for h in page.headings)
    assert page.ids("ch-users_disabled") == {str(review["leaver"])}
    assert page.ids("ch-users_new") == {str(review["hire"])}
    removed = {(r[0], r[3]) for r in page.tables["ch-grants_removed"][1:]}
    assert removed == {(str(review["mover"]), f"group:{review['left_group']}:member")}
    added = {(r[0], r[3]) for r in page.tables["ch-grants_added"][1:]}
    assert (str(review["promoted"]), ADMIN) in added
    per_entitlement = {r[1]: r[2:] for r in page.tables["ch-entitlements"][1:]}
    assert per_entitlement[ADMIN] == ["1", "0"]
    assert per_entitlement[f"group:{review['left_group']}:member"] == ["0", "1"]
    assert page.cards["accounts new"] == "1" and page.cards["grants removed"] == "1"


def test_self_contained_accessible_and_charted(review: dict[str, Any]) -> None:
    page = Page(review["html"])
    assert all(u.startswith(("#", "data:")) for u in page.urls), page.urls
    [csp] = [m for m in page.meta if m.get("http-equiv") == "Content-Security-Policy"]
    assert "default-src 'none'" in str(csp["content"])
    charts = [s for s in page.svgs if s.get("role") == "img"]
    assert len(charts) == 4 and all(s.get("aria-labelledby") for s in charts)
    assert review["html"].count("<desc id=") == 4
    assert all(page.captions.get(t) for t in page.tables)
    assert "@media print" in review["html"]
    # the holders of each entitlement are embedded once: user positions as gaps
    data, state = page.data, review["state"]
    at, admins = -1, set()
    for gap in data["holders"][ADMIN]:
        at += gap
        admins.add(data["users"][at][0])
    assert admins == {str(u) for u, rec in state.users.items() if 2 in rec["roles"]}
    rows = {r[2]: r for r in page.tables["entitlements-table"][1:]}
    assert rows[ADMIN][3] == str(len(admins))


def test_report_refuses_what_it_cannot_review(tmp_path: Path, review: dict[str, Any]) -> None:
    snapshot = str(review["snapshot"])
    base = ["report", "--snapshot", snapshot, "--output", str(tmp_path / "r.html")]
    nothing = CliRunner().invoke(main, [*base, "--tenant", "other"])
    assert nothing.exit_code == 3 and "no complete full run" in nothing.output
    same = CliRunner().invoke(main, [*base, "--tenant", "acme", "--run", "2", "--against", "2"])
    assert same.exit_code == 3 and "--against" in same.output
    unknown = CliRunner().invoke(main, [*base, "--tenant", "acme", "--run", "9"])
    assert unknown.exit_code == 3 and "not a run" in unknown.output
    first = CliRunner().invoke(main, [*base, "--tenant", "acme", "--run", "1"])
    assert first.exit_code == 0
    assert "No earlier complete full run" in (tmp_path / "r.html").read_text()


def test_never_signed_in_when_the_records_say(tmp_path: Path) -> None:
    def user(uid: str, *, active: bool, last: str | None) -> Resource:
        return Resource(
            type="user",
            id=uid,
            display_name=f"User {uid}",
            status="enabled" if active else "disabled",
            profile={"login": f"u{uid}", "last_login_at": last},
        )

    role = Resource(
        type="role",
        id="7",
        display_name="Ops",
        entitlements=(
            Entitlement(
                id="role:7:member",
                resource_type="role",
                resource_id="7",
                slug="member",
                display_name="Ops role",
            ),
        ),
    )
    with SnapshotStore(tmp_path / "s.sqlite") as store:
        with store.run("t", "p", SyncRequest(), None) as writer:
            for resource in (
                role,
                user("1", active=True, last=None),
                user("2", active=True, last="2026-01-01T00:00:00Z"),
                user("3", active=False, last=None),
                user("4", active=True, last=None),
            ):
                writer.add_resource(resource)
            for uid in ("1", "2", "3"):
                writer.add_grant(Grant(entitlement_id="role:7:member", principal_id=uid))
        result = gather_review(store, "t", "p", now=datetime(2026, 1, 2, tzinfo=UTC))
        since = SyncRequest(since=datetime(2026, 1, 1, tzinfo=UTC))
        with store.run("t", "p", since, None) as writer:
            writer.add_resource(attrs.evolve(role, display_name=HOSTILE))
            hostile = attrs.evolve(user("1", active=True, last=None), display_name=HOSTILE)
            writer.add_resource(hostile)
            writer.add_grant(Grant(entitlement_id="role:7:member", principal_id="1"))
        with pytest.raises(ConfigurationError, match="partial"):  # only when asked for
            gather_review(store, "t", "p", now=datetime(2026, 1, 3, tzinfo=UTC), run_id=2)
        later = gather_review(
            store, "t", "p", now=datetime(2026, 1, 3, tzinfo=UTC), run_id=2, allow_partial=True
        )
    assert result.never_logged_in is not None
    assert [h.user.login for h in result.never_logged_in] == ["u1"]  # active, holds access
    assert result.facts == {} and result.against is None and result.changes is None
    assert "Active accounts that never signed in: 1" in Page(render_review(result)).headings
    # an incremental run is compared with the full run before it, and says what it covers
    assert later.against is not None and later.against.run_id == 1
    html = render_review(later)
    assert "Run 2 is not a full run (incremental)" in html
    assert HOSTILE not in html and "<script>alert" not in html  # names are text, never markup
    assert Page(html).data["users"][0][2] == HOSTILE


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"domain": "ACME.coupahost.com"}, "acme.coupahost.com"),
        ({"domain": "https://acme.coupacloud.com/path"}, "acme.coupacloud.com"),
        (
            {"base_url": "http://user:pw@127.0.0.1:8080/x", "domain": "a.coupahost.com"},
            "http://127.0.0.1:8080",
        ),
        ({"client_secret": "s"}, None),
    ],
)
def test_instance_never_carries_user_info(section: dict[str, str], expected: str | None) -> None:
    assert service_instance(section) == expected


class Recorder:
    """A loopback HTTP server that serves a folder and records every request it receives, and
    a browser visit that also lists, from Chromium's own network log, every request the page
    started (whatever host it was for; other hosts are made unresolvable, so nothing leaves)."""

    def __init__(self, folder: Path) -> None:
        seen: list[str] = []
        self.seen = seen
        self.folder = folder

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(folder), **kwargs)

            def log_message(self, format: str, *args: Any) -> None:
                seen.append(getattr(self, "path", format % args))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def visit(self, browser: str, page: str) -> tuple[str, list[str], list[str]]:
        """The DOM after the page's script ran, the requests the server received, and the
        URLs of the requests the page itself started (sub-resources, fetches, anything)."""
        del self.seen[:]
        netlog = self.folder / "netlog.json"
        dom = run_headless(
            browser,
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--log-net-log={netlog}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            f"{self.origin}/{page}",
        ).stdout
        log = json.loads(netlog.read_text())
        start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        started = [
            event["params"]["url"]
            for event in log["events"]
            if event["type"] == start and event.get("params", {}).get("initiator") == self.origin
        ]
        return dom, list(self.seen), started


@pytest.fixture(scope="module")
def browser() -> str:
    found, why = chromium()
    if found is None:
        pytest.skip(f"headless browser test skipped: {why}")
    return found


def test_report_renders_in_a_browser_without_network(review: dict[str, Any], browser: str) -> None:
    folder = review["path"].parent
    # The same page without its Content-Security-Policy: the page itself must not ask for
    # anything, not merely be stopped by the policy.
    html = review["html"]
    csp = html.index('<meta http-equiv="Content-Security-Policy"')
    (folder / "open.html").write_text(html[:csp] + html[html.index(">", csp) + 1 :])
    with Recorder(folder) as server:
        for name in ("review.html", "open.html"):
            dom, seen, started = server.visit(browser, f"{name}#holders={ADMIN}")
            assert seen == [f"/{name}"], f"{name}: the server saw more than the page: {seen}"
            assert started == [], f"{name} asked for more than itself: {started}"
            check_rendered(dom, review)


def check_rendered(dom: str, review: dict[str, Any]) -> None:
    page = Page(dom)
    assert 'data-ready="1"' in dom, "the page's script did not finish"
    assert len([s for s in page.svgs if s.get("role") == "img"]) == 4
    assert all(u.startswith(("#", "data:")) for u in page.urls), page.urls
    state = review["state"]
    admins = {u for u, rec in state.users.items() if 2 in rec["roles"]}
    # the script decoded the embedded holders and drew the Admin role's table
    assert page.captions[f"holders-{ADMIN}"] == f"Holders of Admin role ({len(admins)})"
    assert page.ids(f"holders-{ADMIN}") == {str(u) for u in admins}
    [row] = [r for r in page.tables[f"holders-{ADMIN}"] if r[0] == str(review["promoted"])]
    promoted = state.users[review["promoted"]]
    status = "enabled" if promoted["active"] else "disabled"
    assert row[1:] == [promoted["login"], promoted["fullname"], status, "person"]


def test_a_malformed_link_still_lets_the_page_finish(review: dict[str, Any], browser: str) -> None:
    with Recorder(review["path"].parent) as server:
        dom, _, _ = server.visit(browser, "review.html#holders=%E0%A4%A")
    assert 'data-ready="1"' in dom, "the page's script stopped at the malformed link"
