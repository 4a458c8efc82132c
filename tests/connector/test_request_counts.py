"""Every provisioning action sends the fewest requests it needs, counted by the sandbox.

The fewest, once the tenant's catalog facts are known (which roles exist and which are
omnipotent, which groups exist: kept per tenant) and the list semantics learnt:

| action | replace | merge |
| --- | --- | --- |
| grant a role, account group or approval group | 3: read, write, read-back | 3 |
| revoke one | 3 | 5: read, clear, read-back, put-back, read-back |
| revoke an omnipotent role | 4: + the other active holders | 6 |
| grant a user group (membership) | 3: read, POST, read-back | 3 |
| revoke a user group | 4: read, find the membership, DELETE, read-back | 4 |
| grant or revoke a content group, a license | 3 | 3 |
| enable, update an account | 3 | 3 |
| disable an account holding no omnipotent role | 3 | 3 |
| already so (``unchanged``) | 1: read | 1 |

Tokens are not requests to the API and are not counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coupa_plugin.host.model import ProvisionRequest, Tenant
from coupa_plugin.plugin import CoupaPlugin
from coupa_plugin.sandbox import CoupaSandbox, Operations, Quirks, generate_tenant
from tests.kit import plugin_for, tenant

USER, WARM = 7, 8


def world(tmp_path: Path, semantics: str) -> tuple[CoupaSandbox, CoupaPlugin, Tenant]:
    state = generate_tenant(users=12, seed=3)
    for gid in (1, 2):
        state.user_groups[gid]["can-approve"] = True
    for uid in (USER, WARM):
        user = state.users[uid]
        user["roles"] = [3, 4, 5]
        user["account-groups"] = [1, 2]
        user["approval-groups"] = [1, 2]
        user["content-groups"] = [1, 2]
        user["active"] = True
        state.set_user_groups(uid, [1, 2])
        user["roles"] = [r for r in user["roles"] if r != 2]
    sandbox = CoupaSandbox(
        state,
        quirks=Quirks(list_put=semantics),  # type: ignore[arg-type]
        operations=Operations(rate_limit=False),
    )
    return sandbox, plugin_for(sandbox), tenant(state_dir=str(tmp_path / "state"))


def api_requests(sandbox: CoupaSandbox) -> int:
    return sum(1 for entry in sandbox.log if entry.path.startswith("/api/"))


def run(plugin: CoupaPlugin, t: Tenant, user: int, **request: Any) -> str:
    result = plugin.provision(
        tenant=t, request=ProvisionRequest(principal_id=str(user), **request)
    )
    assert result is not None
    return result.status


CASES = [
    # (action, entitlement, fewest under replace, fewest under merge)
    ("grant", "role:8:member", 3, 3),
    ("revoke", "role:4:member", 3, 5),
    ("grant", "account_group:3:member", 3, 3),
    ("revoke", "account_group:1:member", 3, 5),
    ("grant", "approval_group:3:member", 3, 3),
    ("revoke", "approval_group:1:member", 3, 5),
    ("grant", "group:3:member", 3, 3),
    ("revoke", "group:1:member", 4, 4),
    ("grant", "content_group:3:member", 3, 3),
    ("revoke", "content_group:1:member", 3, 3),
    ("grant", "license:sourcing-user:assigned", 3, 3),
    ("revoke", "license:expense-user:assigned", 3, 3),
]


@pytest.mark.parametrize("semantics", ["replace", "merge"])
@pytest.mark.parametrize(("action", "entitlement", "replace", "merge"), CASES)
def test_grant_and_revoke_send_the_fewest_requests(
    tmp_path: Path, semantics: str, action: str, entitlement: str, replace: int, merge: int
) -> None:
    sandbox, plugin, t = world(tmp_path, semantics)
    for uid in (USER, WARM):
        flag = entitlement.split(":")[1]
        if entitlement.startswith("license:"):
            sandbox.state.users[uid][flag] = action == "revoke"
    # the first call of a kind learns the semantics and the catalog facts
    assert run(plugin, t, WARM, action=action, entitlement_id=entitlement) == "applied"
    before = api_requests(sandbox)
    assert run(plugin, t, USER, action=action, entitlement_id=entitlement) == "applied"
    sent = api_requests(sandbox) - before
    assert sent == (replace if semantics == "replace" else merge), [
        f"{e.method} {e.path}" for e in list(sandbox.log)[before:]
    ]
    before = api_requests(sandbox)
    assert run(plugin, t, USER, action=action, entitlement_id=entitlement) == "unchanged"
    assert api_requests(sandbox) - before == 1


@pytest.mark.parametrize(
    ("request_", "fewest"),
    [
        ({"action": "disable_account"}, 3),
        ({"action": "update_account", "attributes": {"firstname": "Ann"}}, 3),
    ],
)
def test_account_changes_send_the_fewest_requests(
    tmp_path: Path, request_: dict[str, Any], fewest: int
) -> None:
    sandbox, plugin, t = world(tmp_path, "replace")
    assert run(plugin, t, WARM, **request_) == "applied"
    before = api_requests(sandbox)
    assert run(plugin, t, USER, **request_) == "applied"
    assert api_requests(sandbox) - before == fewest, [
        f"{e.method} {e.path}" for e in list(sandbox.log)[before:]
    ]
    before = api_requests(sandbox)
    enable = {"action": "enable_account"} if request_["action"] == "disable_account" else None
    if enable:
        assert run(plugin, t, USER, **enable) == "applied"
        assert api_requests(sandbox) - before == fewest


def test_revoking_an_omnipotent_role_asks_for_the_other_holders_once(tmp_path: Path) -> None:
    sandbox, plugin, t = world(tmp_path, "replace")
    for uid in (USER, WARM):
        sandbox.state.users[uid]["roles"] = [2, 3]
    assert run(plugin, t, WARM, action="revoke", entitlement_id="role:2:member") == "applied"
    before = api_requests(sandbox)
    assert run(plugin, t, USER, action="revoke", entitlement_id="role:2:member") == "applied"
    assert api_requests(sandbox) - before == 4
