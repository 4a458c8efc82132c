"""The journal's recovery rule (version 2), pinned case by case.

What our interrupted rewrite took away is given back, and nothing else is written: changes made
since by someone else are kept (an administrator who adds a role to a stripped user means "add
this role"), and nothing removed after our put-back had restored it comes back. Recovery runs
at the next hook call of the tenant whoever it is about, lists its writes in the result of a
call about that user, and obeys every rule an ordinary write obeys.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from coupa_plugin.host.errors import ConfigurationError, ProvisioningError
from coupa_plugin.host.model import ProvisionRequest, ProvisionResult, Tenant
from coupa_plugin.plugin import CoupaPlugin
from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_ID,
    CoupaSandbox,
    Operations,
    Quirks,
    generate_tenant,
)
from coupa_plugin.sandbox._errors import SimulatedCrash
from coupa_plugin.sandbox._server import SandboxTransport
from tests.kit import CrashingTransport, clearing, plugin_for, scratch_dir, tenant

USER = 7
ROLES = [3, 4, 5, 8]
KEPT = [3, 5, 8]


def world(quirks: Quirks | None = None, **ops: Any) -> tuple[CoupaSandbox, Tenant, Path]:
    """A merging Coupa (the two-step rewrite is needed) where user 7 holds roles 3, 4, 5, 8."""
    sandbox = CoupaSandbox(
        generate_tenant(users=12, seed=3),
        quirks=quirks or Quirks(list_put="merge"),
        operations=Operations(rate_limit=False, **ops),
    )
    sandbox.state.users[USER]["roles"] = list(ROLES)
    state_dir = scratch_dir()
    return sandbox, tenant(state_dir=str(state_dir)), state_dir


def call(plugin: CoupaPlugin, t: Tenant, **request: Any) -> ProvisionResult:
    result = plugin.provision(tenant=t, request=ProvisionRequest(**request))
    assert result is not None
    return result


def revoke_4(plugin: CoupaPlugin, t: Tenant) -> ProvisionResult:
    return call(plugin, t, action="revoke", entitlement_id="role:4:member", principal_id="7")


def crash_during_revoke(sandbox: CoupaSandbox, t: Tenant, point: str = "after") -> None:
    """Revoke role 4 from user 7 in a process that dies at the clearing write."""
    dying = CoupaPlugin(
        transport_factory=lambda _s: CrashingTransport(sandbox, clearing("roles"), point)
    )
    with pytest.raises(SimulatedCrash):
        revoke_4(dying, t)


def roles(sandbox: CoupaSandbox) -> list[int]:
    return sorted(sandbox.state.users[USER]["roles"])


def entries(state_dir: Path) -> list[Path]:
    """Pending journal entries (not the tombstones finished rewrites leave)."""
    return sorted(
        p for p in (state_dir / "journal").rglob("*.json") if not p.name.endswith(".done.json")
    )


def unrelated(plugin: CoupaPlugin, t: Tenant) -> ProvisionResult:
    """A call for user 7 about something else: a license the user does not hold."""
    return call(
        plugin, t, action="grant", entitlement_id="license:sourcing-user:assigned", principal_id="7"
    )


# -- our own interrupted rewrite is finished, inside the next call for that user -----------------


def test_the_next_call_for_the_user_finishes_the_rewrite_and_lists_its_writes() -> None:
    sandbox, t, state_dir = world()
    crash_during_revoke(sandbox, t)
    assert roles(sandbox) == [], "the crash left the user without roles"
    assert entries(state_dir), "the intent was journaled before the first write"
    result = unrelated(plugin_for(sandbox), t)  # a new process over the same state_dir
    assert roles(sandbox) == KEPT
    assert result.status == "applied"
    assert any("put back roles [3, 5, 8]" in c for c in result.changes), result.changes
    assert "finished an interrupted rewrite of roles" in result.message
    assert not entries(state_dir)


def test_a_call_that_recovered_is_never_unchanged() -> None:
    sandbox, t, _ = world()
    crash_during_revoke(sandbox, t)
    held = next(f for f in ("expense-user", "purchasing-user") if sandbox.state.users[USER][f])
    writes = sandbox.writes
    result = call(
        plugin_for(sandbox),
        t,
        action="grant",
        entitlement_id=f"license:{held}:assigned",
        principal_id="7",
    )
    assert sandbox.writes > writes
    assert result.status == "applied", "unchanged promises that nothing was written"
    assert result.changes


def test_a_call_about_another_user_repairs_the_stripped_user() -> None:
    sandbox, t, state_dir = world()
    crash_during_revoke(sandbox, t)
    result = call(
        plugin_for(sandbox),
        t,
        action="grant",
        entitlement_id="license:sourcing-user:assigned",
        principal_id="9",
    )
    assert roles(sandbox) == KEPT, "the next hook call of the tenant gives user 7 back"
    assert result.changes == ("set sourcing-user = true on user 9",), "user 9's result"
    assert not entries(state_dir)


def test_a_write_failing_once_during_a_repair_is_sent_again_in_the_call() -> None:
    sandbox, t, state_dir = world()
    crash_during_revoke(sandbox, t)
    sandbox.ops.fail_writes = {sandbox.writes + 1: "error"}
    result = unrelated(plugin_for(sandbox), t)
    assert roles(sandbox) == KEPT
    assert sandbox.state.users[USER]["sourcing-user"]
    assert sum("put back roles" in c for c in result.changes) == 2, result.changes
    assert not entries(state_dir)


def test_a_repair_coupa_keeps_failing_states_the_holdings_and_stays_journaled() -> None:
    sandbox, t, state_dir = world()
    crash_during_revoke(sandbox, t)
    sandbox.ops.fail_writes = {sandbox.writes + n: "error" for n in range(1, 20)}
    with pytest.raises(ProvisioningError) as caught:
        unrelated(plugin_for(sandbox), t)
    message = str(caught.value)
    assert "User 7 now holds roles []" in message, message
    assert not sandbox.state.users[USER]["sourcing-user"], "the call stopped at the failure"
    assert entries(state_dir), "the entry stays for the next attempt"
    sandbox.ops.fail_writes = {}
    unrelated(plugin_for(sandbox), t)
    assert roles(sandbox) == KEPT


def test_configure_recovers_every_pending_entry_and_says_so() -> None:
    sandbox, t, state_dir = world()
    crash_during_revoke(sandbox, t)
    status = plugin_for(sandbox).configure(tenant=t)
    assert status is not None
    assert roles(sandbox) == KEPT
    assert any("journal recovery: repaired" in w for w in status.warnings), status.warnings
    assert not entries(state_dir)


def test_a_read_only_tenant_never_recovers() -> None:
    sandbox, t, state_dir = world()
    crash_during_revoke(sandbox, t)
    section = dict(t.plugins["coupa"], mode="read-only")
    read_only = Tenant(id=t.id, plugins={"coupa": section})
    writes = sandbox.writes
    plugin_for(sandbox).configure(tenant=read_only)
    assert sandbox.writes == writes
    assert entries(state_dir)


# -- what others changed meanwhile is kept; what our rewrite took comes back --------------------


def test_a_crash_after_a_clear_that_left_the_default_role_is_repaired() -> None:
    # Coupa gives an emptied user the User role (3): what the clear left is not exactly the
    # empty list the journal expected, but the last change is still ours
    sandbox, t, state_dir = world(Quirks(list_put="merge", empty_roles_become_user=True))
    crash_during_revoke(sandbox, t)
    assert roles(sandbox) == [3]
    result = unrelated(plugin_for(sandbox), t)
    assert roles(sandbox) == KEPT
    assert any("put back roles" in c for c in result.changes), result.changes
    assert not entries(state_dir)


def test_a_first_write_that_reveals_our_own_api_user_goes_no_further() -> None:
    # a fresh installation's first write is a revoke from the API user itself: the probe's
    # echo names it, and the two-step rewrite (clear, put back) must not begin
    sandbox, t, state_dir = world()
    api_user = sandbox.state.client_users[SANDBOX_CLIENT_ID]
    sandbox.state.users[api_user]["roles"] = list(ROLES)
    with pytest.raises(ProvisioningError, match="API user this integration writes as") as caught:
        call(
            plugin_for(sandbox),
            t,
            action="revoke",
            entitlement_id="role:4:member",
            principal_id=str(api_user),
        )
    assert f"User {api_user} now holds roles [3, 4, 5, 8]" in str(caught.value)
    assert sorted(sandbox.state.users[api_user]["roles"]) == ROLES
    assert not entries(state_dir)


def test_an_admin_regrant_after_a_crash_is_kept_and_the_rest_comes_back() -> None:
    # the administrator saw user 7 without roles and added role 4: "add role 4", not "user 7
    # holds nothing else"
    sandbox, t, state_dir = world()
    crash_during_revoke(sandbox, t)
    sandbox.admin_update(USER, {"roles": [{"id": 4}]})
    result = unrelated(plugin_for(sandbox), t)
    assert roles(sandbox) == [3, 4, 5, 8]
    assert any("put back roles [3, 5, 8]" in c for c in result.changes), result.changes
    assert not entries(state_dir)


def test_an_admin_adding_another_role_after_a_crash_keeps_it_and_gets_the_rest_back() -> None:
    sandbox, t, state_dir = world()
    crash_during_revoke(sandbox, t)
    sandbox.admin_update(USER, {"roles": [{"id": 9}]})
    unrelated(plugin_for(sandbox), t)
    assert roles(sandbox) == [3, 5, 8, 9]
    assert not entries(state_dir)


def test_an_admin_removal_after_a_crash_is_not_granted_back() -> None:
    sandbox, t, _ = world()
    crash_during_revoke(sandbox, t, point="before")  # the clear never reached Coupa
    assert roles(sandbox) == ROLES
    sandbox.admin_update(USER, {"roles": [{"id": 3}, {"id": 4}, {"id": 8}]})
    unrelated(plugin_for(sandbox), t)
    assert roles(sandbox) == [3, 4, 8], "5 stays removed and 4 stays granted"


def test_an_admin_change_to_another_field_does_not_stop_recovery() -> None:
    sandbox, t, state_dir = world()
    crash_during_revoke(sandbox, t)
    sandbox.admin_update(USER, {"firstname": "Changed"})
    result = unrelated(plugin_for(sandbox), t)
    assert roles(sandbox) == KEPT
    assert sandbox.state.users[USER]["firstname"] == "Changed"
    assert "changed by user 3 since" in result.message, result.message
    assert not entries(state_dir)


def test_a_role_an_admin_removes_after_our_put_back_stays_removed() -> None:
    # the put-back landed (its answer was lost with the process); the administrator then
    # removed role 5: it is not given back
    sandbox, t, state_dir = world()
    dying = CoupaPlugin(
        transport_factory=lambda _s: CrashingTransport(sandbox, _put_back(), "after")
    )
    with pytest.raises(SimulatedCrash):
        revoke_4(dying, t)
    assert roles(sandbox) == KEPT and entries(state_dir)
    sandbox.admin_update(USER, {"roles": [{"id": 3}, {"id": 8}]})
    unrelated(plugin_for(sandbox), t)
    assert roles(sandbox) == [3, 8], "the administrator's removal after our put-back stands"
    assert not entries(state_dir)


def test_a_rewrite_that_never_started_applies_nothing() -> None:
    sandbox, t, state_dir = world()
    crash_during_revoke(sandbox, t, point="before")
    writes = sandbox.writes
    result = unrelated(plugin_for(sandbox), t)
    assert roles(sandbox) == ROLES, "the revoke's caller never got an answer; nothing is forced"
    assert sandbox.writes == writes + 1  # the license only
    assert "had not changed anything" in result.message
    assert not entries(state_dir)


def test_an_entry_older_than_the_bound_is_reported_never_applied() -> None:
    sandbox, t, state_dir = world()
    crash_during_revoke(sandbox, t)
    later = CoupaPlugin(
        transport_factory=lambda _s: SandboxTransport(sandbox),
        wall_clock=lambda: 4_000_000_000.0,
    )
    result = unrelated(later, t)
    assert roles(sandbox) == []
    assert "older than journal_max_age_s and was not applied" in result.message
    assert not entries(state_dir)


# -- errors after a write say what the user holds -----------------------------------------------


def test_a_failed_read_back_gives_the_last_state_seen_and_the_writes_sent() -> None:
    sandbox, t, _ = world()
    cleared = clearing("roles")
    state = {"cleared": False}

    class ReadsFailAfterClear(httpx.BaseTransport):
        inner = SandboxTransport(sandbox)

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "GET" and state["cleared"] and "/api/users/7" in str(request.url):
                return httpx.Response(500, json={"errors": ["boom"]}, request=request)
            response = self.inner.handle_request(request)
            state["cleared"] = state["cleared"] or cleared(request)
            return response

    plugin = CoupaPlugin(transport_factory=lambda _s: ReadsFailAfterClear())
    with pytest.raises(ProvisioningError) as caught:
        revoke_4(plugin, t)
    message = str(caught.value)
    assert "current state could not be read" in message, message
    assert "last seen holding roles [3, 4, 5, 8]" in message, message
    assert "cleared roles of user 7 (step 1 of 2)" in message, message


def test_reads_are_retried_on_500() -> None:
    sandbox, t, _ = world(error_rate=0.3, seed=5)
    result = revoke_4(plugin_for(sandbox), t)
    assert result.status == "applied"
    assert roles(sandbox) == KEPT


# -- recovery obeys every rule; the journal cannot be planted ----------------------------------


def _plant(state_dir: Path, name: str, content: bytes) -> Path:
    folder = next((state_dir / "journal").iterdir())
    path = folder / name
    path.write_bytes(content)
    return path


def test_planted_and_altered_entries_are_set_aside_never_applied() -> None:
    sandbox, t, state_dir = world()
    crash_during_revoke(sandbox, t)
    [genuine] = entries(state_dir)
    sealed = orjson.loads(genuine.read_bytes())
    body = orjson.loads(sealed["body"])
    # altered: make the put-back include Admin
    forged = dict(body, before=[2, *body["before"]], desired=[2, *body["desired"]])
    genuine.write_bytes(orjson.dumps({"body": orjson.dumps(forged).decode(), "mac": sealed["mac"]}))
    planted = _plant(state_dir, f"9-{'a' * 32}.json", b'{"user_id": 9, "association": "roles"}')
    status = plugin_for(sandbox).configure(tenant=t)
    assert status is not None
    assert any("rejected" in w and planted.name in w for w in status.warnings), status.warnings
    assert not planted.exists() and list(planted.parent.glob(planted.name + ".*.rejected"))
    assert 2 not in roles(sandbox)
    assert roles(sandbox) == [], "the altered entry is not applied"
    assert any("seal does not match" in w for w in status.warnings), status.warnings


def test_entries_of_another_secret_or_instance_do_not_apply() -> None:
    sandbox, t, state_dir = world()
    crash_during_revoke(sandbox, t)
    other = Tenant(id=t.id, plugins={"coupa": dict(t.plugins["coupa"], base_url="http://other")})
    # another instance has another journal folder: nothing of this one is seen there
    plugin = plugin_for(sandbox)
    unrelated(plugin, other)
    assert roles(sandbox) == []
    assert len(entries(state_dir)) == 1


def test_recovery_never_changes_a_protected_login() -> None:
    sandbox, t, state_dir = world()
    crash_during_revoke(sandbox, t)
    login = sandbox.state.users[USER]["login"]
    protected = Tenant(
        id=t.id, plugins={"coupa": dict(t.plugins["coupa"], protected_logins=[login])}
    )
    writes = sandbox.writes
    status = plugin_for(sandbox).configure(tenant=protected)
    assert status is not None
    assert sandbox.writes == writes
    assert any("protected_logins" in w for w in status.warnings), status.warnings
    assert not entries(state_dir)


def test_state_files_are_private_and_symlinks_refused() -> None:
    sandbox, t, state_dir = world()
    journal = state_dir / "journal"
    journal.mkdir(mode=0o755)
    os.chmod(journal, 0o755)  # noqa: S103 (a looser folder, as an older release left it)
    crash_during_revoke(sandbox, t)
    assert stat.S_IMODE(journal.stat().st_mode) == 0o700, "a looser directory is tightened"
    for path in state_dir.rglob("*"):
        expected = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
    # a symlinked journal folder is refused before anything is written
    sandbox2, t2, state_dir2 = world()
    target = scratch_dir()
    (state_dir2 / "journal").symlink_to(target)
    writes = sandbox2.writes
    with pytest.raises(ConfigurationError, match="is a symlink; refused"):
        revoke_4(plugin_for(sandbox2), t2)
    assert sandbox2.writes == writes, "refused before any write"
    assert not list(target.iterdir())


# -- the integration's own API user --------------------------------------------------------------


def _disable(plugin: CoupaPlugin, t: Tenant, user: int) -> Callable[[], ProvisionResult]:
    return lambda: call(plugin, t, action="disable_account", principal_id=str(user))


def test_the_own_api_user_is_remembered_across_restarts() -> None:
    sandbox, t, _ = world()
    unrelated(plugin_for(sandbox), t)  # a first write teaches who we write as (user 2)
    fresh = plugin_for(sandbox)
    with pytest.raises(ProvisioningError, match="API user this integration writes as"):
        _disable(fresh, t, 2)()
    assert sandbox.state.users[2]["active"] is True


def test_integration_login_protects_the_api_user_before_any_write() -> None:
    sandbox, t, _ = world()
    named = Tenant(
        id=t.id, plugins={"coupa": dict(t.plugins["coupa"], integration_login="integration")}
    )
    writes = sandbox.writes
    with pytest.raises(ProvisioningError, match="integration_login"):
        _disable(plugin_for(sandbox), named, 2)()
    assert sandbox.writes == writes


def test_a_fact_learnt_by_another_process_is_seen_at_once() -> None:
    sandbox, t, _ = world()
    other = plugin_for(sandbox)
    planned = call(
        other,
        t,
        action="grant",
        entitlement_id="license:sourcing-user:assigned",
        principal_id="2",
        dry_run=True,
    )
    assert planned.status == "planned", "nothing known yet: user 2 looks like anyone"
    unrelated(plugin_for(sandbox), t)  # this process writes and learns it writes as user 2
    with pytest.raises(ProvisioningError, match="API user this integration writes as"):
        _disable(other, t, 2)()


@pytest.mark.parametrize("semantics", ["replace", "merge"])
def test_a_role_coupa_gives_an_emptied_user_is_stated(semantics: str) -> None:
    sandbox, t, _ = world(Quirks(list_put=semantics, empty_roles_become_user=True))  # type: ignore[arg-type]
    sandbox.state.users[USER]["roles"] = [4]
    try:
        result = revoke_4(plugin_for(sandbox), t)
        message = result.message
    except ProvisioningError as exc:  # merge: the put-back cannot drop what Coupa added
        message = str(exc)
    assert roles(sandbox) == [3]
    assert "[3]" in message and "this call did not write" in message, message


def _put_back() -> Callable[[httpx.Request], bool]:
    """Matches the second step of a two-step rewrite of roles: the PUT putting back the rest."""

    def match(request: httpx.Request) -> bool:
        body = request.read()
        return request.method == "PUT" and b'"roles"' in body and b'"roles": []' not in body

    seen: list[bool] = []

    def second(request: httpx.Request) -> bool:
        if match(request):
            seen.append(True)
            return len(seen) == 2  # the first is the probe of the semantics
        return False

    return second
