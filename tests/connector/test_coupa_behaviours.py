"""What Coupa's published spec and docs say that a lenient emulator hides: every sync and every
provisioning action under each sandbox switch that models it, and under all of them at once."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from coupa_plugin.coupa._errors import CoupaHTTPError, FieldsRefusedError
from coupa_plugin.coupa._fields import FieldSpec, TenantFields
from coupa_plugin.coupa._models import KNOWN_LICENSE_FLAGS
from coupa_plugin.coupa._scopes import READ_ONLY_SCOPES
from coupa_plugin.host.errors import NotFoundError, ProvisioningError, SyncError
from coupa_plugin.host.model import ProvisionRequest, ProvisionResult, SyncRequest
from coupa_plugin.plugin import CoupaPlugin
from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    CoupaSandbox,
    Operations,
    Quirks,
    SandboxRequest,
    SandboxResponse,
    generate_tenant,
)
from coupa_plugin.sandbox._config import R39_READ_ONLY_FLAGS, R39_SCHEMA_LACKS
from coupa_plugin.sandbox._state import NEW_FLAGS
from tests.kit import plugin_for, sync, tenant, truth_grants, truth_resources
from tests.sandbox_helpers import Raw

SWITCHES: dict[str, dict[str, Any]] = {
    "unknown_fields_refused": {"refuse_unknown_fields": True, "schema_lacks": R39_SCHEMA_LACKS},
    "newer_fields_only_when_named": {"hide_new_fields": True},
    "graphql_read_scopes_only": {"graphql_read_scopes_only": True},
    "read_only_flags_ignore_writes": {"read_only_flags": R39_READ_ONLY_FLAGS},
    # GraphQL's page size and its handling of order_by/dir are undocumented
    "graphql_ordering_ignored": {"graphql_ordering": "ignored", "graphql_page_cap": 3},
    "graphql_ordering_refused": {"graphql_ordering": "refused", "graphql_page_cap": 4},
    # a release whose fields= validation lags its records
    "flag_refused_in_fields": {"fields_refuse_flags": frozenset({"intake-user"})},
}
SWITCHES["all"] = {k: v for switch in SWITCHES.values() for k, v in switch.items()}
SINCE = datetime(2026, 6, 1, tzinfo=UTC)
PLANNERS = (21, 22)  # users given the read-only category-planner-user flag


def make(switch: str, users: int = 300) -> CoupaSandbox:
    state = generate_tenant(users=users, seed=11)
    for uid in PLANNERS:
        state.users[uid]["category-planner-user"] = True
    return CoupaSandbox(
        state, quirks=Quirks(**SWITCHES.get(switch, {})), operations=Operations(rate_limit=False)
    )


def invisible_flags(sandbox: CoupaSandbox) -> set[str]:
    """Flags no client can see on this tenant: not in its release, or newer than the plugin
    and shown only when named."""
    quirks = sandbox.quirks
    lacking = {e.split(".", 1)[1] for e in quirks.schema_lacks if e.startswith("users.")}
    hidden = set(NEW_FLAGS) - set(KNOWN_LICENSE_FLAGS) if quirks.hide_new_fields else set()
    return lacking | hidden


def expected(
    sandbox: CoupaSandbox, user_ids: set[int] | None = None
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    gone = invisible_flags(sandbox)
    resources = {
        (kind, ident)
        for kind, ident in truth_resources(sandbox.state, user_ids)
        if not (kind == "license" and ident in gone)
    }
    grants = {
        (entitlement, principal)
        for entitlement, principal in truth_grants(sandbox.state, user_ids)
        if entitlement.split(":")[1] not in gone or not entitlement.startswith("license:")
    }
    return resources, grants


def check_sync(
    sandbox: CoupaSandbox, plugin: CoupaPlugin, t: Any, request: SyncRequest | None = None
) -> None:
    user_ids = None
    if request is not None and request.principal_ids is not None:
        user_ids = {int(p) for p in request.principal_ids}
    if request is not None and request.since is not None:
        user_ids = {
            uid
            for uid, u in sandbox.state.users.items()
            if datetime.fromisoformat(u["updated-at"]) > request.since
        }
        assert 0 < len(user_ids) < len(sandbox.state.users)
    resources, grants = sync(plugin, t, request)
    want_resources, want_grants = expected(sandbox, user_ids)
    got = [(r.type, r.id) for r in resources]
    assert len(got) == len(set(got)), "a resource was reported twice"
    assert set(got) == want_resources
    assert grants == want_grants


def provision(plugin: CoupaPlugin, t: Any, **request: Any) -> ProvisionResult:
    result = plugin.provision(tenant=t, request=ProvisionRequest(**request))
    assert result is not None
    return result


# -- the matrix -------------------------------------------------------------------------------


@pytest.mark.parametrize("switch", ["lenient", *SWITCHES])
def test_syncs_equal_ground_truth(switch: str) -> None:
    sandbox = make(switch)
    plugin, t = plugin_for(sandbox), tenant()
    check_sync(sandbox, plugin, t)
    check_sync(sandbox, plugin, t, SyncRequest(principal_ids=frozenset({"5", "21", "250"})))
    check_sync(sandbox, plugin, t, SyncRequest(since=SINCE))
    resources, _ = sync(plugin, t, SyncRequest(resource_types=frozenset({"license"})))
    flags = {r.id for r in resources}
    assert flags == {i for k, i in expected(sandbox)[0] if k == "license"}
    visible_new = (set(NEW_FLAGS) & set(KNOWN_LICENSE_FLAGS)) - invisible_flags(sandbox)
    assert visible_new <= flags, "newer flags the plugin knows are always seen"


@pytest.mark.parametrize("switch", ["lenient", *SWITCHES])
def test_provisioning_works(switch: str, tmp_path: Path) -> None:
    sandbox = make(switch, users=60)
    state = sandbox.state
    plugin, t = plugin_for(sandbox), tenant(state_dir=str(tmp_path))
    flag = "sourcing-user" if "intake-user" in invisible_flags(sandbox) else "intake-user"
    uid = next(u for u, r in state.users.items() if u > 2 and not r[flag] and r["active"])
    entitlement = f"license:{flag}:assigned"

    assert provision(plugin, t, action="grant", entitlement_id=entitlement, principal_id=str(uid))
    assert state.users[uid][flag] is True
    again = provision(plugin, t, action="grant", entitlement_id=entitlement, principal_id=str(uid))
    assert again.status == "unchanged", "the provisioning read sees the newer flag"
    provision(plugin, t, action="revoke", entitlement_id=entitlement, principal_id=str(uid))
    assert state.users[uid][flag] is False

    role = next(r for r in (4, 5, 6, 7) if r not in state.users[uid]["roles"])
    provision(
        plugin, t, action="grant", entitlement_id=f"role:{role}:member", principal_id=str(uid)
    )
    assert role in state.users[uid]["roles"]
    provision(
        plugin, t, action="revoke", entitlement_id=f"role:{role}:member", principal_id=str(uid)
    )
    assert role not in state.users[uid]["roles"]
    group = next(g for g in sorted(state.user_groups) if g not in state.groups_of.get(uid, ()))
    provision(
        plugin, t, action="grant", entitlement_id=f"group:{group}:member", principal_id=str(uid)
    )
    assert group in state.groups_of[uid]

    created = provision(
        plugin,
        t,
        action="create_account",
        attributes={
            "login": "new.person",
            "email": "new.person@example.com",
            "firstname": "New",
            "lastname": "Person",
            "entitlements": [f"role:{role}:member", entitlement],
        },
    )
    assert created.status == "applied" and created.principal_id is not None
    new_id = int(created.principal_id)
    assert role in state.users[new_id]["roles"] and state.users[new_id][flag] is True
    updated = provision(
        plugin,
        t,
        action="update_account",
        principal_id=str(new_id),
        attributes={"firstname": "Renamed", "middlename": "Q"},
    )
    assert updated.status == "applied"
    assert state.users[new_id]["firstname"] == "Renamed"
    assert state.users[new_id]["middlename"] == "Q"
    same = provision(
        plugin,
        t,
        action="update_account",
        principal_id=str(new_id),
        attributes={"middlename": "Q"},
    )
    assert same.status == "unchanged", "the provisioning read carries the attributes it compares"
    check_sync(sandbox, plugin, t)


@pytest.mark.parametrize("switch", ["lenient", *SWITCHES])
def test_read_only_flags_are_refused_before_any_write(switch: str, tmp_path: Path) -> None:
    sandbox = make(switch, users=40)
    plugin, t = plugin_for(sandbox), tenant(state_dir=str(tmp_path))
    writes = sandbox.writes
    for action, principal in (("grant", "5"), ("revoke", str(PLANNERS[0]))):
        with pytest.raises(ProvisioningError, match="category-planner-user is read-only"):
            provision(
                plugin,
                t,
                action=action,
                entitlement_id="license:category-planner-user:assigned",
                principal_id=principal,
            )
    with pytest.raises(ProvisioningError, match="read-only"):
        provision(
            plugin,
            t,
            action="create_account",
            attributes={
                "login": "x",
                "email": "x@example.com",
                "firstname": "X",
                "lastname": "Y",
                "entitlements": ["license:category-planner-user:assigned"],
            },
        )
    assert sandbox.writes == writes, "nothing was written"
    resources, grants = sync(plugin, t)
    planner = next(r for r in resources if (r.type, r.id) == ("license", "category-planner-user"))
    assert planner.profile["read_only"] is True
    assert planner.entitlements[0].grantable_to == frozenset()
    assert ("license:category-planner-user:assigned", str(PLANNERS[0])) in grants
    expense = next(r for r in resources if (r.type, r.id) == ("license", "expense-user"))
    assert expense.entitlements[0].grantable_to == frozenset({"user"})


# -- fields= learnt per tenant ----------------------------------------------------------------


def _refusals(sandbox: CoupaSandbox) -> list[str]:
    return [e.query for e in sandbox.log if e.status == 400]


def test_refused_fields_are_dropped_once_and_remembered() -> None:
    sandbox = make("unknown_fields_refused", users=120)
    plugin, t = plugin_for(sandbox), tenant()
    check_sync(sandbox, plugin, t)
    refused = _refusals(sandbox)
    assert any("intake_user" in q for q in refused)
    assert any("description" in q for q in refused if "active" in q), "account groups"
    # intake_user from one answer; R39 account groups lack two names, isolated by probes
    assert len(refused) <= 5, "refusals are learnt once, not per page"
    sandbox.reset_counters()
    check_sync(sandbox, plugin, t)
    assert _refusals(sandbox) == [], "the tenant's refusals are remembered"
    assert not any("intake_user" in e.query for e in sandbox.log)
    other = tenant("other")
    sandbox.reset_counters()
    check_sync(sandbox, plugin, other)
    assert _refusals(sandbox), "what one tenant refused is not assumed of another"


def test_a_refused_required_field_fails_the_sync_naming_it() -> None:
    sandbox = CoupaSandbox(
        generate_tenant(users=30, seed=2),
        quirks=Quirks(refuse_unknown_fields=True, schema_lacks=frozenset({"users.login"})),
        operations=Operations(rate_limit=False),
    )
    with pytest.raises(SyncError, match="login"):
        sync(plugin_for(sandbox), tenant())


def test_a_lenient_server_dropping_unknown_names_needs_no_retry() -> None:
    sandbox = CoupaSandbox(
        generate_tenant(users=60, seed=2),
        quirks=Quirks(schema_lacks=R39_SCHEMA_LACKS),
        operations=Operations(rate_limit=False),
    )
    check_sync(sandbox, plugin_for(sandbox), tenant())
    assert _refusals(sandbox) == []


# -- timestamps and tokens --------------------------------------------------------------------


def test_since_is_sent_with_an_explicit_offset() -> None:
    sandbox = make("lenient", users=60)
    sync(plugin_for(sandbox), tenant(), SyncRequest(since=SINCE))
    queries = [e.query for e in sandbox.log if "updated_at" in e.query]
    assert queries
    assert all("2026-06-01T00%3A00%3A00%2B00%3A00" in q for q in queries), queries


def test_graphql_uses_a_read_only_token_minted_once() -> None:
    sandbox = make("graphql_read_scopes_only", users=40)
    plugin, t = plugin_for(sandbox), tenant()
    status = plugin.configure(tenant=t)
    assert status is not None and status.mode == "provisioning"
    assert not any("GraphQL" in w for w in status.warnings)
    sync(plugin, t)
    sync(plugin, t)
    assert sandbox.tokens_issued == 2, "one token for REST, one read-only token for GraphQL"
    assert not [e for e in sandbox.log if e.route == "/api/graphql" and e.status != 200]
    plugin.configure(tenant=t)  # negotiates the REST token again; GraphQL's stays
    sync(plugin, t)
    connector = plugin.connector(t)
    assert connector is not None and connector.client.read_tokens.minted == 1
    assert "core.user.write" not in (connector.client.read_tokens.scopes or ())


def test_a_read_only_tenant_uses_its_one_token_for_graphql() -> None:
    sandbox = make("graphql_read_scopes_only", users=40)
    sandbox.state.add_client(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, READ_ONLY_SCOPES)
    plugin, t = plugin_for(sandbox), tenant()
    resources, _ = sync(plugin, t)
    assert ("role", "10102") in {(r.type, r.id) for r in resources}, "unheld role still listed"
    assert sandbox.tokens_issued == 1


def test_an_expired_graphql_token_is_replaced() -> None:
    sandbox = make("graphql_read_scopes_only", users=40)
    plugin, t = plugin_for(sandbox), tenant()
    sync(plugin, t)
    sandbox.expire_tokens()
    resources, _ = sync(plugin, t)
    assert ("role", "10102") in {(r.type, r.id) for r in resources}, "unheld role still listed"
    assert sandbox.tokens_issued == 4


def test_a_flag_the_plugin_does_not_know_is_provisioned_by_a_fresh_process(
    tmp_path: Path,
) -> None:
    sandbox = make("lenient", users=30)
    plugin, t = plugin_for(sandbox), tenant(state_dir=str(tmp_path))
    uid = next(u for u, r in sandbox.state.users.items() if u > 2 and not r["navi-agent-user"])
    entitlement = "license:navi-agent-user:assigned"
    provision(plugin, t, action="grant", entitlement_id=entitlement, principal_id=str(uid))
    assert sandbox.state.users[uid]["navi-agent-user"] is True
    reads = [e.query for e in sandbox.log if (e.method, e.route) == ("GET", "/api/users/:id")]
    assert reads and all("navi_agent_user" in q for q in reads), "named in every read"


def test_an_unknown_flag_is_refused_with_not_found(tmp_path: Path) -> None:
    sandbox = make("unknown_fields_refused", users=30)
    plugin, t = plugin_for(sandbox), tenant(state_dir=str(tmp_path))
    writes = sandbox.writes
    with pytest.raises(NotFoundError, match="intake-user"):
        provision(
            plugin,
            t,
            action="grant",
            entitlement_id="license:intake-user:assigned",
            principal_id="5",
        )
    assert sandbox.writes == writes


# -- the sandbox's switches, seen directly ----------------------------------------------------


def test_sandbox_refuses_unknown_field_names_naming_them() -> None:
    raw = Raw(make("unknown_fields_refused", users=30))
    response = raw.get("/api/users", fields='["id","intake_user","login"]')
    assert response.status_code == 400 and "intake_user" in response.text
    assert "login" not in response.text
    assert raw.get("/api/users/5", fields='["id",{"roles":["id","bogus"]}]').status_code == 400
    groups = raw.get("/api/account_groups", fields='["id","name","description"]')
    assert groups.status_code == 400 and "description" in groups.text
    rows = raw.json("/api/account_groups", fields='["id","name"]')
    assert rows and set(rows[0]) == {"id", "name"}
    assert "intake-user" not in raw.json("/api/users/5"), "not in this release"
    assert "description" not in raw.json("/api/account_groups")[0]


def test_sandbox_shows_newer_fields_only_when_named() -> None:
    raw = Raw(make("newer_fields_only_when_named", users=30))
    unnamed = raw.json("/api/users/5")
    assert not set(NEW_FLAGS) & set(unnamed)
    named = raw.json("/api/users/5", fields='["id","intake_user","category_planner_user"]')
    assert set(named) == {"id", "intake-user", "category-planner-user"}


def test_sandbox_graphql_refuses_tokens_with_write_scopes() -> None:
    sandbox = make("graphql_read_scopes_only", users=30)
    writer = Raw(sandbox).graphql("{ roles { id } }")
    assert writer["data"] is None and "read scopes only" in writer["errors"][0]["message"]
    reader = Raw(sandbox, " ".join(sorted(READ_ONLY_SCOPES))).graphql("{ roles { id } }")
    assert reader["data"]["roles"] and "errors" not in reader


def test_sandbox_ignores_writes_to_read_only_flags() -> None:
    sandbox = make("read_only_flags_ignore_writes", users=30)
    raw = Raw(sandbox)
    response = raw.put("/api/users/5", {"category-planner-user": True, "expense-user": True})
    assert response.status_code == 200
    assert sandbox.state.users[5]["category-planner-user"] is False
    assert sandbox.state.users[5]["expense-user"] is True
    lenient = make("lenient", users=30)
    Raw(lenient).put("/api/users/5", {"category-planner-user": True})
    assert lenient.state.users[5]["category-planner-user"] is True


# -- learning from refusals, as a unit --------------------------------------------------------


def _refusal(text: str) -> CoupaHTTPError:
    return CoupaHTTPError("GET", "/api/users", 400, text, {"fields": [text]})


def test_tenant_fields_drop_exactly_the_named_optional_fields() -> None:
    spec = FieldSpec("users", ("id", "login", "intake_user", {"roles": ["id", "name"]}))
    fields = TenantFields()
    assert fields.learn(spec, _refusal("Unknown field(s): intake_user")) == {"intake_user"}
    assert fields.render(spec) == '["id","login",{"roles":["id","name"]}]'
    assert fields.learn(spec, _refusal("unknown attribute name")) == {"roles.name"}
    assert fields.render(spec) == '["id","login",{"roles":["id"]}]'
    assert fields.learn(spec, _refusal("something else went wrong")) == frozenset()
    assert TenantFields().render(spec).count("intake_user") == 1, "learnt per instance"


def test_tenant_fields_refuse_to_drop_a_required_field() -> None:
    spec = FieldSpec("users", ("id", "login", "email"), frozenset({"id", "login"}))
    fields = TenantFields()
    with pytest.raises(FieldsRefusedError, match="login"):
        fields.learn(spec, _refusal("Unknown field(s): login"))
    # a required name that is only a word of the message does not hide an optional one
    assert fields.learn(spec, _refusal("login failed: unknown email")) == {"email"}


@given(
    refused=st.frozensets(st.sampled_from(["email", "active", "intake_user", "roles.name"])),
    echoed=st.frozensets(st.sampled_from(["id", "login", "email", "active", "intake_user"])),
)
def test_names_a_refusal_merely_repeats_are_kept(
    refused: frozenset[str], echoed: frozenset[str]
) -> None:
    spec = FieldSpec(
        "users",
        ("id", "login", "email", "active", "intake_user", {"roles": ["id", "name"]}),
        frozenset({"id", "login"}),
    )
    probes: list[str] = []

    def accepts(fields: str) -> bool:  # a Coupa that refuses exactly ``refused``
        probes.append(fields)
        selection = json.loads(fields)
        names = {n for n in selection if isinstance(n, str)}
        nested = {
            f"roles.{leaf}"
            for item in selection
            if isinstance(item, dict)
            for leaf in item.get("roles", [])
        }
        return not (refused & (names | nested))

    assume(refused)  # Coupa refused the read
    message = "Invalid fields " + " ".join(sorted(refused | echoed))
    fields = TenantFields()
    learnt = fields.learn(spec, _refusal(message), accepts)
    assert learnt == refused, "exactly the refused names, whatever else the text repeats"
    assert accepts(fields.render(spec)), "the read is taken without them"
    # each mentioned name (nested ones too) costs at most two probes, plus the first and ours
    assert len(probes) <= 2 * (len(refused | echoed) + 1) + 2


def test_a_name_learnt_by_another_page_meanwhile_does_not_skew_the_probes() -> None:
    # pages in flight together are refused together; one learns the name while another is
    # still probing: the probes must be judged against what was known when they began
    spec = FieldSpec("users", ("id", "login", "active", "email", "intake_user"))
    fields = TenantFields()
    others_learnt: list[frozenset[str]] = []

    def accepts(rendered: str) -> bool:
        if not others_learnt:  # another page's single-name refusal lands now
            others_learnt.append(fields.learn(spec, _refusal("unknown field intake_user")))
        return "intake_user" not in json.loads(rendered)

    message = "Invalid fields active email intake_user"
    assert fields.learn(spec, _refusal(message), accepts) == {"intake_user"}
    assert others_learnt == [{"intake_user"}]
    assert fields.refused("users") == {"intake_user"}


def test_a_refusal_that_cannot_be_pinned_down_drops_nothing() -> None:
    spec = FieldSpec("users", ("id", "login", "email", "active"), frozenset({"id", "login"}))
    fields = TenantFields()
    assert fields.learn(spec, _refusal("bad: email active"), lambda _: False) == frozenset()
    assert fields.render(spec) == '["id","login","email","active"]'


def test_a_refusal_echoing_every_field_costs_the_sync_only_the_refused_one() -> None:
    sandbox = CoupaSandbox(
        generate_tenant(users=60, seed=3),
        quirks=Quirks(schema_lacks=frozenset({"users.intake-user"})),
        operations=Operations(rate_limit=False),
    )
    original = sandbox.handle

    def echo_the_fields(request: SandboxRequest) -> SandboxResponse:
        fields = dict(parse_qsl(request.query)).get("fields") or ""
        if request.path.startswith("/api/users") and "intake_user" in fields:
            text = f"Invalid fields parameter {fields}: unknown field intake_user"
            body = json.dumps({"errors": {"fields": [text]}}).encode()
            return SandboxResponse(400, {"Content-Type": "application/json"}, body)
        return original(request)

    sandbox.handle = echo_the_fields  # type: ignore[method-assign]
    plugin, t = plugin_for(sandbox), tenant()
    check_sync(sandbox, plugin, t)
    assert plugin.connector(t).client.fields.refused("users") == {"intake_user"}  # type: ignore[union-attr]


def test_a_throttled_token_request_mid_run_is_retried() -> None:
    sandbox = make("graphql_read_scopes_only", users=40)
    original = sandbox.handle
    tokens = [0]

    def throttle_the_second_token_request(request: SandboxRequest) -> SandboxResponse:
        if request.path == "/oauth2/token":
            tokens[0] += 1
            if tokens[0] == 2:  # GraphQL's read-only token, asked for mid-configure
                return SandboxResponse(429, {"Retry-After": "0"}, b"{}")
        return original(request)

    sandbox.handle = throttle_the_second_token_request  # type: ignore[method-assign]
    resources, _ = sync(plugin_for(sandbox), tenant())
    assert ("role", "10102") in {(r.type, r.id) for r in resources}
    assert tokens[0] == 3


OPTIONAL_FIELDS = (
    "users.intake-user",
    "users.fullname",
    "users.sso-identifier",
    "users.employee-number",
    "users.msp-user",
    "account_groups.description",
    "account_groups.active",
    "user_groups.description",
    "user_groups.can-approve",
    "business_groups.description",
)


@given(lacks=st.frozensets(st.sampled_from(OPTIONAL_FIELDS)), refuse=st.booleans())
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_missing_optional_field_never_fails_a_sync(lacks: frozenset[str], refuse: bool) -> None:
    sandbox = CoupaSandbox(
        generate_tenant(users=60, seed=5),
        quirks=Quirks(refuse_unknown_fields=refuse, schema_lacks=lacks),
        operations=Operations(rate_limit=False),
    )
    plugin, t = plugin_for(sandbox), tenant()
    resources, grants = sync(plugin, t)
    want_resources, want_grants = expected(sandbox)
    if "user_groups.can-approve" in lacks:  # approval groups then come from users alone
        want_resources = {
            (k, i)
            for k, i in want_resources
            if k != "approval_group"
            or any(int(i) in u["approval-groups"] for u in sandbox.state.users.values())
        }
    assert {(r.type, r.id) for r in resources} == want_resources
    assert grants == want_grants
    refusals = len(_refusals(sandbox))
    sync(plugin, t)
    assert len(_refusals(sandbox)) == refusals, "nothing is refused twice"


def _answering(sandbox: CoupaSandbox, status: int, when: Any) -> None:
    """Make ``sandbox`` answer ``status`` to every request ``when(request)`` picks."""
    original = sandbox.handle

    def handle(request: SandboxRequest) -> SandboxResponse:
        if when(request):
            body = json.dumps({"errors": {"base": [f"refused ({status})"]}}).encode()
            return SandboxResponse(status, {"Content-Type": "application/json"}, body)
        return original(request)

    sandbox.handle = handle  # type: ignore[method-assign]


@pytest.mark.parametrize("status", [401, 403, 404])
def test_graphql_refused_or_absent_keeps_roles_syncing(status: int) -> None:
    sandbox = make("lenient", users=40)
    _answering(sandbox, status, lambda r: r.path == "/api/graphql")
    resources, grants = sync(plugin_for(sandbox), tenant(mode="read-only"))
    held = {str(r) for u in sandbox.state.users.values() for r in u["roles"]}
    assert {r.id for r in resources if r.type == "role"} == held, "held roles, listed"
    assert grants == truth_grants(sandbox.state)


@pytest.mark.parametrize("status", [403, 404])
def test_graphql_refused_or_absent_keeps_roles_provisionable(status: int) -> None:
    sandbox = make("lenient", users=40)
    _answering(sandbox, status, lambda r: r.path == "/api/graphql")
    plugin, t = plugin_for(sandbox), tenant()
    resources, grants = sync(plugin, t)
    held = {str(r) for u in sandbox.state.users.values() for r in u["roles"]}
    assert {r.id for r in resources if r.type == "role"} == held, "held roles, listed"
    assert grants == truth_grants(sandbox.state)
    uid = next(u for u, r in sandbox.state.users.items() if u > 2 and 4 not in r["roles"])
    granted = provision(
        plugin, t, action="grant", entitlement_id="role:4:member", principal_id=str(uid)
    )
    assert granted.status == "applied" and 4 in sandbox.state.users[uid]["roles"]
    revoked = provision(
        plugin, t, action="revoke", entitlement_id="role:4:member", principal_id=str(uid)
    )
    assert revoked.status == "applied" and 4 not in sandbox.state.users[uid]["roles"]


def test_a_membership_delete_refused_with_400_falls_back_to_the_list() -> None:
    sandbox = make("lenient", users=40)
    _answering(sandbox, 400, lambda r: r.method == "DELETE")
    plugin, t = plugin_for(sandbox), tenant()
    uid = next(u for u in sandbox.state.users if u > 2 and 1 in sandbox.state.groups_of.get(u, ()))
    others = set(sandbox.state.groups_of[uid]) - {1}
    result = provision(
        plugin, t, action="revoke", entitlement_id="group:1:member", principal_id=str(uid)
    )
    assert result.status == "applied"
    assert set(sandbox.state.groups_of.get(uid, ())) == others, "the other groups are kept"
