"""The recovery rule (version 2) as a function, against a model of what people mean.

A history: user holds ``before``; our two-step revoke (clear, then put back ``desired``) runs
until the process dies at some point; then administrators change the user (each change adds
or removes one item, or edits another field); then recovery looks. What people mean: the
items our clear took away come back, unless our put-back had already given them back (then an
administrator who removed one meant it); whatever the administrators added stays; nothing else
is added.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
from hypothesis import example, given
from hypothesis import strategies as st

from coupa_plugin.connector._provisioning.journal import JournalEntry, Snapshot, Stamp
from coupa_plugin.connector._provisioning.rule import Observed, Verdict, decide

OWN, ADMIN = 2, 3
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ITEMS = st.integers(min_value=1, max_value=9)


@attrs.define
class Coupa:
    items: set[int]
    at: int = 0
    by: int = 1
    default: int | None = None

    def stamp(self) -> Stamp:
        return Stamp((T0 + timedelta(seconds=self.at)).isoformat(), self.by)

    def write(self, items: set[int], by: int, seconds: int = 2) -> None:
        self.at += seconds
        self.items, self.by = set(items), by
        if not self.items and self.default is not None:
            self.items = {self.default}


def read_back(entry: JournalEntry, coupa: Coupa, *, cleared: bool) -> JournalEntry:
    """The entry once our pending write was read back."""
    return attrs.evolve(
        entry,
        last=Snapshot(tuple(sorted(coupa.items)), coupa.stamp()),
        pending=None,
        pending_step=None,
        pending_at=None,
        cleared=cleared,
    )


def history(
    before: set[int],
    desired: set[int],
    crash: int,
    admin: list[int | None],
    default: int | None,
) -> tuple[Verdict, set[int], set[int]]:
    """Run the history; returns the verdict, the list recovery saw and what people meant."""
    coupa = Coupa(set(before), default=default)
    base = JournalEntry(
        tenant="t",
        instance="i",
        user_id=7,
        association="roles",
        before=tuple(sorted(before)),
        desired=tuple(sorted(desired)),
        created_at=0.0,
        last=Snapshot(tuple(sorted(before)), coupa.stamp()),
        writer=OWN,
    )
    sent_at = (T0 + timedelta(seconds=coupa.at + 1)).timestamp()
    entry = attrs.evolve(
        base, pending=(), pending_step="clear", pending_at=sent_at, pending_at_coupa=True
    )
    cleared = put_back = False
    if crash >= 1:  # the clear landed
        coupa.write(set(), OWN)
        cleared = True
    if crash >= 2:  # and was read back
        entry = read_back(entry, coupa, cleared=bool(desired - coupa.items))
        foreign = coupa.items - before
        sent_at = (T0 + timedelta(seconds=coupa.at + 1)).timestamp()
        entry = attrs.evolve(
            entry,
            pending=tuple(sorted(desired | foreign)),
            pending_step="put_back",
            pending_at=sent_at,
            pending_at_coupa=True,
        )
    if crash >= 3:  # the put-back landed
        coupa.write(desired | coupa.items, OWN)
        put_back = True
    if crash >= 4:  # and was read back
        entry = read_back(entry, coupa, cleared=entry.cleared)
    for change in admin:  # each an hour apart
        if change is None:
            coupa.write(coupa.items, ADMIN, seconds=3600)
        else:
            coupa.write(coupa.items ^ {change}, ADMIN, seconds=3600)
    seen = set(coupa.items)
    owed = desired - seen if cleared and not put_back else set()
    meant = seen | owed
    verdict = decide(
        entry,
        Observed(frozenset(seen), coupa.stamp()),
        own=OWN,
        age_s=60.0,
        max_age_s=86_400.0,
        # a clear read back teaches what Coupa gives an emptied user (nothing, or its role)
        default_items=(set() if default is None else {default}) if crash >= 2 else None,
    )
    return verdict, seen, meant


def applied(verdict: Verdict, seen: set[int]) -> set[int]:
    return seen | set(verdict.owed) if verdict.kind == "give_back" else seen


@st.composite
def revokes(draw: st.DrawFn) -> tuple[set[int], set[int]]:
    before = draw(st.sets(ITEMS, min_size=2, max_size=6))
    desired = draw(st.sets(st.sampled_from(sorted(before)), min_size=1, max_size=len(before) - 1))
    return before, desired


@given(
    revoke=revokes(),
    crash=st.integers(min_value=0, max_value=4),
    default=st.none() | st.just(9),
)
@example(revoke=({3, 4, 5, 8}, {3, 5, 8}), crash=1, default=None)
def test_with_nobody_else_what_the_clear_took_comes_back_and_nothing_more(
    revoke: tuple[set[int], set[int]], crash: int, default: int | None
) -> None:
    before, desired = revoke
    verdict, seen, meant = history(before, desired - {9}, crash, [], default)
    assert applied(verdict, seen) == meant, verdict


@given(
    revoke=revokes(),
    crash=st.integers(min_value=0, max_value=4),
    change=st.none() | ITEMS,
)
@example(revoke=({3, 4, 5, 8}, {3, 5, 8}), crash=1, change=4)  # the revoked role re-added
@example(revoke=({3, 4, 5, 8}, {3, 5, 8}), crash=1, change=None)  # another field edited
@example(revoke=({3, 4, 5, 8}, {3, 5, 8}), crash=3, change=5)  # removed after our put-back
def test_after_one_administrator_change_people_get_what_they_meant(
    revoke: tuple[set[int], set[int]], crash: int, change: int | None
) -> None:
    """With one change by someone else after the crash, recovery does what people meant
    whenever the lists themselves can tell, that is once the rewrite kept three items. (With
    one or two kept, one change by someone else can leave the same list in two histories:
    "our clear landed, then an administrator added an item" and "our clear never landed, then
    an administrator removed one"; recovery takes the first and gives the rest back.)"""
    before, desired = revoke
    verdict, seen, meant = history(before, desired, crash, [change], None)
    result = applied(verdict, seen)
    if len(desired) >= 3:
        assert result - meant == set(), f"given back unasked: {verdict}"
        assert meant - result == set(), f"lost: {verdict}"


@given(
    revoke=revokes(),
    crash=st.integers(min_value=0, max_value=4),
    changes=st.lists(st.none() | ITEMS, max_size=3),
    default=st.none() | st.just(9),
)
def test_recovery_only_ever_adds_what_the_rewrite_kept(
    revoke: tuple[set[int], set[int]],
    crash: int,
    changes: list[int | None],
    default: int | None,
) -> None:
    before, desired = revoke
    desired -= {9}
    verdict, seen, _ = history(before, desired, crash, changes, default)
    assert set(verdict.owed) <= desired - seen
    assert verdict.kind in {"give_back", "settled", "stale"}


def test_an_entry_older_than_the_bound_is_never_applied() -> None:
    verdict, seen, _ = history({3, 4, 5}, {3, 5}, 2, [], None)
    assert verdict.kind == "give_back"
    entry_verdict = decide(
        JournalEntry(
            tenant="t",
            instance="i",
            user_id=7,
            association="roles",
            before=(3, 4, 5),
            desired=(3, 5),
            created_at=0.0,
            last=Snapshot((), Stamp("2026-01-05T09:00:02+00:00", OWN)),
            cleared=True,
        ),
        Observed(frozenset(seen), Stamp("2026-01-05T09:00:02+00:00", OWN)),
        own=OWN,
        age_s=90_000.0,
        max_age_s=86_400.0,
    )
    assert entry_verdict.kind == "expired" and not entry_verdict.owed
