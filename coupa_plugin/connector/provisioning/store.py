"""Where a tenant's provisioning state lives: the seam between the journal, the learnt facts
and the per-user serialisation on one side and their storage on the other.

Two backends keep the same bytes: :class:`LocalStore` (files under ``state_dir``, the default)
and the Redis store of :mod:`coupa_plugin.connector.shared_state` (setting ``shared_state``),
which workers on several machines share. The store only keeps sealed bytes under names; what
they mean, and whether they can be trusted, is decided by the journal and the facts alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from coupa_plugin.connector.statefiles import (
    private_dir,
    read_private,
    remove_private,
    write_private,
)

__all__ = ["LocalStore", "StateStore", "StoreUnavailable"]


class StoreUnavailable(OSError):
    """The shared state could not be read or written (its message names where, never a
    secret). An ``OSError``, like a failing disk under ``state_dir``."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EIO, message)

    def __str__(self) -> str:
        return str(self.strerror)


class StateStore(Protocol):
    """Sealed journal entries by name, one sealed facts record, and a lock per user."""

    @property
    def where(self) -> str:
        """Where the state lives, for messages (no secret)."""
        ...

    def ensure(self) -> None:
        """Check the store can be written; a PluginError before any write when it cannot."""

    def entries(self, prefix: str) -> Iterator[tuple[str, bytes | None]]:
        """Journal entries whose names start with ``prefix``, by name; ``None`` for an entry
        that is not a readable record."""
        ...

    def put_entry(self, name: str, data: bytes) -> None:
        """Durably record (or replace) entry ``name``."""

    def remove_entry(self, name: str) -> None:
        """Forget entry ``name`` (if present)."""

    def set_aside(self, name: str) -> None:
        """Keep entry ``name`` for inspection only: it is never listed again."""

    def read_facts(self) -> bytes | None:
        """The facts record, if any."""
        ...

    def write_facts(self, data: bytes) -> None:
        """Replace the facts record."""

    def user_lock(self, user_id: int) -> AbstractContextManager[None]:
        """Held while a call changes the user: shared by every worker using this store."""
        ...

    def close(self) -> None:
        """Release connections."""


class LocalStore:
    """Files under ``state_dir``: ``journal/<key>/<name>`` and ``facts/<key>.json``, private
    (0700 folders, 0600 files, no symlinks), written atomically and fsynced. The per-user
    lock is the provisioner's in-process lock: one process owns a ``state_dir``."""

    def __init__(self, state_dir: Path, key: str) -> None:
        self.state_dir = state_dir
        self._key = key

    @property
    def where(self) -> str:
        return str(self.state_dir)

    @property
    def directory(self) -> Path:
        return self.state_dir / "journal" / self._key

    def _open(self) -> Path:
        return private_dir(self.state_dir, "journal", self._key)

    def ensure(self) -> None:
        self._open()

    def entries(self, prefix: str) -> Iterator[tuple[str, bytes | None]]:
        if not self.directory.exists():
            return
        directory = self._open()
        for path in sorted(directory.glob(f"{prefix}*.json")):
            yield path.name, read_private(path)

    def put_entry(self, name: str, data: bytes) -> None:
        write_private(self._open() / name, data)

    def remove_entry(self, name: str) -> None:
        remove_private(self.directory / name)

    def set_aside(self, name: str) -> None:
        path = self.directory / name
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, path.with_name(name + ".rejected"))

    def read_facts(self) -> bytes | None:
        return read_private(self.state_dir / "facts" / f"{self._key}.json")

    def write_facts(self, data: bytes) -> None:
        write_private(private_dir(self.state_dir, "facts") / f"{self._key}.json", data)

    def user_lock(self, user_id: int) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def close(self) -> None:
        """Nothing to release."""
