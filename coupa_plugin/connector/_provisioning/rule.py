"""The recovery rule (version 2): what to do about a list rewrite a dead process, or a call that
gave up while Coupa failed, left unfinished. A pure function of the journal entry and of what
Coupa shows now, so every case can be tested without a Coupa.

The rule:

* What our interrupted rewrite took away is given back, and nothing else is written: recovery
  only ever adds the items the rewrite meant to keep (``desired``) that the user lacks now. It
  never removes anything, so what others changed meanwhile is kept (their additions stay), and
  it does not give back an item someone removed after our put-back had restored it, wherever
  Coupa's stamps and the lists can tell (``docs/provisioning.md`` lists where they cannot).
* Whether our clear took an item away, or our put-back had given it back, is read from Coupa's
  own ``updated-at``/``updated-by`` of the user against what the entry recorded of our steps:

  - Coupa's stamp is the one our last read-back saw: the list is as that read-back left it
    (give or take changes Coupa does not stamp, such as a membership added through its own
    API);
  - the last change is our own API user's: with the list as our last read-back showed, the
    list is as that read-back left it; with all that our pending write leaves, within
    :data:`WINDOW_S` of sending it (by Coupa's clock), that write landed; any other change of
    ours means the entry was finished since (a copy put back, a restored backup) and it is
    settled without writing;
  - someone else changed the user since: of the accounts of events the entry allows (our
    last read-back, our pending write landed, the rewrite finished), the one that needs the
    fewest items changed by others is taken; on a tie, the account in which our clear took
    the items wins (an administrator who adds an item to a stripped user means that item),
    then a finished rewrite.

* An entry is settled when the list holds everything it should (nothing owed), when the
  account taken says nothing is owed, and when the user is protected; it is reported, never
  applied, once older than ``journal_max_age_s``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Final, Literal

import attrs

from coupa_plugin.connector._provisioning.journal import JournalEntry, Stamp

__all__ = ["WINDOW_S", "Observed", "Verdict", "decide", "expired"]

# how long after it was sent a write of ours may carry Coupa's stamp (its time budget, retries
# included, and the resolution of Coupa's clock)
WINDOW_S: Final = 180.0
# the same when the entry recorded the send on this machine's clock (Coupa's Date unknown):
# room for the two clocks to disagree
_LOCAL_CLOCK_SLACK_S: Final = 300.0

Kind = Literal["give_back", "settled", "stale", "expired"]


@attrs.frozen
class Observed:
    """A user's list as Coupa shows it now, with the user's stamp."""

    items: frozenset[int]
    stamp: Stamp


@attrs.frozen
class Verdict:
    """What recovery does: give back ``owed`` (one write that only adds), or settle the entry
    without writing (``settled``: nothing owed; ``stale``: the entry was finished since;
    ``expired``: too old to apply)."""

    kind: Kind
    owed: frozenset[int]
    why: str


@attrs.frozen
class _Story:
    """One account of how the list came to be what it is: the list at our last known step,
    and whether what it lacks of ``desired`` is ours to give back."""

    name: str
    state: frozenset[int]
    taken: frozenset[int]  # items the list lacks because our clear took them
    rank: int  # on a tie: the lowest wins

    @property
    def owes(self) -> bool:
        return bool(self.taken)


def _epoch(stamp: Stamp) -> float | None:
    if stamp.updated_at is None:
        return None
    try:
        moment = datetime.fromisoformat(stamp.updated_at)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def _covers(state: frozenset[int], now: frozenset[int]) -> bool:
    """``now`` holds all that ``state`` leaves (more may have come: a role Coupa gives an
    emptied user, an item added through a route that leaves the user's stamp alone)."""
    return state <= now


def _distance(story: _Story, now: frozenset[int], default: frozenset[int]) -> int:
    """Items others must have added or removed to turn the story's list into ``now``."""
    apart = len(story.state ^ now)
    if story.owes and (now - story.state) & default:
        apart -= 1  # an emptied user given Coupa's default item
    return apart


def _stories(entry: JournalEntry, before: frozenset[int]) -> list[_Story]:
    """The accounts the entry allows, in the order a tie is decided: a list our clear stripped
    first (what it took is owed: an administrator who adds an item to a stripped user means
    that item), then a finished rewrite or a landed put-back, then a list our clear never
    touched."""
    desired = frozenset(entry.desired)
    foreign = frozenset(entry.last.items) - before
    none: frozenset[int] = frozenset()
    stories = [_Story("the rewrite finished", desired | foreign, none, rank=1)]
    last = frozenset(entry.last.items)
    taken = desired - last if entry.cleared else none
    stories.append(
        _Story("the list is as our last read-back showed", last, taken, rank=0 if taken else 2)
    )
    if entry.pending is not None:
        clearing = entry.pending_step == "clear"
        stories.append(
            _Story(
                "our pending clear landed" if clearing else "our pending put-back landed",
                frozenset(entry.pending),
                desired if clearing else none,
                rank=0 if clearing else 1,
            )
        )
    return stories


def _sent_recently(entry: JournalEntry, stamp: Stamp) -> bool:
    """Coupa stamped the user within the window after our pending write was sent."""
    at = _epoch(stamp)
    if entry.pending_at is None or at is None:
        return entry.pending_at is None and at is not None  # a version-2 entry: no time kept
    slack = 0.0 if entry.pending_at_coupa else _LOCAL_CLOCK_SLACK_S
    return entry.pending_at - slack - 1.0 <= at <= entry.pending_at + WINDOW_S + slack


def expired(entry: JournalEntry, age_s: float) -> Verdict:
    """The verdict on an entry older than ``journal_max_age_s``: reported, never applied
    (decided before anything of the user is read)."""
    return Verdict(
        "expired",
        frozenset(),
        f"a journaled rewrite of {entry.association} for user {entry.user_id} from "
        f"{age_s / 3600:.1f} h ago is older than journal_max_age_s and was not applied (it "
        f"meant to keep {_show(entry.desired)})",
    )


def decide(
    entry: JournalEntry,
    now: Observed,
    *,
    own: int | None,
    age_s: float,
    max_age_s: float,
    default_items: Iterable[int] | None = None,
) -> Verdict:
    """Apply the recovery rule to ``entry`` given ``now``. ``own`` is the API user this
    integration writes as (None when not yet known), ``age_s`` the entry's age, and
    ``default_items`` what Coupa gives a user whose list was emptied (its User role; empty:
    nothing; None: not known yet)."""
    key, uid = entry.association, entry.user_id
    before, desired = frozenset(entry.before), frozenset(entry.desired)
    missing = desired - now.items
    if age_s > max_age_s:
        return expired(entry, age_s)
    if not missing:
        done = (
            "had not changed anything"
            if now.items == before
            else "already finished"
            if now.items == desired
            else "left nothing to give back"
        )
        return Verdict(
            "settled", frozenset(), f"an interrupted rewrite of {key} for user {uid} {done}"
        )
    # what Coupa may give an emptied user on its own: what a clear's read-back showed; until
    # one was read back, any one role the user holds now
    if default_items is not None:
        free = frozenset(default_items)
    else:
        free = now.items if key == "roles" else frozenset()
    stories = _stories(entry, before)
    last = frozenset(entry.last.items)
    pending = stories[2] if len(stories) > 2 else None
    ours = own is not None and now.stamp.updated_by == own
    if now.stamp == entry.last.stamp and (not ours or now.items == last):
        # nothing Coupa stamps changed since our last read-back (a membership change through
        # its own API may not move the user's stamp): the list is as that read-back left it,
        # give or take those. (Our own write in the same second as that read-back keeps the
        # stamp: the next branch tells it.)
        chosen = stories[1]
        how = "nothing stamped changed since our last read-back"
    elif ours:
        if now.items == last:
            # the list is as our last read-back showed: whatever moved the stamp did not
            # touch it
            chosen = stories[1]
            how = "the list is as our last read-back showed"
        elif (
            pending is not None
            and _covers(pending.state, now.items)
            and _sent_recently(entry, now.stamp)
        ):
            chosen = pending
            how = "the last change is our pending write"
        else:
            return Verdict(
                "stale",
                frozenset(),
                f"Coupa shows a later change of user {uid} by this integration than the "
                f"journaled rewrite of {key} recorded: it was finished or replaced since; "
                f"not applied (the user lacks {_show(missing)})",
            )
    else:
        chosen = min(stories, key=lambda story: (_distance(story, now.items, free), story.rank))
        how = f"changed by user {now.stamp.updated_by} since; taken: {chosen.name}"
    owed = missing & chosen.taken
    if not owed:
        return Verdict(
            "settled",
            frozenset(),
            f"user {uid} lacks {key} {_show(missing)} that an interrupted rewrite meant to keep, "
            f"but they were removed by someone else, not by the rewrite ({how}); left as they "
            "are",
        )
    return Verdict("give_back", owed, how)


def _show(items: Iterable[int]) -> str:
    return "[" + ", ".join(str(i) for i in sorted(items)) + "]"
