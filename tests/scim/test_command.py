"""``coupa-iga scim``: refuses to start without a token (one error line), names a refused
tenant, serves the sandbox as a real process until SIGTERM (the token never in its debug
log), and names the ``scim`` extra when it is missing."""

# ruff: noqa: S603 - these tests start the project's own command on purpose

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from click.testing import CliRunner

from coupa_plugin.refhost._cli import main
from coupa_plugin.sandbox import SANDBOX_CLIENT_ID, CoupaSandbox, SandboxServer, generate_tenant
from tests.contract.test_extras import run
from tests.kit import ended
from tests.scim.conftest import TOKEN

CLI = str(Path(sys.executable).parent / "coupa-iga")


def test_no_token_no_server() -> None:
    for env in ({}, {"COUPA_SCIM_TOKEN": "  "}):
        result = CliRunner().invoke(main, ["scim", "--sandbox"], env=env)
        assert result.exit_code == 3
        assert result.output == (
            "error: COUPA_SCIM_TOKEN is not set: export the bearer token SCIM clients will send\n"
        )


def test_a_tenant_is_required_and_a_refused_one_is_named(tmp_path: Path) -> None:
    env = {"COUPA_SCIM_TOKEN": TOKEN}
    usage = CliRunner().invoke(main, ["scim"], env=env)
    assert usage.exit_code == 2 and "give --tenant ID (or --sandbox)" in usage.output
    with SandboxServer(CoupaSandbox(generate_tenant(users=5, seed=1))) as server:
        tenants = tmp_path / "tenants.toml"
        tenants.write_text(
            f'[tenants.acme.coupa]\nbase_url = "{server.url}"\nallow_insecure_base_url = true\n'
            f'client_id = "{SANDBOX_CLIENT_ID}"\nclient_secret = "wrong-secret"\n'
        )
        refused = CliRunner().invoke(
            main, ["scim", "--tenants", str(tenants), "--tenant", "acme", "--port", "0"], env=env
        )
    assert refused.exit_code == 4, refused.output
    assert refused.output.count("error:") == 1 and "Traceback" not in refused.output
    assert "wrong-secret" not in refused.output and TOKEN not in refused.output


def test_serves_the_sandbox_until_sigterm() -> None:
    proc = subprocess.Popen(
        [CLI, "-vv", "scim", "--sandbox", "--users", "12", "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COUPA_SCIM_TOKEN": TOKEN},
    )
    assert proc.stderr is not None
    url = None
    for line in proc.stderr:
        if " serving " in line:
            url = line.rsplit(" at ", 1)[1].strip()
            break
    assert url is not None and url.startswith("http://127.0.0.1:")
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        users = httpx.get(f"{url}/Users", headers=headers, params={"count": 1}, timeout=30)
        assert users.status_code == 200 and users.json()["totalResults"] == 14
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = ended(proc)
    assert proc.returncode == 143
    assert "interrupted (SIGTERM)" in rest and "Traceback" not in rest
    assert TOKEN not in rest


def test_without_the_scim_extra_the_command_names_it() -> None:
    out = run(
        """
        import os
        from click.testing import CliRunner
        from coupa_plugin.refhost._cli import main
        os.environ["COUPA_SCIM_TOKEN"] = "t"
        result = CliRunner().invoke(main, ["scim", "--sandbox", "--users", "3", "--port", "0"])
        print(result.exit_code, result.output.splitlines()[-1])
        """,
        blocked=("scim2_server", "scim2_models"),
    )
    assert out.startswith("rc=0\n2 Error: coupa-iga scim needs the scim extra: "), out
    assert "pip install 'coupa-plugin[scim]'" in out
