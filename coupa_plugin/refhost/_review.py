"""The access review of one run: what a reviewer looks at, gathered from a snapshot.

`gather_review` reads one complete run (by default the tenant's latest complete full run) and
the run it is compared with (by default the latest complete full run before it) and returns a
`Review`: the run's facts, counts, the exceptions reviewers look at first, the changes since
the earlier run, license use, recent history and every entitlement with its holders.
`coupa_plugin.refhost._review_html` renders it as one self-contained HTML file.

The exceptions are derived from what the plugin records:

* a resource whose profile says ``privileged: true`` (Coupa's omnipotent roles, e.g. Admin)
  makes its entitlements privileged;
* a user's profile says ``api_user`` / ``support_user`` for API and support accounts;
* ``last_login_at`` in a user's profile, when a plugin records it, tells who never signed in.
  Coupa's user API does not report sign-ins, so for Coupa this list is marked unavailable rather
  than shown empty.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime

import attrs

from coupa_plugin.host.errors import ConfigurationError
from coupa_plugin.host.model import SyncRequest
from coupa_plugin.refhost._reports import RunDiff, diff_runs, refusal
from coupa_plugin.refhost._snapshot import RunRecord, SnapshotStore

__all__ = [
    "DisabledHolding",
    "EntitlementChange",
    "EntitlementRow",
    "HistoryPoint",
    "Holding",
    "LicenseUse",
    "Review",
    "UserRow",
    "gather_review",
    "pick_review_runs",
]

HISTORY_RUNS = 8
LAST_LOGIN_KEY = "last_login_at"


@attrs.frozen(kw_only=True)
class UserRow:
    """An account of the run, as a reviewer sees it."""

    index: int
    id: str
    login: str
    name: str
    status: str
    kind: str  # "person", "API account", "support account"


@attrs.frozen(kw_only=True)
class EntitlementRow:
    """An entitlement with its holders (indices into `Review.users`, ascending)."""

    id: str
    name: str
    resource_type: str
    resource_name: str
    privileged: bool
    holders: tuple[int, ...]
    active: int
    disabled: int


@attrs.frozen(kw_only=True)
class Holding:
    """A user and the entitlement names that put them on an exceptions list."""

    user: UserRow
    items: tuple[str, ...]


@attrs.frozen(kw_only=True)
class DisabledHolding:
    """A disabled account that still holds licenses or roles."""

    user: UserRow
    licenses: tuple[str, ...]
    roles: tuple[str, ...]


@attrs.frozen(kw_only=True)
class EntitlementChange:
    """Grants of one entitlement added and removed between the two runs."""

    id: str
    name: str
    added: int
    removed: int


@attrs.frozen(kw_only=True)
class LicenseUse:
    """How many active and disabled accounts hold one license."""

    name: str
    active: int
    disabled: int


@attrs.frozen(kw_only=True)
class HistoryPoint:
    """One complete full run in the recent history, with its changes from the one before."""

    run_id: int
    started_at: str
    users: int
    grants: int
    added: int | None
    removed: int | None


@attrs.frozen(kw_only=True)
class Review:
    """Everything the access-review report shows about one run."""

    run: RunRecord
    against: RunRecord | None
    facts: dict[str, str]
    generated_at: datetime
    resource_counts: dict[str, int]
    grant_counts: dict[str, int]
    users: list[UserRow]
    entitlements: list[EntitlementRow]
    privileged: list[Holding]
    privileged_gained: list[Holding] | None
    never_logged_in: list[Holding] | None
    service_accounts: list[Holding]
    disabled_holding: list[DisabledHolding]
    changes: RunDiff | None
    entitlement_changes: list[EntitlementChange]
    licenses: list[LicenseUse]
    history: list[HistoryPoint]

    @property
    def users_enabled(self) -> int:
        return sum(1 for u in self.users if u.status == "enabled")

    @property
    def users_disabled(self) -> int:
        return sum(1 for u in self.users if u.status == "disabled")


def pick_review_runs(
    store: SnapshotStore,
    tenant_id: str,
    plugin: str,
    run_id: int | None,
    against: int | None,
    *,
    allow_partial: bool = False,
) -> tuple[RunRecord, RunRecord | None]:
    """The run to review and the run to compare it with.

    By default the latest complete full run, compared with the latest complete full run before
    it (None when there is none); runs narrowed by type, user or ``since`` never count as
    full. A named run must be a complete run of the tenant and plugin, and a whole one unless
    ``allow_partial``.
    """
    by_id = {r.run_id: r for r in store.runs(tenant_id) if r.plugin == plugin}

    def named(ident: int, option: str) -> RunRecord:
        if ident not in by_id:
            raise ConfigurationError(f"{option} {ident} is not a run of {tenant_id}/{plugin}")
        if why := refusal(by_id[ident], allow_partial=allow_partial):
            raise ConfigurationError(f"{option}: {why}")
        return by_id[ident]

    if run_id is None:
        run = store.last_complete(tenant_id, plugin, SyncRequest())
        if run is None:
            raise ConfigurationError(f"{tenant_id}/{plugin} has no complete full run to review")
    else:
        run = named(run_id, "--run")
    if against is not None:
        other = named(against, "--against")
        if other.run_id == run.run_id:
            raise ConfigurationError("--against names the run under review; pick another run")
        return run, other
    earlier = store.complete_before(tenant_id, plugin, run.run_id)
    return run, earlier[-1] if earlier else None


def _user_kind(profile: dict[str, object]) -> str:
    if profile.get("api_user"):
        return "API account"
    if profile.get("support_user"):
        return "support account"
    return "person"


def _load_users(
    store: SnapshotStore, run_id: int
) -> tuple[list[UserRow], dict[str, int], set[int] | None]:
    """The run's users in id order, their positions by id, and who never signed in (None when
    the profiles do not say)."""
    users: list[UserRow] = []
    index: dict[str, int] = {}
    never: set[int] = set()
    login_known = False
    rows = store.stream(
        "SELECT id, display_name, status, profile FROM resources WHERE run_id = ?"
        " AND type = 'user' ORDER BY CAST(id AS INTEGER), id",
        (run_id,),
    )
    for row in rows:
        profile = json.loads(row["profile"])
        if LAST_LOGIN_KEY in profile:
            login_known = True
            if profile[LAST_LOGIN_KEY] is None:
                never.add(len(users))
        index[row["id"]] = len(users)
        users.append(
            UserRow(
                index=len(users),
                id=row["id"],
                login=str(profile.get("login") or row["id"]),
                name=row["display_name"],
                status=row["status"] or "unknown",
                kind=_user_kind(profile),
            )
        )
    return users, index, never if login_known else None


def _grant_delta(store: SnapshotStore, a: int, b: int) -> int:
    """How many grants run ``a`` has that run ``b`` has not."""
    rows = store.query(
        "SELECT COUNT(*) AS n FROM (SELECT entitlement_id, principal_id FROM grants"
        " WHERE run_id = ? EXCEPT SELECT entitlement_id, principal_id FROM grants"
        " WHERE run_id = ?)",
        (a, b),
    )
    return int(rows[0]["n"])


def _history(store: SnapshotStore, run: RunRecord) -> list[HistoryPoint]:
    runs = [*store.complete_before(run.tenant_id, run.plugin, run.run_id), run][-HISTORY_RUNS:]
    points = []
    for position, item in enumerate(runs):
        users = store.query(
            "SELECT COUNT(*) AS n FROM resources WHERE run_id = ? AND type = 'user'",
            (item.run_id,),
        )[0]["n"]
        before = runs[position - 1] if position else None
        points.append(
            HistoryPoint(
                run_id=item.run_id,
                started_at=item.started_at,
                users=int(users),
                grants=item.grants,
                added=_grant_delta(store, item.run_id, before.run_id) if before else None,
                removed=_grant_delta(store, before.run_id, item.run_id) if before else None,
            )
        )
    return points


def _holdings(
    users: list[UserRow], held: dict[int, list[str]], keep: Iterable[int] | None = None
) -> list[Holding]:
    chosen = sorted(held) if keep is None else sorted(set(keep) & set(held))
    return [Holding(user=users[i], items=tuple(sorted(held[i]))) for i in chosen]


def gather_review(  # noqa: C901 - one branch per exception the review lists
    store: SnapshotStore,
    tenant_id: str,
    plugin: str,
    *,
    now: datetime,
    run_id: int | None = None,
    against: int | None = None,
    allow_partial: bool = False,
) -> Review:
    """Read everything the report shows about one run of ``tenant_id``/``plugin``."""
    run, other = pick_review_runs(
        store, tenant_id, plugin, run_id, against, allow_partial=allow_partial
    )
    rid = run.run_id
    users, user_index, never = _load_users(store, rid)

    resource_counts = {
        row["type"]: int(row["n"])
        for row in store.query(
            "SELECT type, COUNT(*) AS n FROM resources WHERE run_id = ? GROUP BY type"
            " ORDER BY type",
            (rid,),
        )
    }
    privileged_resources = {
        (row["type"], row["id"])
        for row in store.query(
            "SELECT type, id FROM resources WHERE run_id = ?"
            " AND json_extract(profile, '$.privileged') = 1",
            (rid,),
        )
    }
    entitlement_info = {
        row["id"]: row
        for row in store.query(
            "SELECT e.id, e.display_name, e.resource_type, e.resource_id,"
            " r.display_name AS resource_name FROM entitlements e LEFT JOIN resources r"
            " ON r.run_id = e.run_id AND r.type = e.resource_type AND r.id = e.resource_id"
            " WHERE e.run_id = ?",
            (rid,),
        )
    }

    holders: dict[str, list[int]] = defaultdict(list)
    for row in store.stream(
        "SELECT entitlement_id, principal_id FROM grants WHERE run_id = ?", (rid,)
    ):
        principal = row["principal_id"]
        if principal not in user_index:  # a grant to a user the run did not list
            user_index[principal] = len(users)
            users.append(
                UserRow(
                    index=len(users),
                    id=principal,
                    login=principal,
                    name="(not in this run)",
                    status="unknown",
                    kind="person",
                )
            )
        holders[row["entitlement_id"]].append(user_index[principal])

    entitlements: list[EntitlementRow] = []
    grant_counts: Counter[str] = Counter()
    for ent_id in sorted(set(entitlement_info) | set(holders)):
        info = entitlement_info.get(ent_id)
        kind = info["resource_type"] if info else ent_id.split(":", 1)[0]
        resource_id = info["resource_id"] if info else ""
        members = tuple(sorted(holders.get(ent_id, ())))
        active = sum(1 for i in members if users[i].status == "enabled")
        grant_counts[kind] += len(members)
        entitlements.append(
            EntitlementRow(
                id=ent_id,
                name=info["display_name"] if info else ent_id,
                resource_type=kind,
                resource_name=(info["resource_name"] or resource_id) if info else ent_id,
                privileged=(kind, resource_id) in privileged_resources,
                holders=members,
                active=active,
                disabled=len(members) - active,
            )
        )
    entitlements.sort(key=lambda e: (e.resource_type, e.name.casefold(), e.id))

    privileged_held: dict[int, list[str]] = defaultdict(list)
    licenses_held: dict[int, list[str]] = defaultdict(list)
    roles_held: dict[int, list[str]] = defaultdict(list)
    any_held: dict[int, list[str]] = defaultdict(list)
    for ent in entitlements:
        for i in ent.holders:
            any_held[i].append(ent.name)
            if ent.privileged:
                privileged_held[i].append(ent.name)
            if ent.resource_type == "license":
                licenses_held[i].append(ent.name)
            elif ent.resource_type == "role":
                roles_held[i].append(ent.name)

    service = [i for i in any_held if users[i].status == "enabled" and users[i].kind != "person"]
    disabled = sorted(
        i for i in set(licenses_held) | set(roles_held) if users[i].status == "disabled"
    )
    changes = diff_runs(store, other.run_id, rid) if other else None
    gained: list[Holding] | None = None
    entitlement_changes: list[EntitlementChange] = []
    if changes is not None:
        privileged_ids = {e.id for e in entitlements if e.privileged}
        gained_held: dict[int, list[str]] = defaultdict(list)
        names = {e.id: e.name for e in entitlements}
        added: Counter[str] = Counter()
        removed: Counter[str] = Counter()
        for grant in changes.grants_added:
            added[grant["entitlement_id"]] += 1
            if grant["entitlement_id"] in privileged_ids:
                who = user_index[grant["principal_id"]]
                gained_held[who].append(names[grant["entitlement_id"]])
        for grant in changes.grants_removed:
            removed[grant["entitlement_id"]] += 1
            names.setdefault(grant["entitlement_id"], grant["entitlement"] or "")
        gained = _holdings(users, gained_held)
        entitlement_changes = sorted(
            (
                EntitlementChange(
                    id=ent_id,
                    name=names.get(ent_id) or ent_id,
                    added=added[ent_id],
                    removed=removed[ent_id],
                )
                for ent_id in set(added) | set(removed)
            ),
            key=lambda c: (-(c.added + c.removed), c.id),
        )

    return Review(
        run=run,
        against=other,
        facts=store.facts(rid),
        generated_at=now,
        resource_counts=resource_counts,
        grant_counts=dict(sorted(grant_counts.items())),
        users=users,
        entitlements=entitlements,
        privileged=_holdings(users, privileged_held),
        privileged_gained=gained,
        never_logged_in=(
            _holdings(users, any_held, (i for i in never if users[i].status == "enabled"))
            if never is not None
            else None
        ),
        service_accounts=_holdings(users, any_held, service),
        disabled_holding=[
            DisabledHolding(
                user=users[i],
                licenses=tuple(sorted(licenses_held.get(i, ()))),
                roles=tuple(sorted(roles_held.get(i, ()))),
            )
            for i in disabled
        ],
        changes=changes,
        entitlement_changes=entitlement_changes,
        licenses=[
            LicenseUse(name=e.name, active=e.active, disabled=e.disabled)
            for e in entitlements
            if e.resource_type == "license"
        ],
        history=_history(store, run),
    )
