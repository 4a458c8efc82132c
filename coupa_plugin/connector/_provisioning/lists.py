"""Writing a user's whole list (roles, account groups, approval groups, and the fallback for
groups), safely under either of Coupa's undocumented PUT semantics, and recovering rewrites left
unfinished.

Granting writes the current list plus the item: the same result whether Coupa replaces or
merges. Revoking writes the rest; if Coupa merged instead, the documented two-step rewrite
(clear, then put back the rest) follows, journaled before its first write.

A rewrite is finished in the call that began it: a write answered with an error, or whose
answer was lost, is followed by a read, and the rewrite goes on from what that read shows; the
put-back is sent again while Coupa fails, within :data:`~.session.SENDS` sends. Only when Coupa
keeps failing does the call raise, stating the holdings; the entry then stays in the journal and
is repaired by the recovery rule (:mod:`.rule`) as soon as Coupa answers again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Final, Literal

import attrs

from coupa_plugin.connector._errors import StoreUnavailable
from coupa_plugin.connector._provisioning.facts import TenantFacts
from coupa_plugin.connector._provisioning.guards import Guards
from coupa_plugin.connector._provisioning.journal import (
    Journal,
    JournalEntry,
    Snapshot,
    Step,
)
from coupa_plugin.connector._provisioning.repair import Repairer
from coupa_plugin.connector._provisioning.rule import Observed, decide, expired
from coupa_plugin.connector._provisioning.session import (
    ATTRIBUTE_OF,
    SENDS,
    UserSession,
    describe,
    ids_of,
    stamp_of,
)
from coupa_plugin.coupa import User, WriteEcho
from coupa_plugin.host.errors import NotFoundError, ProvisioningError, RefusedError

__all__ = ["ListWriter", "Recovery"]

log = logging.getLogger("coupa_plugin.connector.provisioning")

_REPLANS: Final = 3
_MAX_WRITES: Final = 8  # of one two-step rewrite, resends included

# "failed": a repair that could not be made; the entry stays for the next attempt
Outcome = Literal[
    "repaired",
    "nothing_to_do",
    "superseded",
    "stale",
    "expired",
    "refused",
    "rejected",
    "failed",
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
        repairer: Repairer | None = None,
    ) -> None:
        self.journal = journal
        self.facts = facts
        self.guards = guards
        self._wall = wall_clock
        self._max_age_s = max_age_s
        # told when a call ends leaving a user stripped (the entry stays for self-repair)
        self.repairer = repairer

    def _left_pending(self) -> None:
        if self.repairer is not None:
            self.repairer.kick()

    # -- a new rewrite ---------------------------------------------------------------------

    def change(self, s: UserSession, key: str, before: set[int], desired: set[int]) -> set[int]:
        """Make ``key`` of the user exactly ``desired`` (it was ``before``); plan again if
        someone else changes the list meanwhile. Returns the list Coupa holds afterwards (as
        the last read-back showed it)."""
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
            line = f"set {key} of user {s.user_id} to {describe(desired)} (was {describe(before)})"
            user = s.write(
                lambda: s.send(self._put(s, key, desired), line),
                lambda u: ids_of(u, attribute) != before,
                line,
            )
            now = ids_of(user, attribute)
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
        user = s.last_seen if s.last_seen is not None else s.user()
        if why := self.guards.protected(user):
            # the probe's echo may just have shown that this user is our own API user; the
            # probe itself left the list as it was (Coupa merged it)
            raise RefusedError(
                str(s.failure(f"refused: {why}; the two-step rewrite was not begun"))
            )
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
        except (OSError, StoreUnavailable) as exc:
            detail = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise s.failure(
                f"cannot record the rewrite of {entry.association} for user {s.user_id} in "
                f"the journal ({detail}); nothing further was written"
            ) from None

    def _sent(self, s: UserSession) -> tuple[float, bool]:
        """When a write is sent: by Coupa's clock (its latest Date) when known."""
        coupa = s.client.server_time
        return (coupa, True) if coupa is not None else (self._wall(), False)

    @staticmethod
    def _put(s: UserSession, key: str, ids: set[int] | None) -> Callable[[], WriteEcho]:
        """The write of list ``key`` (its journal name) of the user, as ``ids`` (None: null)."""
        return partial(s.client.put_user_list, s.user_id, ATTRIBUTE_OF[key], ids)

    def _step(
        self,
        s: UserSession,
        entry: JournalEntry,
        step: Step,
        ids: set[int] | None,
        leaves: set[int],
        line: str,
    ) -> tuple[JournalEntry, set[int], bool]:
        """Journal ``step``, send it, read the user back and journal what the read shows.
        Returns the entry, the list read back and whether Coupa answered with an error. A
        failed read raises (stating what can be said) and leaves the entry pending."""
        at, coupa_clock = self._sent(s)
        entry = attrs.evolve(
            entry,
            pending=tuple(sorted(leaves)),
            pending_step=step,
            pending_at=at,
            pending_at_coupa=coupa_clock,
            writer=self.facts.own_user_id or entry.writer,
        )
        self._save(s, entry)
        error = s.send(self._put(s, entry.association, ids), line)
        user = self._read_back(s, entry)
        current = ids_of(user, ATTRIBUTE_OF[entry.association])
        taken = bool(set(entry.desired) - current)  # the clear took what the rewrite keeps
        if step == "clear" and taken and len(current) <= 1 and not error:
            self.facts.learn_default(entry.association, min(current, default=0))
        entry = attrs.evolve(
            entry,
            last=Snapshot(tuple(sorted(current)), stamp_of(user)),
            pending=None,
            pending_step=None,
            pending_at=None,
            pending_at_coupa=False,
            cleared=entry.cleared or (step == "clear" and taken),
            writer=self.facts.own_user_id or entry.writer,
        )
        self._save(s, entry)
        return entry, current, error is not None

    def _read_back(self, s: UserSession, entry: JournalEntry) -> User:
        try:
            return s.user()
        except ProvisioningError:
            if entry.cleared or entry.pending_step == "clear":
                self._left_pending()  # the user may be stripped: repaired once Coupa answers
            raise

    def _drive(self, s: UserSession, entry: JournalEntry) -> set[int]:  # noqa: C901 - one branch per step outcome
        """Take the list from ``entry.last`` to ``entry.desired`` with a clear and a put-back,
        journaling every step. Items the user did not hold before the rewrite are never
        cleared away (someone else's change made meanwhile, or Coupa's own doing: some tenants
        give an emptied user the User role). What the rewrite took away is put back however
        Coupa answers the writes, within the call; when Coupa keeps failing, the entry stays
        for the recovery rule."""
        key, uid = entry.association, s.user_id
        before, desired = set(entry.before), set(entry.desired)
        removed = before - desired
        current = set(entry.last.items)
        clears: list[set[int] | None] = [set(), None]  # an empty list, then null, clear it
        failures = 0
        for _ in range(_MAX_WRITES):
            foreign = current - before
            if not current & removed and desired <= current:
                break
            if current & removed and clears and not foreign and not entry.cleared:
                clear = clears[0]
                line = f"cleared {key} of user {uid}" + (
                    " (step 1 of 2)" if clear is not None else " with null (step 1 of 2, again)"
                )
                entry, current, failed = self._step(s, entry, "clear", clear, set(), line)
                if current & removed and not failed:
                    clears.pop(0)  # Coupa ignored this form of clear: try the next
            elif desired - current:
                wanted = desired | foreign
                line = f"put back {key} {describe(desired)} for user {uid} (step 2 of 2)"
                entry, current, failed = self._step(s, entry, "put_back", wanted, wanted, line)
                if desired - current and not failed:
                    break  # Coupa ignored the put-back: said below
            else:
                break  # what is left to remove cannot be removed without clearing others
            if failed:
                failures += 1
                if failures >= SENDS:
                    break
        foreign = current - before
        if entry.cleared and desired - current:
            self._left_pending()  # stripped: the entry stays and is repaired by the rule
            raise s.failure(
                f"Coupa kept failing while {key} of user {uid} was being put back; the journal "
                f"keeps the rewrite and gives back {describe(desired - current)} as soon as "
                "Coupa answers again"
            )
        self.journal.done(entry)
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

    def recover(self, s: UserSession, entry: JournalEntry) -> Recovery:
        """Apply the recovery rule (:func:`.rule.decide`) to ``entry``, under the user's lock.
        Raises ProvisioningError, stating the user's holdings, when a repair write or read
        fails; the entry then stays for the next attempt."""
        uid, key = entry.user_id, entry.association
        age = self._wall() - entry.created_at
        if age > self._max_age_s:  # decided before anything is read: never applied
            self.journal.done(entry)
            return Recovery(uid, "expired", expired(entry, age).why)
        try:
            user = s.user()
        except NotFoundError:
            self.journal.done(entry)
            return Recovery(
                uid, "superseded", f"Coupa has no user {uid} any more; the rewrite was dropped"
            )
        now = ids_of(user, ATTRIBUTE_OF[key])
        if why := self.guards.protected(user):
            self.journal.done(entry)
            return Recovery(uid, "refused", f"a journaled rewrite was not applied: {why}")
        verdict = decide(
            entry,
            Observed(frozenset(now), stamp_of(user)),
            own=self.facts.own_user_id or entry.writer,
            age_s=self._wall() - entry.created_at,
            max_age_s=self._max_age_s,
            default_items=self.facts.defaults(key),
        )
        if verdict.kind != "give_back":
            self.journal.done(entry)
            outcome: Outcome = verdict.kind if verdict.kind != "settled" else "superseded"
            if verdict.kind == "settled" and not set(entry.desired) - now:
                outcome = "nothing_to_do"
            return Recovery(uid, outcome, verdict.why)
        after = self._give_back(s, entry, user, set(verdict.owed))
        return Recovery(
            uid,
            "repaired",
            f"finished an interrupted rewrite of {key} for user {uid}: put back "
            f"{describe(after & verdict.owed)} ({verdict.why}); it holds {key} "
            f"{describe(after)}",
        )

    def _give_back(
        self, s: UserSession, entry: JournalEntry, user: User, owed: set[int]
    ) -> set[int]:
        """Add ``owed`` to the user's list with one write that only adds (the list as read
        plus ``owed``: the same under either semantics), resent while Coupa fails."""
        key, uid = entry.association, s.user_id
        attribute = ATTRIBUTE_OF[key]
        now = ids_of(user, attribute)
        entry = attrs.evolve(entry, last=Snapshot(tuple(sorted(now)), stamp_of(user)), cleared=True)
        self._save(s, entry)
        for _ in range(SENDS):
            wanted = now | owed
            line = f"put back {key} {describe(owed)} for user {uid} (recovery)"
            entry, now, failed = self._step(s, entry, "put_back", wanted, wanted, line)
            if owed <= now:
                self.journal.done(entry)
                return now
            if not failed:
                # Coupa took the write and left them out (an item deleted since): asking
                # again would not change that
                self.journal.done(entry)
                raise s.failure(
                    f"Coupa did not put back {key} {describe(owed - now)} for user {uid} "
                    "(it accepted the write: they may no longer exist); the rewrite was "
                    "dropped"
                )
        self._left_pending()
        raise s.failure(
            f"Coupa did not put back {key} {describe(owed - now)} for user {uid}; the journal "
            "keeps the rewrite for the next attempt"
        )
