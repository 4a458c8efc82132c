"""What more than one ``coupa-iga`` command module uses: the exit codes, the one ``error:``
line a failure ends with, the plugin host, the tenants of the tenants file, and the snapshot.

Exit codes (the table in docs/reference-host.md): 0 success; 1 a run failed; 2 usage error;
3 configuration error; 4 authentication refused; 5 the request was refused.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Final, NoReturn

import click

from coupa_plugin.host.errors import ConfigurationError
from coupa_plugin.host.model import Tenant
from coupa_plugin.refhost._jobs import error_kind
from coupa_plugin.refhost._manager import Host
from coupa_plugin.refhost._options import ENV_SNAPSHOT
from coupa_plugin.refhost._reports import safe_text
from coupa_plugin.refhost._snapshot import SnapshotStore
from coupa_plugin.refhost._tenants import load_tenants

__all__ = [
    "EXIT_AUTH",
    "EXIT_CODES",
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "exit_code",
    "fail",
    "open_store",
    "plugin_host",
    "refuse_the_snapshot",
    "require_enabled",
    "tenants_from",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_CONFIG: Final = 3
EXIT_AUTH: Final = 4
EXIT_REFUSED: Final = 5


def exit_code(exc: BaseException) -> int:
    """The exit code of a failure, by its kind (the table in docs/reference-host.md)."""
    return EXIT_CODES[error_kind(exc)]


EXIT_CODES: Final = {
    "usage": EXIT_USAGE,
    "configuration": EXIT_CONFIG,
    "authentication": EXIT_AUTH,
    "refused": EXIT_REFUSED,
    "failed": EXIT_FAILED,
}


def fail(exc: BaseException) -> NoReturn:
    """End the command with one ``error:`` line and the failure's exit code."""
    click.echo(f"error: {safe_text(str(exc))}", err=True)  # a server's words, made harmless
    sys.exit(exit_code(exc))


def plugin_host() -> Host:
    """A host with the plugins of the ``iga.plugins`` entry points (a warning for each that
    could not be loaded)."""
    host = Host()
    host.load_entry_points()
    for failure in host.load_failures:
        click.echo(f"warning: plugin {failure.name} not loaded: {failure.error}", err=True)
    return host


def _select(tenants: list[Tenant], wanted: tuple[str, ...]) -> list[Tenant]:
    if not wanted:
        return tenants
    known = {t.id: t for t in tenants}
    missing = [w for w in wanted if w not in known]
    if missing:
        raise ConfigurationError(f"unknown tenant(s) {missing}; known: {sorted(known)}")
    return [known[w] for w in wanted]


def tenants_from(tenants_file: Path, wanted: tuple[str, ...]) -> list[Tenant]:
    """The tenants of ``tenants_file`` (only those ``wanted``, when any are named)."""
    tenants = load_tenants(tenants_file)
    if not tenants:
        raise ConfigurationError(
            f"tenants file {tenants_file} defines no tenants; add a [tenants.<id>.<plugin>] table"
        )
    return _select(tenants, wanted)


def require_enabled(host: Host, tenant: Tenant, plugin_name: str) -> None:
    """A ConfigurationError unless ``plugin_name`` is enabled for ``tenant``."""
    if plugin_name not in host.enabled_plugins(tenant):
        raise ConfigurationError(
            f"plugin {plugin_name!r} is not enabled for tenant {tenant.id!r} "
            f"(no section, or enabled = false; plugins found: {host.plugin_names()})"
        )


def open_store(snapshot: Path) -> SnapshotStore:
    """The snapshot file a query reads; a ConfigurationError when there is none."""
    if not snapshot.exists():
        raise ConfigurationError(
            f"no snapshot file at {snapshot} (run `coupa-iga sync`, or set --snapshot or "
            f"{ENV_SNAPSHOT})"
        )
    return SnapshotStore(snapshot)


def refuse_the_snapshot(output: Path | None, snapshot: Path) -> None:
    """An output file must not be the snapshot it is read from (or SQLite's side files of
    it): writing there would destroy every run."""
    if output is None:
        return
    for path in (
        snapshot,
        snapshot.with_name(snapshot.name + "-wal"),
        snapshot.with_name(snapshot.name + "-shm"),
    ):
        same = output.resolve() == path.resolve()
        if not same and output.exists() and path.exists():
            same = os.path.samefile(output, path)
        if same:
            fail(ConfigurationError(f"--output {output} is the snapshot; choose another file"))
