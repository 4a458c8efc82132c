"""The reference host never shows a traceback: locked snapshots, outputs the system refuses,
signals in quick succession, a missing extra, server text in ``doctor``, files another user
owns, symbolic links; exit codes per the table in docs/reference-host.md."""

# ruff: noqa: S603 - these tests start the project's own command on purpose

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from coupa_plugin.host.errors import ConfigurationError
from coupa_plugin.refhost import _cli as cli
from coupa_plugin.refhost import _snapshot as snapshot
from coupa_plugin.refhost._cli import main
from coupa_plugin.refhost._errors import ForeignFileError, Interrupted
from coupa_plugin.refhost._snapshot import SnapshotStore
from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    CoupaSandbox,
    SandboxServer,
)

CLI = str(Path(sys.executable).parent / "coupa-iga")


def _tenants(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "tenants.toml"
    path.write_text(
        f'[tenants.acme.coupa]\nbase_url = "{url}"\nallow_insecure_base_url = true\n'
        f'client_id = "{SANDBOX_CLIENT_ID}"\nclient_secret = "{SANDBOX_CLIENT_SECRET}"\n'
        f'state_dir = "{tmp_path / "state"}"\n'
    )
    return path


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _one_error_line(stderr: str) -> str:
    """The one ``error:`` line of a failed command; no traceback around it."""
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("error:")]
    return line


@pytest.fixture
def synced(tmp_path: Path, coupa_sandbox_server: SandboxServer) -> tuple[Path, Path]:
    tenants, snap = _tenants(tmp_path, coupa_sandbox_server.url), tmp_path / "s.sqlite"
    result = _run("sync", "--tenants", str(tenants), "--snapshot", str(snap))
    assert result.exit_code == 0, result.output
    return tenants, snap


def test_a_locked_snapshot_waits_a_bounded_time_then_ends_with_exit_3(
    synced: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenants, snap = synced
    monkeypatch.setattr(snapshot, "LOCK_WAIT_S", 0.05)
    writer = sqlite3.connect(snap, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process writing a run
    try:
        result = _run("sync", "--tenants", str(tenants), "--snapshot", str(snap))
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert result.exit_code == 3, result.output
    line = _one_error_line(result.stderr)
    assert "in use by another process" in line and "waited 0.05s" in line
    with SnapshotStore(snap) as store:
        assert [r.outcome for r in store.runs()] == ["complete"]  # nothing half-written


def _process(*args: str, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], check=False, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("target", "why"),
    [("/dev/full", "No space left on device"), ("/proc/version", "")],
)
def test_an_export_the_system_refuses_ends_with_one_line(
    synced: tuple[Path, Path], target: str, why: str
) -> None:
    _, snap = synced
    done = _process("export", "--snapshot", str(snap), "--tenant", "acme", "--output", target)
    assert done.returncode == 3
    line = _one_error_line(done.stderr)
    assert line.startswith(f"error: cannot write {target}: ") and why in line


def test_standard_output_on_a_full_disk_ends_with_one_line(synced: tuple[Path, Path]) -> None:
    _, snap = synced
    with open("/dev/full", "w") as full:  # a device, handed to the child
        done = _process("runs", "--snapshot", str(snap), stdout=full.fileno())
    assert done.returncode == 3
    assert _one_error_line(done.stderr).startswith("error: cannot write standard output:")


def test_a_snapshot_path_the_system_refuses_ends_with_one_line(tmp_path: Path) -> None:
    done = _process("sync", "--sandbox", "--users", "3", "--snapshot", "/proc/x.sqlite")
    assert done.returncode == 3
    assert "/proc/x.sqlite" in _one_error_line(done.stderr)


def test_a_symbolic_link_snapshot_is_refused_in_one_line(
    synced: tuple[Path, Path], tmp_path: Path
) -> None:
    tenants, snap = synced
    link = tmp_path / "link.sqlite"
    link.symlink_to(snap)
    for command in (
        ["runs", "--snapshot", str(link)],
        ["sync", "--tenants", str(tenants), "--snapshot", str(link)],
    ):
        result = _run(*command)
        assert result.exit_code == 3, result.output
        line = _one_error_line(result.stderr)
        assert "symbolic link" in line and str(link) in line


def test_an_output_owned_by_another_user_or_with_two_names_is_refused(
    synced: tuple[Path, Path], tmp_path: Path
) -> None:
    _, snap = synced
    shared = tmp_path / "shared"
    shared.mkdir()
    planted = shared / "export.csv"
    planted.write_text("planted\n")
    planted.chmod(0o666)
    os.chown(planted, 4242, 4242) if os.geteuid() == 0 else None
    linked = shared / "other-name.csv"
    mine = tmp_path / "mine.csv"
    mine.write_text("")
    os.link(mine, linked)
    cases = [(linked, "2 names")]
    if os.geteuid() == 0:  # only root can give a file away
        cases.append((planted, "belongs to another user"))
    for target, why in cases:
        for command in ("export", "report"):
            result = _run(
                command, "--snapshot", str(snap), "--tenant", "acme", "--output", str(target)
            )
            assert result.exit_code == 3, result.output
            assert why in _one_error_line(result.stderr)
    assert mine.read_text() == ""  # nothing written through the other name
    if os.geteuid() == 0:
        assert planted.read_text() == "planted\n"


def test_a_snapshot_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file away")
    planted = tmp_path / "s.sqlite"
    planted.write_bytes(b"")
    os.chown(planted, 4242, 4242)
    with pytest.raises(ForeignFileError, match="belongs to another user"):
        SnapshotStore(planted)


def test_a_second_signal_during_cleanup_is_ignored() -> None:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(Interrupted) as caught, cli._signals():
            signal.raise_signal(signal.SIGTERM)
        assert caught.value.signum == signal.SIGTERM
        # the handler disarmed itself: the cleanup cannot be interrupted a second time
        assert signal.getsignal(signal.SIGTERM) is cli._ignore_signal
        assert signal.getsignal(signal.SIGINT) is cli._ignore_signal
        signal.raise_signal(signal.SIGINT)  # ignored: no exception, no exit
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_handlers_are_restored_after_a_command_that_was_not_interrupted() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with cli._signals():
        assert signal.getsignal(signal.SIGTERM) is cli._raise_interrupted
    assert signal.getsignal(signal.SIGTERM) == before


def test_without_the_host_extra_the_command_says_so_in_one_line() -> None:
    script = (
        "import importlib.abc, sys\n"
        "class Missing(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'click':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Missing())\n"
        "sys.argv[0] = 'coupa-iga'\n"
        "from coupa_plugin.refhost._cli import main\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3
    assert done.stderr.splitlines() == [
        "error: coupa-iga needs the host extra: pip install 'coupa-plugin[host]' "
        "(No module named 'click')"
    ]


def test_exit_codes_follow_the_table(
    synced: tuple[Path, Path], coupa_sandbox: CoupaSandbox
) -> None:
    tenants, snap = synced
    uid = str(next(u for u in sorted(coupa_sandbox.state.users) if u > 2))
    common = (
        *("provision", "--tenants", str(tenants), "--snapshot", str(snap)),
        *("--tenant", "acme", "--action"),
    )
    unknown_attr = _run(*common, "update_account", "--principal", uid, "--attr", "shoe_size=44")
    assert unknown_attr.exit_code == 2, unknown_attr.output
    assert "shoe_size" in _one_error_line(unknown_attr.stderr)
    flag = "license:category-planner-user:assigned"  # Coupa marks the flag read-only
    read_only = _run(*common, "grant", "--principal", uid, "--entitlement", flag)
    assert read_only.exit_code == 5, read_only.output
    assert "read-only" in _one_error_line(read_only.stderr)
    usage = _run(*common, "grant", "--principal", uid)
    assert usage.exit_code == 2
    assert "--entitlement" in usage.stderr and "entitlement_id" not in usage.stderr


def test_a_targeted_sync_of_unknown_ids_is_not_stored_complete(synced: tuple[Path, Path]) -> None:
    tenants, snap = synced
    result = _run("sync", "--tenants", str(tenants), "--snapshot", str(snap), "--user", "99999")
    assert result.exit_code == 5
    assert "no user with id(s) ['99999']" in result.stderr
    assert result.stderr.count("acme/coupa:") == 1  # the failure names its tenant once
    with SnapshotStore(snap) as store:
        last = store.runs()[-1]
    assert last.kind == "targeted" and last.outcome == "failed"


def test_an_unknown_type_names_the_tenant_once(synced: tuple[Path, Path]) -> None:
    tenants, snap = synced
    result = _run("sync", "--tenants", str(tenants), "--snapshot", str(snap), "--type", "roles")
    assert result.exit_code == 2
    assert "acme/coupa: FAILED: unknown or disabled resource type(s) ['roles']" in result.stderr
    assert "acme/coupa: acme/coupa:" not in result.output


def test_tenants_is_accepted_by_every_command(synced: tuple[Path, Path]) -> None:
    tenants, snap = synced
    for command in (
        ["runs", "--snapshot", str(snap)],
        ["export", "--snapshot", str(snap), "--tenant", "acme"],
        ["resources", "--snapshot", str(snap), "--tenant", "acme"],
        ["plugins"],
    ):
        result = _run(*command, "--tenants", str(tenants))
        assert result.exit_code == 0, (command, result.output)
    sync_again = _run("sync", "--tenants", str(tenants), "--snapshot", str(snap))
    assert sync_again.exit_code == 0
    diff = _run("diff", "--tenants", str(tenants), "--snapshot", str(snap), "--tenant", "acme")
    assert diff.exit_code == 0, diff.output


class _HostileTokenEndpoint(BaseHTTPRequestHandler):
    """A token endpoint whose refusal carries terminal escape sequences."""

    def do_POST(self) -> None:  # the http.server interface
        body = json.dumps(
            {"error": "\x1b]0;owned\x07invalid_client\r\nacme/coupa: ok\x1b[2K"}
        ).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return None


@pytest.fixture
def hostile_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostileTokenEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_doctor_neutralises_server_text_and_still_prints_json(
    tmp_path: Path, hostile_url: str
) -> None:
    tenants = _tenants(tmp_path, hostile_url)
    result = _run("doctor", "--tenants", str(tenants), "--tenant", "acme")
    assert result.exit_code == 4, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\r" not in result.stderr
    assert "acme/coupa: ok" not in result.stderr.splitlines()  # no forged verdict line
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["failed_stage"] == "authentication"


def test_a_store_error_names_the_file_and_is_typed(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not sqlite" * 100)
    with pytest.raises(ConfigurationError, match=r"junk\.sqlite"):
        SnapshotStore(junk)
