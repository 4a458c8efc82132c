"""The sandbox's own behaviour, checked against what Coupa documents."""

from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    CoupaSandbox,
    Operations,
    Quirks,
    SandboxServer,
    generate_tenant,
)
from coupa_plugin.sandbox._server import SandboxTransport
from tests.sandbox_helpers import Raw

NO_LIMIT = Operations(rate_limit=False)


@pytest.fixture(scope="module")
def tenant_sandbox() -> CoupaSandbox:
    return CoupaSandbox(generate_tenant(users=230, seed=3), operations=NO_LIMIT)


@pytest.fixture
def raw(tenant_sandbox: CoupaSandbox) -> Raw:
    return Raw(tenant_sandbox)


def fresh(users: int = 60, seed: int = 1, **quirks: object) -> CoupaSandbox:
    return CoupaSandbox(
        generate_tenant(users=users, seed=seed),
        quirks=Quirks(**quirks),  # type: ignore[arg-type]
        operations=Operations(rate_limit=False),
    )


# -- generator ------------------------------------------------------------------------------


def test_generator_is_deterministic_and_realistic() -> None:
    a, b = generate_tenant(users=500, seed=9), generate_tenant(users=500, seed=9)
    assert a.users == b.users and a.memberships == b.memberships
    assert generate_tenant(users=500, seed=10).users != a.users
    users = list(a.users.values())
    assert len(users) == 502
    assert a.roles[2]["name"] == "Admin" and a.roles[2]["omnipotent"]
    assert a.roles[3]["name"] == "User"
    assert any(not u["active"] for u in users)
    assert any(u["api-user"] for u in users)
    held = {r for u in users for r in u["roles"]}
    assert set(a.roles) - held, "some roles must be held by nobody"
    sizes = sorted((len(m) for m in a.members_of.values()), reverse=True)
    assert sizes[0] > 10 * sizes[len(sizes) // 2], "group sizes must be skewed"
    assert any(u["navi-agent-user"] for u in users), "a flag clients do not know yet"
    assert 0.4 < sum(u["purchasing-user"] for u in users) / len(users) < 0.7


# -- paging, filters, fields ----------------------------------------------------------------


def test_pages_are_capped_at_50_and_offsets_cover_everything(raw: Raw) -> None:
    assert len(raw.json("/api/users", limit=500)) == 50
    assert len(raw.json("/api/users")) == 50
    seen = []
    offset = 0
    while page := raw.json("/api/users", limit=50, offset=offset, fields='["id"]'):
        seen += [u["id"] for u in page]
        offset += 50
    assert seen == sorted(raw.sandbox.state.users)
    assert raw.json("/api/users", offset=100_000) == []


@given(cap=st.integers(1, 60), limit=st.integers(1, 80))
@settings(max_examples=25, deadline=None)
def test_any_page_cap_is_honoured(cap: int, limit: int) -> None:
    sandbox = CoupaSandbox(
        generate_tenant(users=30, seed=0), quirks=Quirks(page_cap=cap), operations=NO_LIMIT
    )
    page = Raw(sandbox).json("/api/users", limit=limit)
    assert len(page) == min(cap, limit, 32)


def test_filters(raw: Raw) -> None:
    users = raw.sandbox.state.users
    assert [u["id"] for u in raw.json("/api/users", **{"id[gt]": 200}, fields='["id"]')] == [
        i for i in sorted(users) if i > 200
    ]
    since = "2026-01-01T00:00:00Z"
    got = {u["id"] for u in raw.json("/api/users", **{"updated_at[gt]": since})}
    expected = sorted(i for i, u in users.items() if u["updated-at"] > "2026-01-01T00:00:00")
    assert got == set(expected[:50])
    assert {u["id"] for u in raw.json("/api/users", **{"updated-at[gt]": since})} == got
    admins = {u["id"] for u in raw.json("/api/users", **{"roles[id]": 2})}
    assert admins == {i for i, u in users.items() if 2 in u["roles"]}
    inactive = raw.json("/api/users", active="false", fields='["id","active"]')
    assert inactive and all(u["active"] is False for u in inactive)
    active = raw.json("/api/users", status="active", fields='["active"]')
    assert all(u["active"] for u in active)
    login = users[5]["login"]
    assert [u["id"] for u in raw.json("/api/users", login=login)] == [5]
    assert raw.get("/api/users", **{"no_such[gt]": 1}).status_code == 400


def test_order_by_and_dir(raw: Raw) -> None:
    page = raw.json("/api/users", order_by="id", dir="desc", fields='["id"]')
    assert [u["id"] for u in page] == sorted(raw.sandbox.state.users, reverse=True)[:50]


def test_fields_selects_nested_associations(raw: Raw) -> None:
    [user] = raw.json(
        "/api/users",
        id=3,
        fields='["id","login",{"roles":["id","name"]},{"user_groups":["id"]}]',
    )
    assert set(user) == {"id", "login", "roles", "user-groups"}
    assert all(set(r) == {"id", "name"} for r in user["roles"])
    assert {g["id"] for g in user["user-groups"]} == raw.sandbox.state.groups_of.get(3, set())


def test_full_user_has_every_documented_key(raw: Raw) -> None:
    user = raw.json("/api/users/5")
    for key in (
        "id",
        "login",
        "email",
        "firstname",
        "lastname",
        "employee-number",
        "active",
        "authentication-method",
        "sso-identifier",
        "api-user",
        "manager",
        "created-at",
        "updated-at",
        "custom-fields",
        "roles",
        "user-groups",
        "content-groups",
        "account-groups",
        "approval-groups",
        "purchasing-user",
        "expense-user",
        "navi-agent-user",
    ):
        assert key in user


def test_xml_unless_json_is_asked_for(raw: Raw) -> None:
    response = raw.http.get("/api/users/5", headers={"Authorization": f"Bearer {raw.token}"})
    assert response.headers["content-type"] == "application/xml"
    assert response.text.startswith('<?xml version="1.0"') and "<user>" in response.text


def test_hide_new_fields_shows_them_only_when_named() -> None:
    raw = Raw(fresh(hide_new_fields=True))
    assert "navi-agent-user" not in raw.json("/api/users/5")
    assert "navi-agent-user" in raw.json("/api/users/5", fields='["id","navi_agent_user"]')


# -- OAuth and scopes -----------------------------------------------------------------------


def _token(sandbox: CoupaSandbox, **form: str) -> httpx.Response:
    client = httpx.Client(transport=SandboxTransport(sandbox), base_url="http://s")
    return client.post("/oauth2/token", data={"grant_type": "client_credentials", **form})


def test_token_scopes(tenant_sandbox: CoupaSandbox) -> None:
    tenant_sandbox.state.add_client("narrow", "pw", {"core.user.read", "core.user_group.read"})
    ok = _token(tenant_sandbox, client_id="narrow", client_secret="pw", scope="core.user.read")
    assert ok.status_code == 200 and ok.json()["token_type"] == "bearer"
    refused = _token(
        tenant_sandbox,
        client_id="narrow",
        client_secret="pw",
        scope="core.user.read core.user.write",
    )
    assert (refused.status_code, refused.json()) == (400, {"error": "invalid_scope"})
    wrong = _token(tenant_sandbox, client_id="narrow", client_secret="nope")
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    basic = base64.b64encode(b"narrow:pw").decode()
    client = httpx.Client(transport=SandboxTransport(tenant_sandbox), base_url="http://s")
    via_header = client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert via_header.status_code == 200
    # no scope asked: the token carries every granted scope
    raw = Raw(tenant_sandbox)
    assert raw.get("/api/account_groups").status_code == 200


def test_endpoint_scope_checks(tenant_sandbox: CoupaSandbox) -> None:
    raw = Raw(tenant_sandbox, scope="core.user.read")
    assert raw.get("/api/users").status_code == 200
    assert raw.get("/api/user_groups").status_code == 403
    assert raw.get("/api/account_groups").status_code == 403
    assert raw.put("/api/users/5", {"firstname": "X"}).status_code == 403
    assert "Missing scope" in raw.graphql("{ userGroups { id } }")["errors"][0]["message"]


def test_bearer_required_and_tokens_expire() -> None:
    now = [0.0]
    sandbox = CoupaSandbox(
        generate_tenant(users=5),
        operations=Operations(rate_limit=False, token_ttl_s=100),
        clock=lambda: now[0],
    )
    raw = Raw(sandbox)
    assert raw.get("/api/users").status_code == 200
    now[0] = 101.0
    assert raw.get("/api/users").status_code == 401
    assert raw.http.get("/api/users").status_code == 401


# -- writes and quirks ----------------------------------------------------------------------


def _role_ids(raw: Raw, uid: int) -> list[int]:
    return [r["id"] for r in raw.json(f"/api/users/{uid}")["roles"]]


@pytest.mark.parametrize("mode", ["replace", "merge"])
def test_list_put_semantics(mode: str) -> None:
    raw = Raw(fresh(list_put=mode))
    raw.put("/api/users/5", {"roles": []})
    assert _role_ids(raw, 5) == []
    raw.put("/api/users/5", {"roles": [{"id": 3}, {"id": 4}]})
    assert _role_ids(raw, 5) == [3, 4]
    raw.put("/api/users/5", {"roles": [{"id": 5}]})
    assert _role_ids(raw, 5) == ([5] if mode == "replace" else [3, 4, 5])
    raw.put("/api/users/5", {"roles": None})
    assert _role_ids(raw, 5) == []
    raw.put("/api/users/5", {"roles": [{"name": "Buyer"}, {"id": 999_999}]})
    assert _role_ids(raw, 5) == [4], "unknown references are silently ignored"


def test_empty_roles_become_user_quirk() -> None:
    raw = Raw(fresh(empty_roles_become_user=True))
    raw.put("/api/users/5", {"roles": []})
    assert _role_ids(raw, 5) == [3]


def test_sticky_licenses_ignore_false() -> None:
    raw = Raw(fresh(sticky_licenses=frozenset({"contracts-user"})))
    raw.put("/api/users/5", {"contracts-user": True, "expense-user": True})
    raw.put("/api/users/5", {"contracts-user": False, "expense-user": False})
    user = raw.json("/api/users/5")
    assert (user["contracts-user"], user["expense-user"]) == (True, False)


@pytest.mark.parametrize("bumps", [True, False])
def test_membership_api_and_updated_at_switch(bumps: bool) -> None:
    raw = Raw(fresh(membership_bumps_updated_at=bumps))
    state = raw.sandbox.state
    state.users[7]["updated-at"] = "2020-01-01T00:00:00+00:00"
    group = next(g for g in state.user_groups if 7 not in state.members_of.get(g, {}))
    created = raw.post("/api/user_group_memberships", {"user-id": 7, "user-group-id": group})
    assert created.status_code == 201
    membership = created.json()["id"]
    assert group in {g["id"] for g in raw.json("/api/users/7")["user-groups"]}
    listed = raw.json("/api/user_group_memberships", user_id=7)
    assert membership in {m["id"] for m in listed}
    bumped = state.users[7]["updated-at"] != "2020-01-01T00:00:00+00:00"
    assert bumped is bumps
    assert (
        raw.http.delete(
            f"/api/user_group_memberships/{membership}", headers=raw.headers()
        ).status_code
        == 200
    )
    assert group not in {g["id"] for g in raw.json("/api/users/7")["user-groups"]}
    assert (
        raw.post(
            "/api/user_group_memberships", {"user-id": 7, "user-group-id": 999_999}
        ).status_code
        == 400
    )


def test_membership_delete_can_be_switched_off() -> None:
    raw = Raw(fresh(membership_delete=False))
    mid = next(iter(raw.sandbox.state.memberships))
    response = raw.http.delete(f"/api/user_group_memberships/{mid}", headers=raw.headers())
    assert response.status_code == 404


def test_business_group_routes() -> None:
    raw = Raw(fresh())
    raw.put("/api/users/5/business_groups/3/add", {})
    assert 3 in {g["id"] for g in raw.json("/api/users/5/business_groups")}
    raw.put("/api/users/5/business_groups/3/remove", {})
    assert 3 not in {g["id"] for g in raw.json("/api/users/5")["content-groups"]}
    assert (
        Raw(fresh(business_group_routes=False))
        .put("/api/users/5/business_groups/3/add", {})
        .status_code
        == 404
    )


def test_create_user_validation_and_defaults() -> None:
    raw = Raw(fresh())
    taken = raw.sandbox.state.users[5]["login"]
    bad = raw.post(
        "/api/users",
        {"login": taken, "email": "new@example.com", "firstname": "N", "lastname": "U"},
    )
    assert bad.status_code == 400
    assert bad.json() == {"errors": {"user": ["Login has already been taken"]}}
    missing = raw.post("/api/users", {"login": "x"})
    assert missing.status_code == 400 and "Email can't be blank" in missing.json()["errors"]["user"]
    created = raw.post(
        "/api/users",
        {
            "login": "new.user",
            "email": "new@example.com",
            "firstname": "New",
            "lastname": "User",
            "expense-user": True,
        },
    )
    assert created.status_code == 201
    body = created.json()
    assert [r["id"] for r in body["roles"]] == [3], "a new user gets the User role"
    assert body["expense-user"] is True and body["active"] is True


def test_no_delete_of_users_and_no_rest_roles(raw: Raw) -> None:
    assert raw.http.delete("/api/users/5", headers=raw.headers()).status_code == 404
    assert raw.get("/api/roles").status_code == 404


# -- GraphQL --------------------------------------------------------------------------------


def test_graphql_roles_with_query_and_cap() -> None:
    raw = Raw(
        CoupaSandbox(
            generate_tenant(users=10), quirks=Quirks(graphql_page_cap=4), operations=NO_LIMIT
        )
    )
    first = raw.graphql("{ roles { id name omnipotent } }")["data"]["roles"]
    assert [r["id"] for r in first] == [2, 3, 4, 5]
    assert first[0] == {"id": 2, "name": "Admin", "omnipotent": True}
    rest = raw.graphql('{ roles(query: "id[gt]=5") { id } }')["data"]["roles"]
    assert [r["id"] for r in rest] == [6, 7, 8, 9]
    users = raw.graphql('{ users(query: "roles[id]=2") { id roles { id } } }')["data"]["users"]
    assert users and all(2 in [r["id"] for r in u["roles"]] for u in users)


def test_each_sandbox_answers_graphql_from_its_own_state() -> None:
    one, other = fresh(users=5, seed=1), fresh(users=5, seed=2)
    other.state.users[4]["login"] = "only.in.the.other"
    document = "{ user(id: 4) { login } users { login } }"
    mine, theirs = Raw(one).graphql(document)["data"], Raw(other).graphql(document)["data"]
    assert mine["user"]["login"] == one.state.users[4]["login"] != "only.in.the.other"
    assert theirs["user"]["login"] == "only.in.the.other"
    assert [u["login"] for u in mine["users"]] == [u["login"] for u in one.state.users.values()]
    assert [u["login"] for u in theirs["users"]] != [u["login"] for u in mine["users"]]


def test_graphql_is_read_only_and_reports_errors(raw: Raw) -> None:
    result = raw.graphql('mutation { createRole(name: "x") { id } }')
    assert result["errors"]
    assert "errors" in raw.graphql("{ roles { nonexistentField } }")


# -- operations: rate limit, faults, server -------------------------------------------------


@pytest.mark.parametrize("retry_after", [True, False])
def test_leaky_bucket_429(retry_after: bool) -> None:
    now = [0.0]
    sandbox = CoupaSandbox(
        generate_tenant(users=5), quirks=Quirks(retry_after=retry_after), clock=lambda: now[0]
    )
    raw = Raw(sandbox)  # the token request takes one slot
    statuses = [raw.get("/api/users").status_code for _ in range(25)]
    assert statuses.count(200) == 19 and statuses[19:] == [429] * 6
    throttled = raw.get("/api/users")
    assert ("retry-after" in throttled.headers) is retry_after
    now[0] += 1 / 25  # one request drains per 40 ms
    assert raw.get("/api/users").status_code == 200
    assert raw.get("/api/users").status_code == 429
    assert sandbox.throttled == 8


def _fault_trace(seed: int) -> list[int | str]:
    sandbox = CoupaSandbox(
        generate_tenant(users=100, seed=1),
        operations=Operations(rate_limit=False, error_rate=0.2, drop_rate=0.1, seed=seed),
    )
    raw = Raw(sandbox)
    trace: list[int | str] = []
    for offset in range(0, 100, 5):
        try:
            trace.append(raw.get("/api/users", limit=5, offset=offset).status_code)
        except httpx.RemoteProtocolError:
            trace.append("drop")
    return trace


def test_fault_injection_is_reproducible_per_seed() -> None:
    first = _fault_trace(4)
    assert first == _fault_trace(4)
    assert {200, "drop"} <= set(first) and any(isinstance(s, int) and s >= 500 for s in first)
    assert first != _fault_trace(5)


def test_malformed_bodies_are_injected() -> None:
    sandbox = CoupaSandbox(
        generate_tenant(users=10), operations=Operations(rate_limit=False, malformed_rate=1.0)
    )
    response = Raw(sandbox).get("/api/users")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_nth_write_failures() -> None:
    sandbox = CoupaSandbox(
        generate_tenant(users=10),
        operations=Operations(
            rate_limit=False,
            fail_writes={1: "error", 2: "drop_after_apply", 3: "drop_before_apply"},
        ),
    )
    raw = Raw(sandbox)
    assert raw.put("/api/users/5", {"firstname": "One"}).status_code == 500
    assert sandbox.state.users[5]["firstname"] != "One"
    with pytest.raises(httpx.RemoteProtocolError):
        raw.put("/api/users/5", {"firstname": "Two"})
    assert sandbox.state.users[5]["firstname"] == "Two"
    with pytest.raises(httpx.RemoteProtocolError):
        raw.put("/api/users/5", {"firstname": "Three"})
    assert sandbox.state.users[5]["firstname"] == "Two"
    assert raw.put("/api/users/5", {"firstname": "Four"}).status_code == 200
    assert sandbox.writes == 4


def test_request_log_and_counters(raw: Raw) -> None:
    raw.sandbox.reset_counters()
    raw.get("/api/users/5")
    raw.get("/api/users/6")
    raw.get("/api/users")
    assert raw.sandbox.calls[("GET", "/api/users/:id")] == 2
    assert raw.sandbox.calls[("GET", "/api/users")] == 1
    assert [e.path for e in raw.sandbox.log] == ["/api/users/5", "/api/users/6", "/api/users"]


def _loopback_token(server: SandboxServer) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": SANDBOX_CLIENT_ID,
        "client_secret": SANDBOX_CLIENT_SECRET,
    }
    token: str = httpx.post(f"{server.url}/oauth2/token", data=form).json()["access_token"]
    return token


def test_loopback_server_serves_concurrently_without_serialising_latency() -> None:
    lock, waiting, most = threading.Lock(), [0], [0]

    def latency(seconds: float) -> None:  # how many requests wait out their latency at once
        with lock:
            waiting[0] += 1
            most[0] = max(most[0], waiting[0])
        time.sleep(seconds)
        with lock:
            waiting[0] -= 1

    sandbox = CoupaSandbox(
        generate_tenant(users=20),
        operations=Operations(rate_limit=False, latency_s=(0.3, 0.3)),
        sleep=latency,
    )
    with SandboxServer(sandbox) as server:
        token = _loopback_token(server)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

        def fetch(i: int) -> int:
            return httpx.get(f"{server.url}/api/users/{i + 1}", headers=headers).status_code

        with ThreadPoolExecutor(10) as pool:
            statuses = list(pool.map(fetch, range(10)))
    assert statuses == [200] * 10
    # a server that serialised requests would never have two in their latency at once
    assert most[0] >= 2, most[0]
    assert threading.active_count() < 50


def test_loopback_server_drops_connections() -> None:
    sandbox = CoupaSandbox(
        generate_tenant(users=5), operations=Operations(rate_limit=False, drop_rate=1.0)
    )
    with SandboxServer(sandbox) as server:
        token = _loopback_token(server)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/api/users", headers={"Authorization": f"Bearer {token}"})


def test_command_line_quirks() -> None:
    import click

    from coupa_plugin.sandbox.__main__ import parse_quirks

    quirks = parse_quirks(
        (
            "membership_bumps_updated_at=true",
            "page_cap=25",
            "sticky_licenses=contracts-user,purchasing-user",
            "graphql_ordering=refused",
        ),
        "merge",
    )
    assert quirks.graphql_ordering == "refused"
    assert quirks.list_put == "merge" and quirks.membership_bumps_updated_at
    assert quirks.page_cap == 25
    assert quirks.sticky_licenses == {"contracts-user", "purchasing-user"}
    for bad in ("nosuch=1", "retry_after=maybe", "page_cap", "graphql_ordering=sometimes"):
        with pytest.raises(click.BadParameter):
            parse_quirks((bad,), "replace")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--port", "99999"], "--port"),
        (["--host", "999.1.1.1", "--port", "0"], "--host"),
        (["--quirk", "page_cap=0"], "page_cap"),
        (["--quirk", "list_put=xyz"], "list_put"),
        (["--latency", "-1"], "--latency"),
        (["--error-rate", "2"], "--error-rate"),
        (["--users", "-5"], "--users"),
        (["--latency", "inf"], "--latency"),
        (["--error-rate", "nan"], "--error-rate"),
    ],
)
def test_the_sandbox_command_line_refuses_values_it_cannot_serve(
    args: list[str], named: str
) -> None:
    from click.testing import CliRunner

    from coupa_plugin.sandbox.__main__ import main

    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and named in result.output, result.output
    assert "Traceback" not in result.output
