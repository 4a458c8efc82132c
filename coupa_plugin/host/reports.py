"""Reports over snapshot runs: the access-review change report (diff) and exports."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any, TextIO

import attrs

from coupa_plugin.host.errors import ConfigurationError
from coupa_plugin.host.snapshot import RunRecord, SnapshotStore

__all__ = ["RunDiff", "diff_runs", "export_rows", "pick_runs", "write_diff", "write_export"]


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
                "entitlements_new",
                "entitlements_gone",
            )
        }


def pick_runs(
    store: SnapshotStore, tenant_id: str, plugin: str, old: int | None, new: int | None
) -> tuple[RunRecord, RunRecord]:
    """The two runs to compare: the ones named, or the last two complete full runs."""
    runs = [r for r in store.runs(tenant_id) if r.plugin == plugin]
    by_id = {r.run_id: r for r in runs}
    if old is not None or new is not None:
        if old is None or new is None:
            raise ConfigurationError("give both --from and --to, or neither")
        for run_id in (old, new):
            if run_id not in by_id:
                raise ConfigurationError(f"run {run_id} is not a run of {tenant_id}/{plugin}")
            if by_id[run_id].outcome != "complete":
                raise ConfigurationError(f"run {run_id} is {by_id[run_id].outcome}, not complete")
        return by_id[old], by_id[new]
    full = [r for r in runs if r.outcome == "complete" and r.kind == "full"]
    if len(full) < 2:
        raise ConfigurationError(
            f"{tenant_id}/{plugin} has {len(full)} complete full run(s); a diff needs two"
        )
    return full[-2], full[-1]


def diff_runs(store: SnapshotStore, old: int, new: int) -> RunDiff:
    """Compare two runs with SQL set operations (no run is loaded into memory whole)."""
    q = store.query

    def grants(a: int, b: int) -> list[dict[str, Any]]:
        return q(
            "SELECT g.entitlement_id, g.principal_id, e.display_name AS entitlement,"
            " json_extract(u.profile, '$.login') AS login FROM ("
            " SELECT entitlement_id, principal_id FROM grants WHERE run_id = ? EXCEPT"
            " SELECT entitlement_id, principal_id FROM grants WHERE run_id = ?) g"
            " LEFT JOIN entitlements e ON e.run_id = ? AND e.id = g.entitlement_id"
            " LEFT JOIN resources u ON u.run_id = ? AND u.type = 'user' AND u.id = g.principal_id"
            " ORDER BY g.entitlement_id, g.principal_id",
            (a, b, a, a),
        )

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
    )


def write_diff(result: RunDiff, fmt: str, out: TextIO) -> None:
    """Render a diff as a readable table, JSON or CSV."""
    sections = result.sections()
    if fmt == "json":
        json.dump({"from_run": result.old_run, "to_run": result.new_run, **sections}, out, indent=2)
        out.write("\n")
        return
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(["change", "id", "principal_id", "login", "name", "detail"])
        for name, rows in sections.items():
            for row in rows:
                writer.writerow(
                    [
                        name,
                        row.get("entitlement_id") or row.get("id"),
                        row.get("principal_id"),
                        row.get("login"),
                        row.get("entitlement") or row.get("display_name"),
                        row.get("was") or row.get("resource_type") or row.get("status"),
                    ]
                )
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, width=120)
    console.print(f"changes from run {result.old_run} to run {result.new_run}")
    summary = Table("change", "count")
    for name, rows in sections.items():
        summary.add_row(name.replace("_", " "), str(len(rows)))
    console.print(summary)
    for name, rows in sections.items():
        if not rows:
            continue
        table = Table(title=name.replace("_", " "))
        for column in rows[0]:
            table.add_column(column)
        for row in rows[:200]:
            table.add_row(*("" if v is None else str(v) for v in row.values()))
        console.print(table)
        if len(rows) > 200:
            console.print(f"… and {len(rows) - 200} more (use --format csv or json for all)")


_EXPORT_SQL = (
    "SELECT u.id AS user_id, json_extract(u.profile, '$.login') AS login,"
    " json_extract(u.profile, '$.email') AS email, u.display_name AS user_name,"
    " u.status AS user_status, g.entitlement_id, e.display_name AS entitlement,"
    " e.resource_type, e.resource_id, r.display_name AS resource_name"
    " FROM grants g"
    " LEFT JOIN resources u ON u.run_id = g.run_id AND u.type = 'user' AND u.id = g.principal_id"
    " LEFT JOIN entitlements e ON e.run_id = g.run_id AND e.id = g.entitlement_id"
    " LEFT JOIN resources r ON r.run_id = g.run_id AND r.type = e.resource_type"
    "  AND r.id = e.resource_id"
    " WHERE g.run_id = ? ORDER BY CAST(g.principal_id AS INTEGER), g.entitlement_id"
)


def export_rows(store: SnapshotStore, run_id: int) -> Iterator[dict[str, Any]]:
    """Users by entitlements of a run, one row per grant, streamed."""
    yield from store.stream(_EXPORT_SQL, (run_id,))


def write_export(store: SnapshotStore, run_id: int, fmt: str, out: TextIO) -> int:
    """Write an access-review export as CSV or JSON Lines; returns the number of rows."""
    count = 0
    writer: Any = None
    for row in export_rows(store, run_id):
        if fmt == "jsonl":
            out.write(json.dumps(row) + "\n")
        else:
            if writer is None:
                writer = csv.DictWriter(out, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)
        count += 1
    if writer is None and fmt == "csv":
        buffer = io.StringIO()
        csv.writer(buffer).writerow(
            [
                "user_id",
                "login",
                "email",
                "user_name",
                "user_status",
                "entitlement_id",
                "entitlement",
                "resource_type",
                "resource_id",
                "resource_name",
            ]
        )
        out.write(buffer.getvalue())
    return count
