"""Writing a user's whole list (roles, account groups, approval groups, and the fallback for
groups), safely under either of Coupa's undocumented PUT semantics, and recovering rewrites a
dead process left half-done.

Granting writes the current list plus the item: the same result whether Coupa replaces or
merges. Revoking writes the rest; if Coupa merged instead, the documented two-step rewrite
(clear, then put back the rest) follows, journaled before its first write.

The recovery rule: a journal entry is applied only while our interrupted rewrite is still the
last change to the user, that is while the list and Coupa's ``updated-at``/``updated-by`` are
exactly what our last recorded step left (or what our pending write leaves, written by our own
API user); recovery then finishes the rewrite, putting back what it had taken away. Otherwise
(someone else changed the user since, the entry is older than ``journal_max_age_s``, or a rule
refuses the write) nothing is applied: the entry is dropped and the call reports it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, Final, Literal

import attrs

from coupa_plugin.connector.provisioning.facts import TenantFacts
from coupa_plugin.connector.provisioning.guards import Guards
from coupa_plugin.connector.provisioning.journal import (
    Journal,
    JournalEntry,
    Rejected,
    Snapshot,
)
from coupa_plugin.connector.provisioning.session import (
    ATTRIBUTE_OF,
    UserSession,
    describe,
    ids_of,
    stamp_of,
)
from coupa_plugin.coupa.models import User
from coupa_plugin.host.errors import ProvisioningError

__all__ = ["ListWriter", "Recovery"]

log = logging.getLogger("coupa_plugin.connector.provisioning")

_REPLANS: Final = 3
_STEPS: Final = 4

# "failed": a repair that could not be made; the entry stays for the next attempt
Outcome = Literal[
    "repaired", "nothing_to_do", "superseded", "expired", "refused", "rejected", "failed"
]


@attrs.frozen
class Recovery:
    """What became of one journal entry."""

    user_id: int | None
    outcome: Outcome
    detail: str

    @property
    def applied(self) -> bool:
        return self.outcome == "repaired"


class _Replan(Exception):
    """Internal: the user changed between our read and our write."""


def _body(key: str, items: set[int]) -> dict[str, Any]:
    return {key: [{"id": i} for i in sorted(items)]}


class ListWriter:
    """List rewrites and their recovery for one tenant."""

    def __init__(
        self,
        journal: Journal,
        facts: TenantFacts,
        guards: Guards,
        *,
        wall_clock: Callable[[], float],
        max_age_s: float,
    ) -> None:
        self.journal = journal
        self.facts = facts
        self.guards = guards
        self._wall = wall_clock
        self._max_age_s = max_age_s

    # -- a new rewrite ---------------------------------------------------------------------

    def change(self, s: UserSession, key: str, before: set[int], desired: set[int]) -> set[int]:
        """Make ``key`` of the user exactly ``desired`` (it was ``before``); plan again if
        someone else changes the list meanwhile. Returns the list Coupa holds afterwards."""
        removed, added = before - desired, desired - before
        planned = before | added
        for _ in range(_REPLANS):
            try:
                now = self._rewrite(s, key, before, desired)
            except _Replan:
                before = s.current(ATTRIBUTE_OF[key])
                desired = (before - removed) | added
                continue
            if unasked := now - planned:
                s.notes.append(
                    f"{key} {describe(unasked)} of user {s.user_id} came in that this call did "
                    "not write (a change made meanwhile, or Coupa's own rule, such as giving a "
                    "user left without roles the User role); left as they are"
                )
            return now
        raise s.failure(
            f"user {s.user_id} kept changing while {key} was being written; "
            "nothing further was written"
        )

    def _rewrite(self, s: UserSession, key: str, before: set[int], desired: set[int]) -> set[int]:
        if before == desired:
            return before
        attribute = ATTRIBUTE_OF[key]
        if self.facts.semantics(key) != "merge" or desired >= before:
            # Adding only, or replacing: one write. With unknown semantics this is also the
            # probe: a merging Coupa leaves the list as it was, which loses nothing.
            s.put(
                _body(key, desired),
                f"set {key} of user {s.user_id} to {describe(desired)} (was {describe(before)})",
            )
            now = s.current(attribute)
            if now == desired:
                if not desired >= before:
                    self.facts.learn_semantics(key, "replace")
                return now
            if now == before and desired >= before:
                return now  # Coupa ignored the write; the caller reports it
            if now != before | desired:
                raise _Replan
            self.facts.learn_semantics(key, "merge")
            log.info("Coupa merges list writes; using the two-step rewrite", extra={"key": key})
        user = s.user()
        if why := self.guards.protected(user):
            # the probe's echo may just have shown that this user is our own API user
            raise s.failure(f"refused: {why}; the two-step rewrite was not begun")
        if ids_of(user, attribute) != before:
            raise _Replan
        entry = JournalEntry(
            tenant=self.journal.tenant_id,
            instance=self.journal.instance,
            user_id=s.user_id,
            association=key,
            before=tuple(sorted(before)),
            desired=tuple(sorted(desired)),
            created_at=self._wall(),
            last=Snapshot(tuple(sorted(before)), stamp_of(user)),
            writer=self.facts.own_user_id,
        )
        self._save(s, entry)
        return self._drive(s, entry)

    def _save(self, s: UserSession, entry: JournalEntry) -> None:
        try:
            self.journal.save(entry)
        except OSError as exc:
            raise s.failure(
                f"cannot record the rewrite of {entry.association} for user {s.user_id} in "
                f"the journal ({exc.strerror}); nothing further was written"
            ) from None

    def _drive(self, s: UserSession, entry: JournalEntry) -> set[int]:
        """Take the list from ``entry.last`` to ``entry.desired``, journaling every step (the
        list each write leaves, then the list and stamp read back). Drops the entry when the
        list is exactly ``desired``.

        Items the user did not hold before the rewrite are never cleared away: they are
        someone else's change made meanwhile, or Coupa's own doing (some tenants give an
        emptied user the User role). What the rewrite took away is put back regardless."""
        key, uid = entry.association, s.user_id
        before, desired = set(entry.before), set(entry.desired)
        current = set(entry.last.items)
        clears: list[Any] = [[], None]  # an empty list, then null, clear a list
        sent: set[str] = set()
        for _ in range(_STEPS):
            foreign = current - before
            if current - foreign == desired:
                break
            if current - desired - foreign and clears and not foreign:
                clear = clears.pop(0)
                body, leaves = {key: clear}, set[int]()
                line = f"cleared {key} of user {uid}" + (
                    " (step 1 of 2)" if clear == [] else " with null (step 1 of 2, again)"
                )
            elif desired - current:
                body, leaves = _body(key, desired), desired | foreign
                line = f"put back {key} {describe(desired)} for user {uid} (step 2 of 2)"
            else:
                break
            if line in sent:
                break  # Coupa ignored this very write once already
            sent.add(line)
            entry = attrs.evolve(
                entry,
                pending=tuple(sorted(leaves)),
                writer=self.facts.own_user_id or entry.writer,
            )
            self._save(s, entry)
            s.put(body, line)
            user = s.user()
            current = ids_of(user, ATTRIBUTE_OF[key])
            stamp = stamp_of(user)
            own = self.facts.own_user_id
            entry = attrs.evolve(
                entry,
                last=Snapshot(tuple(sorted(current)), stamp),
                pending=None,
                writer=own or entry.writer,
            )
            self._save(s, entry)
            if own is not None and stamp.updated_by not in (None, own):
                self.journal.done(entry)
                raise s.failure(
                    f"user {uid} was changed by user {stamp.updated_by} while {key} was being "
                    "rewritten; nothing further was written"
                )
        self.journal.done(entry)
        foreign = current - before
        if current == desired:
            return current
        if current - foreign == desired:
            raise s.failure(
                f"{key} of user {uid} is as asked except for {describe(foreign)}, which this "
                "call did not write (a change made meanwhile, or Coupa's own rule) and left "
                "alone"
            )
        raise s.failure(
            f"Coupa did not leave {key} of user {uid} at {describe(desired)} "
            f"(it holds {describe(current)}); nothing further was written"
        )

    # -- recovery --------------------------------------------------------------------------

    def entries(self, user_id: int | None, rejected: list[Rejected]) -> Iterator[JournalEntry]:
        return self.journal.pending(user_id, rejected)

    def recover(self, s: UserSession, entry: JournalEntry) -> Recovery:
        """Apply the recovery rule to ``entry`` (under the user's lock). Raises
        ProvisioningError, stating the user's holdings, when a repair write or read fails; the
        entry then stays for the next attempt."""
        uid, key = entry.user_id, entry.association
        age = self._wall() - entry.created_at
        if age > self._max_age_s:
            self.journal.done(entry)
            return Recovery(
                uid,
                "expired",
                f"a journaled rewrite of {key} for user {uid} from {age / 3600:.1f} h ago is "
                f"older than journal_max_age_s and was not applied (it meant to leave "
                f"{describe(entry.desired)}, removing {describe(entry.removed)})",
            )
        user = s.user()
        now, stamp = ids_of(user, ATTRIBUTE_OF[key]), stamp_of(user)
        if why := self.guards.protected(user):
            self.journal.done(entry)
            return Recovery(uid, "refused", f"a journaled rewrite was not applied: {why}")
        own = self.facts.own_user_id or entry.writer
        by_us = stamp.updated_by is not None and stamp.updated_by == own
        ours = (
            (now == set(entry.last.items) and stamp == entry.last.stamp)
            or (entry.pending is not None and now == set(entry.pending) and by_us)
            # our pending clear landed, and Coupa gave the emptied user its default role
            or (entry.pending == () and by_us and len(now) <= 1)
        )
        if not ours:
            self.journal.done(entry)
            return Recovery(
                uid,
                "superseded",
                f"user {uid} was changed after an interrupted rewrite of {key} (last "
                f"updated by user {stamp.updated_by} at {stamp.updated_at}); the journal "
                f"entry was dropped and nothing was applied; the user holds {key} "
                f"{describe(now)} (the rewrite meant to leave {describe(entry.desired)})",
            )
        desired = set(entry.desired)
        if now in (set(entry.before), desired):
            self.journal.done(entry)
            return Recovery(
                uid,
                "nothing_to_do",
                f"an interrupted rewrite of {key} for user {uid} had "
                + ("not changed anything" if now != desired else "already finished"),
            )
        if key == "roles" and (why := self.guards.last_admin(user, now - desired)):
            self.journal.done(entry)
            return Recovery(uid, "refused", f"a journaled rewrite was not applied: {why}")
        entry = attrs.evolve(entry, last=Snapshot(tuple(sorted(now)), stamp), pending=None)
        self._save(s, entry)
        after = self._drive(s, entry)
        return Recovery(
            uid,
            "repaired",
            f"finished an interrupted rewrite of {key} for user {uid}: put back "
            f"{describe(after - now)}; it holds {key} {describe(after)}",
        )

    def verify(self, s: UserSession, user: User, key: str, expected: set[int]) -> None:
        """Raise, stating the user's holdings, unless ``key`` of ``user`` is ``expected``."""
        now = ids_of(user, ATTRIBUTE_OF[key])
        if now != expected:
            lost, gained = expected - now, now - expected
            problem = "; ".join(
                part
                for part in (
                    f"lost {describe(lost)}" if lost else "",
                    f"gained {describe(gained)}" if gained else "",
                )
                if part
            )
            raise ProvisioningError(
                f"user {s.user_id}'s {key} is not as intended ({problem}). {s.statement()}"
            )
