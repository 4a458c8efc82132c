"""Access changed in a sandbox between two syncs, as an access review should report it."""

from __future__ import annotations

import attrs

from coupa_plugin.sandbox import TenantState

ADMIN_ROLE = 2  # the generator's omnipotent role


@attrs.frozen(kw_only=True)
class AccessChanges:
    promoted: tuple[int, ...]  # people given the Admin role
    leavers: tuple[int, ...]  # active people with an Expense license, now disabled
    mover: int  # left one user group
    left_group: int
    hire: int  # a new account (the User role only)


def change_access(state: TenantState, *, promote: int = 1, leave: int = 1) -> AccessChanges:
    """Make people Admin, disable licensed people, remove a membership, add a new hire."""
    people = [u for u in sorted(state.users) if u > 4 and not state.users[u]["api-user"]]
    promoted = tuple(u for u in people if ADMIN_ROLE not in state.users[u]["roles"])[:promote]
    for uid in promoted:
        state.users[uid]["roles"] = sorted({*state.users[uid]["roles"], ADMIN_ROLE})
    leavers = tuple(
        u
        for u in people
        if u not in promoted and state.users[u]["active"] and state.users[u]["expense-user"]
    )[:leave]
    for uid in leavers:
        state.users[uid]["active"] = False
    mover = next(u for u in people if state.groups_of.get(u) and u not in leavers)
    left_group = min(state.groups_of[mover])
    state.remove_membership(state.members_of[left_group][mover])
    hire = max(state.users) + 1
    state.users[hire] = {
        **state.users[people[-1]],
        "id": hire,
        "login": "new.hire",
        "email": "new.hire@example.com",
        "firstname": "New",
        "lastname": "Hire",
        "fullname": "New Hire",
        "active": True,
        "roles": [3],
    }
    state.touch()
    return AccessChanges(
        promoted=promoted, leavers=leavers, mover=mover, left_group=left_group, hire=hire
    )
