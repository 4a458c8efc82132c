"""Creating, renaming and deleting groups over SCIM: Coupa user groups through ``create_group``,
``update_group`` and ``deactivate_group``; every other kind of group is a SCIM error."""

from __future__ import annotations

from typing import Any

import httpx

from coupa_plugin.sandbox import CoupaSandbox
from tests.kit import truth_grants
from tests.scim.messages import GROUP, only, patch


def _coupa_group(sandbox: CoupaSandbox, name: str) -> dict[str, Any]:
    [group] = [g for g in sandbox.state.user_groups.values() if g["name"] == name]
    return group


def _listed(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    answer = client.get("/Groups", params={"filter": f'displayName eq "{name}"'})
    assert answer.status_code == 200, answer.text
    resources: list[dict[str, Any]] = answer.json().get("Resources", [])
    return resources


def test_post_creates_a_user_group_and_grants_its_members(
    client: httpx.Client, sandbox: CoupaSandbox
) -> None:
    before = truth_grants(sandbox.state)
    created = client.post(
        "/Groups",
        json={"schemas": [GROUP], "displayName": "Auditors", "members": [{"value": "7"}]},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    group = _coupa_group(sandbox, "Auditors")
    assert group["active"] is True
    assert body["id"] == f"group:{group['id']}:member"
    assert body["displayName"] == "Auditors"
    assert [m["value"] for m in body["members"]] == ["7"]
    assert truth_grants(sandbox.state) == before | {(body["id"], "7")}
    # read back, found by the filter Entra ID and Okta send, and in the member's groups
    assert client.get(f"/Groups/{body['id']}").json()["displayName"] == "Auditors"
    assert (
        only(client.get("/Groups", params={"filter": 'displayName eq "Auditors"'}).json())["id"]
        == (body["id"])
    )
    assert body["id"] in {g["value"] for g in client.get("/Users/7").json()["groups"]}
    # a member the tenant does not have: nothing is created
    stranger = client.post(
        "/Groups",
        json={"schemas": [GROUP], "displayName": "Strangers", "members": [{"value": "424242"}]},
    )
    assert stranger.status_code == 400 and "no user 424242" in stranger.json()["detail"]
    assert [g for g in sandbox.state.user_groups.values() if g["name"] == "Strangers"] == []
    # the same name again is taken
    again = client.post("/Groups", json={"schemas": [GROUP], "displayName": "Auditors"})
    assert again.status_code == 409 and again.json()["scimType"] == "uniqueness"


def test_a_label_prefix_names_the_user_group(client: httpx.Client, sandbox: CoupaSandbox) -> None:
    for display, name in (
        ("User group: Buyers EU", "Buyers EU"),
        ("Group: Buyers US", "Buyers US"),
    ):
        created = client.post("/Groups", json={"schemas": [GROUP], "displayName": display})
        assert created.status_code == 201, created.text
        assert created.json()["displayName"] == name
        assert _coupa_group(sandbox, name)["active"] is True
    # an existing user group is also matched by its labelled name
    assert [g["displayName"] for g in _listed(client, "User group: Buyers EU")] == ["Buyers EU"]


def test_rename_by_patch_and_put(client: httpx.Client, sandbox: CoupaSandbox) -> None:
    group_id = client.post("/Groups", json={"schemas": [GROUP], "displayName": "Old"}).json()["id"]
    coupa_id = int(group_id.split(":")[1])
    renamed = client.patch(
        f"/Groups/{group_id}",
        json=patch({"op": "replace", "path": "displayName", "value": "New"}),
    )
    assert renamed.status_code == 204, renamed.text
    assert sandbox.state.user_groups[coupa_id]["name"] == "New"
    assert client.get(f"/Groups/{group_id}").json()["displayName"] == "New"
    put = client.put(
        f"/Groups/{group_id}",
        json={"schemas": [GROUP], "id": group_id, "displayName": "Newer", "members": []},
    )
    assert put.status_code == 200, put.text
    assert sandbox.state.user_groups[coupa_id]["name"] == "Newer"
    assert client.get(f"/Groups/{group_id}").json()["displayName"] == "Newer"


def test_other_kinds_cannot_be_renamed(client: httpx.Client, sandbox: CoupaSandbox) -> None:
    before = truth_grants(sandbox.state)
    renamed = client.patch(
        "/Groups/role:4:member",
        json=patch({"op": "replace", "path": "displayName", "value": "Role: Boss"}),
    )
    assert renamed.status_code == 400
    assert "Coupa does not let a role be created, changed or deleted" in renamed.json()["detail"]
    assert client.get("/Groups/role:4:member").json()["displayName"] == "Role: Buyer"
    assert truth_grants(sandbox.state) == before


def test_delete_deactivates_the_user_group_and_hides_it(
    client: httpx.Client, sandbox: CoupaSandbox
) -> None:
    group_id = client.post(
        "/Groups",
        json={"schemas": [GROUP], "displayName": "Temporary", "members": [{"value": "7"}]},
    ).json()["id"]
    before = truth_grants(sandbox.state)
    assert client.delete(f"/Groups/{group_id}").status_code == 204
    group = _coupa_group(sandbox, "Temporary")
    assert group["active"] is False  # Coupa deletes no group
    assert truth_grants(sandbox.state) == before  # its memberships stay in Coupa
    assert client.get(f"/Groups/{group_id}").status_code == 404
    assert _listed(client, "Temporary") == []
    assert group_id not in {g["id"] for g in client.get("/Groups").json()["Resources"]}
    assert group_id not in {g["value"] for g in client.get("/Users/7").json().get("groups", [])}
    assert client.delete(f"/Groups/{group_id}").status_code == 404
    # its name stays taken in Coupa, and the answer says why
    again = client.post("/Groups", json={"schemas": [GROUP], "displayName": "Temporary"})
    assert again.status_code == 409 and "inactive in Coupa" in again.json()["detail"]


def test_a_user_group_coupa_already_had_can_be_deleted(
    client: httpx.Client, sandbox: CoupaSandbox
) -> None:
    gid = min(sandbox.state.user_groups)
    assert client.delete(f"/Groups/group:{gid}:member").status_code == 204
    assert sandbox.state.user_groups[gid]["active"] is False
    assert client.get(f"/Groups/group:{gid}:member").status_code == 404


def test_other_kinds_cannot_be_created_or_deleted(
    client: httpx.Client, sandbox: CoupaSandbox
) -> None:
    before = (truth_grants(sandbox.state), len(sandbox.state.user_groups))
    for display in ("Role: Auditor", "License: Expense", "Content group: EU"):
        created = client.post("/Groups", json={"schemas": [GROUP], "displayName": display})
        assert created.status_code == 400, display
        assert "they exist in Coupa and are defined there" in created.json()["detail"]
    served = {g["id"] for g in client.get("/Groups", params={"count": 200}).json()["Resources"]}
    others = sorted(e for e in served if not e.startswith("group:"))
    for entitlement in others:
        deleted = client.delete(f"/Groups/{entitlement}")
        assert deleted.status_code == 400, entitlement
        assert "Coupa does not let a" in deleted.json()["detail"]
        assert client.get(f"/Groups/{entitlement}").status_code == 200
    assert (truth_grants(sandbox.state), len(sandbox.state.user_groups)) == before


def test_a_groups_external_id_is_kept_as_set(client: httpx.Client) -> None:
    created = client.post(
        "/Groups", json={"schemas": [GROUP], "displayName": "Linked", "externalId": "entra-1"}
    ).json()
    assert created["externalId"] == "entra-1"
    changed = client.patch(
        f"/Groups/{created['id']}",
        json=patch({"op": "replace", "path": "externalId", "value": "entra-2"}),
    )
    assert changed.status_code in (200, 204), changed.text
    assert client.get(f"/Groups/{created['id']}").json()["externalId"] == "entra-2"
    found = client.get("/Groups", params={"filter": 'externalId eq "entra-2"'}).json()
    assert [g["id"] for g in found["Resources"]] == [created["id"]]
    cleared = client.patch(
        f"/Groups/{created['id']}", json=patch({"op": "remove", "path": "externalId"})
    )
    assert cleared.status_code in (200, 204), cleared.text
    assert "externalId" not in client.get(f"/Groups/{created['id']}").json()
