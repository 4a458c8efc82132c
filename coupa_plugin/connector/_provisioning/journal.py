"""A durable record of list rewrites in progress.

Coupa's documented way to take one item out of a merged list is two writes: clear the list,
then put back the rest. Between them the user holds less than they should. Before the first of
those writes an entry is recorded here; before each write it notes which step that write is,
the list it will leave (``pending``) and when it was sent by Coupa's clock (``pending_at``);
after each read-back, the list and Coupa's ``updated-at`` / ``updated-by`` stamp the user then
had (``last``) and whether our clear has taken the list (``cleared``). Recovery
(:mod:`.rule`) compares those with what Coupa shows later.

Entries are bound to one tenant and one Coupa instance, hold ids and timestamps only (never a
secret), and are validated when read: a file that does not describe a rewrite this plugin could
have made is reported and never applied.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, Literal

import attrs

from coupa_plugin.connector._errors import InvalidEntry, SealError, StoreUnavailable
from coupa_plugin.connector._kinds import LIST_KINDS
from coupa_plugin.connector._provisioning.store import StateStore
from coupa_plugin.connector._statefiles import Seal

__all__ = [
    "DEFAULT_JOURNAL_MAX_AGE_S",
    "JOURNALED_KEYS",
    "Journal",
    "JournalEntry",
    "Stamp",
    "default_state_dir",
    "state_key",
]

# the user's list associations a rewrite may touch (keys of PUT /api/users/:id)
JOURNALED_KEYS: Final = frozenset(kind.put_key for kind in LIST_KINDS if kind.put_key)
_VERSION: Final = 3
# how long an entry is applied before it is only reported (setting journal_max_age_s)
DEFAULT_JOURNAL_MAX_AGE_S: Final = 24 * 3600.0
_READABLE: Final = frozenset({2, 3})  # version 2 lacks the step, its time and ``cleared``
Step = Literal["clear", "put_back"]
_STEPS: Final = ("clear", "put_back")
_MAX_ITEMS: Final = 10_000
_MAX_ID: Final = 10**18 - 1
_ENTRY_ID: Final = re.compile(r"[0-9a-f]{32}")
_MAX_STAMP_CHARS: Final = 64
_TOMBSTONE: Final = ".done.json"


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/coupa-plugin``, else ``~/.local/state/coupa-plugin``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "coupa-plugin"


def state_key(tenant_id: str, instance: str) -> str:
    """The folder name for one tenant on one Coupa instance (no tenant name on disk)."""
    return hashlib.sha256(f"{tenant_id}\n{instance}".encode()).hexdigest()[:24]


@attrs.frozen
class Stamp:
    """What Coupa records about a user's last change: ``updated-at`` and ``updated-by``'s id."""

    updated_at: str | None
    updated_by: int | None


@attrs.frozen
class Snapshot:
    """A list association as read back, with the user's stamp at that moment."""

    items: tuple[int, ...]
    stamp: Stamp


@attrs.frozen(kw_only=True)
class JournalEntry:
    """One list rewrite: ``association`` of ``user_id`` goes from ``before`` to ``desired``
    (a subset: the rewrite only takes items away)."""

    tenant: str
    instance: str
    user_id: int
    association: str
    before: tuple[int, ...]
    desired: tuple[int, ...]
    created_at: float
    last: Snapshot
    pending: tuple[int, ...] | None = None
    writer: int | None = None
    entry_id: str = attrs.field(factory=lambda: uuid.uuid4().hex)
    # which write is in flight, and when it was sent (Coupa's clock, else ours)
    pending_step: Step | None = None
    pending_at: float | None = None
    pending_at_coupa: bool = False  # pending_at is Coupa's clock (its Date), not ours
    # a read-back has shown the list cleared by our first step (what it took is owed back)
    cleared: bool = False

    @property
    def removed(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.before) - set(self.desired)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "tenant": self.tenant,
            "instance": self.instance,
            "entry_id": self.entry_id,
            "created_at": self.created_at,
            "user_id": self.user_id,
            "association": self.association,
            "before": list(self.before),
            "desired": list(self.desired),
            "last": {
                "items": list(self.last.items),
                "updated_at": self.last.stamp.updated_at,
                "updated_by": self.last.stamp.updated_by,
            },
            "pending": None if self.pending is None else list(self.pending),
            "writer": self.writer,
            "pending_step": self.pending_step,
            "pending_at": self.pending_at,
            "pending_at_coupa": self.pending_at_coupa,
            "cleared": self.cleared,
        }


def _int(raw: Any, what: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 < raw <= _MAX_ID:
        raise InvalidEntry(f"{what}: expected a positive id")
    return raw


def _opt_int(raw: Any, what: str) -> int | None:
    return None if raw is None else _int(raw, what)


def _ids(raw: Any, what: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or len(raw) > _MAX_ITEMS:
        raise InvalidEntry(f"{what}: expected a list of at most {_MAX_ITEMS} ids")
    items = tuple(_int(i, what) for i in raw)
    if len(set(items)) != len(items):
        raise InvalidEntry(f"{what}: repeated ids")
    return tuple(sorted(items))


def parse_entry(raw: Any, tenant: str, instance: str) -> JournalEntry:
    """Validate a decoded journal file for ``tenant`` on ``instance``."""
    if not isinstance(raw, dict) or raw.get("version") not in _READABLE:
        raise InvalidEntry("not a version-2 or version-3 journal entry")
    if raw.get("tenant") != tenant or raw.get("instance") != instance:
        raise InvalidEntry("written for another tenant or Coupa instance")
    association = raw.get("association")
    if association not in JOURNALED_KEYS:
        raise InvalidEntry(f"unknown association {str(association)[:40]!r}")
    entry_id = raw.get("entry_id")
    if not isinstance(entry_id, str) or not _ENTRY_ID.fullmatch(entry_id):
        raise InvalidEntry("malformed entry id")
    created = raw.get("created_at")
    if isinstance(created, bool) or not isinstance(created, int | float):
        raise InvalidEntry("created_at: expected a number")
    if not math.isfinite(created):
        raise InvalidEntry("created_at: not a finite number")
    before, desired = _ids(raw.get("before"), "before"), _ids(raw.get("desired"), "desired")
    if not set(desired) < set(before):
        raise InvalidEntry("desired must be a strict subset of before (a rewrite only removes)")
    last = raw.get("last")
    if not isinstance(last, dict):
        raise InvalidEntry("last: missing")
    stamp_at = last.get("updated_at")
    if stamp_at is not None and (not isinstance(stamp_at, str) or len(stamp_at) > _MAX_STAMP_CHARS):
        raise InvalidEntry("last.updated_at: expected a short string")
    pending = raw.get("pending")
    pending_ids = None if pending is None else _ids(pending, "pending")
    step, at, coupa_clock, cleared = _steps(raw, pending_ids, set(before))
    return JournalEntry(
        tenant=tenant,
        instance=instance,
        user_id=_int(raw.get("user_id"), "user_id"),
        association=str(association),
        before=before,
        desired=desired,
        created_at=float(created),
        last=Snapshot(
            _ids(last.get("items"), "last.items"),
            Stamp(stamp_at, _opt_int(last.get("updated_by"), "last.updated_by")),
        ),
        pending=pending_ids,
        writer=_opt_int(raw.get("writer"), "writer"),
        entry_id=entry_id,
        pending_step=step,
        pending_at=at,
        pending_at_coupa=coupa_clock,
        cleared=cleared,
    )


def _steps(
    raw: dict[str, Any], pending: tuple[int, ...] | None, before: set[int]
) -> tuple[Step | None, float | None, bool, bool]:
    """The step in flight, when it was sent, and whether our clear has landed. A version-2
    entry did not record them: a pending empty list was a clear, any other a put-back, and a
    list read back without all of ``before`` had been cleared."""
    if raw.get("version") == 2:
        last = raw.get("last")
        items = last.get("items") if isinstance(last, dict) else None
        cleared = isinstance(items, list) and not before <= set(items)
        step: Step | None = None if pending is None else ("clear" if not pending else "put_back")
        return step, None, False, cleared
    step_raw, at, cleared_raw = raw.get("pending_step"), raw.get("pending_at"), raw.get("cleared")
    if step_raw is not None and step_raw not in _STEPS:
        raise InvalidEntry("pending_step: unknown step")
    if (step_raw is None) != (pending is None):
        raise InvalidEntry("pending_step and pending must be given together")
    if at is not None and (
        isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at)
    ):
        raise InvalidEntry("pending_at: expected a finite number")
    coupa_clock = raw.get("pending_at_coupa")
    if not isinstance(cleared_raw, bool) or not isinstance(coupa_clock, bool):
        raise InvalidEntry("cleared, pending_at_coupa: expected true or false")
    return step_raw, None if at is None else float(at), coupa_clock, cleared_raw


@attrs.frozen
class Rejected:
    """A journal file that was set aside instead of applied, and why."""

    name: str
    reason: str


class Journal:
    """Pending list rewrites of one tenant on one Coupa instance, kept in ``store`` (files
    under ``state_dir`` or the shared Redis): sealed and validated the same way in both."""

    def __init__(
        self,
        store: StateStore,
        tenant_id: str,
        instance: str,
        seal: Seal,
        *,
        max_age_s: float = DEFAULT_JOURNAL_MAX_AGE_S,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._seal = seal
        self.tenant_id = tenant_id
        self.instance = instance
        self._max_age_s = max_age_s
        self._wall = wall_clock
        # entries this process knows are pending: saved and not done, or found by a listing
        self._known: set[str] = set()

    @property
    def known_pending(self) -> int:
        """How many entries this process knows are pending (no I/O: refreshed by every full
        listing, every save and every finish)."""
        return len(self._known)

    def ensure(self) -> None:
        """Check the journal can be written: ConfigurationError when ``state_dir`` is unusable
        (a symlink, not a directory, not creatable), a PluginError naming the shared state
        when it cannot be reached. Called before any write."""
        self.store.ensure()

    @staticmethod
    def _name(entry: JournalEntry) -> str:
        return f"{entry.user_id}-{entry.entry_id}.json"

    @staticmethod
    def _tombstone(entry: JournalEntry) -> str:
        return f"{entry.user_id}-{entry.entry_id}{_TOMBSTONE}"

    def save(self, entry: JournalEntry) -> None:
        """Durably record ``entry`` (first before anything is written, then at every step)."""
        self.store.put_entry(self._name(entry), self._seal.seal(entry.to_dict()))
        self._known.add(entry.entry_id)

    def done(self, entry: JournalEntry) -> None:
        """Forget ``entry``, leaving a sealed tombstone for as long as the entry could still
        be applied (``max_age_s``): a copy of it put back later is refused as a replay."""
        stone = {
            "version": _VERSION,
            "tenant": self.tenant_id,
            "instance": self.instance,
            "finished": entry.entry_id,
            "created_at": entry.created_at,
        }
        name, sealed = self._tombstone(entry), self._seal.seal(stone)
        try:
            self.store.put_entry(name, sealed)
        except (OSError, StoreUnavailable):  # something planted at its name: set it aside, once
            self.store.set_aside(name)
            self.store.put_entry(name, sealed)
        self.store.remove_entry(self._name(entry))
        self._known.discard(entry.entry_id)

    def pending(
        self, user_id: int | None = None, rejected: list[Rejected] | None = None
    ) -> Iterator[JournalEntry]:
        """Valid entries (all, or one user's), oldest first. Entries that fail validation are
        set aside (kept for inspection, never applied: files are renamed ``*.rejected``) and
        listed in ``rejected``."""
        found: list[tuple[float, JournalEntry]] = []
        prefix = "" if user_id is None else f"{user_id}-"
        listed = list(self.store.entries(prefix))
        finished = self._finished([(n, d) for n, d in listed if n.endswith(_TOMBSTONE)])
        for name, data in listed:
            if name.endswith(_TOMBSTONE):
                continue
            try:
                if data is None:
                    raise InvalidEntry("not a regular file of sane size")
                entry = parse_entry(self._seal.open(data), self.tenant_id, self.instance)
                if name != self._name(entry):
                    raise InvalidEntry("file name does not match its content")
                if entry.entry_id in finished:
                    raise InvalidEntry("replayed: this rewrite was already finished")
            except (InvalidEntry, SealError) as exc:
                if rejected is not None:
                    rejected.append(Rejected(name, str(exc)))
                self.store.set_aside(name)
                continue
            found.append((entry.created_at, entry))
        if user_id is None:
            self._known = {entry.entry_id for _, entry in found}
        for _, entry in sorted(found, key=lambda pair: pair[0]):
            yield entry

    def _finished(self, stones: list[tuple[str, bytes | None]]) -> set[str]:
        """Entry ids of finished rewrites; tombstones past ``max_age_s`` are removed (an entry
        that old is never applied anyway)."""
        ids = set()
        now = self._wall()
        for name, data in stones:
            try:
                raw = self._seal.open(data or b"")
            except SealError:
                continue  # an unsealed tombstone proves nothing; a sealed entry still needs one
            if not isinstance(raw, dict) or (raw.get("tenant"), raw.get("instance")) != (
                self.tenant_id,
                self.instance,
            ):
                continue
            created, entry_id = raw.get("created_at"), raw.get("finished")
            if not isinstance(entry_id, str) or not isinstance(created, int | float):
                continue
            if now - created > self._max_age_s:
                self.store.remove_entry(name)
                continue
            ids.add(entry_id)
        return ids
