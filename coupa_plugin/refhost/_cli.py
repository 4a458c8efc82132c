"""``coupa-iga``: the reference host's command line.

Exit codes: 0 success; 1 a run failed (sync incomplete, provisioning failed); 2 usage error
(including an unknown resource type or provisioning attribute, a decisions file that does not
match its campaign); 3 configuration error (tenants file, settings, snapshot file, an output
that cannot be written, no usable run, the host extra missing); 4 authentication refused; 5 the
request was refused (read-only tenant, unknown principal, user or entitlement, a refusal by
policy); 130 interrupted by Ctrl-C and 143 by SIGTERM (the run is recorded as ``interrupted``).

Data goes to standard output (``--format table|json|csv``), messages to standard error.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Final, NoReturn, TypeVar

try:  # the host extra's libraries: the command line, its display, the report's templates
    import click
    import jinja2  # noqa: F401
    import rich  # noqa: F401
except ModuleNotFoundError as exc:  # a plain install: the command line is an extra
    _NEEDS_EXTRA = f"coupa-iga needs the host extra: pip install 'coupa-plugin[host]' ({exc})"
    if Path(sys.argv[0]).name in {"coupa-iga", "__main__.py"}:  # the command itself: one line
        sys.stderr.write(f"error: {_NEEDS_EXTRA}\n")
        raise SystemExit(3) from None  # EXIT_CONFIG, which lives beside click
    raise ModuleNotFoundError(_NEEDS_EXTRA, name=exc.name) from None

from coupa_plugin import __version__
from coupa_plugin.host.errors import (
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    PluginError,
)
from coupa_plugin.host.model import ProvisionRequest, SyncRequest, Tenant
from coupa_plugin.refhost._campaign_cli import review
from coupa_plugin.refhost._common import (
    EXIT_FAILED,
    EXIT_OK,
    exit_code,
    fail,
    open_store,
    plugin_host,
    refuse_the_snapshot,
    require_enabled,
    tenants_from,
)
from coupa_plugin.refhost._errors import Interrupted, SnapshotBusyError
from coupa_plugin.refhost._jobs import SyncOutcome, provision_one, sync_tenant
from coupa_plugin.refhost._manager import Host
from coupa_plugin.refhost._options import (
    ALLOW_PARTIAL_OPTION,
    IGNORED_TENANTS_OPTION,
    PLUGIN_OPTION,
    SNAPSHOT_OPTION,
    TENANTS_OPTION,
    VERBOSE_OPTION,
    format_option,
    sandbox_options,
    sandbox_section,
)
from coupa_plugin.refhost._progress import SyncProgress
from coupa_plugin.refhost._reports import (
    ACCESS_COLUMNS,
    GRANT_COLUMNS,
    RESOURCE_COLUMNS,
    access_rows,
    diff_runs,
    entitlement_grant_rows,
    find_user,
    pick_run,
    pick_runs,
    resource_rows,
    safe_text,
    write_diff,
    write_export,
    write_rows,
)
from coupa_plugin.refhost._scim.command import scim
from coupa_plugin.refhost._snapshot import RunRecord, SnapshotStore, private_output

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])


def _silence_stdout() -> None:
    """The reader of standard output went away (``| head``) or it cannot take more (a full
    disk): drop what is still buffered, so the interpreter's exit does not try again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # not a real file descriptor (e.g. under a test runner)


_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    """The first SIGINT or SIGTERM stops the command; from then on both are ignored, so a
    second one (a double Ctrl-C, ``timeout`` signalling the child and its group) cannot cut
    the cleanup short: the run is always recorded ``interrupted`` and the exit code is the
    first signal's."""
    for sig in _STOP_SIGNALS:
        # a handler that does nothing, not SIG_IGN: a signal already pending when the
        # disposition turns to SIG_IGN makes Python print a "race condition" traceback
        signal.signal(sig, _ignore_signal)
    raise Interrupted(signum)


def _ignore_signal(_signum: int, _frame: FrameType | None) -> None:
    """SIGINT and SIGTERM after the first: the command is already stopping."""


@contextmanager
def _signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted`, so runs are recorded as interrupted.

    After an interruption the handlers stay disarmed until the process exits."""
    try:
        saved = {sig: signal.signal(sig, _raise_interrupted) for sig in _STOP_SIGNALS}
    except ValueError:  # not the main thread: leave the handlers alone
        yield
        return
    interrupted = False
    try:
        yield
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if not interrupted:
            for sig, handler in saved.items():
                signal.signal(sig, handler)


def _exit_interrupted(ctx: click.Context, code: int) -> NoReturn:
    """End an interrupted command: the run is recorded and the outputs flushed by now. A
    signal lands wherever the main thread is, possibly inside a lock a pool thread then waits
    for; the interpreter's shutdown joins those threads and could wait for ever, so a real
    process ends here at once. (Under a test runner, standard output is no file: it exits as
    usual.)"""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    try:
        sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
        ctx.exit(code)
    os._exit(code)


def _output_failed(exc: OSError) -> str:
    """One line for an output that could not be written (a full disk, a read-only file)."""
    where = f" {exc.filename}" if exc.filename else " standard output"
    return f"cannot write{where}: {exc.strerror or exc}"


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            with _signals():
                result = super().invoke(ctx)
                sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
            return result
        except BrokenPipeError:
            _silence_stdout()
            ctx.exit(EXIT_OK)
        except KeyboardInterrupt as exc:
            signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
            click.echo(f"interrupted ({signal.Signals(signum).name})", err=True)
            _exit_interrupted(ctx, 128 + signum)
        except PluginError as exc:
            fail(exc)
        except OSError as exc:  # an output or a snapshot path the system refused
            _silence_stdout()
            fail(ConfigurationError(_output_failed(exc)))
        except sqlite3.Error as exc:
            fail(ConfigurationError(f"snapshot: {exc}"))


@click.group(cls=_Group)
@click.version_option(__version__, "--version", prog_name="coupa-iga")
@VERBOSE_OPTION
def main() -> None:
    """Reference IGA host: run connector plugins for the tenants of a tenants file.

    Data goes to standard output, messages to standard error. Environment: COUPA_IGA_TENANTS
    (--tenants), COUPA_IGA_SNAPSHOT (--snapshot), COUPA_IGA_LOG_LEVEL (debug, info, warning,
    error; -v lowers it).
    """


@main.command()
@IGNORED_TENANTS_OPTION
@format_option("table", "json", "csv")
@VERBOSE_OPTION
def plugins(fmt: str) -> None:
    """List the plugins found under the iga.plugins entry point group."""
    host = plugin_host()
    rows = [{"plugin": name} for name in host.plugin_names()]
    write_rows(rows, ["plugin"], fmt, sys.stdout)


SUMMARY_COLUMNS: Final = [
    "tenant",
    "plugin",
    "outcome",
    "run_id",
    "mode",
    "users",
    "resources",
    "grants",
    "elapsed_s",
    "error",
]


def _summary_row(outcome: SyncOutcome) -> dict[str, Any]:
    return {
        "tenant": outcome.tenant_id,
        "plugin": outcome.plugin,
        "outcome": outcome.outcome,
        "run_id": outcome.run_id,
        "mode": outcome.status.mode if outcome.status else None,
        "users": outcome.resources.get("user", 0),
        "resources": sum(outcome.resources.values()),
        "grants": outcome.grants,
        "elapsed_s": round(outcome.elapsed_s, 1),
        "error": outcome.error,
    }


def run_sync(
    host: Host,
    tenants: list[Tenant],
    snapshot: Path,
    request: SyncRequest,
    fmt: str = "table",
    *,
    live: bool | None = None,
) -> int:
    """Sync every enabled plugin of every tenant; print a summary; return the exit code.

    With failures of one kind only (all configuration errors, say) the exit code names that
    kind; mixed failures exit with 1. Errors and warnings are printed as they happen and stay
    on screen; the summary (one row per tenant and plugin) follows on standard output.
    """
    pairs = [(t, name) for t in tenants for name in host.enabled_plugins(t)]
    if not pairs:
        raise ConfigurationError(
            "no tenant enables a plugin (each needs a [tenants.<id>.<plugin>] table without "
            f"enabled = false; plugins found: {host.plugin_names()})"
        )
    codes: set[int] = set()
    rows: list[dict[str, Any]] = []
    with (
        SnapshotStore(snapshot) as store,
        SyncProgress(live=sys.stderr.isatty() if live is None else live) as progress,
    ):
        for tenant, name in pairs:
            try:
                outcome = sync_tenant(host, tenant, name, store, request, progress)
            except SnapshotBusyError:
                raise  # every tenant would wait for the same lock: stop with one error line
            except PluginError as exc:
                codes.add(exit_code(exc))
                error = _unprefixed(str(exc), f"{tenant.id}/{name}")
                progress.finish(tenant.id, "FAILED")
                progress.message(f"{tenant.id}/{name}: FAILED: {error}")
                rows.append(
                    {"tenant": tenant.id, "plugin": name, "outcome": "failed", "error": error}
                )
                continue
            rows.append(_summary_row(outcome))
            for warning in outcome.status.warnings if outcome.status else ():
                progress.message(f"{tenant.id}/{name}: warning: {warning}")
    if fmt == "table":
        for row in rows:
            click.echo(_summary_line(row))
    else:
        write_rows(rows, SUMMARY_COLUMNS, fmt, sys.stdout)
    click.echo(f"snapshot: {snapshot}", err=True)
    if not codes:
        return EXIT_OK
    return codes.pop() if len(codes) == 1 else EXIT_FAILED


def _unprefixed(text: str, where: str) -> str:
    """An error's text without the ``tenant/plugin:`` it may begin with (the line names it)."""
    while text.startswith(f"{where}: "):
        text = text[len(where) + 2 :]
    return text


def _summary_line(row: dict[str, Any]) -> str:
    where = f"{row['tenant']}/{row['plugin']}"
    if row["outcome"] == "failed":
        return f"{where}: FAILED: {safe_text(str(row['error']))}"
    return (
        f"{where}: {row['outcome']} run={row['run_id']} mode={row['mode'] or '-'} "
        f"users={row['users']} resources={row['resources']} grants={row['grants']} "
        f"in {row['elapsed_s']:.1f}s"
    )


class _Timestamp(click.ParamType):  # type: ignore[type-arg]
    """ISO 8601 date or date and time; ``Z`` and offsets accepted, no zone means UTC."""

    name = "timestamp"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(
                f"{value!r} is not an ISO 8601 date or time "
                "(e.g. 2024-05-01, 2024-05-01T08:00:00Z, 2024-05-01T10:00:00+02:00)",
                param,
                ctx,
            )
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@main.command()
@TENANTS_OPTION
@click.option("--tenant", "tenant_ids", multiple=True, help="Sync only this tenant (repeatable).")
@SNAPSHOT_OPTION
@click.option(
    "--type",
    "resource_types",
    multiple=True,
    help="Limit to this resource type (repeatable); the run is partial.",
)
@click.option(
    "--since",
    type=_Timestamp(),
    help="Incremental: users changed since then (ISO 8601; UTC unless a zone is given); "
    "the run is partial.",
)
@click.option(
    "--user",
    "principal_ids",
    multiple=True,
    help="Targeted: just this user id (repeatable); the run is partial.",
)
@sandbox_options(2_000, "sync")
@format_option("table", "json", "csv")
@VERBOSE_OPTION
def sync(
    tenants_file: Path,
    tenant_ids: tuple[str, ...],
    snapshot: Path,
    resource_types: tuple[str, ...],
    since: datetime | None,
    principal_ids: tuple[str, ...],
    *,
    sandbox: bool,
    sandbox_users: int,
    sandbox_seed: int,
    fmt: str,
) -> None:
    """Sync resources and grants of the enabled plugins into a snapshot."""
    request = SyncRequest(
        resource_types=frozenset(resource_types) if resource_types else None,
        since=since,
        principal_ids=frozenset(principal_ids) if principal_ids else None,
    )
    if sandbox:
        sys.exit(_sync_sandbox(snapshot, request, sandbox_users, sandbox_seed, fmt))
    tenants = tenants_from(tenants_file, tenant_ids)
    sys.exit(run_sync(plugin_host(), tenants, snapshot, request, fmt))


def _sync_sandbox(snapshot: Path, request: SyncRequest, users: int, seed: int, fmt: str) -> int:
    try:
        from coupa_plugin.sandbox import CoupaSandbox, SandboxServer, generate_tenant
    except ModuleNotFoundError as exc:
        raise click.UsageError(
            f"--sandbox needs the sandbox extra: pip install 'coupa-plugin[sandbox]' ({exc})"
        ) from None

    click.echo(
        f"starting the Coupa sandbox: {users} users (seed {seed}), Coupa's rate limit "
        "of 25 requests/s enforced",
        err=True,
    )
    with SandboxServer(CoupaSandbox(generate_tenant(users=users, seed=seed))) as server:
        tenant = Tenant(id="sandbox", plugins={"coupa": sandbox_section(server.url)})
        click.echo(f"sandbox listening on {server.url}", err=True)
        return run_sync(plugin_host(), [tenant], snapshot, request, fmt)


# the request's fields as the command line names them
_OPTION_NAMES: Final = {"entitlement_id": "--entitlement", "principal_id": "--principal"}


def _as_options(problem: str) -> str:
    for field_name, option in _OPTION_NAMES.items():
        problem = re.sub(rf"\b{field_name}\b", option, problem)
    return problem


def _parse_attribute(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected key=value, got {text!r}", param_hint="--attr")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def resolve_principal(
    snapshot: Path, tenant_id: str, plugin: str, principal: str
) -> tuple[str, RunRecord | None]:
    """A user id for ``--principal``: an id as given, a login through the newest complete run
    of the snapshot that lists that user."""
    if principal.isdigit():
        return principal, None
    if not snapshot.exists():
        raise NotFoundError(
            f"--principal {principal!r} is not a user id and there is no snapshot at {snapshot} "
            "to look the login up in: run `coupa-iga sync` first or pass the user id"
        )
    with SnapshotStore(snapshot) as store:
        for run in reversed(store.runs(tenant_id)):
            if run.plugin != plugin or run.outcome != "complete":
                continue
            try:
                user = find_user(store, run.run_id, principal)
            except NotFoundError:
                continue
            return str(user["id"]), run
    raise NotFoundError(
        f"no user with login {principal!r} in the complete runs of {tenant_id}/{plugin} in "
        f"{snapshot}: sync the tenant first or pass the user id"
    )


def _write_mapping(data: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, default=str))
        return
    rows = [
        {"key": k, "value": v if isinstance(v, str) else json.dumps(v, default=str)}
        for k, v in data.items()
    ]
    write_rows(rows, ["key", "value"], fmt, sys.stdout)


@main.command()
@TENANTS_OPTION
@SNAPSHOT_OPTION
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@PLUGIN_OPTION
@click.option(
    "--action",
    required=True,
    help="grant, revoke, create_account, update_account, enable_account, disable_account, "
    "create_group, update_group or deactivate_group.",
)
@click.option("--entitlement", "entitlement_id", help="Entitlement id, e.g. role:4:member.")
@click.option(
    "--principal",
    help="User id, or a login (looked up in the snapshot's newest complete run listing it).",
)
@click.option("--attr", "attributes", multiple=True, help="key=value (JSON values allowed).")
@click.option("--dry-run", is_flag=True, help="Plan the change; write nothing.")
@format_option("json", "table", "csv")
@VERBOSE_OPTION
def provision(
    tenants_file: Path,
    snapshot: Path,
    tenant_id: str,
    plugin_name: str,
    action: str,
    entitlement_id: str | None,
    principal: str | None,
    attributes: tuple[str, ...],
    *,
    dry_run: bool,
    fmt: str,
) -> None:
    """Send one provisioning request to a plugin and print the result."""
    attrs_map = dict(_parse_attribute(a) for a in attributes)
    problems = ProvisionRequest(
        action=action, entitlement_id=entitlement_id, principal_id=principal
    ).problems()
    if problems:
        raise click.UsageError("; ".join(_as_options(p) for p in problems))
    [tenant] = tenants_from(tenants_file, (tenant_id,))
    host = plugin_host()
    require_enabled(host, tenant, plugin_name)
    principal_id = principal
    if principal is not None:
        principal_id, found_in = resolve_principal(snapshot, tenant_id, plugin_name, principal)
        if found_in is not None:
            click.echo(
                f"login {principal} is user {principal_id} (snapshot run {found_in.run_id})",
                err=True,
            )
    request = ProvisionRequest(
        action=action,
        entitlement_id=entitlement_id,
        principal_id=principal_id,
        attributes=attrs_map,
        dry_run=dry_run,
    )
    result = provision_one(host, tenant, plugin_name, request)
    if result is None:
        raise ConfigurationError(f"plugin {plugin_name!r} did not handle the request")
    shown: dict[str, Any] = {
        "status": result.status,
        "principal_id": result.principal_id,
        "changes": list(result.changes),
        "message": result.message,
        "grants": [[g.entitlement_id, g.principal_id] for g in result.grants],
    }
    if result.entitlement_id is not None:  # the group a group action acted on
        shown["entitlement_id"] = result.entitlement_id
    _write_mapping(shown, fmt)


RUN_COLUMNS: Final = [
    "run_id",
    "tenant_id",
    "plugin",
    "kind",
    "scope",
    "outcome",
    "started_at",
    "ended_at",
    "resources",
    "entitlements",
    "grants",
    "error",
]


@main.command()
@IGNORED_TENANTS_OPTION
@SNAPSHOT_OPTION
@click.option("--tenant", "tenant_id", help="Only this tenant's runs.")
@format_option("table", "json", "csv")
@VERBOSE_OPTION
def runs(snapshot: Path, tenant_id: str | None, fmt: str) -> None:
    """List the runs kept in a snapshot file (a run with a scope is partial)."""
    with open_store(snapshot) as store:
        records = store.runs(tenant_id)
        if tenant_id is not None and not records:
            known = sorted({r.tenant_id for r in store.runs()})
            raise ConfigurationError(
                f"the snapshot has no runs of tenant {tenant_id!r}; tenants with runs: {known}"
            )
        rows = [
            {c: getattr(r, c) for c in RUN_COLUMNS} | {"scope": r.scope or "whole tenant"}
            for r in records
        ]
        write_rows(rows, RUN_COLUMNS, fmt, sys.stdout)


@main.command()
@IGNORED_TENANTS_OPTION
@SNAPSHOT_OPTION
@click.option("--tenant", "tenant_id", required=True)
@PLUGIN_OPTION
@click.option(
    "--from", "old_run", type=int, help="Older run id (default: the second-last complete full run)."
)
@click.option(
    "--to", "new_run", type=int, help="Newer run id (default: the last complete full run)."
)
@ALLOW_PARTIAL_OPTION
@format_option("table", "json", "csv")
@VERBOSE_OPTION
def diff(
    snapshot: Path,
    tenant_id: str,
    plugin_name: str,
    old_run: int | None,
    new_run: int | None,
    *,
    allow_partial: bool,
    fmt: str,
) -> None:
    """What changed between two runs: grants added and removed (privileged ones flagged),
    users new, gone, enabled or disabled, entitlements new or gone."""
    with open_store(snapshot) as store:
        old, new = pick_runs(
            store, tenant_id, plugin_name, old_run, new_run, allow_partial=allow_partial
        )
        write_diff(diff_runs(store, old.run_id, new.run_id), fmt, sys.stdout)


@main.command()
@IGNORED_TENANTS_OPTION
@SNAPSHOT_OPTION
@click.option("--tenant", "tenant_id", required=True)
@PLUGIN_OPTION
@click.option("--run", "run_id", type=int, help="Run id (default: the last complete full run).")
@ALLOW_PARTIAL_OPTION
@format_option("csv", "jsonl", "json")
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write here instead of standard output.",
)
@VERBOSE_OPTION
def export(
    snapshot: Path,
    tenant_id: str,
    plugin_name: str,
    run_id: int | None,
    *,
    allow_partial: bool,
    fmt: str,
    output: Path | None,
) -> None:
    """Every account of a complete run with what it holds, for access reviews: one row per
    grant, and one row for an account that holds nothing."""
    if output is not None and str(output) == "-":
        output = None  # standard output, as without --output
    refuse_the_snapshot(output, snapshot)
    with open_store(snapshot) as store:
        run = pick_run(store, tenant_id, plugin_name, run_id, allow_partial=allow_partial)
        if output is None:
            count = write_export(store, run.run_id, fmt, sys.stdout)
        else:
            with private_output(output) as handle:
                count = write_export(store, run.run_id, fmt, handle)
        click.echo(f"exported {count} rows of run {run.run_id}", err=True)


def _query_run(
    store: SnapshotStore, tenant_id: str, plugin: str, run_id: int | None, *, allow_partial: bool
) -> RunRecord:
    run = pick_run(store, tenant_id, plugin, run_id, allow_partial=allow_partial)
    click.echo(f"run {run.run_id} of {tenant_id}/{plugin} ({run.started_at})", err=True)
    return run


def query_options(func: F) -> F:
    """The options every query over one run shares."""
    for option in reversed(
        [
            IGNORED_TENANTS_OPTION,
            SNAPSHOT_OPTION,
            click.option("--tenant", "tenant_id", required=True),
            PLUGIN_OPTION,
            click.option(
                "--run", "run_id", type=int, help="Run id (default: the last complete full run)."
            ),
            ALLOW_PARTIAL_OPTION,
            format_option("table", "json", "csv"),
            VERBOSE_OPTION,
        ]
    ):
        func = option(func)
    return func


@main.command()
@click.option("--user", "who", required=True, help="User id or login.")
@query_options
def access(
    who: str,
    snapshot: Path,
    tenant_id: str,
    plugin_name: str,
    run_id: int | None,
    *,
    allow_partial: bool,
    fmt: str,
) -> None:
    """What one person holds: every entitlement with its name and privileged flag."""
    with open_store(snapshot) as store:
        run = _query_run(store, tenant_id, plugin_name, run_id, allow_partial=allow_partial)
        user = find_user(store, run.run_id, who)
        rows = access_rows(store, run.run_id, str(user["id"]))
        click.echo(
            f"user {user['id']} ({safe_text(str(user['display_name']))}, {user['status']}): "
            f"{len(rows)} entitlement(s), {sum(1 for r in rows if r['privileged'])} privileged",
            err=True,
        )
        write_rows(rows, ACCESS_COLUMNS, fmt, sys.stdout)


@main.command()
@click.option("--entitlement", "entitlement_id", required=True, help="e.g. role:2:member.")
@query_options
def grants(
    entitlement_id: str,
    snapshot: Path,
    tenant_id: str,
    plugin_name: str,
    run_id: int | None,
    *,
    allow_partial: bool,
    fmt: str,
) -> None:
    """Who holds one entitlement."""
    with open_store(snapshot) as store:
        run = _query_run(store, tenant_id, plugin_name, run_id, allow_partial=allow_partial)
        holders = entitlement_grant_rows(store, run.run_id, entitlement_id)
        count = write_rows(holders, GRANT_COLUMNS, fmt, sys.stdout)
        click.echo(f"{count} holder(s) of {entitlement_id}", err=True)


@main.command()
@click.option("--type", "resource_type", help="Only this resource type (user, role, group, …).")
@query_options
def resources(
    resource_type: str | None,
    snapshot: Path,
    tenant_id: str,
    plugin_name: str,
    run_id: int | None,
    *,
    allow_partial: bool,
    fmt: str,
) -> None:
    """The resources of a run, with how many entitlements each carries."""
    with open_store(snapshot) as store:
        run = _query_run(store, tenant_id, plugin_name, run_id, allow_partial=allow_partial)
        count = write_rows(
            resource_rows(store, run.run_id, resource_type), RESOURCE_COLUMNS, fmt, sys.stdout
        )
        click.echo(f"{count} resource(s)", err=True)


@main.command()
@TENANTS_OPTION
@click.option("--tenant", "tenant_id", required=True)
@PLUGIN_OPTION
@format_option("json", "table", "csv")
@VERBOSE_OPTION
def doctor(tenants_file: Path, tenant_id: str, plugin_name: str, fmt: str) -> None:
    """Check a tenant: settings, authentication, scopes, mode and why, resource types, round
    trip and rate-limit headroom. The first thing to run when a tenant misbehaves.

    The report goes to standard output (pure JSON by default); the verdict to standard error.
    """
    [tenant] = tenants_from(tenants_file, (tenant_id,))
    host = plugin_host()
    require_enabled(host, tenant, plugin_name)
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
    except Exception as exc:  # noqa: BLE001 - doctor reports whatever went wrong instead of a traceback
        stage = (
            "settings"
            if isinstance(exc, ConfigurationError)
            else "authentication"
            if isinstance(exc, AuthenticationError)
            else "connection"
        )
        detail = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
        detail = safe_text(detail)  # the server's words cannot act on the terminal
        click.echo(f"{tenant_id}/{plugin_name}: {stage}: FAILED: {detail}", err=True)
        _write_mapping(
            {
                "tenant": tenant_id,
                "plugin": plugin_name,
                "ok": False,
                "failed_stage": stage,
                "error": detail,
            },
            fmt,
        )
        sys.exit(exit_code(exc))
    click.echo(f"{tenant_id}/{plugin_name}: ok", err=True)
    _write_mapping(_neutralised(report if isinstance(report, dict) else {"report": report}), fmt)


def _neutralised(value: Any) -> Any:
    """``value`` with every string in it made harmless for a terminal (see ``safe_text``)."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        return {safe_text(str(k)): _neutralised(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_neutralised(v) for v in value]
    return value


@main.command()
@IGNORED_TENANTS_OPTION
@SNAPSHOT_OPTION
@click.option("--tenant", "tenant_id", required=True)
@PLUGIN_OPTION
@click.option("--run", "run_id", type=int, help="Run id (default: the last complete full run).")
@click.option("--against", type=int, help="Compare with this run (default: the full run before).")
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False), required=True)
@ALLOW_PARTIAL_OPTION
def report(
    *,
    snapshot: Path,
    tenant_id: str,
    plugin_name: str,
    run_id: int | None,
    against: int | None,
    output: Path,
    allow_partial: bool,
) -> None:
    """The access review of a run as one self-contained HTML file: facts, exceptions first,
    changes since the previous full run, charts and a table per entitlement."""
    from coupa_plugin.refhost._review import gather_review
    from coupa_plugin.refhost._review_html import render_review

    refuse_the_snapshot(output, snapshot)
    try:
        with open_store(snapshot) as store:
            review = gather_review(
                store,
                tenant_id,
                plugin_name,
                now=datetime.now(UTC),
                run_id=run_id,
                against=against,
                allow_partial=allow_partial,
            )
        with private_output(output) as handle:
            handle.write(render_review(review))
    except ConfigurationError as exc:
        fail(exc)
    click.echo(
        f"wrote {output} ({output.stat().st_size:,} bytes) for run {review.run.run_id}", err=True
    )


main.add_command(review)  # the access-review campaigns (`coupa-iga review …`)
main.add_command(scim)  # the SCIM facade (it imports its libraries when it runs)
