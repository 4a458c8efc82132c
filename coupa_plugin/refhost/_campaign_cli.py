"""``coupa-iga review``: access-review campaigns on the command line (start, apply, verify,
evidence). The logic lives in :mod:`coupa_plugin.refhost._campaign`; the plugin is driven
through its hooks only (``configure``, ``provision``, and a targeted sync to verify).

The command line adds the ``review`` group to :func:`coupa_plugin.refhost._cli.main`.
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from coupa_plugin.host.errors import ConfigurationError, ReadOnlyError
from coupa_plugin.host.model import SyncRequest
from coupa_plugin.refhost._campaign import (
    Campaign,
    CampaignStore,
    Decision,
    Outcome,
    apply_decisions,
    parse_decisions,
    pick_campaign_run,
    verify_campaign,
    write_campaign_csv,
    write_evidence,
)
from coupa_plugin.refhost._common import (
    EXIT_FAILED,
    EXIT_REFUSED,
    open_store,
    plugin_host,
    refuse_the_snapshot,
    require_enabled,
    tenants_from,
)
from coupa_plugin.refhost._errors import UsageError
from coupa_plugin.refhost._jobs import sync_tenant
from coupa_plugin.refhost._options import (
    IGNORED_TENANTS_OPTION,
    PLUGIN_OPTION,
    SNAPSHOT_OPTION,
    TENANTS_OPTION,
    VERBOSE_OPTION,
    format_option,
)
from coupa_plugin.refhost._reports import safe_text, write_rows
from coupa_plugin.refhost._snapshot import SnapshotStore, private_output

__all__ = ["review"]

CAMPAIGN_OPTION = click.option(
    "--campaign", "campaign_id", type=int, required=True, help="Campaign id (from review start)."
)
F = TypeVar("F", bound=Callable[..., Any])
OUTCOME_COLUMNS: Final = ["user_id", "login", "entitlement_id", "status", "message"]
CHECK_COLUMNS: Final = ["user_id", "login", "entitlement_id", "result", "detail"]


def _output_option(help_text: str, *, directory: bool) -> Callable[[F], F]:
    kind = click.Path(path_type=Path, dir_okay=directory, file_okay=not directory)
    return click.option("--output", type=kind, required=True, help=help_text)


def _now() -> datetime:
    return datetime.now(UTC)


@click.group()
def review() -> None:
    """Access-review campaigns: start one from a complete run, apply the reviewers'
    decisions through the plugin, verify them with a fresh sync, write the evidence."""


@review.command()
@IGNORED_TENANTS_OPTION
@SNAPSHOT_OPTION
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@PLUGIN_OPTION
@click.option("--run", "run_id", type=int, help="Run id (default: the last complete full run).")
@_output_option("The CSV file reviewers fill in (decision, reviewer, comment).", directory=False)
@VERBOSE_OPTION
def start(
    snapshot: Path,
    tenant_id: str,
    plugin_name: str,
    run_id: int | None,
    output: Path,
) -> None:
    """Start a campaign over a complete full run: one row per account and entitlement held.
    Prints the campaign id on standard output."""
    refuse_the_snapshot(output, snapshot)
    with open_store(snapshot) as store:
        cstore = CampaignStore(store)
        run = pick_campaign_run(store, tenant_id, plugin_name, run_id)
        campaign = cstore.start(run, _now())
        with private_output(output) as handle:
            write_campaign_csv(campaign, cstore.population(campaign.campaign_id), handle)
    click.echo(
        f"campaign {campaign.campaign_id}: run {run.run_id} of {tenant_id}/{plugin_name}, "
        f"{campaign.rows} grants of {campaign.accounts} accounts, population SHA-256 "
        f"{campaign.sha256}; fill in decision (keep or revoke) and reviewer in {output}",
        err=True,
    )
    click.echo(campaign.campaign_id)


def _read_decisions(path: Path) -> tuple[str, str]:
    """The decisions file's text and the SHA-256 of its bytes."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8"), hashlib.sha256(data).hexdigest()
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text (save it as CSV UTF-8)") from None


def _campaign_hooks(
    tenants_file: Path, campaign: Campaign
) -> tuple[Any, str]:  # (PluginHooks, mode)
    [tenant] = tenants_from(tenants_file, (campaign.tenant_id,))
    host = plugin_host()
    require_enabled(host, tenant, campaign.plugin)
    hooks = host.hooks(tenant, campaign.plugin)
    status = hooks.configure()
    if status is None:
        raise ConfigurationError(f"plugin {campaign.plugin!r} did not configure {tenant.id!r}")
    return hooks, status.mode


def _logins(store: SnapshotStore, campaign: Campaign) -> dict[str, str]:
    return {
        str(r["id"]): str(r["login"] or "")
        for r in store.query(
            "SELECT id, json_extract(profile, '$.login') AS login FROM resources"
            " WHERE run_id = ? AND type = 'user'",
            (campaign.run_id,),
        )
    }


@review.command()
@TENANTS_OPTION
@SNAPSHOT_OPTION
@CAMPAIGN_OPTION
@click.option(
    "--decisions",
    "decisions_file",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The filled-in CSV from review start.",
)
@click.option("--dry-run", is_flag=True, help="Plan the revokes; write nothing, record nothing.")
@click.option("--yes", is_flag=True, help="Make the changes without asking.")
@format_option("table", "json", "csv")
@VERBOSE_OPTION
def apply(
    tenants_file: Path,
    snapshot: Path,
    campaign_id: int,
    decisions_file: Path,
    *,
    dry_run: bool,
    yes: bool,
    fmt: str,
) -> None:
    """Check the decisions against the campaign, then revoke each `revoke` through the
    plugin, one at a time, recording each outcome; run it again to resume."""
    text, digest = _read_decisions(decisions_file)
    with open_store(snapshot) as store:
        cstore = CampaignStore(store)
        campaign = cstore.get(campaign_id)
        decisions = parse_decisions(text, campaign, cstore.population(campaign_id))
        revokes = [d for d in decisions if d.decision == "revoke"]
        click.echo(
            f"campaign {campaign_id}: {len(decisions)} decisions checked, "
            f"{len(decisions) - len(revokes)} keep, {len(revokes)} revoke",
            err=True,
        )
        hooks, mode = _campaign_hooks(tenants_file, campaign)
        if not dry_run:
            if mode != "provisioning":
                raise ReadOnlyError(
                    f"{campaign.tenant_id}/{campaign.plugin} runs in {mode} mode: it cannot "
                    "revoke; nothing was written (try --dry-run to see the plan)"
                )
            _confirm(campaign, len(revokes), yes=yes)
            cstore.record_decisions(campaign, decisions, digest, _now(), text)
        logins = _logins(store, campaign)

        def shown(number: int, total: int, d: Decision, outcome: Outcome | None) -> None:
            what = f"[{number}/{total}] revoke {d.entitlement_id} from {d.user_id}"
            what += f" ({logins.get(d.user_id, '?')})"
            state = "done before" if outcome is None else outcome.status
            message = outcome.note if outcome else ""
            click.echo(
                safe_text(f"{what}: {state}" + (f": {message}" if message else "")), err=True
            )

        try:
            outcomes = apply_decisions(
                cstore,
                campaign,
                hooks.provision,
                revokes=revokes,
                dry_run=dry_run,
                clock=_now,
                on_item=shown,
            )
        except KeyboardInterrupt:
            if not dry_run:
                click.echo(
                    f"campaign {campaign_id}: the outcomes so far are recorded; run the same "
                    "command again to go on where it stopped",
                    err=True,
                )
            raise
    rows = [
        {
            "user_id": o.user_id,
            "login": logins.get(o.user_id, ""),
            "entitlement_id": o.entitlement_id,
            "status": o.status,
            "message": o.message,
        }
        for o in outcomes
    ]
    write_rows(rows, OUTCOME_COLUMNS, fmt, sys.stdout)
    counts = Counter(o.status for o in outcomes)
    click.echo(
        f"campaign {campaign_id}: "
        + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing to revoke"),
        err=True,
    )
    if counts["failed"]:
        sys.exit(EXIT_FAILED)
    if counts["refused"]:
        sys.exit(EXIT_REFUSED)


def _confirm(campaign: Campaign, revokes: int, *, yes: bool) -> None:
    if yes or revokes == 0:
        return
    question = (
        f"revoke {revokes} grant(s) in {campaign.tenant_id} through {campaign.plugin}"
        f" (campaign {campaign.campaign_id})?"
    )
    if not sys.stdin.isatty():
        raise UsageError(f"{question} real writes need --yes, or a terminal to confirm on")
    if not click.confirm(question, err=True):
        raise UsageError("not confirmed; nothing was written")


@review.command()
@TENANTS_OPTION
@SNAPSHOT_OPTION
@CAMPAIGN_OPTION
@format_option("table", "json", "csv")
@VERBOSE_OPTION
def verify(tenants_file: Path, snapshot: Path, campaign_id: int, fmt: str) -> None:
    """A fresh sync of the users with revokes: each revoke removed, not removed or regained,
    and access those users gained since the reviewed run."""
    with open_store(snapshot) as store:
        cstore = CampaignStore(store)
        campaign = cstore.get(campaign_id)
        hooks_tenant = tenants_from(tenants_file, (campaign.tenant_id,))[0]
        host = plugin_host()
        require_enabled(host, hooks_tenant, campaign.plugin)

        def sync(request: SyncRequest) -> int:
            outcome = sync_tenant(host, hooks_tenant, campaign.plugin, store, request)
            if outcome.run_id is None:
                raise ConfigurationError(f"plugin {campaign.plugin!r} synced nothing")
            return outcome.run_id

        run_id, checks = verify_campaign(cstore, campaign, sync, _now())
        logins = _logins(store, campaign)
    rows = [c | {"login": logins.get(c["user_id"], "")} for c in checks]
    write_rows(rows, CHECK_COLUMNS, fmt, sys.stdout)
    counts = Counter(c["result"] for c in checks)
    click.echo(
        f"campaign {campaign_id}: "
        + (
            f"verified by run {run_id}: " + ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))
            if checks
            else "no revokes to verify"
        ),
        err=True,
    )
    if counts["not_removed"] or counts["regained"]:
        sys.exit(EXIT_FAILED)


@review.command()
@IGNORED_TENANTS_OPTION
@SNAPSHOT_OPTION
@CAMPAIGN_OPTION
@_output_option("Directory for the evidence (created 0700).", directory=True)
@VERBOSE_OPTION
def evidence(
    snapshot: Path,
    campaign_id: int,
    output: Path,
) -> None:
    """The population, decisions, remediation log, verification, the HTML report of the
    reviewed run and a manifest with the SHA-256 of each file."""
    from coupa_plugin.refhost._review import gather_review
    from coupa_plugin.refhost._review_html import render_review

    with open_store(snapshot) as store:
        cstore = CampaignStore(store)
        campaign = cstore.get(campaign_id)
        report = render_review(
            gather_review(
                store, campaign.tenant_id, campaign.plugin, now=_now(), run_id=campaign.run_id
            )
        )
        try:
            manifest = write_evidence(cstore, campaign, output, report)
        except OSError as exc:
            raise ConfigurationError(f"cannot write {output}: {exc.strerror or exc}") from None
    for name, digest in manifest.items():
        click.echo(f"{digest}  {name}")
    click.echo(
        f"wrote {len(manifest) + 2} files to {output} (manifest.json, manifest.sha256)", err=True
    )
