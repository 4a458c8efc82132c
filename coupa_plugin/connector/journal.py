"""A durable record of list rewrites in progress, so a process that dies between the two steps
of Coupa's "clear, then put back the rest" leaves nothing that the next call cannot repair.

Each pending rewrite is one small JSON file, written atomically (temporary file, fsync,
rename, fsync of the directory) before the first write to Coupa and removed once the result
was verified. Files hold ids only, never a secret.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

__all__ = ["Journal", "JournalEntry", "default_state_dir"]


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/coupa-plugin``, else ``~/.local/state/coupa-plugin``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "coupa-plugin"


@attrs.frozen(kw_only=True)
class JournalEntry:
    """The intent of one list rewrite: ``association`` of ``user_id`` should become
    ``desired``; ``removed`` are the items the rewrite takes away."""

    user_id: int
    association: str
    before: tuple[int, ...]
    desired: tuple[int, ...]
    removed: tuple[int, ...]
    entry_id: str = attrs.field(factory=lambda: uuid.uuid4().hex)


class Journal:
    """Pending list rewrites of one tenant under ``state_dir``."""

    def __init__(self, state_dir: Path, tenant_id: str) -> None:
        tenant_key = hashlib.sha256(tenant_id.encode()).hexdigest()[:16]
        self.directory = state_dir / "journal" / tenant_key

    def _path(self, entry: JournalEntry) -> Path:
        return self.directory / f"{entry.user_id}-{entry.association}-{entry.entry_id}.json"

    def begin(self, entry: JournalEntry) -> None:
        """Durably record ``entry`` before anything is written to Coupa."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(entry)
        tmp = path.with_suffix(".tmp")
        data = json.dumps(attrs.asdict(entry)).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        self._sync_directory()

    def done(self, entry: JournalEntry) -> None:
        """Forget ``entry``: its rewrite was verified."""
        self._path(entry).unlink(missing_ok=True)
        self._sync_directory()

    def pending(self, user_id: int | None = None) -> Iterator[JournalEntry]:
        """Entries left by rewrites that did not finish (all, or one user's), oldest first."""
        if not self.directory.is_dir():
            return
        files = sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for path in files:
            if user_id is not None and not path.name.startswith(f"{user_id}-"):
                continue
            try:
                raw: dict[str, Any] = json.loads(path.read_text("utf-8"))
                yield JournalEntry(
                    user_id=int(raw["user_id"]),
                    association=str(raw["association"]),
                    before=tuple(raw["before"]),
                    desired=tuple(raw["desired"]),
                    removed=tuple(raw["removed"]),
                    entry_id=str(raw["entry_id"]),
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a torn temporary write never becomes a .json file; skip anything odd

    def _sync_directory(self) -> None:
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
