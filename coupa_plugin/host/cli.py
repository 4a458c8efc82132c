"""``coupa-iga``: the reference host's command line.

Exit codes: 0 success; 1 a run failed (sync incomplete, provisioning failed); 2 usage error;
3 configuration error (tenants file or settings); 4 authentication refused; 5 the request was
refused (read-only tenant, unknown principal or entitlement).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NoReturn

import click

from coupa_plugin.host.errors import (
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    PluginError,
    ReadOnlyError,
)
from coupa_plugin.host.jobs import provision_one, sync_tenant
from coupa_plugin.host.logfmt import configure_logging
from coupa_plugin.host.model import ProvisionRequest, SyncRequest, Tenant
from coupa_plugin.host.progress import SyncProgress
from coupa_plugin.host.reports import diff_runs, pick_runs, write_diff, write_export
from coupa_plugin.host.runner import Host
from coupa_plugin.host.snapshot import SnapshotStore
from coupa_plugin.host.tenants import load_tenants

__all__ = ["main"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_CONFIG: Final = 3
EXIT_AUTH: Final = 4
EXIT_REFUSED: Final = 5


TENANTS_OPTION = click.option(
    "--tenants",
    "tenants_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("tenants.toml"),
    show_default=True,
    help="Tenants file (TOML).",
)
SNAPSHOT_OPTION = click.option(
    "--snapshot",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("snapshot.sqlite"),
    show_default=True,
    help="SQLite snapshot file.",
)
PLUGIN_OPTION = click.option(
    "--plugin", "plugin_name", default="coupa", show_default=True, help="Plugin name."
)


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, ConfigurationError):
        return EXIT_CONFIG
    if isinstance(exc, AuthenticationError):
        return EXIT_AUTH
    if isinstance(exc, ReadOnlyError | NotFoundError):
        return EXIT_REFUSED
    return EXIT_FAILED


def _fail(exc: BaseException) -> NoReturn:
    click.echo(f"error: {exc}", err=True)
    sys.exit(_exit_code(exc))


def _host() -> Host:
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


@click.group()
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """Reference IGA host: run connector plugins for the tenants of a tenants file."""
    levels = {0: logging.WARNING, 1: logging.INFO}
    configure_logging(levels.get(verbose, logging.DEBUG))


@main.command()
def plugins() -> None:
    """List the plugins found under the iga.plugins entry point group."""
    host = _host()
    for name in host.plugin_names():
        click.echo(name)


def run_sync(
    host: Host,
    tenants: list[Tenant],
    snapshot: Path,
    request: SyncRequest,
) -> int:
    """Sync every enabled plugin of every tenant; print a summary; return the exit code.

    With failures of one kind only (all configuration errors, say) the exit code names that
    kind; mixed failures exit with 1.
    """
    codes: set[int] = set()
    with SnapshotStore(snapshot) as store, SyncProgress(sys.stderr.isatty()) as progress:
        for tenant in tenants:
            for name in host.enabled_plugins(tenant):
                try:
                    outcome = sync_tenant(host, tenant, name, store, request, progress)
                except PluginError as exc:
                    codes.add(_exit_code(exc))
                    click.echo(f"{tenant.id}/{name}: FAILED: {exc}", err=True)
                    continue
                counts = ", ".join(f"{k}={v}" for k, v in sorted(outcome.resources.items()))
                mode = outcome.status.mode if outcome.status else "-"
                click.echo(
                    f"{tenant.id}/{name}: {outcome.outcome} run={outcome.run_id} mode={mode} "
                    f"{counts} grants={outcome.grants} in {outcome.elapsed_s:.1f}s"
                )
                for warning in outcome.status.warnings if outcome.status else ():
                    click.echo(f"{tenant.id}/{name}: warning: {warning}", err=True)
    click.echo(f"snapshot: {snapshot}")
    if not codes:
        return EXIT_OK
    return codes.pop() if len(codes) == 1 else EXIT_FAILED


@main.command()
@TENANTS_OPTION
@click.option("--tenant", "tenant_ids", multiple=True, help="Sync only this tenant (repeatable).")
@SNAPSHOT_OPTION
@click.option("--type", "resource_types", multiple=True, help="Limit to this resource type.")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    help="Incremental: users changed since then (UTC).",
)
@click.option("--user", "principal_ids", multiple=True, help="Targeted: just this user id.")
@click.option(
    "--sandbox",
    is_flag=True,
    help="Ignore --tenants: start the embedded Coupa sandbox on loopback and sync it.",
)
@click.option(
    "--users",
    "sandbox_users",
    default=2_000,
    show_default=True,
    help="With --sandbox: how many users to generate.",
)
@click.option(
    "--seed", "sandbox_seed", default=1, show_default=True, help="With --sandbox: generator seed."
)
def sync(
    tenants_file: Path,
    tenant_ids: tuple[str, ...],
    snapshot: Path,
    resource_types: tuple[str, ...],
    since: datetime | None,
    principal_ids: tuple[str, ...],
    sandbox: bool,
    sandbox_users: int,
    sandbox_seed: int,
) -> None:
    """Sync resources and grants of the enabled plugins into a snapshot."""
    request = SyncRequest(
        resource_types=frozenset(resource_types) if resource_types else None,
        since=since.replace(tzinfo=UTC) if since else None,
        principal_ids=frozenset(principal_ids) if principal_ids else None,
    )
    if sandbox:
        sys.exit(_sync_sandbox(snapshot, request, sandbox_users, sandbox_seed))
    try:
        tenants = _select(load_tenants(tenants_file), tenant_ids)
    except ConfigurationError as exc:
        _fail(exc)
    sys.exit(run_sync(_host(), tenants, snapshot, request))


def _sync_sandbox(snapshot: Path, request: SyncRequest, users: int, seed: int) -> int:
    from coupa_plugin.sandbox import (
        SANDBOX_CLIENT_ID,
        SANDBOX_CLIENT_SECRET,
        CoupaSandbox,
        SandboxServer,
        generate_tenant,
    )

    click.echo(
        f"starting the Coupa sandbox: {users} users (seed {seed}), Coupa's rate limit "
        "of 25 requests/s enforced",
        err=True,
    )
    with SandboxServer(CoupaSandbox(generate_tenant(users=users, seed=seed))) as server:
        tenant = Tenant(
            id="sandbox",
            plugins={
                "coupa": {
                    "base_url": server.url,
                    "allow_insecure_base_url": True,
                    "client_id": SANDBOX_CLIENT_ID,
                    "client_secret": SANDBOX_CLIENT_SECRET,
                }
            },
        )
        click.echo(f"sandbox listening on {server.url}", err=True)
        return run_sync(_host(), [tenant], snapshot, request)


def _parse_attribute(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected key=value, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


@main.command()
@TENANTS_OPTION
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@PLUGIN_OPTION
@click.option(
    "--action",
    required=True,
    help="grant, revoke, create_account, update_account, enable_account or disable_account.",
)
@click.option("--entitlement", "entitlement_id", help="Entitlement id, e.g. role:4:member.")
@click.option("--principal", "principal_id", help="User id.")
@click.option("--attr", "attributes", multiple=True, help="key=value (JSON values allowed).")
@click.option("--dry-run", is_flag=True, help="Plan the change; write nothing.")
def provision(
    tenants_file: Path,
    tenant_id: str,
    plugin_name: str,
    action: str,
    entitlement_id: str | None,
    principal_id: str | None,
    attributes: tuple[str, ...],
    dry_run: bool,
) -> None:
    """Send one provisioning request to a plugin and print the result as JSON."""
    attrs_map = dict(_parse_attribute(a) for a in attributes)
    request = ProvisionRequest(
        action=action,
        entitlement_id=entitlement_id,
        principal_id=principal_id,
        attributes=attrs_map,
        dry_run=dry_run,
    )
    if problems := request.problems():
        raise click.UsageError("; ".join(problems))
    try:
        [tenant] = _select(load_tenants(tenants_file), (tenant_id,))
        host = _host()
        if plugin_name not in host.enabled_plugins(tenant):
            raise ConfigurationError(
                f"plugin {plugin_name!r} is not enabled for tenant {tenant_id!r}"
            )
        result = provision_one(host, tenant, plugin_name, request)
    except PluginError as exc:
        _fail(exc)
    if result is None:
        _fail(ConfigurationError(f"plugin {plugin_name!r} did not handle the request"))
    click.echo(
        json.dumps(
            {
                "status": result.status,
                "principal_id": result.principal_id,
                "changes": list(result.changes),
                "message": result.message,
                "grants": [[g.entitlement_id, g.principal_id] for g in result.grants],
            },
            indent=2,
        )
    )


def _open_store(snapshot: Path) -> SnapshotStore:
    if not snapshot.exists():
        _fail(ConfigurationError(f"no snapshot file at {snapshot}"))
    return SnapshotStore(snapshot)


@main.command()
@SNAPSHOT_OPTION
@click.option("--tenant", "tenant_id", help="Only this tenant's runs.")
def runs(snapshot: Path, tenant_id: str | None) -> None:
    """List the runs kept in a snapshot file."""
    with _open_store(snapshot) as store:
        for run in store.runs(tenant_id):
            click.echo(
                f"{run.run_id:>5}  {run.tenant_id}/{run.plugin}  {run.kind:<11} "
                f"{run.outcome:<8} {run.started_at}  resources={run.resources} "
                f"entitlements={run.entitlements} grants={run.grants}"
                + (f"  error={run.error}" if run.error else "")
            )


@main.command()
@SNAPSHOT_OPTION
@click.option("--tenant", "tenant_id", required=True)
@PLUGIN_OPTION
@click.option(
    "--from", "old_run", type=int, help="Older run id (default: the second-last complete full run)."
)
@click.option(
    "--to", "new_run", type=int, help="Newer run id (default: the last complete full run)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
def diff(
    snapshot: Path,
    tenant_id: str,
    plugin_name: str,
    old_run: int | None,
    new_run: int | None,
    fmt: str,
) -> None:
    """What changed between two runs: grants added and removed, users new, gone, enabled or
    disabled, entitlements new or gone."""
    with _open_store(snapshot) as store:
        try:
            old, new = pick_runs(store, tenant_id, plugin_name, old_run, new_run)
        except ConfigurationError as exc:
            _fail(exc)
        write_diff(diff_runs(store, old.run_id, new.run_id), fmt, sys.stdout)


@main.command()
@SNAPSHOT_OPTION
@click.option("--tenant", "tenant_id", required=True)
@PLUGIN_OPTION
@click.option("--run", "run_id", type=int, help="Run id (default: the last complete full run).")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True
)
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write here instead of standard output.",
)
def export(
    snapshot: Path,
    tenant_id: str,
    plugin_name: str,
    run_id: int | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Users by entitlements of a complete run, one row per grant, for access reviews."""
    with _open_store(snapshot) as store:
        runs_ = {r.run_id: r for r in store.runs(tenant_id) if r.plugin == plugin_name}
        if run_id is None:
            full = [r for r in runs_.values() if r.outcome == "complete" and r.kind == "full"]
            if not full:
                _fail(ConfigurationError(f"{tenant_id}/{plugin_name} has no complete full run"))
            run_id = full[-1].run_id
        elif run_id not in runs_ or runs_[run_id].outcome != "complete":
            _fail(
                ConfigurationError(
                    f"run {run_id} is not a complete run of {tenant_id}/{plugin_name}"
                )
            )
        if output is None:
            count = write_export(store, run_id, fmt, sys.stdout)
        else:
            with output.open("w", encoding="utf-8", newline="") as handle:
                count = write_export(store, run_id, fmt, handle)
        click.echo(f"exported {count} grants of run {run_id}", err=True)


@main.command()
@TENANTS_OPTION
@click.option("--tenant", "tenant_id", required=True)
@PLUGIN_OPTION
def doctor(tenants_file: Path, tenant_id: str, plugin_name: str) -> None:
    """Check a tenant: settings, authentication, scopes, mode and why, resource types, round
    trip and rate-limit headroom. The first thing to run when a tenant misbehaves."""
    try:
        [tenant] = _select(load_tenants(tenants_file), (tenant_id,))
    except ConfigurationError as exc:
        _fail(exc)
    host = _host()
    if plugin_name not in host.enabled_plugins(tenant):
        _fail(
            ConfigurationError(
                f"plugin {plugin_name!r} is not enabled for tenant "
                f"{tenant_id!r} (no section, or enabled = false)"
            )
        )
    plugin = host.pm.get_plugin(plugin_name)
    diagnose = getattr(plugin, "diagnose", None)
    try:
        if diagnose is None:
            status = host.hooks(tenant, plugin_name).configure()
            report: Any = {
                "status": None
                if status is None
                else {
                    "mode": status.mode,
                    "scopes": sorted(status.granted_scopes),
                    "resource_types": sorted(status.resource_types),
                    "warnings": list(status.warnings),
                }
            }
        else:
            report = diagnose(tenant)
    except PluginError as exc:
        stage = (
            "settings"
            if isinstance(exc, ConfigurationError)
            else "authentication"
            if isinstance(exc, AuthenticationError)
            else "connection"
        )
        click.echo(f"{tenant_id}/{plugin_name}: {stage}: FAILED: {exc}")
        sys.exit(_exit_code(exc))
    click.echo(f"{tenant_id}/{plugin_name}: ok")
    click.echo(json.dumps(report, indent=2, default=str))


@main.command()
@SNAPSHOT_OPTION
@click.option("--tenant", "tenant_id", required=True)
@PLUGIN_OPTION
@click.option("--run", "run_id", type=int, help="Run id (default: the last complete full run).")
@click.option("--against", type=int, help="Compare with this run (default: the full run before).")
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False), required=True)
def report(
    snapshot: Path,
    tenant_id: str,
    plugin_name: str,
    run_id: int | None,
    against: int | None,
    output: Path,
) -> None:
    """The access review of a run as one self-contained HTML file: facts, exceptions first,
    changes since the previous full run, charts and a table per entitlement."""
    from coupa_plugin.host.review import gather_review
    from coupa_plugin.host.review_html import render_review

    with _open_store(snapshot) as store:
        try:
            review = gather_review(
                store,
                tenant_id,
                plugin_name,
                now=datetime.now(UTC),
                run_id=run_id,
                against=against,
            )
        except ConfigurationError as exc:
            _fail(exc)
    output.write_text(render_review(review), encoding="utf-8")
    click.echo(
        f"wrote {output} ({output.stat().st_size:,} bytes) for run {review.run.run_id}", err=True
    )
