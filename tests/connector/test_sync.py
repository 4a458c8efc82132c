"""discover_resources and sync_grants against the sandbox's ground truth."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coupa_plugin.coupa._scopes import READ_ONLY_SCOPES
from coupa_plugin.host.errors import SyncError
from coupa_plugin.host.model import SyncRequest
from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    CoupaSandbox,
    Operations,
    Quirks,
    generate_tenant,
)
from tests.kit import VirtualTime, plugin_for, sync, tenant, truth_grants, truth_resources

QUIET = Operations(rate_limit=False)


def quiet(users: int, seed: int = 1, **quirks: object) -> CoupaSandbox:
    return CoupaSandbox(
        generate_tenant(users=users, seed=seed),
        quirks=Quirks(**quirks),  # type: ignore[arg-type]
        operations=QUIET,
    )


@given(users=st.integers(0, 160), seed=st.integers(0, 10_000), cap=st.sampled_from([50, 50, 13]))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_full_sync_equals_ground_truth(users: int, seed: int, cap: int) -> None:
    sandbox = quiet(users, seed, page_cap=cap)
    resources, grants = sync(plugin_for(sandbox), tenant())
    keys = [(r.type, r.id) for r in resources]
    assert len(keys) == len(set(keys)), "a resource was reported twice"
    assert set(keys) == truth_resources(sandbox.state)
    assert grants == truth_grants(sandbox.state)
    entitlements = {e.id for r in resources for e in r.entitlements}
    assert {e for e, _ in grants} <= entitlements, "every granted entitlement is discovered"


def test_resources_carry_what_reviewers_need() -> None:
    sandbox = quiet(80, seed=4)
    state = sandbox.state
    resources, _ = sync(plugin_for(sandbox), tenant())
    by_key = {(r.type, r.id): r for r in resources}
    inactive = next(u for u in state.users.values() if not u["active"])
    user = by_key[("user", str(inactive["id"]))]
    assert user.status == "disabled"
    for key in (
        "login",
        "email",
        "firstname",
        "lastname",
        "employee_number",
        "active",
        "api_user",
        "authentication_method",
        "sso_identifier",
        "manager_login",
        "created_at",
        "updated_at",
    ):
        assert key in user.profile
    assert user.profile["login"] == inactive["login"]
    api = by_key[("user", "2")]
    assert api.profile["api_user"] is True
    admin = by_key[("role", "2")]
    assert admin.profile["privileged"] is True and admin.entitlements[0].id == "role:2:member"
    assert by_key[("role", "3")].profile["privileged"] is False
    assert ("role", "10102") in by_key, "a role nobody holds is still listed"
    lic = by_key[("license", "navi-agent-user")]
    assert lic.entitlements[0].id == "license:navi-agent-user:assigned"
    assert lic.display_name == "Navi Agent license"
    assert by_key[("license", "expense-user")].display_name == "Expense license"
    assert by_key[("content_group", "1")].entitlements[0].id == "content_group:1:member"


def test_one_pass_over_users_for_a_full_sync() -> None:
    sandbox = quiet(1_000, seed=2)
    sync(plugin_for(sandbox), tenant())
    pages = -(-len(sandbox.state.users) // 50)
    user_calls = sandbox.calls[("GET", "/api/users")]
    # the newest users' page (license flags, the listing's bound), the pages, and at most
    # max_in_flight - 1 in flight past the end
    assert pages + 1 <= user_calls <= pages + 1 + 7
    assert sandbox.calls[("GET", "/api/users/:id")] == 0


def test_sync_grants_alone_reads_the_users_itself() -> None:
    sandbox = quiet(120)
    plugin, t = plugin_for(sandbox), tenant()
    grants = {
        (g.entitlement_id, g.principal_id)
        for g in plugin.sync_grants(tenant=t, request=SyncRequest()) or []
    }
    assert grants == truth_grants(sandbox.state)


def test_resource_types_limit_both_hooks() -> None:
    sandbox = quiet(100)
    types = frozenset({"role", "license"})
    resources, grants = sync(plugin_for(sandbox), tenant(), SyncRequest(resource_types=types))
    assert {r.type for r in resources} == types
    assert grants == truth_grants(sandbox.state, types=types)
    sandbox.reset_counters()
    only = frozenset({"content_group"})
    resources, grants = sync(plugin_for(sandbox), tenant(resource_types=sorted(only)))
    assert {r.type for r in resources} == only
    assert grants == truth_grants(sandbox.state, types=only)
    # discover_resources reads no user; sync_grants reads them once
    assert sandbox.calls[("GET", "/api/users")] <= -(-len(sandbox.state.users) // 50) + 2


def test_targeted_sync_reads_just_those_users() -> None:
    sandbox = quiet(400, seed=8)
    wanted = {5, 17, 250, 401}
    request = SyncRequest(principal_ids=frozenset(map(str, wanted | {99_999})))
    sandbox.reset_counters()
    resources, grants = sync(plugin_for(sandbox), tenant(), request)
    assert {r.id for r in resources if r.type == "user"} == {str(w) for w in wanted}
    assert grants == truth_grants(sandbox.state, user_ids=wanted)
    assert sandbox.calls[("GET", "/api/users")] <= 4  # two license probes, one id[in] page


def test_incremental_sync_yields_changed_users_with_all_their_grants() -> None:
    sandbox = quiet(300, seed=6)
    since = datetime(2026, 6, 1, tzinfo=UTC)
    changed = {
        uid
        for uid, u in sandbox.state.users.items()
        if datetime.fromisoformat(u["updated-at"]) > since
    }
    assert 0 < len(changed) < len(sandbox.state.users)
    resources, grants = sync(plugin_for(sandbox), tenant(), SyncRequest(since=since))
    assert {r.id for r in resources if r.type == "user"} == {str(u) for u in changed}
    assert grants == truth_grants(sandbox.state, user_ids=changed)
    assert {r.type for r in resources} >= {"role", "group", "license"}, "catalogs in full"


def test_read_only_tenant_without_account_group_scope() -> None:
    sandbox = quiet(60)
    sandbox.state.add_client(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, READ_ONLY_SCOPES)
    plugin, t = plugin_for(sandbox), tenant()
    status = plugin.configure(tenant=t)
    assert status is not None and status.mode == "read-only"
    assert "account_group" not in status.resource_types
    assert any("core.accounting.read" in w for w in status.warnings)
    resources, grants = sync(plugin, t)
    assert "account_group" not in {r.type for r in resources}
    types = frozenset(status.resource_types)
    assert grants == truth_grants(sandbox.state, types=types)


def test_a_server_that_ignores_offset_raises_sync_error() -> None:
    sandbox = quiet(120)
    original = sandbox.handle

    def ignore_offset(request):  # type: ignore[no-untyped-def]
        query = "&".join(p for p in request.query.split("&") if not p.startswith("offset="))
        return original(
            type(request)(request.method, request.path, query, request.headers, request.body)
        )

    sandbox.handle = ignore_offset  # type: ignore[method-assign]
    plugin = plugin_for(sandbox)
    with pytest.raises(SyncError, match="does not page with offset"):
        sync(plugin, tenant())


@pytest.mark.parametrize(
    "operations",
    [
        Operations(rate_limit=False, error_rate=0.15, seed=1),
        Operations(rate_limit=False, drop_rate=0.1, seed=2),
        Operations(rate_limit=False, malformed_rate=0.1, seed=3),
        Operations(rate_limit=False, error_rate=0.1, drop_rate=0.05, malformed_rate=0.05, seed=4),
    ],
    ids=["5xx", "drops", "malformed", "mixed"],
)
def test_sync_under_faults_equals_the_fault_free_result(operations: Operations) -> None:
    state = generate_tenant(users=600, seed=12)
    clean = CoupaSandbox(state, operations=QUIET)
    expected = sync(plugin_for(clean), tenant())
    faulty = CoupaSandbox(state, operations=operations)
    try:
        got = sync(plugin_for(faulty), tenant())
    except SyncError:
        return  # allowed: never a silently short result
    assert {(r.type, r.id) for r in got[0]} == {(r.type, r.id) for r in expected[0]}
    assert got[1] == expected[1]


def test_sync_under_a_429_storm() -> None:
    state = generate_tenant(users=150, seed=12)
    expected = sync(plugin_for(CoupaSandbox(state, operations=QUIET)), tenant())
    virtual = VirtualTime(real=False)  # the bucket drains on the plugin's time alone
    storm = CoupaSandbox(
        state, operations=Operations(rate_per_s=200.0, burst=3), clock=virtual.clock
    )
    got = sync(plugin_for(storm, virtual), tenant(requests_per_second=1000))
    assert storm.throttled > 0
    assert got[1] == expected[1]


def test_tokens_expiring_mid_sync() -> None:
    sandbox = quiet(400, seed=3)
    original = sandbox.handle
    served, expiries = [0], [0]

    def expire_now_and_then(request):  # type: ignore[no-untyped-def]
        served[0] += 1
        if served[0] in (6, 12, 18):
            sandbox.expire_tokens()
            expiries[0] += 1
        return original(request)

    sandbox.handle = expire_now_and_then  # type: ignore[method-assign]
    _resources, grants = sync(plugin_for(sandbox), tenant())
    assert grants == truth_grants(sandbox.state)
    assert expiries[0] == 3
    assert sandbox.tokens_issued >= expiries[0], "expired tokens were replaced"


def test_targeted_and_incremental_syncs_survive_a_server_that_ignores_the_filters() -> None:
    sandbox = quiet(300, seed=6)
    original = sandbox.handle

    def ignore_filters(request):  # type: ignore[no-untyped-def]
        kept = [
            p
            for p in request.query.split("&")
            if not p.startswith(("id%5Bin%5D", "updated_at%5Bgt%5D"))
        ]
        return original(
            type(request)(
                request.method, request.path, "&".join(kept), request.headers, request.body
            )
        )

    sandbox.handle = ignore_filters  # type: ignore[method-assign]
    wanted = {5, 17, 250}
    resources, grants = sync(
        plugin_for(sandbox), tenant(), SyncRequest(principal_ids=frozenset(map(str, wanted)))
    )
    assert {r.id for r in resources if r.type == "user"} == {str(w) for w in wanted}
    assert grants == truth_grants(sandbox.state, user_ids=wanted)
    assert sandbox.calls[("GET", "/api/users/:id")] == len(wanted)
    since = datetime(2026, 6, 1, tzinfo=UTC)
    changed = {
        uid
        for uid, u in sandbox.state.users.items()
        if datetime.fromisoformat(u["updated-at"]) > since
    }
    resources, grants = sync(plugin_for(sandbox), tenant(), SyncRequest(since=since))
    assert {r.id for r in resources if r.type == "user"} == {str(u) for u in changed}
    assert grants == truth_grants(sandbox.state, user_ids=changed)


def test_a_malformed_user_record_is_a_sync_error_not_a_traceback() -> None:
    sandbox = quiet(30)
    del sandbox.state.users[7]["login"]
    with pytest.raises(SyncError, match="user record 7 is malformed"):
        sync(plugin_for(sandbox), tenant())


def test_missing_documented_scopes_switch_features_off_instead_of_failing() -> None:
    sandbox = quiet(60)
    partial = READ_ONLY_SCOPES - {"core.business_entity.read", "profile"}
    sandbox.state.add_client(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, partial)
    plugin, t = plugin_for(sandbox), tenant()
    status = plugin.configure(tenant=t)
    assert status is not None and status.mode == "read-only"
    assert "content_group" not in status.resource_types
    assert any(
        "core.business_entity.read" in w and "content groups are off" in w for w in status.warnings
    )
    resources, grants = sync(plugin, t)
    assert "content_group" not in {r.type for r in resources}
    assert grants == truth_grants(sandbox.state, types=frozenset(status.resource_types))


def test_write_scopes_without_offline_access_still_provision() -> None:
    from coupa_plugin.coupa._scopes import PROVISIONING_SCOPES

    sandbox = quiet(20)
    sandbox.state.add_client(
        SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, PROVISIONING_SCOPES - {"offline_access"}
    )
    status = plugin_for(sandbox).configure(tenant=tenant())
    assert status is not None and status.mode == "provisioning"


def test_without_the_required_scopes_configure_names_them() -> None:
    from coupa_plugin.host.errors import ConfigurationError

    sandbox = quiet(20)
    sandbox.state.add_client(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, {"core.user.read", "email"})
    with pytest.raises(ConfigurationError, match=r"missing: core\.user_group\.read"):
        plugin_for(sandbox).configure(tenant=tenant())


@pytest.mark.parametrize(
    "bad",
    [
        {"domain": "evil.com"},
        {"colour": "blue"},
        {"base_url": "http://127.0.0.1:1"},
        {"max_in_flight": 0},
    ],
)
def test_a_refused_setting_sends_no_request(bad: dict[str, object]) -> None:
    from coupa_plugin.host.errors import ConfigurationError
    from coupa_plugin.host.model import Tenant

    sandbox = quiet(5)
    section = {**tenant().plugins["coupa"], **bad}
    if "base_url" in bad:
        del section["allow_insecure_base_url"]
    with pytest.raises(ConfigurationError):
        plugin_for(sandbox).configure(tenant=Tenant(id="t", plugins={"coupa": section}))
    assert sandbox.calls == {} and sandbox.tokens_issued == 0


def test_entitlements_held_but_missing_from_a_catalog_are_still_discovered() -> None:
    sandbox = quiet(40)
    state = sandbox.state
    # a role GraphQL does not list, and an account group the listing does not return
    state.users[5]["roles"] = sorted({*state.users[5]["roles"], 777})
    state.roles[777] = {"id": 777, "name": "Hidden Role", "description": "", "omnipotent": False}
    state.users[5]["account-groups"] = [1, 9]
    state.account_groups[9] = {"id": 9, "name": "Unlisted", "description": None, "active": True}
    original = sandbox.handle

    def hide(request):  # type: ignore[no-untyped-def]
        response = original(request)
        if request.path == "/api/graphql" and b"roles" in request.body:
            body = json.loads(response.body)
            if body.get("data") and body["data"].get("roles"):
                body["data"]["roles"] = [r for r in body["data"]["roles"] if r["id"] != 777]
            return type(response)(response.status, response.headers, json.dumps(body).encode())
        if request.path == "/api/account_groups":
            rows = [r for r in json.loads(response.body) if r["id"] != 9]
            return type(response)(response.status, response.headers, json.dumps(rows).encode())
        return response

    sandbox.handle = hide  # type: ignore[method-assign]
    resources, grants = sync(plugin_for(sandbox), tenant())
    names = {(r.type, r.id): r.display_name for r in resources}
    assert names[("role", "777")] == "Hidden Role"
    assert names[("account_group", "9")] == "Unlisted"
    entitlements = {e.id for r in resources for e in r.entitlements}
    assert {e for e, _ in grants} <= entitlements


def test_what_users_hold_across_a_pass_is_bounded() -> None:
    from coupa_plugin.connector._sync import MAX_HELD_PER_KIND, MAX_LICENSE_FLAGS, _bounded
    from coupa_plugin.coupa._errors import CoupaResponseError

    _bounded({"role": dict.fromkeys(range(MAX_HELD_PER_KIND))}, set())  # at the limit: fine
    with pytest.raises(CoupaResponseError, match="distinct role ids"):
        _bounded({"role": dict.fromkeys(range(MAX_HELD_PER_KIND + 1))}, set())
    with pytest.raises(CoupaResponseError, match="license flags"):
        _bounded({}, {f"f{i}-user" for i in range(MAX_LICENSE_FLAGS + 1)})
