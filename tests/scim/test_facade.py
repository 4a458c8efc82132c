"""The SCIM facade over the sandbox: what it serves is what Coupa holds (checked against the
sandbox's own state), filters, paging, attributes, errors, authentication, writes."""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupa_plugin.host.errors import ConfigurationError
from coupa_plugin.host.model import Resource
from coupa_plugin.refhost._scim.mapping import (
    current_attributes,
    user_document,
    wanted_attributes,
)
from coupa_plugin.refhost._scim.server import ScimFacade
from coupa_plugin.refhost._scim.storage import member_patch
from coupa_plugin.sandbox import CoupaSandbox, Operations, generate_tenant
from tests.kit import truth_grants
from tests.scim.conftest import TOKEN, hooks_for
from tests.scim.messages import ENTERPRISE, GROUP, PATCH_OP, USER, only, patch


def _all(client: httpx.Client, endpoint: str, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    start = 1
    while True:
        page = client.get(endpoint, params={**params, "startIndex": start, "count": 7}).json()
        found += page["Resources"]
        start += page["itemsPerPage"]
        if not page["Resources"] or start > page["totalResults"]:
            return found


def test_users_are_coupas_users(client: httpx.Client, sandbox: CoupaSandbox) -> None:
    served = {u["id"]: u for u in _all(client, "/Users")}
    state = sandbox.state.users
    assert set(served) == {str(uid) for uid in state}
    for uid, record in state.items():
        user = served[str(uid)]
        assert user["userName"] == record["login"]
        assert user["active"] is record["active"]
        assert user["name"] == {"givenName": record["firstname"], "familyName": record["lastname"]}
        assert user["emails"] == [{"value": record["email"], "type": "work"}]
        assert user.get("externalId") == (record["sso-identifier"] or None)
        enterprise = user.get(ENTERPRISE, {})
        assert enterprise.get("employeeNumber") == (record["employee-number"] or None)
        manager = record["manager"]
        assert enterprise.get("manager", {}).get("value") == (str(manager) if manager else None)


def test_groups_are_entitlements_and_members_their_holders(
    client: httpx.Client, sandbox: CoupaSandbox
) -> None:
    served = {g["id"]: g for g in _all(client, "/Groups")}
    holders: dict[str, set[str]] = {}
    for entitlement, user_id in truth_grants(sandbox.state):
        holders.setdefault(entitlement, set()).add(user_id)
    for entitlement, users in holders.items():
        assert {m["value"] for m in served[entitlement]["members"]} == users, entitlement
    buyer = served["role:4:member"]
    assert buyer["displayName"] == "Role: Buyer"
    # a user group is served by its Coupa name, every other kind with its label first
    user_groups = {f"group:{gid}:member": g["name"] for gid, g in sandbox.state.user_groups.items()}
    assert {served[e]["displayName"] for e in user_groups} == set(user_groups.values())
    assert {
        g["displayName"].split(": ")[0] for e, g in served.items() if e not in user_groups
    } == {"Role", "License", "Content group", "Account group", "Approval group"}


def test_filters_identity_platforms_send(client: httpx.Client, sandbox: CoupaSandbox) -> None:
    record = sandbox.state.users[7]
    by_name = only(
        client.get("/Users", params={"filter": f'userName eq "{record["login"].upper()}"'}).json()
    )
    assert by_name["id"] == "7"
    by_external = client.get(
        "/Users", params={"filter": f'externalId eq "{record["sso-identifier"]}"'}
    ).json()
    assert [u["id"] for u in by_external["Resources"]] == ["7"]
    nobody = client.get("/Users", params={"filter": 'userName eq "nobody.here"'}).json()
    assert nobody["totalResults"] == 0 and nobody["Resources"] == []
    buyer = only(client.get("/Groups", params={"filter": 'displayName eq "Role: Buyer"'}).json())
    assert buyer["id"] == "role:4:member"
    held = client.get(
        "/Groups",
        params={"filter": 'members[value eq "7"]', "excludedAttributes": "members"},
    ).json()
    expected = {e for e, u in truth_grants(sandbox.state, {7})}
    assert {g["id"] for g in held["Resources"]} == expected
    assert all("members" not in g for g in held["Resources"])
    inactive = client.get("/Users", params={"filter": "active eq false"}).json()
    assert {u["id"] for u in inactive["Resources"]} == {
        str(uid) for uid, r in sandbox.state.users.items() if not r["active"]
    }


def test_paging_covers_every_user_once(client: httpx.Client, sandbox: CoupaSandbox) -> None:
    pages = [
        client.get("/Users", params={"startIndex": start, "count": 10}).json()
        for start in range(1, len(sandbox.state.users) + 1, 10)
    ]
    ids = [u["id"] for page in pages for u in page["Resources"]]
    assert sorted(ids) == sorted(str(uid) for uid in sandbox.state.users)
    assert {page["totalResults"] for page in pages} == {len(sandbox.state.users)}
    assert pages[0]["startIndex"] == 1 and pages[1]["startIndex"] == 11


def test_attributes_and_excluded_attributes(client: httpx.Client) -> None:
    slim = client.get("/Users/7", params={"attributes": "userName"}).json()
    assert set(slim) == {"schemas", "id", "userName"}
    without = client.get("/Users/7", params={"excludedAttributes": "groups,emails"}).json()
    assert "groups" not in without and "emails" not in without and without["userName"]
    group = client.get("/Groups/role:3:member", params={"excludedAttributes": "members"}).json()
    assert group["displayName"] == "Role: User" and "members" not in group


def test_discovery_says_exactly_what_is_supported(client: httpx.Client) -> None:
    config = client.get("/ServiceProviderConfig").json()
    assert config["patch"] == {"supported": True}
    assert config["bulk"]["supported"] is False
    assert config["sort"] == {"supported": False}
    assert config["changePassword"] == {"supported": False}
    assert config["filter"] == {"supported": True, "maxResults": 200}
    assert config["etag"] == {"supported": True}
    assert [s["type"] for s in config["authenticationSchemes"]] == ["oauthbearertoken"]
    schemas = {s["id"]: s for s in client.get("/Schemas").json()["Resources"]}
    user = {a["name"]: a for a in schemas[USER]["attributes"]}
    assert set(user) == {"userName", "name", "displayName", "active", "emails", "groups"}
    assert {a["name"] for a in user["name"]["subAttributes"]} == {"givenName", "familyName"}
    assert user["displayName"]["mutability"] == "readOnly"
    assert user["active"]["required"] is True and user["emails"]["required"] is True
    enterprise = {a["name"] for a in schemas[ENTERPRISE]["attributes"]}
    assert enterprise == {"employeeNumber", "manager"}
    group = {
        a["name"]: a for a in schemas["urn:ietf:params:scim:schemas:core:2.0:Group"]["attributes"]
    }
    assert group["displayName"]["mutability"] == "readWrite"
    assert group["displayName"]["required"] is True
    types = {t["id"]: t for t in client.get("/ResourceTypes").json()["Resources"]}
    assert set(types) == {"User", "Group"}
    assert types["User"]["schemaExtensions"] == [{"schema": ENTERPRISE, "required": False}]


def test_the_token_is_required_and_never_echoed(facade: ScimFacade, client: httpx.Client) -> None:
    assert facade.url is not None
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        answer = httpx.get(f"{facade.url}/Users", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert TOKEN not in answer.text
    # RFC 7643 §5: the configuration may be read unauthenticated
    assert httpx.get(f"{facade.url}/ServiceProviderConfig").status_code == 200
    assert TOKEN not in repr(facade) and TOKEN not in repr(facade.application)


def test_no_token_no_facade(sandbox: CoupaSandbox, tmp_path: Path) -> None:
    hooks = hooks_for(sandbox, tmp_path)
    with pytest.raises(ConfigurationError, match="COUPA_SCIM_TOKEN is empty"):
        ScimFacade(hooks, "")


def test_errors_are_scim_errors(client: httpx.Client, sandbox: CoupaSandbox) -> None:
    missing = client.get("/Users/999999")
    assert missing.status_code == 404
    assert missing.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    create_role = client.post(
        "/Groups",
        json={"schemas": [GROUP], "displayName": "Role: X"},
    )
    assert create_role.status_code == 400
    assert "Coupa does not let roles, licenses" in create_role.json()["detail"]
    delete_role = client.delete("/Groups/role:4:member")
    assert delete_role.status_code == 400
    assert "Coupa does not let a role be created" in delete_role.json()["detail"]
    taken = client.post(
        "/Users",
        json={
            "schemas": [USER],
            "userName": sandbox.state.users[7]["login"],
            "name": {"givenName": "A", "familyName": "B"},
            "emails": [{"value": "a@example.com"}],
        },
    )
    assert taken.status_code == 409 and taken.json()["scimType"] == "uniqueness"
    stranger = client.patch(
        "/Groups/role:4:member",
        json=patch({"op": "add", "path": "members", "value": [{"value": "424242"}]}),
    )
    assert stranger.status_code == 400 and "no user 424242" in stranger.json()["detail"]
    bad_filter = client.get("/Users", params={"filter": 'userName eq "unterminated'})
    assert bad_filter.status_code == 400 and bad_filter.json()["scimType"] == "invalidFilter"


def test_a_read_after_a_write_shows_it(client: httpx.Client, sandbox: CoupaSandbox) -> None:
    before = truth_grants(sandbox.state)
    changed = client.patch(
        "/Users/7",
        json=patch(
            {"op": "replace", "path": "name.familyName", "value": "Lovelace"},
            {"op": "replace", "path": f"{ENTERPRISE}:employeeNumber", "value": "E-1815"},
        ),
    )
    assert changed.status_code == 204, changed.text  # RFC 7644 §3.5.2: no body asked for
    read = client.get("/Users/7").json()
    assert (read["name"]["familyName"], read[ENTERPRISE]["employeeNumber"]) == (
        "Lovelace",
        "E-1815",
    )
    record = sandbox.state.users[7]
    assert (record["lastname"], record["employee-number"]) == ("Lovelace", "E-1815")
    assert truth_grants(sandbox.state) == before


def test_an_etag_guards_a_write(client: httpx.Client, sandbox: CoupaSandbox) -> None:
    version = client.get("/Users/8").json()["meta"]["version"]
    client.patch("/Users/8", json=patch({"op": "replace", "path": "externalId", "value": "x-8"}))
    stale = client.patch(
        "/Users/8",
        json=patch({"op": "replace", "path": "externalId", "value": "y-8"}),
        headers={"If-Match": version},
    )
    assert stale.status_code == 412
    assert sandbox.state.users[8]["sso-identifier"] == "x-8"


def test_delete_disables_and_hides_and_a_create_revives(
    client: httpx.Client, sandbox: CoupaSandbox
) -> None:
    target = next(uid for uid, r in sandbox.state.users.items() if uid > 10 and r["active"])
    login = sandbox.state.users[target]["login"]
    grants = truth_grants(sandbox.state)
    assert client.delete(f"/Users/{target}").status_code == 204
    assert sandbox.state.users[target]["active"] is False
    assert truth_grants(sandbox.state) == grants  # disabling keeps every grant
    assert client.get(f"/Users/{target}").status_code == 404
    held = {e for e, u in grants if u == str(target)}
    assert held  # every user holds a role
    for entitlement in held:
        members = client.get(f"/Groups/{entitlement}").json().get("members", [])
        assert str(target) not in {m["value"] for m in members}
    listed = client.get("/Users", params={"filter": f'userName eq "{login}"'}).json()
    assert listed["totalResults"] == 0
    revived = client.post(
        "/Users",
        json={
            "schemas": [USER],
            "userName": login,
            "active": True,
            "name": {"givenName": "Back", "familyName": "Again"},
            "emails": [{"value": f"{login}@example.com"}],
        },
    )
    assert revived.status_code == 201, revived.text
    assert revived.json()["id"] == str(target)
    assert sandbox.state.users[target]["active"] is True
    assert sandbox.state.users[target]["firstname"] == "Back"


def test_the_background_refresh_shows_changes_made_in_coupa(
    sandbox: CoupaSandbox, tmp_path: Path
) -> None:
    waiting: queue.Queue[None] = queue.Queue()
    go: queue.Queue[str] = queue.Queue()

    def wait(_stop: threading.Event, _timeout: float) -> bool:
        waiting.put(None)
        return go.get(timeout=30) == "stop"

    facade = ScimFacade(hooks_for(sandbox, tmp_path), TOKEN, wait=wait).start()
    try:
        waiting.get(timeout=30)
        sandbox.admin_update(9, {"lastname": "Hopper"})
        assert _lastname(facade, "9") != "Hopper"
        go.put("refresh")
        waiting.get(timeout=30)
        assert _lastname(facade, "9") == "Hopper"
    finally:
        go.put("stop")
        facade.stop()


def _lastname(facade: ScimFacade, user_id: str) -> object:
    user = facade.directory.user(user_id)
    assert user is not None
    return user.profile["lastname"]


profiles = st.fixed_dictionaries(
    {
        "login": st.text(min_size=1, max_size=12),
        "firstname": st.text(min_size=1, max_size=8),
        "lastname": st.text(min_size=1, max_size=8),
        "email": st.emails(),
        "employee_number": st.none() | st.text(min_size=1, max_size=8),
        "sso_identifier": st.none() | st.text(min_size=1, max_size=8),
        "manager_login": st.none() | st.text(min_size=1, max_size=8),
        "active": st.booleans(),
    }
)


@given(profiles)
def test_a_user_document_asks_for_what_the_user_has(profile: dict[str, Any]) -> None:
    """Writing back what was read changes nothing: no attribute is lost or invented."""
    manager = profile["manager_login"]
    user = Resource(
        type="user",
        id="5",
        display_name="x",
        profile={**profile, "manager_id": "9" if manager else None},
    )
    wanted = wanted_attributes(user_document(user, ()), manager)
    current = current_attributes(user)
    assert wanted == {k: v or None for k, v in current.items()}


def test_a_read_only_tenant_serves_reads_and_refuses_writes(
    sandbox: CoupaSandbox, tmp_path: Path
) -> None:
    before = truth_grants(sandbox.state)
    with (
        ScimFacade(hooks_for(sandbox, tmp_path, "read-only"), TOKEN) as facade,
        httpx.Client(base_url=str(facade.url), headers={"Authorization": f"Bearer {TOKEN}"}) as c,
    ):
        assert c.get("/Users/7").json()["userName"] == sandbox.state.users[7]["login"]
        refused = c.patch(
            "/Groups/role:4:member",
            json=patch({"op": "add", "path": "members", "value": [{"value": "7"}]}),
        )
        assert refused.status_code == 403, refused.text
        assert "read-only" in refused.json()["detail"]
        renamed = c.patch(
            "/Groups/role:4:member",
            json=patch({"op": "replace", "path": "displayName", "value": "Role: Boss"}),
        )
        assert renamed.status_code == 403 and "read-only" in renamed.json()["detail"]
        created = c.post("/Groups", json={"schemas": [GROUP], "displayName": "Auditors"})
        assert created.status_code == 403 and "read-only" in created.json()["detail"]
    assert truth_grants(sandbox.state) == before


def test_interleaved_writes_compose(
    facade: ScimFacade, client: httpx.Client, sandbox: CoupaSandbox
) -> None:
    """Request A reads its base, request B changes the same resources, then A writes: A
    writes only what it changed, so B's change stays (no lost update, no 412)."""
    storage, provider = facade.storage, facade.application.provider
    types = {t.id: t for t in provider.resource_types}
    group_model, user_model = facade.model_for("Group"), facade.model_for("User")
    role = "role:5:member"
    x, y = (
        str(u)
        for u in [uid for uid in sandbox.state.users if uid > 10][:2]
        if (role, str(u)) not in truth_grants(sandbox.state)
    )
    # as scim2-server serves A: read the base, (B runs meanwhile), apply A, update
    base_group = storage.get(types["Group"], role).model_dump()
    added = client.patch(
        f"/Groups/{role}", json=patch({"op": "add", "path": "members", "value": [{"value": x}]})
    )
    assert added.status_code == 204
    a_group = {**base_group, "members": [*base_group.get("members", []), {"value": y}]}
    storage.update(types["Group"], group_model.model_validate(a_group))

    base_user = storage.get(types["User"], "12").model_dump()
    emailed = client.patch(
        "/Users/12", json=patch({"op": "replace", "path": "emails", "value": [{"value": "b@x.io"}]})
    )
    assert emailed.status_code == 204
    a_user = {**base_user, "name": {**base_user["name"], "familyName": "Interleaved"}}
    storage.update(types["User"], user_model.model_validate(a_user))

    grants = truth_grants(sandbox.state)
    assert (role, x) in grants and (role, y) in grants
    record = sandbox.state.users[12]
    assert (record["email"], record["lastname"]) == ("b@x.io", "Interleaved")


def test_locations_name_the_public_url_behind_a_proxy(
    sandbox: CoupaSandbox, tmp_path: Path
) -> None:
    public = "https://scim.example.com/v2"
    facade = ScimFacade(hooks_for(sandbox, tmp_path), TOKEN, public_url=f"{public}/")
    with (
        facade,
        httpx.Client(base_url=str(facade.url), headers={"Authorization": f"Bearer {TOKEN}"}) as c,
    ):
        user = c.get("/Users/7").json()
    assert user["meta"]["location"] == f"{public}/Users/7"
    assert {g["$ref"].rsplit("/", 1)[0] for g in user["groups"]} == {f"{public}/Groups"}


@pytest.mark.parametrize(
    ("path", "operations", "expected"),
    [
        (
            "/Groups/role:4:member",
            [{"op": "add", "path": "members", "value": [{"value": "7"}]}],
            {"7"},
        ),
        (
            "/Groups/role:4:member",
            [{"op": "Remove", "path": "members", "value": [{"value": "7"}, {"value": "8"}]}],
            {"7", "8"},
        ),
        (
            "/Groups/role:4:member",
            [
                {"op": "remove", "path": 'members[value eq "9"]'},
                {"op": "Add", "path": "Members", "value": []},
            ],
            {"9"},
        ),
        (
            "/Groups/role:4:member",
            [{"op": "replace", "path": "members", "value": [{"value": "7"}]}],
            None,
        ),
        (
            "/Groups/role:4:member",
            [{"op": "add", "path": 'members[value eq "9"]', "value": {}}],
            None,
        ),
        ("/Groups/role:4:member", [{"op": "add", "value": {"members": [{"value": "7"}]}}], None),
        ("/Groups/role:4:member", [{"op": "remove", "path": "members"}], None),
        ("/Groups/role:4:member", [], None),
        ("/Users/7", [{"op": "add", "path": "members", "value": [{"value": "7"}]}], None),
    ],
)
def test_which_patches_name_their_members(
    path: str, operations: list[dict[str, Any]], expected: set[str] | None
) -> None:
    body = json.dumps({"schemas": [PATCH_OP], "Operations": operations}).encode()
    found = member_patch(path, body)
    assert found == (None if expected is None else ("role:4:member", frozenset(expected)))
    assert member_patch("/Groups/role:4:member", b"not json") is None


def test_a_membership_patch_and_a_replace_of_the_members(
    client: httpx.Client, sandbox: CoupaSandbox
) -> None:
    group = "approval_group:5:member"
    before = truth_grants(sandbox.state)
    holders = {u for e, u in before if e == group}
    assert len(holders) >= 2
    newcomer = next(str(u) for u in sandbox.state.users if u > 10 and str(u) not in holders)
    added = client.patch(
        f"/Groups/{group}",
        json=patch({"op": "add", "path": "members", "value": [{"value": newcomer}]}),
    )
    assert added.status_code == 204
    read = client.get(f"/Groups/{group}")
    assert added.headers["ETag"] == read.headers["ETag"] == read.json()["meta"]["version"]
    assert {m["value"] for m in read.json()["members"]} == holders | {newcomer}
    # a replace names the whole membership: every other holder loses this group alone
    replaced = client.patch(
        f"/Groups/{group}",
        json=patch({"op": "replace", "path": "members", "value": [{"value": newcomer}]}),
    )
    assert replaced.status_code == 204, replaced.text
    after = truth_grants(sandbox.state)
    assert {u for e, u in after if e == group} == {newcomer}
    assert after == (before - {(group, u) for u in holders}) | {(group, newcomer)}


def test_a_page_holds_at_most_200_resources(tmp_path: Path) -> None:
    big = CoupaSandbox(generate_tenant(users=210, seed=4), operations=Operations(rate_limit=False))
    with (
        ScimFacade(hooks_for(big, tmp_path), TOKEN) as facade,
        httpx.Client(base_url=str(facade.url), headers={"Authorization": f"Bearer {TOKEN}"}) as c,
    ):
        for params in ({"count": 1000}, {}):
            page = c.get("/Users", params={**params, "attributes": "userName"}).json()
            assert (page["totalResults"], page["itemsPerPage"]) == (len(big.state.users), 200)
            assert len(page["Resources"]) == 200
