"""The reference host as a review tool: partial runs, complete exports, queries, conventions."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from coupa_plugin.connector._settings import parse_settings
from coupa_plugin.host.errors import ConfigurationError
from coupa_plugin.refhost._cli import main
from coupa_plugin.refhost._snapshot import SnapshotStore
from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    CoupaSandbox,
    SandboxServer,
)


def _tenants(tmp_path: Path, url: str, extra: str = "") -> Path:
    path = tmp_path / "tenants.toml"
    path.write_text(
        f'[tenants.acme.coupa]\nbase_url = "{url}"\nallow_insecure_base_url = true\n'
        f'client_id = "{SANDBOX_CLIENT_ID}"\nclient_secret = "{SANDBOX_CLIENT_SECRET}"\n'
        f'state_dir = "{tmp_path / "state"}"\n{extra}'
    )
    return path


def _run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


@pytest.fixture
def setup(
    tmp_path: Path, coupa_sandbox: CoupaSandbox, coupa_sandbox_server: SandboxServer
) -> tuple[Path, Path, CoupaSandbox]:
    """A tenants file for the sandbox and a snapshot holding one complete full run."""
    tenants, snapshot = _tenants(tmp_path, coupa_sandbox_server.url), tmp_path / "s.sqlite"
    result = _run("sync", "--tenants", str(tenants), "--snapshot", str(snapshot))
    assert result.exit_code == 0, result.output
    return tenants, snapshot, coupa_sandbox


def test_an_unknown_type_is_refused_and_records_nothing(
    setup: tuple[Path, Path, CoupaSandbox],
) -> None:
    tenants, snapshot, _ = setup
    result = _run("sync", "--tenants", str(tenants), "--snapshot", str(snapshot), "--type", "roles")
    assert result.exit_code == 2, result.output
    assert "['roles']" in result.stderr and "'role'" in result.stderr
    with SnapshotStore(snapshot) as store:
        assert len(store.runs()) == 1


def test_a_run_narrowed_by_type_is_partial_and_never_picked_by_default(
    setup: tuple[Path, Path, CoupaSandbox],
) -> None:
    tenants, snapshot, _ = setup
    common = ["--snapshot", str(snapshot), "--tenant", "acme"]
    narrowed = _run(
        "sync", "--tenants", str(tenants), "--snapshot", str(snapshot), "--type", "role"
    )
    assert narrowed.exit_code == 0, narrowed.output
    with SnapshotStore(snapshot) as store:
        full, partial = store.runs("acme")
    assert partial.partial and partial.scope == "types=role" and not full.partial
    diff = _run("diff", *common)
    assert diff.exit_code == 3
    assert "1 complete full run(s)" in diff.stderr and "1 partial run(s) skipped" in diff.stderr
    export = _run("export", *common, "--format", "json")
    assert export.exit_code == 0, export.output
    assert {r["run_id"] for r in json.loads(export.stdout)} == {full.run_id}
    named = _run("export", *common, "--run", str(partial.run_id))
    assert named.exit_code == 3 and "partial (types=role)" in named.stderr
    assert "--allow-partial" in named.stderr
    allowed = _run("export", *common, "--run", str(partial.run_id), "--allow-partial")
    assert allowed.exit_code == 0, allowed.output
    both = _run(
        "diff", *common, "--from", str(full.run_id), "--to", str(partial.run_id), "--allow-partial"
    )
    assert both.exit_code == 0, both.output
    listing = _run("runs", "--snapshot", str(snapshot), "--format", "csv")
    scopes = [row["scope"] for row in csv.DictReader(io.StringIO(listing.stdout))]
    assert scopes == ["whole tenant", "types=role"]


def test_since_takes_iso_8601_with_zone(setup: tuple[Path, Path, CoupaSandbox]) -> None:
    tenants, snapshot, _ = setup
    base = ["sync", "--tenants", str(tenants), "--snapshot", str(snapshot), "--since"]
    for value in ("2020-01-01T00:00:00Z", "2020-01-01T02:00:00+02:00", "2020-01-01"):
        assert _run(*base, value).exit_code == 0
    with SnapshotStore(snapshot) as store:
        kinds = [(r.kind, r.scope) for r in store.runs("acme")[1:]]
    assert kinds == [("incremental", "since=2020-01-01T00:00:00+00:00")] * 3
    bad = _run(*base, "yesterday")
    assert bad.exit_code == 2 and "ISO 8601" in bad.stderr


def test_export_lists_every_account_with_risk_columns(
    setup: tuple[Path, Path, CoupaSandbox],
) -> None:
    tenants, snapshot, sandbox = setup
    state = sandbox.state
    idle = next(u for u in sorted(state.users) if u > 2 and state.users[u]["active"])
    user = state.users[idle]
    for key in ("roles", "content-groups", "account-groups", "approval-groups"):
        user[key] = []
    for flag in [k for k, v in user.items() if k.endswith("-user") and v is True]:
        user[flag] = False
    state.set_user_groups(idle, ())
    state.touch()
    assert _run("sync", "--tenants", str(tenants), "--snapshot", str(snapshot)).exit_code == 0
    result = _run("export", "--snapshot", str(snapshot), "--tenant", "acme")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {"tenant_id", "run_started_at", "api_user", "employee_number", "manager_login"} <= set(
        rows[0]
    )
    mine = [r for r in rows if r["user_id"] == str(idle)]
    assert len(mine) == 1 and mine[0]["entitlement_id"] == "" and mine[0]["tenant_id"] == "acme"
    assert {r["user_id"] for r in rows} == {str(u) for u in state.users}
    admins = [r for r in rows if r["entitlement_id"] == "role:2:member"]
    assert admins and all(r["privileged"] == "true" for r in admins)
    assert {r["privileged"] for r in rows if r["entitlement_id"] == "role:3:member"} == {"false"}
    api = {str(u) for u, rec in state.users.items() if rec.get("api-user")}
    assert api and {r["user_id"] for r in rows if r["api_user"] == "true"} == api


def test_diff_flags_privileged_changes(setup: tuple[Path, Path, CoupaSandbox]) -> None:
    tenants, snapshot, sandbox = setup
    state = sandbox.state
    buyer = next(u for u in sorted(state.users) if u > 2 and 2 not in state.users[u]["roles"])
    state.users[buyer]["roles"] = sorted({*state.users[buyer]["roles"], 2})
    state.touch()
    assert _run("sync", "--tenants", str(tenants), "--snapshot", str(snapshot)).exit_code == 0
    result = _run("diff", "--snapshot", str(snapshot), "--tenant", "acme", "--format", "json")
    report = json.loads(result.stdout)
    assert report["privileged_grants_added"] == 1
    [added] = [g for g in report["grants_added"] if g["privileged"]]
    assert (added["entitlement_id"], added["principal_id"]) == ("role:2:member", str(buyer))
    table = _run("diff", "--snapshot", str(snapshot), "--tenant", "acme")
    assert "PRIVILEGED grants added" in table.stdout


def test_query_commands(setup: tuple[Path, Path, CoupaSandbox]) -> None:
    _, snapshot, sandbox = setup
    common = ["--snapshot", str(snapshot), "--tenant", "acme"]
    admin = next(u for u in sorted(sandbox.state.users) if 2 in sandbox.state.users[u]["roles"])
    login = sandbox.state.users[admin]["login"]
    access = _run("access", *common, "--user", login.upper(), "--format", "json")
    assert access.exit_code == 0, access.output
    held = {r["entitlement_id"]: r for r in json.loads(access.stdout)}
    assert held["role:2:member"]["privileged"] is True and held["role:2:member"]["entitlement"]
    by_id = _run("access", *common, "--user", str(admin), "--format", "json")
    assert json.loads(by_id.stdout) == json.loads(access.stdout)
    holders = _run("grants", *common, "--entitlement", "role:2:member", "--format", "csv")
    assert str(admin) in {r["user_id"] for r in csv.DictReader(io.StringIO(holders.stdout))}
    roles = _run("resources", *common, "--type", "role", "--format", "json")
    assert {r["id"] for r in json.loads(roles.stdout)} == {str(r) for r in sandbox.state.roles}
    table = _run("resources", *common, "--type", "role")
    assert table.stdout.splitlines()[1].split("┃")[1].strip() == "type"  # a header row
    assert _run("access", *common, "--user", "nobody-here").exit_code == 5
    assert _run("grants", *common, "--entitlement", "role:999:member").exit_code == 5
    assert _run("resources", *common, "--type", "roles").exit_code == 2  # usage: no such type


def test_provision_by_login_and_policy_refusal_exit_5(
    tmp_path: Path, setup: tuple[Path, Path, CoupaSandbox]
) -> None:
    _, snapshot, sandbox = setup
    state = sandbox.state
    uid = next(u for u in sorted(state.users) if u > 2 and 4 not in state.users[u]["roles"])
    login = state.users[uid]["login"]
    tenants = _tenants(tmp_path, sandbox_url(setup), extra=f'protected_logins = ["{login}"]\n')
    base = ["provision", "--tenants", str(tenants), "--snapshot", str(snapshot), "--tenant", "acme"]
    refused = _run(
        *base, "--principal", login, "--action", "grant", "--entitlement", "role:4:member"
    )
    assert refused.exit_code == 5, refused.output
    assert "protected_logins" in refused.stderr and f"is user {uid}" in refused.stderr
    assert 4 not in state.users[uid]["roles"]
    unknown = _run(*base, "--principal", "no.such.login", "--action", "enable_account")
    assert unknown.exit_code == 5 and "sync the tenant first" in unknown.stderr


def sandbox_url(setup: tuple[Path, Path, CoupaSandbox]) -> str:
    tenants, _, _ = setup
    return tenants.read_text().split('base_url = "')[1].split('"')[0]


def test_conventions_version_verbose_env_and_formats(
    tmp_path: Path, setup: tuple[Path, Path, CoupaSandbox]
) -> None:
    tenants, snapshot, _ = setup
    version = _run("--version")
    assert version.exit_code == 0 and version.stdout.startswith("coupa-iga, version ")
    env = {"COUPA_IGA_TENANTS": str(tenants), "COUPA_IGA_SNAPSHOT": str(snapshot)}
    synced = _run("sync", "-v", "--format", "json", env=env)  # -v after the subcommand
    assert synced.exit_code == 0, synced.output
    [row] = json.loads(synced.stdout)
    assert row["outcome"] == "complete" and row["users"] == len(setup[2].state.users)
    assert 'msg="scopes negotiated"' in synced.stderr
    quiet = _run("sync", env=env)
    assert "scopes negotiated" not in quiet.stderr
    logged = _run("sync", env={**env, "COUPA_IGA_LOG_LEVEL": "info"})
    assert "scopes negotiated" in logged.stderr
    assert _run("runs", env={**env, "COUPA_IGA_LOG_LEVEL": "loud"}).exit_code == 2
    listing = _run("runs", env=env)
    assert listing.stdout.splitlines()[1].split("┃")[1].strip() == "run_id"
    as_json = json.loads(_run("runs", "--format", "json", env=env).stdout)
    assert [r["outcome"] for r in as_json] == ["complete"] * 4
    assert json.loads(_run("plugins", "--format", "json").stdout) == [{"plugin": "coupa"}]


def test_silent_cases_now_fail_loudly(
    tmp_path: Path, setup: tuple[Path, Path, CoupaSandbox]
) -> None:
    tenants, snapshot, _ = setup
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    result = _run("sync", "--tenants", str(empty), "--snapshot", str(snapshot))
    assert result.exit_code == 3 and "defines no tenants" in result.stderr
    disabled = tmp_path / "off.toml"
    disabled.write_text("[tenants.a.coupa]\nenabled = false\n")
    result = _run("sync", "--tenants", str(disabled), "--snapshot", str(snapshot))
    assert result.exit_code == 3 and "no tenant enables a plugin" in result.stderr
    result = _run("sync", "--tenants", str(tenants), "--snapshot", str(snapshot), "--tenant", "x")
    assert result.exit_code == 3 and "unknown tenant(s) ['x']" in result.stderr
    result = _run("runs", "--snapshot", str(snapshot), "--tenant", "x")
    assert result.exit_code == 3 and "no runs of tenant 'x'" in result.stderr
    result = _run("sync", "--tenants", str(tenants), "--snapshot", str(snapshot), "--user", "99999")
    assert result.exit_code == 5 and "no user with id(s) ['99999']" in result.stderr


def test_bad_files_get_messages_not_tracebacks(
    tmp_path: Path, setup: tuple[Path, Path, CoupaSandbox]
) -> None:
    _, snapshot, _ = setup
    out = tmp_path / "missing" / "x.csv"
    result = _run("export", "--snapshot", str(snapshot), "--tenant", "acme", "--output", str(out))
    assert result.exit_code == 3 and "cannot write" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    result = _run("runs", "--snapshot", str(junk))
    assert result.exit_code == 3 and "not a snapshot file" in result.stderr
    assert isinstance(result.exception, SystemExit)


def test_a_snapshot_from_before_interrupted_runs_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with SnapshotStore(path):
        pass
    conn = sqlite3.connect(path)
    [sql] = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'runs'").fetchone()
    conn.executescript(
        "DROP TABLE runs;" + sql.replace(", 'interrupted')", ")") + ";"  # noqa: S608 - the schema text itself
        "INSERT INTO runs (tenant_id, plugin, kind, request, started_at, outcome)"
        " VALUES ('a', 'coupa', 'full', '{}', 'then', 'complete');"
    )
    conn.close()
    with SnapshotStore(path) as store:
        [run] = store.runs()
        assert run.outcome == "complete"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE runs SET outcome = 'interrupted'")  # the CHECK now allows it
    conn.close()
    with SnapshotStore(path) as store:
        assert store.runs()[0].outcome == "interrupted"


def test_settings_report_every_problem_and_warn_above_coupas_rate(
    tmp_path: Path, coupa_sandbox_server: SandboxServer
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_settings({"domain": "acme.coupahost.com", "timeout_s": "x", "max_in_flight": -1})
    message = str(caught.value)
    assert "client_id: required" in message and "timeout_s:" in message
    assert "max_in_flight:" in message
    tenants = _tenants(tmp_path, coupa_sandbox_server.url, extra="requests_per_second = 40\n")
    result = _run("sync", "--tenants", str(tenants), "--snapshot", str(tmp_path / "s.sqlite"))
    assert result.exit_code == 0, result.output
    assert "requests_per_second 40 is above Coupa's documented limit of 25" in result.stderr


def test_provision_and_doctor_print_tables_too(
    tmp_path: Path, setup: tuple[Path, Path, CoupaSandbox]
) -> None:
    tenants, snapshot, sandbox = setup
    uid = next(u for u in sorted(sandbox.state.users) if u > 2)
    planned = _run(
        "provision",
        *("--tenants", str(tenants), "--snapshot", str(snapshot), "--tenant", "acme"),
        *("--principal", str(uid), "--action", "disable_account", "--dry-run"),
        *("--format", "csv"),
    )
    assert planned.exit_code == 0, planned.output
    rows = {r["key"]: r["value"] for r in csv.DictReader(io.StringIO(planned.stdout))}
    assert rows["status"] == "planned" and rows["principal_id"] == str(uid)
    doctor = _run("doctor", "--tenants", str(tenants), "--tenant", "acme", "--format", "table")
    assert doctor.exit_code == 0 and "acme/coupa: ok" in doctor.stderr
    assert "round_trip_ms" in doctor.stdout and "┃ key" in doctor.stdout
