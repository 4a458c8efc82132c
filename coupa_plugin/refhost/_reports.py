"""Reports over snapshot runs: the access-review change report (diff) and exports."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, Final, TextIO

import attrs

from coupa_plugin.host.errors import ConfigurationError, NotFoundError
from coupa_plugin.refhost._errors import UnknownTypeError
from coupa_plugin.refhost._snapshot import RunRecord, SnapshotStore

__all__ = [
    "EXPORT_COLUMNS",
    "RunDiff",
    "access_rows",
    "csv_value",
    "diff_runs",
    "entitlement_grant_rows",
    "export_rows",
    "pick_run",
    "pick_runs",
    "resource_rows",
    "write_diff",
    "write_export",
    "write_rows",
]


@attrs.frozen(kw_only=True)
class RunDiff:
    """What changed between two runs of a tenant."""

    old_run: int
    new_run: int
    grants_added: list[dict[str, Any]]
    grants_removed: list[dict[str, Any]]
    users_new: list[dict[str, Any]]
    users_gone: list[dict[str, Any]]
    users_enabled: list[dict[str, Any]]
    users_disabled: list[dict[str, Any]]
    entitlements_new: list[dict[str, Any]]
    entitlements_gone: list[dict[str, Any]]
    users_changed: list[dict[str, Any]] = attrs.Factory(list)

    def sections(self) -> dict[str, list[dict[str, Any]]]:
        return {
            name: getattr(self, name)
            for name in (
                "grants_added",
                "grants_removed",
                "users_new",
                "users_gone",
                "users_enabled",
                "users_disabled",
                "users_changed",
                "entitlements_new",
                "entitlements_gone",
            )
        }

    def privileged(self) -> dict[str, int]:
        """How many privileged grants were added and removed: what a reviewer checks first."""
        return {
            "privileged_grants_added": sum(1 for g in self.grants_added if g["privileged"]),
            "privileged_grants_removed": sum(1 for g in self.grants_removed if g["privileged"]),
        }


def refusal(run: RunRecord, *, allow_partial: bool) -> str | None:
    """Why ``run`` cannot be reported on, or None."""
    if run.outcome != "complete":
        return f"run {run.run_id} is {run.outcome}, not complete"
    if run.partial and not allow_partial:
        return (
            f"run {run.run_id} is partial ({run.scope}): it does not list the whole tenant, so "
            "everything outside it would look removed; pass --allow-partial to use it anyway"
        )
    return None


def pick_run(
    store: SnapshotStore,
    tenant_id: str,
    plugin: str,
    run_id: int | None,
    *,
    allow_partial: bool = False,
) -> RunRecord:
    """The run named, or the last complete run over the whole tenant."""
    return _pick(store, tenant_id, plugin, (run_id,), 1, allow_partial=allow_partial)[0]


def pick_runs(
    store: SnapshotStore,
    tenant_id: str,
    plugin: str,
    old: int | None,
    new: int | None,
    *,
    allow_partial: bool = False,
) -> tuple[RunRecord, RunRecord]:
    """The two runs to compare: the ones named, or the last two complete runs over the whole
    tenant. A partial run (narrowed by type, user or ``since``) is refused unless
    ``allow_partial``; a run that did not complete always is."""
    if (old is None) != (new is None):
        raise ConfigurationError("give both --from and --to, or neither")
    first, second = _pick(store, tenant_id, plugin, (old, new), 2, allow_partial=allow_partial)
    return first, second


def _pick(
    store: SnapshotStore,
    tenant_id: str,
    plugin: str,
    wanted: tuple[int | None, ...],
    needed: int,
    *,
    allow_partial: bool,
) -> list[RunRecord]:
    runs = [r for r in store.runs(tenant_id) if r.plugin == plugin]
    if not runs:
        raise ConfigurationError(f"the snapshot has no runs of {tenant_id}/{plugin}")
    if all(w is None for w in wanted):
        whole = [r for r in runs if r.outcome == "complete" and not r.partial]
        if len(whole) < needed:
            skipped = sum(1 for r in runs if r.outcome == "complete" and r.partial)
            raise ConfigurationError(
                f"{tenant_id}/{plugin} has {len(whole)} complete full run(s); "
                f"{'a diff needs two' if needed == 2 else 'this command needs one'}"
                + (
                    f" ({skipped} partial run(s) skipped: name one with --run/--from/--to and "
                    "--allow-partial to use it)"
                    if skipped
                    else ""
                )
            )
        return whole[-needed:]
    by_id = {r.run_id: r for r in runs}
    picked = []
    for run_id in wanted:
        if run_id not in by_id:
            raise ConfigurationError(f"run {run_id} is not a run of {tenant_id}/{plugin}")
        if problem := refusal(by_id[run_id], allow_partial=allow_partial):
            raise ConfigurationError(problem)
        picked.append(by_id[run_id])
    return picked


# what a reviewer reads in a profile change (``active`` shows as enabled/disabled; times and
# the manager's id move with every change and say nothing of their own)
PROFILE_FIELDS: Final = (
    "login",
    "email",
    "firstname",
    "lastname",
    "employee_number",
    "manager_login",
    "authentication_method",
    "sso_identifier",
    "api_user",
    "support_user",
)


def _profile_changes(store: SnapshotStore, old: int, new: int) -> list[dict[str, Any]]:
    """Users in both runs whose name or profile fields differ, each with what changed."""
    changed = []
    for row in store.stream(
        "SELECT n.id, n.display_name, o.display_name AS old_name, n.profile, o.profile AS"
        " old_profile FROM resources n JOIN resources o ON o.run_id = ? AND o.type = 'user'"
        " AND o.id = n.id WHERE n.run_id = ? AND n.type = 'user' AND"
        " (n.profile IS NOT o.profile OR n.display_name IS NOT o.display_name)"
        " ORDER BY CAST(n.id AS INTEGER), n.id",
        (old, new),
    ):
        now, was = json.loads(row["profile"]), json.loads(row["old_profile"])
        pairs = [("name", row["old_name"], row["display_name"])] + [
            (key, was.get(key), now.get(key)) for key in PROFILE_FIELDS
        ]
        fields = [(key, a, b) for key, a, b in pairs if a != b]
        if fields:
            changed.append(
                {
                    "id": row["id"],
                    "display_name": row["display_name"],
                    "login": now.get("login"),
                    "changed": ", ".join(key for key, _, _ in fields),
                    "was": "; ".join(f"{key}: {a} -> {b}" for key, a, b in fields),
                }
            )
    return changed


def diff_runs(store: SnapshotStore, old: int, new: int) -> RunDiff:
    """Compare two runs with SQL set operations (no run is loaded into memory whole)."""
    q = store.query

    def grants(a: int, b: int) -> list[dict[str, Any]]:
        rows = q(
            "SELECT g.entitlement_id, g.principal_id, e.display_name AS entitlement,"
            " json_extract(u.profile, '$.login') AS login,"
            " coalesce(json_extract(r.profile, '$.privileged'), 0) = 1 AS privileged FROM ("
            " SELECT entitlement_id, principal_id FROM grants WHERE run_id = ? EXCEPT"
            " SELECT entitlement_id, principal_id FROM grants WHERE run_id = ?) g"
            " LEFT JOIN entitlements e ON e.run_id = ? AND e.id = g.entitlement_id"
            " LEFT JOIN resources r ON r.run_id = ? AND r.type = e.resource_type"
            "  AND r.id = e.resource_id"
            " LEFT JOIN resources u ON u.run_id = ? AND u.type = 'user' AND u.id = g.principal_id"
            " ORDER BY g.entitlement_id, g.principal_id",
            (a, b, a, a, a),
        )
        for row in rows:
            row["privileged"] = bool(row["privileged"])
        return rows

    def users(a: int, b: int) -> list[dict[str, Any]]:
        return q(
            "SELECT id, display_name, status, json_extract(profile, '$.login') AS login"
            " FROM resources WHERE run_id = ? AND type = 'user' AND id NOT IN"
            " (SELECT id FROM resources WHERE run_id = ? AND type = 'user') ORDER BY id",
            (a, b),
        )

    def status_change(to: str) -> list[dict[str, Any]]:
        return q(
            "SELECT n.id, n.display_name, json_extract(n.profile, '$.login') AS login,"
            " o.status AS was FROM resources n JOIN resources o ON o.run_id = ? AND"
            " o.type = 'user' AND o.id = n.id WHERE n.run_id = ? AND n.type = 'user' AND"
            " n.status = ? AND o.status IS NOT n.status ORDER BY n.id",
            (old, new, to),
        )

    def entitlements(a: int, b: int) -> list[dict[str, Any]]:
        return q(
            "SELECT id, display_name, resource_type FROM entitlements WHERE run_id = ? AND id"
            " NOT IN (SELECT id FROM entitlements WHERE run_id = ?) ORDER BY id",
            (a, b),
        )

    return RunDiff(
        old_run=old,
        new_run=new,
        grants_added=grants(new, old),
        grants_removed=grants(old, new),
        users_new=users(new, old),
        users_gone=users(old, new),
        users_enabled=status_change("enabled"),
        users_disabled=status_change("disabled"),
        entitlements_new=entitlements(new, old),
        entitlements_gone=entitlements(old, new),
        users_changed=_profile_changes(store, old, new),
    )


def write_diff(result: RunDiff, fmt: str, out: TextIO) -> None:  # noqa: C901 - one branch per output format
    """Render a diff as a readable table, JSON or CSV; privileged grant changes are flagged."""
    sections = result.sections()
    if fmt == "json":
        json.dump(
            {
                "from_run": result.old_run,
                "to_run": result.new_run,
                **result.privileged(),
                **sections,
            },
            out,
            indent=2,
        )
        out.write("\n")
        return
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(["change", "id", "principal_id", "login", "name", "detail", "privileged"])
        for name, rows in sections.items():
            for row in rows:
                cells = [
                    name,
                    row.get("entitlement_id") or row.get("id"),
                    row.get("principal_id"),
                    row.get("login"),
                    row.get("entitlement") or row.get("display_name"),
                    row.get("was") or row.get("resource_type") or row.get("status"),
                    "true" if row.get("privileged") else "",
                ]
                writer.writerow([csv_value(cell) for cell in cells])
        return
    console = _console(out)
    console.print(f"changes from run {result.old_run} to run {result.new_run}")
    summary = _table(["change", "count"])
    for name, rows in sections.items():
        summary.add_row(name.replace("_", " "), str(len(rows)))
    for name, count in result.privileged().items():
        summary.add_row(
            ("PRIVILEGED " if count else "privileged ") + name[11:].replace("_", " "), str(count)
        )
    console.print(summary)
    for name, rows in sections.items():
        if not rows:
            continue
        table = _table(list(rows[0]), title=name.replace("_", " "))
        for row in rows[:200]:
            table.add_row(*(_cell(v) for v in row.values()))
        console.print(table)
        if len(rows) > 200:
            console.print(f"… and {len(rows) - 200} more (use --format csv or json for all)")


def _console(out: TextIO) -> Any:
    from rich.console import Console

    class _PipedConsole(Console):
        def on_broken_pipe(self) -> None:
            # the reader went away (`| head`): the command line ends quietly with success,
            # as it does for every other output; rich would exit with 1
            self.quiet = True
            raise BrokenPipeError

    return _PipedConsole(file=out, width=None if out.isatty() else 200, highlight=False)


def _table(columns: list[str], title: str | None = None) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        # on a narrow terminal a long cell wraps onto more lines instead of being cut short
        table.add_column(column, overflow="fold")
    return table


# control characters (a terminal's escape sequences) and the bidirectional overrides that
# make a name read as another: shown as U+FFFD, never passed to a terminal or a spreadsheet
_UNSAFE: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# what a spreadsheet takes for the start of a formula (OWASP's list for CSV injection)
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: str) -> str:
    """``value`` with nothing a terminal or a spreadsheet would act on."""
    return _UNSAFE.sub("\ufffd", value)


def _cell(value: Any) -> Any:
    from rich.text import Text  # a Text is shown as it is: no markup read from the data

    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    return Text(safe_text(str(value)))


def write_rows(rows: Iterable[dict[str, Any]], columns: list[str], fmt: str, out: TextIO) -> int:
    """Rows as a table (with a header), a JSON array or CSV; returns how many were written.

    CSV and JSON stream; a table is built in memory, so use them for large outputs.
    """
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: csv_value(row.get(k)) for k in columns})
            count += 1
        return count
    if fmt == "json":
        out.write("[")
        for row in rows:
            item = json.dumps({k: row.get(k) for k in columns})
            out.write(("," if count else "") + "\n  " + item)
            count += 1
        out.write("\n]\n" if count else "]\n")
        return count
    table = _table(columns)
    for row in rows:
        table.add_row(*(_cell(row.get(k)) for k in columns))
        count += 1
    _console(out).print(table)
    return count


def csv_value(value: Any) -> Any:
    """A value as a CSV cell: booleans as ``true``/``false``, text made safe (control
    characters replaced, a leading formula character quoted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        value = safe_text(value)
        # a cell a spreadsheet would run as a formula is kept as text
        return f"'{value}" if value.startswith(_FORMULA_START) else value
    return value


EXPORT_COLUMNS: Final = (
    "tenant_id",
    "run_id",
    "run_started_at",
    "user_id",
    "login",
    "email",
    "user_name",
    "user_status",
    "api_user",
    "employee_number",
    "manager_login",
    "entitlement_id",
    "entitlement",
    "resource_type",
    "resource_id",
    "resource_name",
    "privileged",
)

# An entitlement is privileged when its resource's profile says ``privileged`` (the Coupa
# plugin marks roles with full system access).
# Every user (one row with empty entitlement columns for a user who holds nothing) and every
# grant (a grant whose user the run did not list still gets its row)
_EXPORT_SQL = (
    "WITH acct AS ("
    " SELECT u.id AS user_id, u.profile, u.display_name AS user_name, u.status AS user_status,"
    "  g.entitlement_id FROM resources u"
    "  LEFT JOIN grants g ON g.run_id = u.run_id AND g.principal_id = u.id"
    "  WHERE u.run_id = :run AND u.type = 'user'"
    " UNION ALL"
    " SELECT g.principal_id, NULL, NULL, NULL, g.entitlement_id FROM grants g"
    "  WHERE g.run_id = :run AND NOT EXISTS (SELECT 1 FROM resources u WHERE u.run_id = :run"
    "   AND u.type = 'user' AND u.id = g.principal_id))"
    " SELECT run.tenant_id, run.run_id, run.started_at AS run_started_at, acct.user_id,"
    " json_extract(acct.profile, '$.login') AS login,"
    " json_extract(acct.profile, '$.email') AS email, acct.user_name, acct.user_status,"
    " json_extract(acct.profile, '$.api_user') AS api_user,"
    " json_extract(acct.profile, '$.employee_number') AS employee_number,"
    " json_extract(acct.profile, '$.manager_login') AS manager_login,"
    " acct.entitlement_id, e.display_name AS entitlement, e.resource_type, e.resource_id,"
    " r.display_name AS resource_name,"
    " CASE WHEN acct.entitlement_id IS NULL THEN NULL"
    "  ELSE coalesce(json_extract(r.profile, '$.privileged'), 0) END AS privileged"
    " FROM acct JOIN runs run ON run.run_id = :run"
    " LEFT JOIN entitlements e ON e.run_id = :run AND e.id = acct.entitlement_id"
    " LEFT JOIN resources r ON r.run_id = :run AND r.type = e.resource_type"
    "  AND r.id = e.resource_id"
    " ORDER BY CAST(acct.user_id AS INTEGER), acct.user_id, acct.entitlement_id"
)
_BOOLEAN_COLUMNS: Final = ("api_user", "privileged")


def _booleans(row: dict[str, Any]) -> dict[str, Any]:
    for key in _BOOLEAN_COLUMNS:
        if row.get(key) is not None:
            row[key] = bool(row[key])
    return row


def export_rows(store: SnapshotStore, run_id: int) -> Iterator[dict[str, Any]]:
    """Every account of a run with what it holds: one row per grant, and one row (entitlement
    columns empty) for an account that holds nothing; streamed."""
    for row in store.stream(_EXPORT_SQL, {"run": run_id}):
        yield _booleans(row)


def write_export(store: SnapshotStore, run_id: int, fmt: str, out: TextIO) -> int:
    """Write an access-review export as CSV, JSON Lines or a JSON array; returns the rows."""
    rows = export_rows(store, run_id)
    if fmt == "jsonl":
        count = 0
        for row in rows:
            out.write(json.dumps(row) + "\n")
            count += 1
        return count
    return write_rows(rows, list(EXPORT_COLUMNS), fmt, out)


# -- queries over one run ------------------------------------------------------------------

ACCESS_COLUMNS: Final = [
    "user_id",
    "login",
    "user_status",
    "entitlement_id",
    "entitlement",
    "resource_type",
    "resource_name",
    "privileged",
]


def find_user(store: SnapshotStore, run_id: int, who: str) -> dict[str, Any]:
    """The user of a run with that id or login (logins compare case-insensitively)."""
    rows = store.query(
        "SELECT id, display_name, status, profile FROM resources WHERE run_id = ? AND"
        " type = 'user' AND (id = ? OR lower(json_extract(profile, '$.login')) = lower(?))"
        " ORDER BY id = ? DESC LIMIT 1",
        (run_id, who, who, who),
    )
    if not rows:
        raise NotFoundError(f"no user with id or login {who!r} in run {run_id}")
    return rows[0]


def access_rows(store: SnapshotStore, run_id: int, user_id: str) -> list[dict[str, Any]]:
    """What one user holds in a run, with entitlement names and privileged flags."""
    return [
        row
        for row in export_rows_for(store, run_id, "acct.user_id = :who", {"who": user_id})
        if row["entitlement_id"] is not None
    ]


def export_rows_for(
    store: SnapshotStore, run_id: int, where: str, args: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    sql = _EXPORT_SQL.replace(" ORDER BY", f" WHERE {where} ORDER BY")
    for row in store.stream(sql, {"run": run_id, **args}):
        yield _booleans(row)


GRANT_COLUMNS: Final = ["entitlement_id", "user_id", "login", "user_name", "user_status"]


def entitlement_grant_rows(
    store: SnapshotStore, run_id: int, entitlement: str
) -> Iterator[dict[str, Any]]:
    """Who holds one entitlement in a run."""
    known = store.query(
        "SELECT 1 FROM entitlements WHERE run_id = ? AND id = ?", (run_id, entitlement)
    )
    if not known:
        raise NotFoundError(f"no entitlement {entitlement!r} in run {run_id}")
    return export_rows_for(store, run_id, "acct.entitlement_id = :ent", {"ent": entitlement})


RESOURCE_COLUMNS: Final = ["type", "id", "display_name", "status", "description", "entitlements"]


def resource_rows(
    store: SnapshotStore, run_id: int, resource_type: str | None
) -> Iterator[dict[str, Any]]:
    """The resources of a run (of one type), with how many entitlements each carries."""
    if resource_type is not None:
        types = {
            r["type"]
            for r in store.query("SELECT DISTINCT type FROM resources WHERE run_id = ?", (run_id,))
        }
        if resource_type not in types:
            raise UnknownTypeError(
                f"run {run_id} has no resources of type {resource_type!r}; it has {sorted(types)}"
            )
    return store.stream(
        "SELECT r.type, r.id, r.display_name, r.status, r.description,"
        " (SELECT count(*) FROM entitlements e WHERE e.run_id = r.run_id"
        "  AND e.resource_type = r.type AND e.resource_id = r.id) AS entitlements"
        " FROM resources r WHERE r.run_id = ? AND (? IS NULL OR r.type = ?)"
        " ORDER BY r.type, CAST(r.id AS INTEGER), r.id",
        (run_id, resource_type, resource_type),
    )
