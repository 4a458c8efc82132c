"""SQLite snapshot store: each sync run, its resources, entitlements and grants.

A run is inserted as ``running`` before the first row arrives. Its rows are written in one
transaction that commits only when the plugin's streams ended normally; then the run becomes
``complete``. When anything fails the rows are rolled back and the run is recorded as
``failed`` with the error, so a partial stream is never stored as a complete snapshot.
A ``running`` run that never finished (the process died) is incomplete as well.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from coupa_plugin.host.model import ConnectorStatus, Grant, Resource, SyncRequest

__all__ = ["RunRecord", "RunWriter", "SnapshotStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id        INTEGER PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    plugin        TEXT NOT NULL,
    kind          TEXT NOT NULL,
    request       TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    ended_at      TEXT,
    outcome       TEXT NOT NULL CHECK (outcome IN ('running', 'complete', 'failed')),
    error         TEXT,
    mode          TEXT,
    warnings      TEXT,
    resources     INTEGER NOT NULL DEFAULT 0,
    entitlements  INTEGER NOT NULL DEFAULT 0,
    grants        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_by_tenant ON runs (tenant_id, plugin, run_id);
CREATE TABLE IF NOT EXISTS resources (
    run_id        INTEGER NOT NULL REFERENCES runs (run_id),
    type          TEXT NOT NULL,
    id            TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    description   TEXT,
    status        TEXT,
    profile       TEXT NOT NULL,
    PRIMARY KEY (run_id, type, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entitlements (
    run_id        INTEGER NOT NULL REFERENCES runs (run_id),
    id            TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    slug          TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    description   TEXT,
    grantable_to  TEXT NOT NULL,
    PRIMARY KEY (run_id, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS grants (
    run_id         INTEGER NOT NULL REFERENCES runs (run_id),
    entitlement_id TEXT NOT NULL,
    principal_id   TEXT NOT NULL,
    PRIMARY KEY (run_id, entitlement_id, principal_id)
) WITHOUT ROWID;
"""
_BATCH = 2_000


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _request_json(request: SyncRequest) -> str:
    return json.dumps(
        {
            "resource_types": sorted(request.resource_types) if request.resource_types else None,
            "since": request.since.isoformat() if request.since else None,
            "principal_ids": sorted(request.principal_ids) if request.principal_ids else None,
        }
    )


def _kind(request: SyncRequest) -> str:
    if request.principal_ids is not None:
        return "targeted"
    if request.since is not None:
        return "incremental"
    return "full"


@attrs.frozen(kw_only=True)
class RunRecord:
    """One row of the ``runs`` table."""

    run_id: int
    tenant_id: str
    plugin: str
    kind: str
    started_at: str
    ended_at: str | None
    outcome: str
    error: str | None
    mode: str | None
    resources: int
    entitlements: int
    grants: int


class RunWriter:
    """Streams one run's rows into the store in batches."""

    def __init__(self, conn: sqlite3.Connection, run_id: int) -> None:
        self._conn = conn
        self.run_id = run_id
        self.resources = 0
        self.entitlements = 0
        self.grants = 0
        self._resource_rows: list[tuple[Any, ...]] = []
        self._entitlement_rows: list[tuple[Any, ...]] = []
        self._grant_rows: list[tuple[Any, ...]] = []

    def add_resource(self, resource: Resource) -> None:
        self._resource_rows.append(
            (
                self.run_id,
                resource.type,
                resource.id,
                resource.display_name,
                resource.description,
                resource.status,
                json.dumps(dict(resource.profile), default=str, sort_keys=True),
            )
        )
        self.resources += 1
        for ent in resource.entitlements:
            self._entitlement_rows.append(
                (
                    self.run_id,
                    ent.id,
                    ent.resource_type,
                    ent.resource_id,
                    ent.slug,
                    ent.display_name,
                    ent.description,
                    json.dumps(sorted(ent.grantable_to)),
                )
            )
            self.entitlements += 1
        if len(self._resource_rows) >= _BATCH or len(self._entitlement_rows) >= _BATCH:
            self.flush()

    def add_grant(self, grant: Grant) -> None:
        self._grant_rows.append((self.run_id, grant.entitlement_id, grant.principal_id))
        self.grants += 1
        if len(self._grant_rows) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        if self._resource_rows:
            self._conn.executemany(
                "INSERT INTO resources VALUES (?, ?, ?, ?, ?, ?, ?)", self._resource_rows
            )
            self._resource_rows.clear()
        if self._entitlement_rows:
            self._conn.executemany(
                "INSERT INTO entitlements VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self._entitlement_rows
            )
            self._entitlement_rows.clear()
        if self._grant_rows:
            self._conn.executemany("INSERT INTO grants VALUES (?, ?, ?)", self._grant_rows)
            self._grant_rows.clear()


def _owner_only(path: Path) -> None:
    """A snapshot holds personal data: create it 0600 or tighten it (with SQLite's side files,
    which take the database's mode), and never follow a symbolic link to it (OSError)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for side in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if side.is_file() and not side.is_symlink():
            side.chmod(0o600)


class SnapshotStore:
    """A SQLite file holding the runs of any number of tenants and plugins."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _owner_only(self.path)
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SnapshotStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def run(
        self, tenant_id: str, plugin: str, request: SyncRequest, status: ConnectorStatus | None
    ) -> Iterator[RunWriter]:
        """Record a run; yields a writer whose rows count only if the block ends normally."""
        cur = self._conn.execute(
            "INSERT INTO runs (tenant_id, plugin, kind, request, started_at, outcome, mode,"
            " warnings) VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
            (
                tenant_id,
                plugin,
                _kind(request),
                _request_json(request),
                _now(),
                status.mode if status else None,
                json.dumps(list(status.warnings)) if status else None,
            ),
        )
        run_id = int(cur.lastrowid or 0)
        writer = RunWriter(self._conn, run_id)
        self._conn.execute("BEGIN")
        try:
            yield writer
            writer.flush()
        except BaseException as exc:
            self._conn.execute("ROLLBACK")
            self._conn.execute(
                "UPDATE runs SET outcome = 'failed', ended_at = ?, error = ? WHERE run_id = ?",
                (_now(), f"{type(exc).__name__}: {exc}", run_id),
            )
            raise
        self._conn.execute(
            "UPDATE runs SET outcome = 'complete', ended_at = ?, resources = ?, entitlements = ?,"
            " grants = ? WHERE run_id = ?",
            (_now(), writer.resources, writer.entitlements, writer.grants, run_id),
        )
        self._conn.execute("COMMIT")

    def runs(self, tenant_id: str | None = None) -> list[RunRecord]:
        """Runs, oldest first, optionally of one tenant."""
        sql = (
            "SELECT run_id, tenant_id, plugin, kind, started_at, ended_at, outcome, error, mode,"
            " resources, entitlements, grants FROM runs"
        )
        args: tuple[Any, ...] = ()
        if tenant_id is not None:
            sql += " WHERE tenant_id = ?"
            args = (tenant_id,)
        rows = self._conn.execute(sql + " ORDER BY run_id", args).fetchall()
        names = [f.name for f in attrs.fields(RunRecord)]
        return [RunRecord(**dict(zip(names, row, strict=True))) for row in rows]

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query as dicts."""
        return list(self.stream(sql, args))

    def stream(self, sql: str, args: tuple[Any, ...] = ()) -> Iterator[dict[str, Any]]:
        """Rows of a read-only query as dicts, one at a time."""
        cursor = self._conn.execute(sql, args)
        names = [d[0] for d in cursor.description]
        for row in cursor:
            yield dict(zip(names, row, strict=True))

    def last_complete(
        self, tenant_id: str, plugin: str, request: SyncRequest | None = None
    ) -> RunRecord | None:
        """The newest complete run of a tenant and plugin (of the same kind as ``request``)."""
        kind = _kind(request) if request is not None else None
        for run in reversed(self.runs(tenant_id)):
            if run.plugin == plugin and run.outcome == "complete" and kind in (None, run.kind):
                return run
        return None

    def grants(self, run_id: int) -> set[tuple[str, str]]:
        rows = self._conn.execute(
            "SELECT entitlement_id, principal_id FROM grants WHERE run_id = ?", (run_id,)
        )
        return {(e, p) for e, p in rows}

    def resources(self, run_id: int) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT type, id, display_name, description, status, profile FROM resources"
            " WHERE run_id = ? ORDER BY type, id",
            (run_id,),
        ).fetchall()
        return [
            {
                "type": t,
                "id": i,
                "display_name": d,
                "description": desc,
                "status": s,
                "profile": json.loads(p),
            }
            for t, i, d, desc, s, p in rows
        ]
