"""The reference host's command line: sync (sandbox and tenants file), provision, exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from coupa_plugin.refhost._cli import main
from coupa_plugin.refhost._snapshot import SnapshotStore
from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    CoupaSandbox,
    SandboxServer,
    generate_tenant,
)


def test_sync_sandbox_writes_a_complete_snapshot(tmp_path: Path) -> None:
    snapshot = tmp_path / "s.sqlite"
    result = CliRunner().invoke(
        main, ["sync", "--sandbox", "--users", "150", "--snapshot", str(snapshot)]
    )
    assert result.exit_code == 0, result.output
    assert "sandbox/coupa: complete" in result.output
    with SnapshotStore(snapshot) as store:
        [run] = store.runs("sandbox")
        assert run.outcome == "complete" and run.resources > 150 and run.grants > 150


def _tenants_file(tmp_path: Path, url: str, secret: str = "${SANDBOX_SECRET}") -> Path:
    path = tmp_path / "tenants.toml"
    path.write_text(
        f'[tenants.acme.coupa]\nbase_url = "{url}"\nallow_insecure_base_url = true\n'
        f'client_id = "{SANDBOX_CLIENT_ID}"\nclient_secret = "{secret}"\n'
        "[tenants.off.coupa]\nenabled = false\n"
    )
    return path


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    with SandboxServer(CoupaSandbox(generate_tenant(users=60, seed=2))) as running:
        yield running


def test_sync_from_a_tenants_file_with_env_secret(tmp_path: Path, server: SandboxServer) -> None:
    path = _tenants_file(tmp_path, server.url)
    result = CliRunner().invoke(
        main,
        ["sync", "--tenants", str(path), "--snapshot", str(tmp_path / "s.sqlite")],
        env={"SANDBOX_SECRET": SANDBOX_CLIENT_SECRET},
    )
    assert result.exit_code == 0, result.output
    assert "acme/coupa: complete" in result.output and "off/" not in result.output
    assert SANDBOX_CLIENT_SECRET not in result.output


def test_exit_codes(tmp_path: Path, server: SandboxServer) -> None:
    runner = CliRunner()
    missing_env = runner.invoke(
        main, ["sync", "--tenants", str(_tenants_file(tmp_path, server.url))], env={}
    )
    assert missing_env.exit_code == 3 and "SANDBOX_SECRET is not set" in missing_env.output
    wrong = _tenants_file(tmp_path, server.url, secret="wrong-secret")
    refused = runner.invoke(
        main, ["sync", "--tenants", str(wrong), "--snapshot", str(tmp_path / "s.sqlite")]
    )
    assert refused.exit_code == 4, refused.output
    assert "wrong-secret" not in refused.output
    usage = runner.invoke(main, ["provision", "--tenant", "acme", "--action", "grant"])
    assert usage.exit_code == 2


def test_provision_command(tmp_path: Path, server: SandboxServer) -> None:
    path = _tenants_file(tmp_path, server.url, secret=SANDBOX_CLIENT_SECRET)
    path.write_text(
        path.read_text().replace(
            "[tenants.off.coupa]", f'state_dir = "{tmp_path / "state"}"\n[tenants.off.coupa]'
        )
    )
    state = server.sandbox.state
    uid = next(u for u, r in state.users.items() if u > 2 and 4 not in r["roles"])
    base = ["provision", "--tenants", str(path), "--tenant", "acme", "--principal", str(uid)]
    runner = CliRunner()
    planned = runner.invoke(
        main, [*base, "--action", "grant", "--entitlement", "role:4:member", "--dry-run"]
    )
    assert planned.exit_code == 0, planned.output
    assert json.loads(planned.stdout)["status"] == "planned"
    assert 4 not in state.users[uid]["roles"]
    applied = runner.invoke(main, [*base, "--action", "grant", "--entitlement", "role:4:member"])
    assert json.loads(applied.stdout)["status"] == "applied"
    assert 4 in state.users[uid]["roles"]
    renamed = runner.invoke(main, [*base, "--action", "update_account", "--attr", "firstname=Zed"])
    assert json.loads(renamed.stdout)["status"] == "applied"
    assert state.users[uid]["firstname"] == "Zed"
    unknown = runner.invoke(main, [*base, "--action", "grant", "--entitlement", "role:9999:member"])
    assert unknown.exit_code == 5 and "no role 9999" in unknown.output


def test_provision_command_creates_and_deactivates_a_user_group(
    tmp_path: Path, server: SandboxServer
) -> None:
    path = _tenants_file(tmp_path, server.url, secret=SANDBOX_CLIENT_SECRET)
    base = ["provision", "--tenants", str(path), "--tenant", "acme"]
    runner = CliRunner()
    created = runner.invoke(main, [*base, "--action", "create_group", "--attr", "name=Auditors"])
    assert created.exit_code == 0, created.output
    entitlement = json.loads(created.stdout)["entitlement_id"]
    [gid] = [g for g, r in server.sandbox.state.user_groups.items() if r["name"] == "Auditors"]
    assert entitlement == f"group:{gid}:member"
    deactivate = ["--action", "deactivate_group", "--entitlement", entitlement]
    gone = runner.invoke(main, [*base, *deactivate])
    assert gone.exit_code == 0, gone.output
    assert server.sandbox.state.user_groups[gid]["active"] is False
    refused = runner.invoke(
        main, [*base, "--action", "deactivate_group", "--entitlement", "role:4:member"]
    )
    assert refused.exit_code == 5 and "Coupa does not let a role be created" in refused.output
