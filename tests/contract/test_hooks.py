"""Each hook through a pluggy host, against the sandbox on loopback (the integrator kit's
fixtures), plus the reusable contract checks applied to this plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

from coupa_plugin.host.model import (
    ConnectorStatus,
    Grant,
    ProvisionRequest,
    Resource,
    SyncRequest,
    Tenant,
)
from coupa_plugin.refhost._manager import Host
from coupa_plugin.sandbox import CoupaSandbox
from coupa_plugin.testing.contract import (
    installed_plugins,
    plugin_problems,
    silence_problems,
    spec_documentation_problems,
    untested_hooks,
)


@pytest.fixture
def host() -> Host:
    host = Host()
    host.load_entry_points()
    return host


def test_hook_configure(host: Host, coupa_tenant: Tenant) -> None:
    status = host.hooks(coupa_tenant, "coupa").configure()
    assert isinstance(status, ConnectorStatus)
    assert status.plugin == "coupa" and status.tenant_id == coupa_tenant.id
    assert status.mode == "provisioning"
    assert "core.user.write" in status.granted_scopes
    assert status.resource_types == {
        "user",
        "group",
        "role",
        "license",
        "content_group",
        "account_group",
        "approval_group",
    }
    assert "provision:revoke" in status.capabilities


def test_hook_discover_resources(
    host: Host, coupa_tenant: Tenant, coupa_sandbox: CoupaSandbox
) -> None:
    hooks = host.hooks(coupa_tenant, "coupa")
    resources = list(hooks.discover_resources(SyncRequest()) or [])
    assert all(isinstance(r, Resource) for r in resources)
    users = {r.id for r in resources if r.type == "user"}
    assert users == {str(u) for u in coupa_sandbox.state.users}


def test_hook_sync_grants(host: Host, coupa_tenant: Tenant, coupa_sandbox: CoupaSandbox) -> None:
    hooks = host.hooks(coupa_tenant, "coupa")
    grants = list(hooks.sync_grants(SyncRequest(principal_ids=frozenset({"5"}))) or [])
    assert all(isinstance(g, Grant) and g.principal_id == "5" for g in grants)
    roles = {g.entitlement_id for g in grants if g.entitlement_id.startswith("role:")}
    assert roles == {f"role:{r}:member" for r in coupa_sandbox.state.users[5]["roles"]}


@pytest.mark.coupa_sandbox(users=20, quirks={"list_put": "merge"})
def test_hook_provision(host: Host, coupa_tenant: Tenant, coupa_sandbox: CoupaSandbox) -> None:
    hooks = host.hooks(coupa_tenant, "coupa")
    uid = next(u for u, r in coupa_sandbox.state.users.items() if u > 2 and 4 not in r["roles"])
    granted = hooks.provision(
        ProvisionRequest(action="grant", entitlement_id="role:4:member", principal_id=str(uid))
    )
    assert granted is not None and granted.status == "applied"
    before = set(coupa_sandbox.state.users[uid]["roles"])
    revoked = hooks.provision(
        ProvisionRequest(action="revoke", entitlement_id="role:4:member", principal_id=str(uid))
    )
    assert revoked is not None and revoked.status == "applied"
    assert set(coupa_sandbox.state.users[uid]["roles"]) == before - {4}


def test_every_hook_is_documented_and_tested() -> None:
    assert spec_documentation_problems() == []
    assert untested_hooks([Path(__file__).parent]) == []


def test_contract_checks_pass_for_the_installed_plugins() -> None:
    plugins = dict(installed_plugins())
    assert "coupa" in plugins
    assert plugin_problems("coupa", plugins["coupa"]) == []
    assert silence_problems("coupa", plugins["coupa"]) == []


class _Sloppy:
    from coupa_plugin.host.spec import hookimpl

    @hookimpl
    def configure(self, tenant: Tenant, *, verbose: bool = False) -> None:
        return None

    @hookimpl
    def sync_grants(self, tenant: Tenant, request: SyncRequest) -> list[Grant]:
        return []


def test_contract_checks_find_problems() -> None:
    problems = plugin_problems("sloppy", _Sloppy())
    assert any("keyword-only" in p for p in problems)
    assert any("default" in p for p in problems)
    assert silence_problems("sloppy", _Sloppy()) == [
        "sloppy.sync_grants answered for a tenant with plugins={}",
        "sloppy.sync_grants answered for a tenant with plugins={'sloppy': {'enabled': False}}",
    ]
    assert untested_hooks([Path(__file__)], ["configure", "frobnicate"]) == ["frobnicate"]
