"""runs, diff, export, doctor and progress of the reference host."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from coupa_plugin.coupa._scopes import READ_ONLY_SCOPES
from coupa_plugin.refhost._cli import RUN_COLUMNS, main
from coupa_plugin.refhost._logfmt import configure_logging
from coupa_plugin.refhost._progress import SyncProgress
from coupa_plugin.refhost._reports import write_rows
from coupa_plugin.refhost._snapshot import SnapshotStore
from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    CoupaSandbox,
    SandboxServer,
)


def _tenants(tmp_path: Path, url: str, secret: str = SANDBOX_CLIENT_SECRET) -> Path:
    path = tmp_path / "tenants.toml"
    path.write_text(
        f'[tenants.acme.coupa]\nbase_url = "{url}"\nallow_insecure_base_url = true\n'
        f'client_id = "{SANDBOX_CLIENT_ID}"\nclient_secret = "{secret}"\n'
    )
    return path


def _sync(tenants: Path, snapshot: Path) -> None:
    result = CliRunner().invoke(
        main, ["sync", "--tenants", str(tenants), "--snapshot", str(snapshot)]
    )
    assert result.exit_code == 0, result.output


@pytest.fixture
def two_runs(
    tmp_path: Path, coupa_sandbox: CoupaSandbox, coupa_sandbox_server: SandboxServer
) -> tuple[Path, CoupaSandbox, int]:
    tenants, snapshot = _tenants(tmp_path, coupa_sandbox_server.url), tmp_path / "s.sqlite"
    _sync(tenants, snapshot)
    state = coupa_sandbox.state
    buyer = next(u for u in sorted(state.users) if u > 2 and 4 not in state.users[u]["roles"])
    state.users[buyer]["roles"] = sorted({*state.users[buyer]["roles"], 4})  # a grant added
    state.users[6]["expense-user"] = False  # maybe one removed
    state.users[7]["active"] = False  # a user disabled
    state.user_groups[999] = {**state.user_groups[1], "id": 999, "name": "Brand New"}
    state.touch()
    _sync(tenants, snapshot)
    return snapshot, coupa_sandbox, buyer


def _buyer(sandbox: CoupaSandbox) -> int:
    return next(
        u
        for u in sorted(sandbox.state.users)
        if u > 2 and sandbox.state.users[u]["roles"] == [3, 4]
    )


def test_runs_lists_both(two_runs: tuple[Path, CoupaSandbox, int]) -> None:
    snapshot, _, _ = two_runs
    result = CliRunner().invoke(main, ["runs", "--snapshot", str(snapshot)])
    assert result.exit_code == 0
    assert result.stdout.count("complete") == 2


def test_diff_reports_what_changed(two_runs: tuple[Path, CoupaSandbox, int]) -> None:
    snapshot, _, buyer = two_runs
    result = CliRunner().invoke(
        main, ["diff", "--snapshot", str(snapshot), "--tenant", "acme", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    added = {(g["entitlement_id"], g["principal_id"]) for g in report["grants_added"]}
    assert ("role:4:member", str(buyer)) in added
    assert [u["id"] for u in report["users_disabled"]] == ["7"]
    assert {e["id"] for e in report["entitlements_new"]} == {"group:999:member"}
    removed = {(g["entitlement_id"], g["principal_id"]) for g in report["grants_removed"]}
    was_expense = ("license:expense-user:assigned", "6")
    with SnapshotStore(snapshot) as store:
        first = store.runs("acme")[0].run_id
        assert (was_expense in removed) == (was_expense in store.grants(first))
    table = CliRunner().invoke(main, ["diff", "--snapshot", str(snapshot), "--tenant", "acme"])
    assert "grants added" in table.output and "role:4:member" in table.output
    as_csv = CliRunner().invoke(
        main, ["diff", "--snapshot", str(snapshot), "--tenant", "acme", "--format", "csv"]
    )
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert {"grants_added", "users_disabled", "entitlements_new"} <= {r["change"] for r in rows}


def test_diff_needs_two_full_runs(tmp_path: Path, coupa_sandbox_server: SandboxServer) -> None:
    tenants, snapshot = _tenants(tmp_path, coupa_sandbox_server.url), tmp_path / "s.sqlite"
    _sync(tenants, snapshot)
    result = CliRunner().invoke(main, ["diff", "--snapshot", str(snapshot), "--tenant", "acme"])
    assert result.exit_code == 3 and "needs two" in result.output


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_has_one_row_per_grant(
    two_runs: tuple[Path, CoupaSandbox, int], fmt: str, tmp_path: Path
) -> None:
    snapshot, sandbox, buyer = two_runs
    out = tmp_path / f"export.{fmt}"
    result = CliRunner().invoke(
        main,
        [
            "export",
            "--snapshot",
            str(snapshot),
            "--tenant",
            "acme",
            "--format",
            fmt,
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    with SnapshotStore(snapshot) as store:
        last = store.runs("acme")[-1]
    text = out.read_text()
    rows = (
        list(csv.DictReader(io.StringIO(text)))
        if fmt == "csv"
        else [json.loads(line) for line in text.splitlines()]
    )
    assert len(rows) == last.grants
    found = [
        r for r in rows if r["user_id"] == str(buyer) and r["entitlement_id"] == "role:4:member"
    ]
    assert found and found[0]["login"] == sandbox.state.users[buyer]["login"]
    assert found[0]["resource_name"] == "Buyer"


def test_doctor_reports_mode_scopes_and_round_trip(
    tmp_path: Path, coupa_sandbox: CoupaSandbox, coupa_sandbox_server: SandboxServer
) -> None:
    tenants = _tenants(tmp_path, coupa_sandbox_server.url)
    result = CliRunner().invoke(main, ["doctor", "--tenants", str(tenants), "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["mode"]["mode"] == "provisioning"
    assert report["round_trip_ms"]["probes"] == 5 and report["round_trip_ms"]["median"] > 0
    assert report["rate_limit"]["headroom_per_s"] == 1.0
    coupa_sandbox.state.add_client(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, READ_ONLY_SCOPES)
    narrow = CliRunner().invoke(main, ["doctor", "--tenants", str(tenants), "--tenant", "acme"])
    report = json.loads(narrow.stdout)
    assert report["mode"] == {
        "mode": "read-only",
        "why": "the OAuth client lacks core.user.write, core.user_group.write",
    }
    assert report["resource_types"]["account_group"].startswith("off (grant core.accounting.read")
    coupa_sandbox.state.add_client(
        SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, READ_ONLY_SCOPES - {"core.business_entity.read"}
    )
    no_content = CliRunner().invoke(main, ["doctor", "--tenants", str(tenants), "--tenant", "acme"])
    kinds = json.loads(no_content.stdout)["resource_types"]
    assert kinds["content_group"] == "off (grant core.business_entity.read to turn it on)"
    assert kinds["role"] == "on"
    wrong = _tenants(tmp_path, coupa_sandbox_server.url, secret="nope")
    refused = CliRunner().invoke(main, ["doctor", "--tenants", str(wrong), "--tenant", "acme"])
    assert refused.exit_code == 4 and "authentication: FAILED" in refused.output


def test_progress_summary_with_eta_from_users() -> None:
    now = [100.0]
    progress = SyncProgress(live=False, interval_s=3600, err=io.StringIO(), clock=lambda: now[0])
    progress.begin("t", expected_users=100)
    for _ in range(25):
        progress.advance("t", "resources", "user")
    now[0] += 10.0
    progress.request_stats("t", requests=7, retries=1, throttled=2)
    summary = progress.summary("t")
    assert summary["users"] == 25 and summary["resources.user"] == 25
    assert (summary["requests"], summary["retries"], summary["throttled"]) == (7, 1, 2)
    assert summary["eta_s"] == 30.0  # 25 of 100 users in 10 s: 30 s to go
    assert progress._render().row_count == 1


def test_piped_progress_lines_come_at_any_log_level_with_live_request_counts() -> None:
    configure_logging(logging.WARNING)
    now = [0.0]
    err = io.StringIO()
    client_log = logging.getLogger("coupa_plugin.coupa.client")
    with SyncProgress(live=False, interval_s=5.0, err=err, clock=lambda: now[0]) as progress:
        for attempt, status in ((1, 200), (1, 429), (2, 200)):  # configure's requests
            client_log.debug(
                "request",
                extra={
                    "tenant": "t",
                    "method": "GET",
                    "path": "/api/users",
                    "status": status,
                    "attempt": attempt,
                    "elapsed_ms": 1.0,
                },
            )
        progress.begin("t", expected_users=None)  # counted requests are kept
        progress.advance("t", "resources", "user")
        assert err.getvalue() == ""  # not yet 5 s
        now[0] = 5.0
        progress.advance("t", "resources", "user")
    [line] = err.getvalue().splitlines()
    assert "logger=coupa_iga.progress msg=progress" in line
    assert "requests=3 retries=1 throttled=1" in line
    assert "users=2" in line
    assert logging.getLogger().level == logging.INFO  # restored
    # the host listens on the root logger and leaves the plugin's namespace alone
    assert logging.getLogger("coupa_plugin").level == logging.NOTSET
    assert logging.getLogger("coupa_plugin").handlers == []


def test_stamina_retry_lines_are_logfmt_and_only_when_verbose(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(logging.WARNING)
    logging.getLogger("stamina").warning("stamina.retry_scheduled")
    assert capsys.readouterr().err == ""
    configure_logging(logging.INFO)
    logging.getLogger("stamina").warning("stamina.retry_scheduled")
    assert "logger=stamina msg=stamina.retry_scheduled" in capsys.readouterr().err


def test_profile_changes_by_update_account_show_in_diff_and_report(
    tmp_path: Path, coupa_sandbox: CoupaSandbox, coupa_sandbox_server: SandboxServer
) -> None:
    tenants, snapshot = _tenants(tmp_path, coupa_sandbox_server.url), tmp_path / "s.sqlite"
    _sync(tenants, snapshot)
    uid = next(u for u in sorted(coupa_sandbox.state.users) if u > 2)
    old_lastname = coupa_sandbox.state.users[uid]["lastname"]
    changed = CliRunner().invoke(
        main,
        [
            *("provision", "--tenants", str(tenants), "--snapshot", str(snapshot)),
            *("--tenant", "acme", "--action", "update_account", "--principal", str(uid)),
            *("--attr", "lastname=Renamed", "--attr", "employee_number=E-42"),
        ],
    )
    assert changed.exit_code == 0, changed.output
    _sync(tenants, snapshot)
    diff = CliRunner().invoke(
        main, ["diff", "--snapshot", str(snapshot), "--tenant", "acme", "--format", "json"]
    )
    assert diff.exit_code == 0, diff.output
    [row] = json.loads(diff.stdout)["users_changed"]
    assert row["id"] == str(uid)
    assert f"lastname: {old_lastname} -> Renamed" in row["was"]
    assert "employee_number" in row["changed"] and "name" in row["changed"].split(", ")
    html = tmp_path / "r.html"
    report = CliRunner().invoke(
        main, ["report", "--snapshot", str(snapshot), "--tenant", "acme", "--output", str(html)]
    )
    assert report.exit_code == 0, report.output
    page = html.read_text()
    assert "Profiles changed: 1" in page and "lastname: " in page and "Renamed" in page


def test_the_live_table_fits_80_columns_without_cutting_cells() -> None:
    from rich.console import Console

    now = [0.0]
    progress = SyncProgress(live=False, err=io.StringIO(), clock=lambda: now[0])
    for tenant in ("acme-production", "b"):
        progress.begin(tenant, 20_000)
        for _ in range(12_345):
            progress.advance(tenant, "resources", "user")
        for kind in ("group", "role", "license", "content_group", "account_group"):
            for _ in range(37):
                progress.advance(tenant, "resources", kind)
        for _ in range(2_000):
            progress.request_seen(tenant, retry=False, throttled=False)
    progress.finish("b", "interrupted")
    now[0] = 4_000.0
    console = Console(file=io.StringIO(), width=80)
    console.print(progress._render())
    screen = console.file.getvalue()  # type: ignore[attr-defined]
    assert all(len(line) <= 80 for line in screen.splitlines())
    assert "…" not in screen
    for cell in ("12345/20000", "185", "after", "2000 0/s", "0/0", "67m", "interrupted"):
        assert cell in screen, cell


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_tables_on_an_80_column_terminal_wrap_instead_of_cutting(
    two_runs: tuple[Path, CoupaSandbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot, _, _ = two_runs
    monkeypatch.setenv("COLUMNS", "80")
    with SnapshotStore(snapshot) as store:
        rows = [
            {c: getattr(r, c) for c in RUN_COLUMNS} | {"scope": r.scope or "whole tenant"}
            for r in store.runs()
        ]
    out = _Terminal()
    write_rows(rows[:1], RUN_COLUMNS, "table", out)
    screen = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # the terminal's styles
    assert all(len(line) <= 80 for line in screen.splitlines())
    assert "…" not in screen
    column = RUN_COLUMNS.index("started_at")
    cells = [line.split("│")[1:-1] for line in screen.splitlines() if line.startswith("│")]
    assert "".join(c[column].strip() for c in cells) == rows[0]["started_at"]  # all of it
