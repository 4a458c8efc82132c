"""The reference host: loading, tenants file, snapshot runs, contract checks."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from coupa_plugin.host.errors import ConfigurationError, SyncError
from coupa_plugin.host.model import (
    ConnectorStatus,
    Entitlement,
    Grant,
    Resource,
    SyncRequest,
    Tenant,
)
from coupa_plugin.host.spec import hookimpl
from coupa_plugin.refhost._errors import ContractViolation
from coupa_plugin.refhost._jobs import sync_tenant
from coupa_plugin.refhost._manager import Host
from coupa_plugin.refhost._snapshot import SnapshotStore
from coupa_plugin.refhost._tenants import load_tenants, parse_tenants


def test_a_plugin_that_fails_to_import_is_reported_and_skipped() -> None:
    eps = [
        EntryPoint(name="broken", value="no_such_module_anywhere:plugin", group="iga.plugins"),
        EntryPoint(name="coupa", value="coupa_plugin.plugin:plugin", group="iga.plugins"),
    ]
    host = Host()
    assert host.load_entry_points(loader=lambda group: eps) == ["coupa"]
    assert [f.name for f in host.load_failures] == ["broken"]
    assert "ModuleNotFoundError" in host.load_failures[0].error
    assert host.plugin_names() == ["coupa"]


class _BadHookName:
    @hookimpl
    def configur(self, tenant: Tenant) -> None:  # a typo: no such hook
        return None


def test_a_plugin_with_an_unknown_hook_is_rejected() -> None:
    value = "tests.refhost.test_host:_BadHookName"
    eps = [EntryPoint(name="typo", value=value, group="iga.plugins")]
    host = Host()
    host.load_entry_points(loader=lambda group: [_Instance(ep) for ep in eps])
    assert host.plugin_names() == []
    assert "configur" in host.load_failures[0].error


class _Instance:
    def __init__(self, ep: EntryPoint) -> None:
        self.name, self.value = ep.name, ep.value
        self._ep = ep

    def load(self) -> object:
        return self._ep.load()()


def test_tenants_file_with_environment_references(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(
        '[tenants.acme.coupa]\nenabled = true\nclient_secret = "${ACME_SECRET}"\n'
        'note = "costs $$5"\n[tenants.beta.coupa]\nenabled = false\n'
    )
    acme, beta = load_tenants(path, env={"ACME_SECRET": "from-env"})
    assert acme.id == "acme" and acme.plugins["coupa"]["client_secret"] == "from-env"
    assert acme.plugins["coupa"]["note"] == "costs $5"
    assert beta.plugins["coupa"]["enabled"] is False


def test_tenants_file_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="MISSING_VAR is not set"):
        parse_tenants({"tenants": {"a": {"coupa": {"client_secret": "${MISSING_VAR}"}}}}, env={})
    with pytest.raises(ConfigurationError, match="malformed"):
        parse_tenants({"tenants": {"a": {"coupa": {"x": "${oops"}}}}, env={})
    with pytest.raises(ConfigurationError, match="one table per plugin"):
        parse_tenants({"tenants": {"a": {"coupa": 5}}}, env={})
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_tenants(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[tenants\n")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_tenants(bad)


class _FakePlugin:
    """A plugin that yields a small fixed tenant, optionally failing mid-stream."""

    def __init__(self, fail_after: int | None = None, *, bad_item: bool = False) -> None:
        self.fail_after = fail_after
        self.bad_item = bad_item

    @hookimpl
    def configure(self, tenant: Tenant) -> ConnectorStatus:
        return ConnectorStatus(
            plugin="fake",
            tenant_id=tenant.id,
            mode="read-only",
            capabilities=frozenset(),
            granted_scopes=frozenset(),
            resource_types=frozenset({"user", "role"}),
        )

    @hookimpl
    def discover_resources(self, tenant: Tenant, request: SyncRequest) -> Iterator[Resource]:
        yield Resource(
            type="role",
            id="2",
            display_name="Admin",
            entitlements=(
                Entitlement(
                    id="role:2:member",
                    resource_type="role",
                    resource_id="2",
                    slug="member",
                    display_name="Admin member",
                ),
            ),
        )
        for i in range(5):
            yield Resource(
                type="user",
                id=str(i),
                display_name=f"user {i}",
                status="enabled",
                profile={"login": f"u{i}"},
            )

    @hookimpl
    def sync_grants(self, tenant: Tenant, request: SyncRequest) -> Iterator[object]:
        for i in range(5):
            if self.fail_after is not None and i >= self.fail_after:
                raise SyncError("Coupa went away")
            yield (
                "not a grant"
                if self.bad_item
                else Grant(entitlement_id="role:2:member", principal_id=str(i))
            )


def _host_with(plugin: object) -> tuple[Host, Tenant]:
    host = Host()
    host.register(plugin, "fake")
    return host, Tenant(id="t1", plugins={"fake": {}})


def test_sync_streams_a_complete_run_into_the_snapshot(tmp_path: Path) -> None:
    host, tenant = _host_with(_FakePlugin())
    with SnapshotStore(tmp_path / "s.sqlite") as store:
        outcome = sync_tenant(host, tenant, "fake", store)
        [run] = store.runs("t1")
        assert (run.outcome, run.resources, run.entitlements, run.grants) == ("complete", 6, 1, 5)
        assert outcome.run_id == run.run_id and run.mode == "read-only"
        assert store.grants(run.run_id) == {("role:2:member", str(i)) for i in range(5)}


def test_a_failed_run_is_recorded_as_failed_and_keeps_no_rows(tmp_path: Path) -> None:
    host, tenant = _host_with(_FakePlugin(fail_after=3))
    with SnapshotStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(SyncError):
            sync_tenant(host, tenant, "fake", store)
        [run] = store.runs("t1")
        assert run.outcome == "failed" and "Coupa went away" in (run.error or "")
        assert store.grants(run.run_id) == set() and store.resources(run.run_id) == []


def test_the_host_rejects_objects_outside_the_contract(tmp_path: Path) -> None:
    host, tenant = _host_with(_FakePlugin(bad_item=True))
    with SnapshotStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(ContractViolation, match=r"'fake'.*yielded str"):
            sync_tenant(host, tenant, "fake", store)
        assert store.runs("t1")[0].outcome == "failed"
