"""``coupa-iga`` as a real process: signals, pipes, and the live display in a real terminal
(tmux), plus the sandbox command line's errors."""

# ruff: noqa: S603, S607 - these tests start the project's own command and tmux on purpose

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
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
)
from coupa_plugin.sandbox.__main__ import main as sandbox_main
from tests.kit import ended

CLI = str(Path(sys.executable).parent / "coupa-iga")


def _tenant_section(name: str, url: str, secret: str = SANDBOX_CLIENT_SECRET) -> str:
    return (
        f'[tenants.{name}.coupa]\nbase_url = "{url}"\nallow_insecure_base_url = true\n'
        f'client_id = "{SANDBOX_CLIENT_ID}"\nclient_secret = "{secret}"\n'
    )


@pytest.mark.coupa_sandbox(users=400, operations={"latency_s": (0.2, 0.2)})
@pytest.mark.parametrize(
    ("signum", "more", "codes"),
    [
        (signal.SIGTERM, (), {143}),
        (signal.SIGINT, (), {130}),
        # `timeout` signals the child and its group; a double Ctrl-C. Signals pending together
        # are handled lowest number first, so either may win: the process exits with that
        # one's code instead of dying by the other
        (signal.SIGTERM, (signal.SIGTERM, signal.SIGINT), {130, 143}),
        (signal.SIGINT, (signal.SIGINT, signal.SIGTERM), {130, 143}),
    ],
)
def test_a_signal_marks_the_run_interrupted(
    tmp_path: Path,
    coupa_sandbox_server: SandboxServer,
    signum: int,
    more: tuple[int, ...],
    codes: set[int],
) -> None:
    tenants, snapshot = tmp_path / "t.toml", tmp_path / "s.sqlite"
    tenants.write_text(_tenant_section("acme", coupa_sandbox_server.url))
    proc = subprocess.Popen(
        [CLI, "sync", "-vv", "--tenants", str(tenants), "--snapshot", str(snapshot)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    # wait until the user pass has started (no timing involved): configure reads the license
    # flags first (the newest users' page and one unfiltered record), the pass sends the third
    # request to /api/users
    seen = 0
    for line in proc.stderr:
        seen += "path=/api/users" in line
        if seen == 3:
            break
    for sig in (signum, *more):
        proc.send_signal(sig)
    rest = ended(proc)
    code = proc.returncode
    assert code in codes
    assert f"interrupted ({signal.Signals(code - 128).name})" in rest
    assert "Traceback" not in rest and "Exception ignored" not in rest
    with SnapshotStore(snapshot) as store:
        [run] = store.runs()
    assert run.outcome == "interrupted" and run.grants == 0 and run.ended_at is not None


@pytest.mark.coupa_sandbox(users=300)
def test_output_piped_to_head_exits_0(tmp_path: Path, coupa_sandbox_server: SandboxServer) -> None:
    tenants, snapshot = tmp_path / "t.toml", tmp_path / "s.sqlite"
    tenants.write_text(_tenant_section("acme", coupa_sandbox_server.url))
    synced = CliRunner().invoke(
        main, ["sync", "--tenants", str(tenants), "--snapshot", str(snapshot)]
    )
    assert synced.exit_code == 0, synced.output
    size = len(
        CliRunner().invoke(main, ["export", "--snapshot", str(snapshot), "--tenant", "acme"]).stdout
    )
    assert size > 256 * 1024  # far more than a pipe holds, so the writer meets a closed pipe
    script = (
        f"{CLI} export --snapshot {snapshot} --tenant acme | head -1 >/dev/null; "
        'echo "status=${PIPESTATUS[0]}"'
    )
    done = subprocess.run(
        ["bash", "-c", script], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "status=0", done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


@pytest.fixture
def tmux() -> Iterator[list[str]]:
    """A private tmux server (its own socket) with one 150x50 window running bash."""
    if shutil.which("tmux") is None:
        pytest.skip(
            "tmux is not installed (apt-get install -y tmux): the live display test "
            "needs a real terminal"
        )
    base = ["tmux", "-L", f"coupa-iga-{uuid.uuid4().hex[:8]}", "-f", "/dev/null"]
    env = {**os.environ, "TERM": "xterm-256color"}
    subprocess.run(
        [*base, "new-session", "-d", "-s", "t", "-x", "150", "-y", "50", "bash", "--norc"],
        check=True,
        env=env,
    )
    try:
        yield base
    finally:
        subprocess.run([*base, "kill-server"], check=False)


@pytest.mark.coupa_sandbox(users=300)
def test_live_display_leaves_summaries_and_errors_on_screen(
    tmp_path: Path, coupa_sandbox_server: SandboxServer, tmux: list[str]
) -> None:
    url = coupa_sandbox_server.url
    tenants, snapshot = tmp_path / "t.toml", tmp_path / "s.sqlite"
    tenants.write_text(
        _tenant_section("acme", url) + _tenant_section("bad", url, secret="wrong-secret")
    )
    channel = f"done-{uuid.uuid4().hex[:8]}"
    command = (
        f"{CLI} sync --tenants {tenants} --snapshot {snapshot}; echo EXIT=$?; "
        f"{' '.join(tmux)} wait-for -S {channel}"
    )
    subprocess.run([*tmux, "send-keys", "-t", "t", command, "Enter"], check=True)
    subprocess.run([*tmux, "wait-for", channel], check=True, timeout=120)
    screen = subprocess.run(
        [*tmux, "capture-pane", "-p", "-t", "t", "-S", "-100"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "sync progress" in screen  # the live table was drawn: stderr was a terminal
    assert "bad/coupa: FAILED:" in screen
    assert "acme/coupa: complete run=" in screen
    assert "EXIT=4" in screen
    # the last frame of the table stays, with each tenant's final state
    rows = [line for line in screen.splitlines() if line.lstrip().startswith(("acme ", "bad "))]
    assert any("complete" in r for r in rows) and any("FAILED" in r for r in rows)
    assert "wrong-secret" not in screen


def test_sandbox_command_line_errors_are_messages(coupa_sandbox_server: SandboxServer) -> None:
    port = coupa_sandbox_server.url.rsplit(":", 1)[1]
    busy = CliRunner().invoke(sandbox_main, ["--users", "5", "--port", port])
    assert busy.exit_code == 2 and "cannot listen on" in busy.output
    assert isinstance(busy.exception, SystemExit)
    quirk = CliRunner().invoke(sandbox_main, ["--users", "5", "--quirk", "page_cap=abc"])
    assert quirk.exit_code == 2 and "page_cap: expected an integer" in quirk.output


@pytest.mark.coupa_sandbox(operations={"error_rate": 1.0})
def test_doctor_on_a_server_error_reports_it(
    tmp_path: Path, coupa_sandbox: CoupaSandbox, coupa_sandbox_server: SandboxServer
) -> None:
    tenants = tmp_path / "t.toml"
    tenants.write_text(_tenant_section("acme", coupa_sandbox_server.url))
    result = CliRunner().invoke(main, ["doctor", "--tenants", str(tenants), "--tenant", "acme"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)  # pure JSON on standard output, failure or not
    assert report["ok"] is False and report["failed_stage"] == "connection"
    assert re.search(r"HTTP 50\d", report["error"])
    assert "connection: FAILED" in result.stderr and re.search(r"HTTP 50\d", result.stderr)
    assert isinstance(result.exception, SystemExit)
