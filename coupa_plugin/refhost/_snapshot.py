"""SQLite snapshot store: each sync run, its resources, entitlements and grants.

A run is inserted as ``running`` before the first row arrives. Its rows are written in one
transaction that commits only when the plugin's streams ended normally; then the run becomes
``complete``. When anything fails the rows are rolled back and the run is recorded as
``failed`` with the error, so a partial stream is never stored as a complete snapshot.
A run stopped by Ctrl-C or SIGTERM (:class:`Interrupted`) is recorded as ``interrupted``. A
``running`` run that never finished (the process was killed) is incomplete as well.

A run narrowed by resource type, user or ``since`` is *partial*: it is complete in itself but
does not describe the whole tenant, so reports never pick it unless asked to.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import stat
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

import attrs

from coupa_plugin.host.errors import ConfigurationError
from coupa_plugin.host.model import ConnectorStatus, Grant, Resource, SyncRequest
from coupa_plugin.refhost._errors import (
    ForeignFileError,
    SnapshotBusyError,
    UnusableSnapshotError,
)

__all__ = [
    "LOCK_WAIT_S",
    "RunRecord",
    "RunWriter",
    "SnapshotStore",
    "open_private",
    "private_output",
    "run_scope",
]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id        INTEGER PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    plugin        TEXT NOT NULL,
    kind          TEXT NOT NULL,
    request       TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    ended_at      TEXT,
    outcome       TEXT NOT NULL CHECK (outcome IN ('running', 'complete', 'failed', 'interrupted')),
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
-- what one account holds (exports, access queries) without scanning the run's grants
CREATE INDEX IF NOT EXISTS grants_by_principal ON grants (run_id, principal_id);
"""
_BATCH = 2_000
_Args = tuple[Any, ...] | Mapping[str, Any]


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait (blocked, not lost) while a run's row changes state, so an
    interruption lands before or after it, never between the row and its rows."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks to hold them with
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


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


def run_scope(request_json: str) -> str:
    """What narrowed a run (``types=role``, ``since=…``, ``users=3``), or ``""`` for a run over
    the whole tenant."""
    try:
        request = json.loads(request_json)
    except ValueError:
        return "unknown"
    parts = []
    if request.get("resource_types") is not None:
        parts.append("types=" + ",".join(request["resource_types"]))
    if request.get("since") is not None:
        parts.append(f"since={request['since']}")
    if request.get("principal_ids") is not None:
        parts.append(f"users={len(request['principal_ids'])}")
    return " ".join(parts)


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
    scope: str = ""

    @property
    def partial(self) -> bool:
        """Narrowed by type, user or ``since``: not a picture of the whole tenant."""
        return bool(self.scope)


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


def _private_fd(path: Path, flags: int) -> int:
    """``path`` opened (created 0600, never through a symbolic link) and made private: a
    regular file owned by another user or with more than one link is refused before a byte
    is written (its owner could read it, or loosen its mode again, through either), and one
    left readable by others is tightened to 0600. A device or a pipe keeps its own mode."""
    fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            if info.st_uid != os.geteuid():
                raise ForeignFileError(
                    f"{path} belongs to another user (uid {info.st_uid}), who could read what "
                    "is written there; remove it or choose another path; nothing was written"
                )
            if info.st_nlink > 1:
                raise ForeignFileError(
                    f"{path} has {info.st_nlink} names (hard links), readable through any of "
                    "them; remove it or choose another path; nothing was written"
                )
            if info.st_mode & 0o077:
                os.fchmod(fd, 0o600)
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_private(path: Path) -> TextIO:
    """``path`` opened for writing text, private to this user (see :func:`_private_fd`):
    reports and exports hold the snapshot's personal data.

    :raises ForeignFileError: the file belongs to another user or has other names.
    :raises OSError: the file cannot be opened (a symbolic link is refused with ``ELOOP``).
    """
    fd = _private_fd(path, os.O_WRONLY)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.ftruncate(fd, 0)
        return os.fdopen(fd, "w", encoding="utf-8", newline="")
    except BaseException:
        os.close(fd)
        raise


@contextmanager
def private_output(path: Path) -> Iterator[TextIO]:
    """:func:`open_private` for a ``with`` block whose failures are one-line errors: a path
    that cannot be opened, or a write or a close the system refuses (a full disk,
    ``/proc/…``), ends in :class:`ConfigurationError` naming the file."""
    try:
        with open_private(path) as handle:
            yield handle
    except OSError as exc:
        why = exc.strerror or str(exc)
        if exc.errno == errno.ELOOP:
            why = "it is a symbolic link, which is refused"
        raise ConfigurationError(f"cannot write {path}: {why}") from None


def _owner_only(path: Path) -> None:
    """A snapshot holds personal data: create it 0600 or tighten it (with SQLite's side files,
    which take the database's mode), never follow a symbolic link to it (OSError), and refuse
    one (or a side file) another user owns or that has other names (:class:`ForeignFileError`)."""
    os.close(_private_fd(path, os.O_RDWR))
    for side in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if side.is_symlink():
            raise ForeignFileError(f"{side} is a symbolic link; refused, nothing was written")
        if side.is_file():
            os.close(_private_fd(side, os.O_RDWR))


# how long a command waits for a snapshot another process is writing before it gives up
LOCK_WAIT_S: Final = 10.0


class SnapshotStore:
    """A SQLite file holding the runs of any number of tenants and plugins."""

    def __init__(self, path: Path | str, *, lock_wait_s: float | None = None) -> None:
        self.path = Path(path)
        self.lock_wait_s = LOCK_WAIT_S if lock_wait_s is None else lock_wait_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if self.path.is_symlink() or not self.path.exists():
                _owner_only(self.path)  # created 0600; a symbolic link is refused (OSError)
            self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.lock_wait_s)
        except OSError as exc:
            raise self._unusable(exc) from None
        except sqlite3.Error as exc:
            raise self.translate(exc) from None
        try:
            self._open()
        except (OSError, sqlite3.Error) as exc:
            self._conn.close()
            raise (
                self.translate(exc) if isinstance(exc, sqlite3.Error) else self._unusable(exc)
            ) from None

    def _unusable(self, exc: OSError) -> ConfigurationError:
        why = exc.strerror or str(exc)
        if exc.errno == errno.ELOOP:
            why = "it is a symbolic link, which is refused (name the file itself)"
        return UnusableSnapshotError(f"cannot use {self.path} as the snapshot: {why}")

    def translate(self, exc: sqlite3.Error) -> ConfigurationError:
        """SQLite's error as one the command line shows in one line: a snapshot another
        process is writing (waited :attr:`lock_wait_s` seconds), or not a snapshot at all."""
        text = str(exc)
        if "locked" in text or "busy" in text:
            return SnapshotBusyError(
                f"{self.path} is in use by another process (a sync writing to it?); waited "
                f"{self.lock_wait_s:g}s; try again when it has finished"
            )
        return ConfigurationError(f"{self.path} is not a snapshot file (SQLite said: {text})")

    def _open(self) -> None:
        # another program's database is left exactly as it is
        objects = {
            name
            for (name,) in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
            )
        }
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(runs)")}
        if objects and not {"run_id", "tenant_id", "plugin", "kind", "outcome"} <= columns:
            raise ConfigurationError(
                f"{self.path} is not a snapshot file (it holds "
                f"{', '.join(sorted(objects)[:5])}); nothing was changed"
            )
        _owner_only(self.path)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Files written before runs could be ``interrupted`` get the wider CHECK."""
        [sql] = self._conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'"
        ).fetchone()
        if "'interrupted'" in sql:
            return
        new_sql = sql.replace("'failed')", "'failed', 'interrupted')").replace(
            "TABLE runs", "TABLE runs_new", 1
        )
        self._conn.execute("BEGIN IMMEDIATE")
        self._conn.execute(new_sql)
        self._conn.execute("INSERT INTO runs_new SELECT * FROM runs")
        self._conn.execute("DROP TABLE runs")
        self._conn.execute("ALTER TABLE runs_new RENAME TO runs")
        self._conn.execute(
            "CREATE INDEX IF NOT EXISTS runs_by_tenant ON runs (tenant_id, plugin, run_id)"
        )
        self._conn.execute("COMMIT")

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
        """Record a run; yields a writer whose rows count only if the block ends normally.

        :raises SnapshotBusyError: another process kept the snapshot locked too long.
        """
        try:
            with _signals_held():  # no run is left ``running`` by a signal between two lines
                run_id = self._begin_run(tenant_id, plugin, request, status)
                writer = RunWriter(self._conn, run_id)
                self._conn.execute("BEGIN")
        except sqlite3.OperationalError as exc:
            raise self.translate(exc) from None
        try:
            yield writer
            writer.flush()
        except BaseException as exc:
            with _signals_held():
                self._end_failed(run_id, exc)
            if isinstance(exc, sqlite3.OperationalError):
                raise self.translate(exc) from None
            raise
        with _signals_held():
            try:
                self._conn.execute(
                    "UPDATE runs SET outcome = 'complete', ended_at = ?, resources = ?,"
                    " entitlements = ?, grants = ? WHERE run_id = ?",
                    (_now(), writer.resources, writer.entitlements, writer.grants, run_id),
                )
                self._conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._end_failed(run_id, exc)
                raise self.translate(exc) from None

    def _end_failed(self, run_id: int, exc: BaseException) -> None:
        """Roll the run's rows back and record it ``failed`` (``interrupted`` for Ctrl-C or
        SIGTERM) with the error; a snapshot that cannot take even that keeps it ``running``,
        which every reader already takes for incomplete."""
        outcome = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self._conn.execute(
                "UPDATE runs SET outcome = ?, ended_at = ?, error = ? WHERE run_id = ?",
                (outcome, _now(), f"{type(exc).__name__}: {exc}", run_id),
            )
        except sqlite3.Error:
            pass

    def _begin_run(
        self, tenant_id: str, plugin: str, request: SyncRequest, status: ConnectorStatus | None
    ) -> int:
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
        return int(cur.lastrowid or 0)

    def runs(self, tenant_id: str | None = None) -> list[RunRecord]:
        """Runs, oldest first, optionally of one tenant."""
        sql = (
            "SELECT run_id, tenant_id, plugin, kind, started_at, ended_at, outcome, error, mode,"
            " resources, entitlements, grants, request FROM runs"
        )
        args: tuple[Any, ...] = ()
        if tenant_id is not None:
            sql += " WHERE tenant_id = ?"
            args = (tenant_id,)
        rows = self._conn.execute(sql + " ORDER BY run_id", args).fetchall()
        names = [f.name for f in attrs.fields(RunRecord)][:-1]
        return [
            RunRecord(**dict(zip(names, row[:-1], strict=True)), scope=run_scope(row[-1]))
            for row in rows
        ]

    def run_record(self, run_id: int) -> RunRecord | None:
        return next((r for r in self.runs() if r.run_id == run_id), None)

    def execute(self, sql: str, args: _Args = ()) -> int:
        """Run one writing statement (autocommitted) for a module that keeps its own tables
        in the snapshot (access-review campaigns); returns the last row id."""
        try:
            return int(self._conn.execute(sql, args).lastrowid or 0)
        except sqlite3.OperationalError as exc:
            raise self.translate(exc) from None

    def execute_all(self, statements: Iterable[tuple[str, _Args]]) -> None:
        """Run writing statements in one transaction: all of them are kept, or none (a
        campaign's rows are never half-recorded)."""
        try:
            with _signals_held():
                self._conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    self._conn.execute(sql, args)
            except BaseException:
                with _signals_held():
                    self._conn.execute("ROLLBACK")
                raise
            with _signals_held():
                self._conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise self.translate(exc) from None

    def create_tables(self, script: str) -> None:
        """``CREATE TABLE IF NOT EXISTS …`` statements of a module's own tables."""
        try:
            self._conn.executescript(script)
        except sqlite3.OperationalError as exc:
            raise self.translate(exc) from None

    def query(self, sql: str, args: _Args = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query as dicts."""
        return list(self.stream(sql, args))

    def stream(self, sql: str, args: _Args = ()) -> Iterator[dict[str, Any]]:
        """Rows of a read-only query as dicts, one at a time."""
        cursor = self._conn.execute(sql, args)
        names = [d[0] for d in cursor.description]
        for row in cursor:
            yield dict(zip(names, row, strict=True))

    def last_complete(
        self, tenant_id: str, plugin: str, request: SyncRequest | None = None
    ) -> RunRecord | None:
        """The newest complete run of a tenant and plugin: of the same kind and scope as
        ``request``, or (without one) the newest complete run over the whole tenant."""
        kind = _kind(request) if request is not None else "full"
        scope = run_scope(_request_json(request)) if request is not None else ""
        for run in reversed(self.runs(tenant_id)):
            if (
                run.plugin == plugin
                and run.outcome == "complete"
                and run.kind == kind
                and run.scope == scope
            ):
                return run
        return None

    def count_users(self, run_id: int) -> int:
        [count] = self._conn.execute(
            "SELECT count(*) FROM resources WHERE run_id = ? AND type = 'user'", (run_id,)
        ).fetchone()
        return int(count)

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

    # -- facts recorded with a run, and run look-ups for the access-review report ---------------

    def _facts_table(self) -> None:
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS run_facts (run_id INTEGER NOT NULL REFERENCES runs"
            " (run_id), key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_id, key))"
            " WITHOUT ROWID"
        )

    def record_facts(self, run_id: int, facts: dict[str, str]) -> None:
        """Keep facts about a run that its rows do not carry (instance, plugin version, …)."""
        self._facts_table()
        self._conn.executemany(
            "INSERT OR REPLACE INTO run_facts VALUES (?, ?, ?)",
            [(run_id, key, value) for key, value in sorted(facts.items())],
        )

    def facts(self, run_id: int) -> dict[str, str]:
        """The facts recorded with a run (empty for runs recorded before facts were kept)."""
        kept = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'run_facts'"
        ).fetchone()
        if kept is None:  # a snapshot written before facts were kept; read it as it is
            return {}
        rows = self._conn.execute("SELECT key, value FROM run_facts WHERE run_id = ?", (run_id,))
        return dict(rows.fetchall())

    def complete_before(
        self, tenant_id: str, plugin: str, run_id: int, kind: str = "full"
    ) -> list[RunRecord]:
        """Complete runs of ``kind`` over the whole tenant (no partial run: not narrowed by
        type, user or ``since``) of a tenant and plugin older than ``run_id``, oldest first."""
        return [
            run
            for run in self.runs(tenant_id)
            if run.plugin == plugin
            and run.outcome == "complete"
            and run.kind == kind
            and not run.partial
            and run.run_id < run_id
        ]
