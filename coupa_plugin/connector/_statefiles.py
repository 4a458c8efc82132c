"""Private files under a tenant's ``state_dir``: 0700 directories, 0600 files, no symlinks.

The journal and the learnt facts live here. Both decide what provisioning writes, so a file
planted through a symlink or left readable by others must never be trusted or exposed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import stat
from pathlib import Path
from typing import Any

import orjson

from coupa_plugin.connector._errors import SealError
from coupa_plugin.host.errors import ConfigurationError

__all__ = ["Seal", "private_dir", "read_private", "remove_private", "write_private"]

_MAX_FILE_BYTES = 4 * 1024 * 1024


def _refuse(path: Path, why: str) -> ConfigurationError:
    return ConfigurationError(f"state_dir: {path} {why}; refused")


def private_dir(root: Path, *parts: str) -> Path:
    """``root/parts…``, created with mode 0700 where missing and tightened where looser.

    ``root`` may itself be a symlink (an operator's choice); nothing below it may be.
    """
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise _refuse(root, f"cannot be created ({exc.strerror})") from None
    if not root.is_dir():
        raise _refuse(root, "is not a directory")
    path = root
    for part in parts:
        path = path / part
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise _refuse(path, f"cannot be created ({exc.strerror})") from None
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            raise _refuse(path, "is a symlink")
        if not stat.S_ISDIR(info.st_mode):
            raise _refuse(path, "is not a directory")
        if info.st_mode & 0o077:
            os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data`` (0600, fsync'd file and directory)."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _sync_directory(path.parent)


def read_private(path: Path) -> bytes | None:
    """The bytes of ``path``; None when it is missing, a symlink, not a regular file, or too
    large. A file readable by others is tightened to 0600 first."""
    try:
        # O_NONBLOCK: a FIFO planted under the name must not block the reader
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_FILE_BYTES:
            return None
        if info.st_mode & 0o077:
            os.fchmod(fd, 0o600)
        chunks = []
        while chunk := os.read(fd, 65_536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def remove_private(path: Path) -> None:
    """Delete ``path`` (if present) and make the removal durable."""
    path.unlink(missing_ok=True)
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Seal:
    """Authenticates state files with an HMAC keyed by the tenant's client secret.

    Someone who can write to ``state_dir`` but does not hold the tenant's OAuth secret cannot
    forge a journal entry that provisioning would apply. The secret itself never reaches a file:
    the key is a hash of it, and a file carries only a MAC.
    """

    __slots__ = ("_key",)

    def __init__(self, secret: str, purpose: str) -> None:
        self._key = hashlib.sha256(f"coupa-plugin\0{purpose}\0{secret}".encode()).digest()

    def __repr__(self) -> str:
        return "Seal(**********)"

    def seal(self, payload: dict[str, Any]) -> bytes:
        body = orjson.dumps(payload).decode()
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()
        return orjson.dumps({"body": body, "mac": mac})

    def open(self, data: bytes) -> Any:
        """The payload of a sealed file; :class:`SealError` when it is not one or was altered (or
        sealed with another client secret)."""
        try:
            outer = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise SealError("not a sealed state file") from None
        if not isinstance(outer, dict):
            raise SealError("not a sealed state file")
        body, mac = outer.get("body"), outer.get("mac")
        if not isinstance(body, str) or not isinstance(mac, str):
            raise SealError("not a sealed state file")
        expected = hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, mac):
            raise SealError("its seal does not match (altered, or written with another secret)")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise SealError("not a sealed state file") from None
