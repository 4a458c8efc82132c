"""Access-review campaigns: a closed loop from a complete run to evidence.

A campaign is the population of one complete full run (one row per account and entitlement
held), the reviewers' decisions on it (``keep`` or ``revoke``), the remediation of every
revoke through the plugin's ``provision`` hook, a verification by a fresh targeted sync of
the affected users, and the evidence an auditor asks for. Everything is kept in the snapshot
file beside the runs (tables ``campaigns``, ``campaign_rows``, ``campaign_decisions``,
``campaign_actions``, ``campaign_checks``), so an interrupted apply resumes where it stopped.

The population's SHA-256 is the SHA-256 of its canonical CSV (:func:`population_csv`: the
columns of :data:`POPULATION_COLUMNS`, in row order, as Python's ``csv`` module writes them),
which is exactly the ``population.csv`` of the evidence: ``sha256sum population.csv`` checks it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TextIO

import attrs

from coupa_plugin.host.errors import (
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    PluginError,
    ReadOnlyError,
)
from coupa_plugin.host.model import ProvisionRequest, ProvisionResult, SyncRequest
from coupa_plugin.refhost._errors import DecisionsError
from coupa_plugin.refhost._jobs import is_refusal
from coupa_plugin.refhost._reports import csv_value, export_rows, pick_run
from coupa_plugin.refhost._snapshot import RunRecord, SnapshotStore, private_output

__all__ = [
    "DECISION_COLUMNS",
    "POPULATION_COLUMNS",
    "Campaign",
    "CampaignStore",
    "Decision",
    "Outcome",
    "apply_decisions",
    "parse_decisions",
    "population_csv",
    "verify_campaign",
    "write_campaign_csv",
    "write_evidence",
]

# what identifies a reviewed row and what a reviewer sees of it; the decisions file must
# keep these cells exactly as `review start` wrote them
POPULATION_COLUMNS: Final = (
    "user_id",
    "login",
    "user_name",
    "user_status",
    "entitlement_id",
    "entitlement",
    "resource_type",
    "privileged",
)
DECISION_COLUMNS: Final = ("decision", "reviewer", "comment")
CAMPAIGN_COLUMNS: Final = ("campaign_id", *POPULATION_COLUMNS, *DECISION_COLUMNS)
DECISIONS: Final = frozenset({"keep", "revoke"})
# an item whose last outcome is one of these is done; an apply run again skips it
DONE: Final = frozenset({"applied", "unchanged", "refused"})
_MAX_PROBLEMS: Final = 20

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS campaigns (
    campaign_id      INTEGER PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    plugin           TEXT NOT NULL,
    run_id           INTEGER NOT NULL REFERENCES runs (run_id),
    created_at       TEXT NOT NULL,
    rows             INTEGER NOT NULL,
    accounts         INTEGER NOT NULL,
    sha256           TEXT NOT NULL,
    decisions_sha256 TEXT,
    decided_at       TEXT,
    decisions_file   TEXT
);
CREATE TABLE IF NOT EXISTS campaign_rows (
    campaign_id    INTEGER NOT NULL REFERENCES campaigns (campaign_id),
    position       INTEGER NOT NULL,
    user_id        TEXT NOT NULL,
    entitlement_id TEXT NOT NULL,
    row            TEXT NOT NULL,
    PRIMARY KEY (campaign_id, user_id, entitlement_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS campaign_decisions (
    campaign_id    INTEGER NOT NULL REFERENCES campaigns (campaign_id),
    user_id        TEXT NOT NULL,
    entitlement_id TEXT NOT NULL,
    decision       TEXT NOT NULL,
    reviewer       TEXT NOT NULL,
    comment        TEXT NOT NULL,
    PRIMARY KEY (campaign_id, user_id, entitlement_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS campaign_actions (
    action_id      INTEGER PRIMARY KEY,
    campaign_id    INTEGER NOT NULL REFERENCES campaigns (campaign_id),
    user_id        TEXT NOT NULL,
    entitlement_id TEXT NOT NULL,
    status         TEXT NOT NULL,
    message        TEXT NOT NULL,
    changes        TEXT NOT NULL,
    at             TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS campaign_checks (
    campaign_id    INTEGER NOT NULL REFERENCES campaigns (campaign_id),
    verified_at    TEXT NOT NULL,
    run_id         INTEGER NOT NULL,
    user_id        TEXT NOT NULL,
    entitlement_id TEXT NOT NULL,
    result         TEXT NOT NULL,
    detail         TEXT NOT NULL
);
"""


@attrs.frozen(kw_only=True)
class Campaign:
    """One access-review campaign over one complete full run."""

    campaign_id: int
    tenant_id: str
    plugin: str
    run_id: int
    created_at: str
    rows: int
    accounts: int
    sha256: str
    decisions_sha256: str | None = None
    decided_at: str | None = None


@attrs.frozen(kw_only=True)
class Decision:
    """A reviewer's decision on one row of a campaign."""

    user_id: str
    entitlement_id: str
    decision: str
    reviewer: str
    comment: str = ""


@attrs.frozen(kw_only=True)
class Outcome:
    """What one remediation attempt did (``applied``, ``unchanged``, ``refused``,
    ``failed``, ``planned`` for a dry run)."""

    user_id: str
    entitlement_id: str
    status: str
    message: str = ""
    changes: tuple[str, ...] = ()
    at: str = ""

    @property
    def note(self) -> str:
        """The message without a leading ``<status>:`` (``refused: …`` says it twice)."""
        return self.message.removeprefix(f"{self.status}: ")


def _cell(value: Any) -> str:
    """A population value as its CSV cell (what a spreadsheet would run as a formula kept
    as text, control characters replaced): the same text in the file and in the hash."""
    if value is None:
        return ""
    return str(csv_value(value))


def population_csv(rows: Iterable[dict[str, Any]], *, header: bool = True) -> str:
    """The canonical CSV of a population; its SHA-256 is the campaign's."""
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(POPULATION_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in POPULATION_COLUMNS])
    return out.getvalue()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CampaignStore:
    """Campaigns kept in a snapshot file."""

    def __init__(self, store: SnapshotStore) -> None:
        self.store = store
        store.create_tables(_SCHEMA)

    def start(self, run: RunRecord, now: datetime) -> Campaign:
        """A campaign over every grant of ``run`` (a complete run over the whole tenant),
        recorded in one transaction; the rows stream from the run, never all in memory."""
        digest = hashlib.sha256()
        counts = {"rows": 0, "campaign_id": 0}
        accounts: set[str] = set()

        def statements() -> Iterator[tuple[str, tuple[Any, ...]]]:
            # inside the transaction: two starts at once cannot take the same id
            [row] = self.store.query(
                "SELECT coalesce(max(campaign_id), 0) + 1 AS next FROM campaigns"
            )
            campaign_id = counts["campaign_id"] = int(row["next"])
            digest.update(population_csv(()).encode())  # the header
            grants = (r for r in export_rows(self.store, run.run_id) if r["entitlement_id"])
            for position, grant in enumerate(grants):
                kept = {c: grant[c] for c in POPULATION_COLUMNS}
                digest.update(population_csv((kept,), header=False).encode())
                accounts.add(kept["user_id"])
                counts["rows"] = position + 1
                yield (
                    "INSERT INTO campaign_rows VALUES (?, ?, ?, ?, ?)",
                    (
                        campaign_id,
                        position,
                        kept["user_id"],
                        kept["entitlement_id"],
                        json.dumps(kept),
                    ),
                )
            yield (
                "INSERT INTO campaigns (campaign_id, tenant_id, plugin, run_id, created_at, rows,"
                " accounts, sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    campaign_id,
                    run.tenant_id,
                    run.plugin,
                    run.run_id,
                    now.isoformat(timespec="seconds"),
                    counts["rows"],
                    len(accounts),
                    digest.hexdigest(),
                ),
            )

        self.store.execute_all(statements())
        return self.get(counts["campaign_id"])

    def get(self, campaign_id: int) -> Campaign:
        rows = self.store.query("SELECT * FROM campaigns WHERE campaign_id = ?", (campaign_id,))
        if not rows:
            known = [
                r["campaign_id"] for r in self.store.query("SELECT campaign_id FROM campaigns")
            ]
            raise NotFoundError(
                f"no campaign {campaign_id} in {self.store.path}; campaigns: {known or 'none'} "
                "(start one with `coupa-iga review start`)"
            )
        return Campaign(**{f.name: rows[0][f.name] for f in attrs.fields(Campaign)})

    def decisions_file(self, campaign_id: int) -> str:
        """The decisions file as the first apply read it (its SHA-256 is the campaign's
        ``decisions_sha256``); empty before."""
        [row] = self.store.query(
            "SELECT coalesce(decisions_file, '') AS text FROM campaigns WHERE campaign_id = ?",
            (campaign_id,),
        )
        return str(row["text"])

    def population(self, campaign_id: int) -> Iterator[dict[str, Any]]:
        """The campaign's rows in their order, streamed."""
        for r in self.store.stream(
            "SELECT row FROM campaign_rows WHERE campaign_id = ? ORDER BY position",
            (campaign_id,),
        ):
            yield json.loads(r["row"])

    def record_decisions(
        self,
        campaign: Campaign,
        decisions: list[Decision],
        digest: str,
        now: datetime,
        original: str = "",
    ) -> None:
        """Keep the decisions the first apply was given; a later apply must bring the same
        file (a resumed apply), never another set."""
        if campaign.decisions_sha256 is not None:
            if campaign.decisions_sha256 != digest:
                raise DecisionsError(
                    f"campaign {campaign.campaign_id} was applied with another decisions file "
                    f"(SHA-256 {campaign.decisions_sha256[:16]}…, decided {campaign.decided_at});"
                    " a campaign's decisions cannot change once applied: start a new campaign"
                )
            return
        rows: list[tuple[str, tuple[Any, ...]]] = [
            (
                "INSERT INTO campaign_decisions VALUES (?, ?, ?, ?, ?, ?)",
                (
                    campaign.campaign_id,
                    d.user_id,
                    d.entitlement_id,
                    d.decision,
                    d.reviewer,
                    d.comment,
                ),
            )
            for d in decisions
        ]
        rows.append(
            (
                "UPDATE campaigns SET decisions_sha256 = ?, decided_at = ?, decisions_file = ?"
                " WHERE campaign_id = ?",
                (digest, now.isoformat(timespec="seconds"), original, campaign.campaign_id),
            )
        )
        self.store.execute_all(rows)  # all of them with the file's hash, or none

    def decisions(self, campaign_id: int) -> list[Decision]:
        return [
            Decision(
                **{
                    k: r[k]
                    for k in ("user_id", "entitlement_id", "decision", "reviewer", "comment")
                }
            )
            for r in self.store.query(
                "SELECT d.* FROM campaign_decisions d JOIN campaign_rows r ON r.campaign_id ="
                " d.campaign_id AND r.user_id = d.user_id AND r.entitlement_id = d.entitlement_id"
                " WHERE d.campaign_id = ? ORDER BY r.position",
                (campaign_id,),
            )
        ]

    def record_outcome(self, campaign_id: int, outcome: Outcome) -> None:
        self.store.execute(
            "INSERT INTO campaign_actions (campaign_id, user_id, entitlement_id, status,"
            " message, changes, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                campaign_id,
                outcome.user_id,
                outcome.entitlement_id,
                outcome.status,
                outcome.message,
                json.dumps(list(outcome.changes)),
                outcome.at,
            ),
        )

    def actions(self, campaign_id: int) -> list[Outcome]:
        """Every remediation attempt, oldest first (the remediation log)."""
        return [
            Outcome(
                user_id=r["user_id"],
                entitlement_id=r["entitlement_id"],
                status=r["status"],
                message=r["message"],
                changes=tuple(json.loads(r["changes"])),
                at=r["at"],
            )
            for r in self.store.query(
                "SELECT * FROM campaign_actions WHERE campaign_id = ? ORDER BY action_id",
                (campaign_id,),
            )
        ]

    def last_outcomes(self, campaign_id: int) -> dict[tuple[str, str], Outcome]:
        return {(o.user_id, o.entitlement_id): o for o in self.actions(campaign_id)}

    def record_checks(
        self, campaign_id: int, run_id: int, now: datetime, checks: list[dict[str, str]]
    ) -> None:
        """Keep one verification's checks, all of them or none."""
        at = now.isoformat(timespec="seconds")
        self.store.execute_all(
            (
                "INSERT INTO campaign_checks VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    campaign_id,
                    at,
                    run_id,
                    c["user_id"],
                    c["entitlement_id"],
                    c["result"],
                    c["detail"],
                ),
            )
            for c in checks
        )

    def last_checks(self, campaign_id: int) -> list[dict[str, Any]]:
        """The newest verification's rows (empty before the first); each verification syncs
        a run of its own, so the newest is the one of the highest run id."""
        return self.store.query(
            "SELECT verified_at, run_id, user_id, entitlement_id, result, detail FROM"
            " campaign_checks WHERE campaign_id = ? AND run_id = (SELECT max(run_id)"
            " FROM campaign_checks WHERE campaign_id = ?) ORDER BY rowid",
            (campaign_id, campaign_id),
        )


def pick_campaign_run(
    store: SnapshotStore, tenant_id: str, plugin: str, run_id: int | None
) -> RunRecord:
    """A campaign reviews a complete run over the whole tenant, never a partial one."""
    return pick_run(store, tenant_id, plugin, run_id, allow_partial=False)


def write_campaign_csv(campaign: Campaign, rows: Iterable[dict[str, Any]], out: TextIO) -> None:
    """The file reviewers fill in: the population with empty decision columns."""
    writer = csv.writer(out)
    writer.writerow(CAMPAIGN_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                str(campaign.campaign_id),
                *(_cell(row.get(c)) for c in POPULATION_COLUMNS),
                "",
                "",
                "",
            ]
        )


def _at(cells: list[str], position: int) -> str:
    return cells[position] if position < len(cells) else ""


def _checked_row(
    row: dict[str, str],
    campaign: Campaign,
    expected: dict[tuple[str, str], list[str]],
    seen: dict[tuple[str, str], int],
    line: int,
) -> Decision | str:
    """One line of a decisions file as a decision, or what is wrong with it."""
    key = (row["user_id"], row["entitlement_id"])
    which = f"(user {key[0]}, {key[1]})"
    if row["campaign_id"] != str(campaign.campaign_id):
        return f"campaign_id {row['campaign_id']!r} is not {campaign.campaign_id}"
    if key not in expected:
        return f"unknown row {which}"
    if key in seen:
        return f"the same row as line {seen[key]}"
    seen[key] = line
    want = dict(zip(POPULATION_COLUMNS, expected[key], strict=True))
    changed = [c for c in POPULATION_COLUMNS if row[c] != want[c]]
    if changed:
        return f"changed column(s) {changed} {which}"
    decision = row["decision"].strip().lower()
    if decision not in DECISIONS:
        return f"decision {row['decision']!r} is not keep or revoke {which}"
    if not row["reviewer"].strip():
        return f"no reviewer {which}"
    return Decision(
        user_id=key[0],
        entitlement_id=key[1],
        decision=decision,
        reviewer=row["reviewer"].strip(),
        comment=row["comment"].strip(),
    )


def parse_decisions(
    text: str, campaign: Campaign, population: Iterable[dict[str, Any]]
) -> list[Decision]:
    """Every row of a filled-in campaign file, checked against the campaign.

    :raises DecisionsError: naming each line that is unknown, changed, duplicated, undecided
        or without a reviewer, and the campaign rows the file leaves out.
    """
    expected = {
        (row["user_id"], row["entitlement_id"]): [_cell(row.get(c)) for c in POPULATION_COLUMNS]
        for row in population
    }
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    header = next(reader, None)
    missing_columns = [c for c in CAMPAIGN_COLUMNS if header is None or c not in header]
    if header is None or missing_columns:
        raise DecisionsError(
            f"the decisions file lacks the column(s) {missing_columns}; fill in the file "
            "`coupa-iga review start` wrote"
        )
    index = {name: header.index(name) for name in CAMPAIGN_COLUMNS}
    problems: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    decisions: list[Decision] = []
    for line, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue  # a blank line a spreadsheet left
        row = dict(
            zip(CAMPAIGN_COLUMNS, (_at(cells, index[c]) for c in CAMPAIGN_COLUMNS), strict=True)
        )
        checked = _checked_row(row, campaign, expected, seen, line)
        if isinstance(checked, str):
            problems.append(f"line {line}: {checked}")
        else:
            decisions.append(checked)
    left_out = [k for k in expected if k not in seen]
    if left_out:
        shown = ", ".join(f"user {u} {e}" for u, e in left_out[:3])
        problems.append(
            f"{len(left_out)} row(s) of the campaign are missing from the file ({shown}…)"
        )
    if problems:
        more = len(problems) - _MAX_PROBLEMS
        raise DecisionsError(
            "; ".join(problems[:_MAX_PROBLEMS])
            + (f"; and {more} more" if more > 0 else "")
            + "; nothing was applied"
        )
    return decisions


# what applying needs of the host: one provisioning request at a time (the plugin's
# ``provision`` hook, through the host's plugin manager)
Provisioner = Callable[[ProvisionRequest], ProvisionResult | None]


def _attempt(provisioner: Provisioner, d: Decision, *, dry_run: bool, at: str) -> Outcome:
    request = ProvisionRequest(
        action="revoke", entitlement_id=d.entitlement_id, principal_id=d.user_id, dry_run=dry_run
    )
    try:
        result = provisioner(request)
    except (AuthenticationError, ConfigurationError, ReadOnlyError):
        raise  # the tenant cannot take any write: stop, nothing is recorded for this item
    except PluginError as exc:
        status = "refused" if is_refusal(exc) else "failed"
        return Outcome(
            user_id=d.user_id,
            entitlement_id=d.entitlement_id,
            at=at,
            status=status,
            message=str(exc),
        )
    if result is None:
        raise ConfigurationError("the plugin did not handle the revoke (is it enabled?)")
    return Outcome(
        user_id=d.user_id,
        entitlement_id=d.entitlement_id,
        at=at,
        status=result.status,
        message=result.message,
        changes=result.changes,
    )


def apply_decisions(
    cstore: CampaignStore,
    campaign: Campaign,
    provisioner: Provisioner,
    *,
    revokes: list[Decision],
    dry_run: bool,
    clock: Callable[[], datetime],
    on_item: Callable[[int, int, Decision, Outcome | None], None] | None = None,
) -> list[Outcome]:
    """Revoke each of ``revokes`` through ``provision``, one at a time, recording each
    outcome as it comes; an item already done (applied, unchanged, refused) is skipped, so an
    interrupted apply resumes where it stopped. A dry run records nothing.

    ``on_item(done, total, decision, outcome)`` is told of each item (``outcome`` None for a
    skipped one).
    """
    earlier = {} if dry_run else cstore.last_outcomes(campaign.campaign_id)
    outcomes: list[Outcome] = []
    for number, decision in enumerate(revokes, start=1):
        before = earlier.get((decision.user_id, decision.entitlement_id))
        if before is not None and before.status in DONE:
            outcomes.append(before)
            if on_item:
                on_item(number, len(revokes), decision, None)
            continue
        outcome = _attempt(
            provisioner, decision, dry_run=dry_run, at=clock().isoformat(timespec="seconds")
        )
        if not dry_run:
            cstore.record_outcome(campaign.campaign_id, outcome)
        outcomes.append(outcome)
        if on_item:
            on_item(number, len(revokes), decision, outcome)
    return outcomes


def affected_users(cstore: CampaignStore, campaign: Campaign) -> list[str]:
    """The users with at least one revoke decision."""
    return sorted(
        {d.user_id for d in cstore.decisions(campaign.campaign_id) if d.decision == "revoke"},
        key=lambda u: (len(u), u),
    )


def verification_checks(
    cstore: CampaignStore, campaign: Campaign, fresh_run: int
) -> list[dict[str, str]]:
    """Each revoke against the fresh run of the affected users: ``removed``, ``not_removed``
    (the revoke was not applied, or did not take), ``regained`` (applied, yet held again);
    and ``gained`` for access those users hold now that the reviewed run did not list."""
    store = cstore.store
    held = store.grants(fresh_run)
    outcomes = cstore.last_outcomes(campaign.campaign_id)
    checks: list[dict[str, str]] = []
    revokes = [d for d in cstore.decisions(campaign.campaign_id) if d.decision == "revoke"]
    for d in revokes:
        outcome = outcomes.get((d.user_id, d.entitlement_id))
        status = outcome.status if outcome else "not applied"
        if (d.entitlement_id, d.user_id) not in held:
            result, detail = "removed", f"remediation: {status}"
        elif outcome is not None and outcome.status == "applied":
            result, detail = "regained", "revoked by this campaign, yet held again"
        else:
            result = "not_removed"
            note = outcome.note if outcome else ""
            detail = f"remediation: {status}" + (f" ({note})" if note else "")
        checks.append(
            {
                "user_id": d.user_id,
                "entitlement_id": d.entitlement_id,
                "result": result,
                "detail": detail,
            }
        )
    users = {d.user_id for d in revokes}
    reviewed = {
        (r["entitlement_id"], r["user_id"]) for r in cstore.population(campaign.campaign_id)
    }
    for entitlement_id, user_id in sorted(held):
        if user_id in users and (entitlement_id, user_id) not in reviewed:
            checks.append(
                {
                    "user_id": user_id,
                    "entitlement_id": entitlement_id,
                    "result": "gained",
                    "detail": f"held now, not in reviewed run {campaign.run_id}",
                }
            )
    return checks


def verify_campaign(
    cstore: CampaignStore,
    campaign: Campaign,
    sync: Callable[[SyncRequest], int],
    now: datetime,
) -> tuple[int, list[dict[str, str]]]:
    """A fresh targeted sync of the affected users (``sync`` returns its run id), checked
    against the decisions; the checks are recorded with the campaign."""
    users = affected_users(cstore, campaign)
    if campaign.decisions_sha256 is None:
        raise ConfigurationError(
            f"campaign {campaign.campaign_id} has no decisions yet: run `coupa-iga review apply`"
        )
    if not users:
        return campaign.run_id, []
    run_id = sync(SyncRequest(principal_ids=frozenset(users)))
    checks = verification_checks(cstore, campaign, run_id)
    cstore.record_checks(campaign.campaign_id, run_id, now, checks)
    return run_id, checks


# -- evidence ------------------------------------------------------------------------------


def _csv_text(columns: Iterable[str], rows: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    names = list(columns)
    writer = csv.writer(out)
    writer.writerow(names)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in names])
    return out.getvalue()


def evidence_files(
    cstore: CampaignStore, campaign: Campaign, report_html: str
) -> Iterator[tuple[str, str]]:
    """(file name, text) of each evidence file, the manifest excepted."""
    cid = campaign.campaign_id
    population = list(cstore.population(cid))
    decisions = cstore.decisions(cid)
    actions = cstore.actions(cid)
    checks = cstore.last_checks(cid)
    by_status: dict[str, int] = {}
    for o in cstore.last_outcomes(cid).values():
        by_status[o.status] = by_status.get(o.status, 0) + 1
    by_result: dict[str, int] = {}
    for c in checks:
        by_result[c["result"]] = by_result.get(c["result"], 0) + 1
    facts = attrs.asdict(campaign) | {
        "decisions": {k: sum(1 for d in decisions if d.decision == k) for k in sorted(DECISIONS)},
        "reviewers": sorted({d.reviewer for d in decisions}),
        "remediation": by_status,
        "verification": {
            "verified_at": checks[0]["verified_at"] if checks else None,
            "run_id": checks[0]["run_id"] if checks else None,
            "results": by_result,
        },
        "population_sha256_is": "SHA-256 of population.csv",
    }
    yield "campaign.json", json.dumps(facts, indent=2, sort_keys=True) + "\n"
    yield "population.csv", population_csv(population)
    yield "population.json", json.dumps(population, indent=1) + "\n"
    decision_rows = [attrs.asdict(d) for d in decisions]
    if campaign.decisions_sha256 is not None:
        yield "decisions-as-submitted.csv", cstore.decisions_file(cid)
    yield (
        "decisions.csv",
        _csv_text(("user_id", "entitlement_id", "decision", "reviewer", "comment"), decision_rows),
    )
    action_rows = [attrs.asdict(o) | {"changes": " | ".join(o.changes)} for o in actions]
    yield (
        "remediation.csv",
        _csv_text(("at", "user_id", "entitlement_id", "status", "message", "changes"), action_rows),
    )
    yield "remediation.json", json.dumps([attrs.asdict(o) for o in actions], indent=1) + "\n"
    yield (
        "verification.csv",
        _csv_text(
            ("verified_at", "run_id", "user_id", "entitlement_id", "result", "detail"), checks
        ),
    )
    yield "verification.json", json.dumps(checks, indent=1) + "\n"
    yield f"report-run-{campaign.run_id}.html", report_html
    yield "summary.txt", _summary(campaign, facts)


def _summary(campaign: Campaign, facts: dict[str, Any]) -> str:
    verification = facts["verification"]
    return (
        f"Access review campaign {campaign.campaign_id}\n"
        f"tenant {campaign.tenant_id}, plugin {campaign.plugin}, reviewed run {campaign.run_id}\n"
        f"started {campaign.created_at}; decisions recorded {campaign.decided_at or '-'}\n"
        f"population: {campaign.rows} grants of {campaign.accounts} accounts, "
        f"SHA-256 {campaign.sha256} (population.csv)\n"
        f"decisions: {_counts(facts['decisions'])}; reviewers: "
        f"{', '.join(facts['reviewers']) or '-'}\n"
        f"remediation (last outcome per revoke): {_counts(facts['remediation'])}\n"
        f"verification: {_counts(verification['results'])} by run {verification['run_id'] or '-'} "
        f"at {verification['verified_at'] or '-'}\n"
        "manifest.json and manifest.sha256 list the SHA-256 of every file "
        "(check with: sha256sum -c manifest.sha256)\n"
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "-"


def write_evidence(
    cstore: CampaignStore, campaign: Campaign, out_dir: Path, report_html: str
) -> dict[str, str]:
    """Write the evidence files into ``out_dir`` (created 0700; every file 0600) with a
    manifest of their SHA-256; returns the manifest (file name -> SHA-256)."""
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    manifest: dict[str, str] = {}
    for name, text in evidence_files(cstore, campaign, report_html):
        with private_output(out_dir / name) as handle:
            handle.write(text)
        manifest[name] = _sha256(text)
    with private_output(out_dir / "manifest.json") as handle:
        handle.write(
            json.dumps({"campaign_id": campaign.campaign_id, "sha256": manifest}, indent=2) + "\n"
        )
    with private_output(out_dir / "manifest.sha256") as handle:
        handle.write("".join(f"{digest}  {name}\n" for name, digest in manifest.items()))
    return manifest
