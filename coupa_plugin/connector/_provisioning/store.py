"""Where a tenant's provisioning state lives: the seam between the journal, the learnt facts
and the per-user serialisation on one side and their storage on the other.

Two backends keep the same bytes: :class:`LocalStore` (files under ``state_dir``, the default)
and the Redis store of :mod:`coupa_plugin.connector._shared_state` (setting ``shared_state``),
which workers on several machines share. The store only keeps sealed bytes under names; what
they mean, and whether they can be trusted, is decided by the journal and the facts alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from coupa_plugin.connector._statefiles import (
    private_dir,
    read_private,
    remove_private,
    write_private,
)
from coupa_plugin.host.errors import ConfigurationError, ProvisioningError

__all__ = ["LocalStore", "StateStore"]


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
    (0700 folders, 0600 files, no symlinks), written atomically and fsynced; a lock file per
    user under ``locks/<key>/`` serialises the processes that share the ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        key: str,
        *,
        lock_wait_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.state_dir = state_dir
        self._key = key
        self._lock_wait_s = lock_wait_s
        self._clock, self._sleep = clock, sleep

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
        folder = private_dir(self.state_dir, "facts")
        facts = folder / f"{self._key}.json"
        if facts.is_symlink() or (facts.exists() and not facts.is_file()):
            raise ConfigurationError(
                f"state_dir: {facts} is not a regular file; refused (nothing was written)"
            )
        private_dir(self.state_dir, "locks", self._key)

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
        # a unique name: whatever already sits at "<name>.rejected" must not stop this
        aside = path.with_name(f"{name}.{time.time_ns()}.rejected")
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, aside)

    def read_facts(self) -> bytes | None:
        return read_private(self.state_dir / "facts" / f"{self._key}.json")

    def write_facts(self, data: bytes) -> None:
        write_private(private_dir(self.state_dir, "facts") / f"{self._key}.json", data)

    @contextlib.contextmanager
    def user_lock(self, user_id: int) -> Iterator[None]:
        """An advisory lock file per user (``flock``): processes sharing ``state_dir`` change
        one user at a time, and the kernel frees the lock of a process that dies. The file is
        removed by its holder when the call ends, so none is kept per user ever provisioned: a
        waiter that then gets the lock of a removed file takes the one now at its path."""
        folder = private_dir(self.state_dir, "locks", self._key)
        path = folder / f"{user_id}.lock"
        deadline = self._clock() + self._lock_wait_s
        while True:
            fd = self._locked_fd(path, user_id, deadline)
            try:
                on_disk = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                on_disk = None
            held = os.fstat(fd)
            if on_disk is not None and (on_disk.st_dev, on_disk.st_ino) == (
                held.st_dev,
                held.st_ino,
            ):
                break
            os.close(fd)  # the holder before us removed it: lock the file at the path now
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # still ours: nobody else holds a lock on it
            os.close(fd)  # closing the descriptor releases the lock

    def _locked_fd(self, path: Path, user_id: int, deadline: float) -> int:
        """A descriptor of ``path`` (created 0600, never through a symlink) holding its lock."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
                os.fchmod(fd, 0o600)  # found looser: tightened, as every state file is
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd
                except BlockingIOError:
                    if self._clock() >= deadline:
                        raise ProvisioningError(
                            f"user {user_id} is being changed by another process for over "
                            f"{self._lock_wait_s:g} s; nothing was written"
                        ) from None
                    self._sleep(0.02)
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        """Nothing to release."""
