"""The request sequences Microsoft Entra ID's and Okta's provisioning services send (their
published SCIM guides: match by ``userName``, create, update, disable by PATCH or PUT, group
membership PATCHes), replayed against the facade; Coupa (the sandbox's state) must change
exactly as asked, and nothing else."""

from __future__ import annotations

import copy
from typing import Any

import httpx

from coupa_plugin.sandbox import CoupaSandbox
from tests.kit import truth_grants
from tests.scim.messages import ENTERPRISE, USER, only, patch

# what Coupa moves on every write, whoever asks
_STAMPS = ("updated-at", "updated-by")


def _coupa(sandbox: CoupaSandbox) -> tuple[dict[int, dict[str, Any]], set[tuple[str, str]]]:
    users = {
        uid: {k: v for k, v in copy.deepcopy(record).items() if k not in _STAMPS}
        for uid, record in sandbox.state.users.items()
    }
    return users, truth_grants(sandbox.state)


def _others_untouched(
    before: dict[int, dict[str, Any]], after: dict[int, dict[str, Any]], touched: set[int]
) -> None:
    assert {uid: r for uid, r in after.items() if uid not in touched} == {
        uid: r for uid, r in before.items() if uid not in touched
    }


def _group_id(client: httpx.Client, display_name: str) -> str:
    found = client.get(
        "/Groups",
        params={"filter": f'displayName eq "{display_name}"', "excludedAttributes": "members"},
    ).json()
    return str(only(found)["id"])


def test_entra_id_sequence(client: httpx.Client, sandbox: CoupaSandbox) -> None:
    users_before, grants_before = _coupa(sandbox)
    login = "Test_User_ab6490ee"
    lookup = {"filter": f'userName eq "{login}"'}
    assert client.get("/Users", params=lookup).json()["totalResults"] == 0
    created = client.post(
        "/Users",
        json={
            "schemas": [USER, ENTERPRISE],
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
            "userName": login,
            "active": True,
            "emails": [{"primary": True, "type": "work", "value": f"{login}@testuser.com"}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "Given Family", "familyName": "Family", "givenName": "Given"},
            "roles": [],
        },
    )
    assert created.status_code == 201, created.text
    user_id = only(client.get("/Users", params=lookup).json())["id"]
    assert user_id == created.json()["id"]
    updated = client.patch(
        f"/Users/{user_id}",
        json=patch(
            {
                "op": "Replace",
                "path": 'emails[type eq "work"].value',
                "value": "updated@testuser.com",
            },
            {"op": "Replace", "path": "name.familyName", "value": "Updated"},
        ),
    )
    assert updated.status_code in (200, 204), updated.text
    buyer = _group_id(client, "Role: Buyer")
    procurement = _group_id(client, "Procurement Team 1")
    member = {"value": user_id}
    for group in (buyer, procurement):
        added = client.patch(
            f"/Groups/{group}", json=patch({"op": "Add", "path": "members", "value": [member]})
        )
        assert added.status_code in (200, 204), added.text
    # Entra removes a member by naming it in the value
    removed = client.patch(
        f"/Groups/{buyer}", json=patch({"op": "Remove", "path": "members", "value": [member]})
    )
    assert removed.status_code in (200, 204), removed.text
    disabled = client.patch(
        f"/Users/{user_id}", json=patch({"op": "Replace", "path": "active", "value": False})
    )
    assert disabled.status_code in (200, 204), disabled.text
    read = client.get(f"/Users/{user_id}").json()
    assert read["active"] is False
    assert {g["value"] for g in read["groups"]} == {"role:3:member", procurement}

    users_after, grants_after = _coupa(sandbox)
    new = users_after[int(user_id)]
    assert (new["login"], new["email"], new["firstname"], new["lastname"]) == (
        login,
        "updated@testuser.com",
        "Given",
        "Updated",
    )
    assert new["sso-identifier"] == "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"
    assert new["active"] is False
    # Coupa gives every new user its default role (User); the rest is what Entra asked
    assert grants_after - grants_before == {("role:3:member", user_id), (procurement, user_id)}
    assert grants_before <= grants_after
    _others_untouched(users_before, users_after, {int(user_id)})


def test_entra_id_membership_of_an_existing_user(
    client: httpx.Client, sandbox: CoupaSandbox
) -> None:
    uid = next(u for u, r in sandbox.state.users.items() if u > 10 and r["active"] and r["roles"])
    users_before, grants_before = _coupa(sandbox)
    held = {e for e, u in grants_before if u == str(uid)}
    role = next(f"role:{r}:member" for r in sandbox.state.roles if f"role:{r}:member" not in held)
    added = client.patch(
        f"/Groups/{role}",
        json=patch({"op": "Add", "path": "members", "value": [{"value": str(uid)}]}),
    )
    assert added.status_code in (200, 204), added.text
    _, grants_between = _coupa(sandbox)
    assert grants_between == grants_before | {(role, str(uid))}
    removed = client.patch(
        f"/Groups/{role}", json=patch({"op": "Remove", "path": f'members[value eq "{uid}"]'})
    )
    assert removed.status_code in (200, 204), removed.text
    users_after, grants_after = _coupa(sandbox)
    assert grants_after == grants_before
    assert users_after[uid]["roles"] == users_before[uid]["roles"]
    _others_untouched(users_before, users_after, {uid})


def test_okta_sequence(client: httpx.Client, sandbox: CoupaSandbox) -> None:
    users_before, grants_before = _coupa(sandbox)
    manager_id = next(u for u, r in sandbox.state.users.items() if u > 10 and r["active"])
    login = "isaac.brock@example.com"
    lookup: dict[str, str | int] = {
        "filter": f'userName eq "{login}"',
        "startIndex": 1,
        "count": 100,
    }
    assert client.get("/Users", params=lookup).json()["Resources"] == []
    created = client.post(
        "/Users",
        json={
            "schemas": [USER],
            "userName": login,
            "name": {"givenName": "Isaac", "familyName": "Brock"},
            "emails": [{"primary": True, "value": login, "type": "work"}],
            "displayName": "Isaac Brock",
            "locale": "en-US",
            "externalId": "00ujl29u0le5T6Aj10h7",
            "groups": [],
            "password": "1mz050nq",
            "active": True,
        },
    )
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    current = client.get(f"/Users/{user_id}").json()
    current["name"]["givenName"] = "Ike"
    current["schemas"] = [USER, ENTERPRISE]
    current[ENTERPRISE] = {"employeeNumber": "701984", "manager": {"value": str(manager_id)}}
    replaced = client.put(f"/Users/{user_id}", json=current)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()[ENTERPRISE]["manager"]["value"] == str(manager_id)
    group = _group_id(client, "License: Expense license")
    pushed = client.patch(
        f"/Groups/{group}",
        json=patch(
            {"op": "add", "path": "members", "value": [{"value": user_id, "display": login}]}
        ),
    )
    assert pushed.status_code in (200, 204), pushed.text
    # Okta deactivates with a path-less replace
    deactivated = client.patch(
        f"/Users/{user_id}", json=patch({"op": "replace", "value": {"active": False}})
    )
    assert deactivated.status_code in (200, 204), deactivated.text
    assert client.get(f"/Users/{user_id}").json()["active"] is False
    reactivated = client.patch(
        f"/Users/{user_id}", json=patch({"op": "replace", "value": {"active": True}})
    )
    assert reactivated.status_code in (200, 204), reactivated.text
    unpushed = client.patch(
        f"/Groups/{group}", json=patch({"op": "remove", "path": f'members[value eq "{user_id}"]'})
    )
    assert unpushed.status_code in (200, 204), unpushed.text

    users_after, grants_after = _coupa(sandbox)
    new = users_after[int(user_id)]
    assert (new["login"], new["firstname"], new["lastname"], new["email"]) == (
        login,
        "Ike",
        "Brock",
        login,
    )
    assert (new["employee-number"], new["manager"], new["active"]) == ("701984", manager_id, True)
    assert new["sso-identifier"] == "00ujl29u0le5T6Aj10h7"
    assert grants_after - grants_before == {("role:3:member", user_id)}
    assert grants_before <= grants_after
    _others_untouched(users_before, users_after, {int(user_id)})


def test_entra_id_group_sequence(client: httpx.Client, sandbox: CoupaSandbox) -> None:
    """Microsoft's SCIM guide, group operations: create, get by displayName, rename, add and
    remove a member, delete."""
    users_before, grants_before = _coupa(sandbox)
    created = client.post(
        "/Groups",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "displayName",
            "meta": {"resourceType": "Group"},
        },
    )
    assert created.status_code == 201, created.text
    assert created.json().get("members", []) == []
    group_id = _group_id(client, "displayName")
    assert group_id == created.json()["id"]
    coupa_id = int(group_id.split(":")[1])
    renamed = client.patch(
        f"/Groups/{group_id}",
        json=patch({"op": "Replace", "path": "displayName", "value": "updatedDisplayName"}),
    )
    assert renamed.status_code in (200, 204), renamed.text
    assert sandbox.state.user_groups[coupa_id]["name"] == "updatedDisplayName"
    member = {"$ref": None, "value": "7"}
    added = client.patch(
        f"/Groups/{group_id}", json=patch({"op": "Add", "path": "members", "value": [member]})
    )
    assert added.status_code in (200, 204), added.text
    assert truth_grants(sandbox.state) == grants_before | {(group_id, "7")}
    removed = client.patch(
        f"/Groups/{group_id}", json=patch({"op": "Remove", "path": "members", "value": [member]})
    )
    assert removed.status_code in (200, 204), removed.text
    assert client.delete(f"/Groups/{group_id}").status_code == 204
    assert sandbox.state.user_groups[coupa_id]["active"] is False
    assert client.get(f"/Groups/{group_id}").status_code == 404
    users_after, grants_after = _coupa(sandbox)
    assert grants_after == grants_before
    _others_untouched(users_before, users_after, set())
