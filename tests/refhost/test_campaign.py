"""``coupa-iga review``: a campaign from start to evidence on the sandbox, with keeps and
revokes, a refusal, an apply interrupted and resumed, verification and evidence."""

# ruff: noqa: S603 - the interrupted apply runs the project's own command as a real process

from __future__ import annotations

import csv
import hashlib
import io
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from coupa_plugin.refhost._campaign import (
    Campaign,
    CampaignStore,
    parse_decisions,
    population_csv,
    write_campaign_csv,
)
from coupa_plugin.refhost._cli import main
from coupa_plugin.refhost._errors import DecisionsError
from coupa_plugin.refhost._snapshot import SnapshotStore
from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    CoupaSandbox,
    SandboxServer,
)
from tests.kit import ended

CLI = str(Path(sys.executable).parent / "coupa-iga")


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _setup(tmp_path: Path, url: str, extra: str = "") -> tuple[Path, Path]:
    tenants, snapshot = tmp_path / "tenants.toml", tmp_path / "s.sqlite"
    tenants.write_text(
        f'[tenants.acme.coupa]\nbase_url = "{url}"\nallow_insecure_base_url = true\n'
        f'client_id = "{SANDBOX_CLIENT_ID}"\nclient_secret = "{SANDBOX_CLIENT_SECRET}"\n'
        f'state_dir = "{tmp_path / "state"}"\nprotected_logins = ["coupasupport"]\n{extra}'
    )
    synced = _run("sync", "--tenants", str(tenants), "--snapshot", str(snapshot))
    assert synced.exit_code == 0, synced.output
    return tenants, snapshot


def _start(snapshot: Path, out: Path) -> tuple[int, list[dict[str, str]]]:
    started = _run(
        "review", "start", "--snapshot", str(snapshot), "--tenant", "acme", "--output", str(out)
    )
    assert started.exit_code == 0, started.output
    with out.open(newline="") as handle:
        return int(started.stdout.strip()), list(csv.DictReader(handle))


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _decide(rows: list[dict[str, str]], revoke: set[tuple[str, str]]) -> list[dict[str, str]]:
    return [
        r
        | {
            "decision": "revoke" if (r["user_id"], r["entitlement_id"]) in revoke else "keep",
            "reviewer": "maria.lopez",
            "comment": "left the team" if (r["user_id"], r["entitlement_id"]) in revoke else "",
        }
        for r in rows
    ]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.coupa_sandbox(users=60)
def test_a_campaign_from_start_to_evidence(
    tmp_path: Path, coupa_sandbox: CoupaSandbox, coupa_sandbox_server: SandboxServer
) -> None:
    tenants, snapshot = _setup(tmp_path, coupa_sandbox_server.url)
    campaign_id, rows = _start(snapshot, tmp_path / "campaign.csv")
    state = coupa_sandbox.state
    # the population: one row per account and entitlement held, every grant of the run
    with SnapshotStore(snapshot) as store:
        [run] = store.runs()
        assert len(rows) == run.grants
        campaign = CampaignStore(store).get(campaign_id)
    assert campaign.rows == len(rows) and campaign.run_id == run.run_id
    assert {r["decision"] for r in rows} == {""}

    # revoke: the protected support account's admin role (refused by policy) and grants of
    # three ordinary users; keep everything else
    admin = next(
        r for r in rows if r["login"] == "coupasupport" and r["entitlement_id"] == "role:2:member"
    )
    ordinary = [
        r for r in rows if int(r["user_id"]) > 2 and r["resource_type"] in {"role", "group"}
    ]
    chosen = ordinary[:5]
    revoke = {(r["user_id"], r["entitlement_id"]) for r in [admin, *chosen]}
    decisions = tmp_path / "decisions.csv"
    _write(decisions, _decide(rows, revoke))

    # a dry run plans every revoke and records nothing
    planned = _run(
        "review", "apply", "--tenants", str(tenants), "--snapshot", str(snapshot),
        "--campaign", str(campaign_id), "--decisions", str(decisions), "--dry-run",
        "--format", "json",
    )  # fmt: skip
    assert planned.exit_code == 5, planned.output  # the plan includes a refusal
    plan = {(r["user_id"], r["entitlement_id"]): r["status"] for r in json.loads(planned.stdout)}
    assert plan.pop((admin["user_id"], "role:2:member")) == "refused"
    assert set(plan) == revoke - {(admin["user_id"], "role:2:member")}
    assert set(plan.values()) == {"planned"}
    # without --yes and without a terminal, nothing is written
    unconfirmed = _run(
        "review", "apply", "--tenants", str(tenants), "--snapshot", str(snapshot),
        "--campaign", str(campaign_id), "--decisions", str(decisions),
    )  # fmt: skip
    assert unconfirmed.exit_code == 2 and "--yes" in unconfirmed.stderr
    with SnapshotStore(snapshot) as store:
        assert CampaignStore(store).actions(campaign_id) == []

    # the apply is stopped by SIGTERM after its first item, then resumed: Coupa answers slowly
    # while it runs, so the signal arrives with items still to do
    coupa_sandbox.ops.latency_s = (0.15, 0.15)
    proc = subprocess.Popen(
        [
            CLI, "review", "apply", "--tenants", str(tenants), "--snapshot", str(snapshot),
            "--campaign", str(campaign_id), "--decisions", str(decisions), "--yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("[1/"):
            break
    proc.send_signal(signal.SIGTERM)
    rest = ended(proc)
    coupa_sandbox.ops.latency_s = (0.0, 0.0)
    assert proc.returncode == 143, rest
    assert "interrupted (SIGTERM)" in rest and "Traceback" not in rest
    assert "run the same command again" in rest
    with SnapshotStore(snapshot) as store:
        done_before = len(CampaignStore(store).actions(campaign_id))
    assert 1 <= done_before < len(revoke)

    resumed = _run(
        "review", "apply", "--tenants", str(tenants), "--snapshot", str(snapshot),
        "--campaign", str(campaign_id), "--decisions", str(decisions), "--yes",
        "--format", "json",
    )  # fmt: skip
    assert resumed.exit_code == 5, resumed.output  # the refusal is reported
    assert resumed.stderr.count("done before") == done_before
    statuses = {
        (r["user_id"], r["entitlement_id"]): r["status"] for r in json.loads(resumed.stdout)
    }
    assert set(statuses) == revoke
    assert statuses[(admin["user_id"], "role:2:member")] == "refused"
    assert {statuses[k] for k in revoke - {(admin["user_id"], "role:2:member")}} <= {
        "applied",
        "unchanged",
    }
    # Coupa holds none of the applied revokes any more; the refused one is untouched
    assert 2 in state.users[int(admin["user_id"])]["roles"]

    # someone puts one revoked role back and grants another user a new role before verify
    back = next(r for r in chosen if r["resource_type"] == "role")
    back_user, back_role = int(back["user_id"]), int(back["entitlement_id"].split(":")[1])
    state.users[back_user]["roles"] = sorted({*state.users[back_user]["roles"], back_role})
    reviewed = {r["entitlement_id"] for r in rows if r["user_id"] == back["user_id"]}
    gained_role = next(r for r in sorted(state.roles) if f"role:{r}:member" not in reviewed)
    state.users[back_user]["roles"] = sorted({*state.users[back_user]["roles"], gained_role})
    state.touch()

    verified = _run(
        "review", "verify", "--tenants", str(tenants), "--snapshot", str(snapshot),
        "--campaign", str(campaign_id), "--format", "json",
    )  # fmt: skip
    assert verified.exit_code == 1, verified.output  # not every revoke holds
    checks = {(c["user_id"], c["entitlement_id"]): c for c in json.loads(verified.stdout)}
    assert checks[(back["user_id"], back["entitlement_id"])]["result"] == "regained"
    assert checks[(admin["user_id"], "role:2:member")]["result"] == "not_removed"
    assert "refused" in checks[(admin["user_id"], "role:2:member")]["detail"]
    others = revoke - {
        (back["user_id"], back["entitlement_id"]),
        (admin["user_id"], "role:2:member"),
    }
    assert {checks[k]["result"] for k in others} == {"removed"}
    assert checks[(back["user_id"], f"role:{gained_role}:member")]["result"] == "gained"

    evidence = tmp_path / "evidence"
    written = _run(
        "review",
        "evidence",
        "--snapshot",
        str(snapshot),
        "--campaign",
        str(campaign_id),
        "--output",
        str(evidence),
    )
    assert written.exit_code == 0, written.output
    manifest = json.loads((evidence / "manifest.json").read_text())["sha256"]
    assert set(manifest) >= {
        "campaign.json", "population.csv", "population.json", "decisions.csv",
        "decisions-as-submitted.csv", "remediation.csv", "remediation.json",
        "verification.csv", "verification.json", f"report-run-{run.run_id}.html", "summary.txt",
    }  # fmt: skip
    for name, digest in manifest.items():
        assert _sha256(evidence / name) == digest, name
        assert (evidence / name).stat().st_mode & 0o077 == 0
    facts = json.loads((evidence / "campaign.json").read_text())
    assert facts["sha256"] == _sha256(evidence / "population.csv") == campaign.sha256
    assert facts["decisions_sha256"] == _sha256(evidence / "decisions-as-submitted.csv")
    assert facts["decisions_sha256"] == _sha256(decisions)
    assert facts["decisions"] == {"keep": len(rows) - len(revoke), "revoke": len(revoke)}
    remediation = list(csv.DictReader(io.StringIO((evidence / "remediation.csv").read_text())))
    assert {(r["user_id"], r["entitlement_id"]) for r in remediation} == revoke
    sums = (evidence / "manifest.sha256").read_text()
    checked = subprocess.run(
        ["sha256sum", "-c", "--quiet", "manifest.sha256"],  # noqa: S607 - coreutils
        cwd=evidence, check=False, capture_output=True, text=True,
    )  # fmt: skip
    assert checked.returncode == 0 and sums.count("\n") == len(manifest)


def _campaign(
    tmp_path: Path, url: str, extra: str = ""
) -> tuple[Path, Path, int, list[dict[str, str]]]:
    tenants, snapshot = _setup(tmp_path, url, extra)
    campaign_id, rows = _start(snapshot, tmp_path / "campaign.csv")
    return tenants, snapshot, campaign_id, rows


def _apply(tenants: Path, snapshot: Path, campaign_id: int, decisions: Path, *more: str) -> Result:
    return _run(
        "review", "apply", "--tenants", str(tenants), "--snapshot", str(snapshot),
        "--campaign", str(campaign_id), "--decisions", str(decisions), *more,
    )  # fmt: skip


@pytest.mark.coupa_sandbox(users=20)
def test_a_decisions_file_that_does_not_match_is_refused_with_line_numbers(
    tmp_path: Path, coupa_sandbox_server: SandboxServer
) -> None:
    tenants, snapshot, campaign_id, rows = _campaign(tmp_path, coupa_sandbox_server.url)
    decided = _decide(rows, set())
    decided[0] = decided[0] | {"reviewer": ""}  # line 2: no reviewer
    decided[1] = decided[1] | {"user_name": "Someone Else"}  # line 3: changed
    decided[2] = decided[2] | {"entitlement_id": "role:999:member"}  # line 4: unknown
    decided[3] = decided[3] | {"decision": "maybe"}  # line 5: not a decision
    decided.append(dict(decided[5]))  # the last line repeats line 7
    decisions = tmp_path / "decisions.csv"
    _write(decisions, decided)
    refused = _apply(tenants, snapshot, campaign_id, decisions, "--yes")
    assert refused.exit_code == 2, refused.output
    [line] = [x for x in refused.stderr.splitlines() if x.startswith("error:")]
    assert "line 2: no reviewer" in line
    assert "line 3: changed column(s) ['user_name']" in line
    assert "line 4: unknown row" in line and "role:999:member" in line
    assert "line 5: decision 'maybe' is not keep or revoke" in line
    assert f"line {len(decided) + 1}: the same row as line 7" in line
    assert "1 row(s) of the campaign are missing" in line  # line 4's real row
    assert line.endswith("nothing was applied")
    with SnapshotStore(snapshot) as store:
        cstore = CampaignStore(store)
        assert cstore.actions(campaign_id) == [] and cstore.decisions(campaign_id) == []


@pytest.mark.coupa_sandbox(users=20)
def test_a_campaign_keeps_the_decisions_of_its_first_apply(
    tmp_path: Path, coupa_sandbox_server: SandboxServer
) -> None:
    tenants, snapshot, campaign_id, rows = _campaign(tmp_path, coupa_sandbox_server.url)
    first = tmp_path / "first.csv"
    _write(first, _decide(rows, set()))
    kept = _apply(tenants, snapshot, campaign_id, first, "--yes")
    assert kept.exit_code == 0, kept.output
    assert "nothing to revoke" in kept.stderr
    other = tmp_path / "other.csv"
    _write(other, _decide(rows, {(rows[-1]["user_id"], rows[-1]["entitlement_id"])}))
    changed = _apply(tenants, snapshot, campaign_id, other, "--yes")
    assert changed.exit_code == 2 and "another decisions file" in changed.stderr
    unknown = _run(
        "review",
        "verify",
        "--snapshot",
        str(snapshot),
        "--tenants",
        str(tenants),
        "--campaign",
        "99",
    )
    assert unknown.exit_code == 5 and "no campaign 99" in unknown.stderr


@pytest.mark.coupa_sandbox(users=20)
def test_a_read_only_tenant_is_refused_before_anything_is_written(
    tmp_path: Path, coupa_sandbox: CoupaSandbox, coupa_sandbox_server: SandboxServer
) -> None:
    tenants, snapshot, campaign_id, rows = _campaign(
        tmp_path, coupa_sandbox_server.url, 'mode = "read-only"\n'
    )
    last = rows[-1]
    decisions = tmp_path / "decisions.csv"
    _write(decisions, _decide(rows, {(last["user_id"], last["entitlement_id"])}))
    before = coupa_sandbox.state.users[int(last["user_id"])].copy()
    refused = _apply(tenants, snapshot, campaign_id, decisions, "--yes")
    assert refused.exit_code == 5, refused.output
    assert "read-only mode" in refused.stderr and "Traceback" not in refused.output
    assert coupa_sandbox.state.users[int(last["user_id"])] == before
    with SnapshotStore(snapshot) as store:
        cstore = CampaignStore(store)
        assert cstore.actions(campaign_id) == [] and cstore.decisions(campaign_id) == []


@settings(max_examples=40, deadline=None)
@given(
    column=st.sampled_from(["user_id", "login", "user_name", "user_status", "entitlement_id",
                            "entitlement", "resource_type", "privileged"]),
    junk=st.text(min_size=1, max_size=8),
    position=st.integers(min_value=0, max_value=3),
)  # fmt: skip
def test_any_edited_identity_cell_is_refused_with_its_line(
    column: str, junk: str, position: int
) -> None:
    population = [
        {"user_id": str(u), "login": f"user{u}", "user_name": f"User {u}", "user_status": "enabled",
         "entitlement_id": f"role:{u}:member", "entitlement": f"Role {u}", "resource_type": "role",
         "privileged": False}
        for u in range(1, 5)
    ]  # fmt: skip
    campaign = Campaign(
        campaign_id=7, tenant_id="t", plugin="coupa", run_id=1, created_at="x", rows=4,
        accounts=4, sha256=hashlib.sha256(population_csv(population).encode()).hexdigest(),
    )  # fmt: skip
    out = io.StringIO()
    write_campaign_csv(campaign, population, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    decided = _decide(rows, set())
    original = decided[position][column]
    assume(original != original + junk)
    decided[position] = decided[position] | {column: original + junk}
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(decided[0]))
    writer.writeheader()
    writer.writerows(decided)
    with pytest.raises(DecisionsError) as caught:
        parse_decisions(text.getvalue(), campaign, population)
    assert f"line {position + 2}: " in str(caught.value)
    assert str(caught.value).endswith("nothing was applied")
    # the same file unedited is accepted, every row a keep by its reviewer
    clean = io.StringIO()
    writer = csv.DictWriter(clean, fieldnames=list(decided[0]))
    writer.writeheader()
    writer.writerows(_decide(rows, set()))
    accepted = parse_decisions(clean.getvalue(), campaign, population)
    assert [(d.decision, d.reviewer) for d in accepted] == [("keep", "maria.lopez")] * 4


def test_the_population_hash_is_the_hash_of_its_csv() -> None:
    rows: list[dict[str, Any]] = [
        {"user_id": "3", "login": "=cmd", "user_name": "A\x1b]0;x\x07", "user_status": "enabled",
         "entitlement_id": "role:2:member", "entitlement": "Admin", "resource_type": "role",
         "privileged": True},
    ]  # fmt: skip
    text = population_csv(rows)
    assert text.splitlines()[1] == "3,'=cmd,A\ufffd]0;x\ufffd,enabled,role:2:member,Admin,role,true"
    assert population_csv(rows) == text  # deterministic
