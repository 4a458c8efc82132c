"""Every log record the plugin causes names its tenant, stamina's retries included."""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import stamina
import stamina.instrumentation as instrumentation

from coupa_plugin.connector._service import CONNECTOR_LOGGERS
from coupa_plugin.coupa._logs import COUPA_LOGGERS, TenantFilter, route_retries, tenant_context
from coupa_plugin.host.errors import PluginError, SyncError
from coupa_plugin.host.model import ProvisionRequest, SyncRequest
from coupa_plugin.sandbox import CoupaSandbox, Operations, Quirks, generate_tenant
from tests.kit import plugin_for, tenant

PACKAGE = Path(__file__).resolve().parents[2] / "coupa_plugin"


def plugin_records(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    """The records of the plugin itself and of the libraries it drives (not the sandbox's:
    the sandbox plays Coupa)."""
    return [
        r
        for r in records
        if r.name == "stamina"
        or (r.name.startswith("coupa_plugin.") and not r.name.startswith("coupa_plugin.sandbox"))
    ]


def test_every_record_of_a_faulty_sync_and_provision_names_its_tenant(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    sandbox = CoupaSandbox(
        generate_tenant(users=300, seed=2),
        quirks=Quirks(list_put="merge"),  # provisioning logs what it learns: no tenant given
        operations=Operations(
            rate_limit=False, error_rate=0.15, drop_rate=0.05, seed=4, token_ttl_s=5.0
        ),
    )
    plugin = plugin_for(sandbox)
    t = tenant("faulty", state_dir=str(tmp_path))
    caplog.set_level(logging.DEBUG)
    for request in (SyncRequest(), SyncRequest(principal_ids=frozenset({"3", "4"}))):
        try:
            list(plugin.discover_resources(tenant=t, request=request) or [])
            list(plugin.sync_grants(tenant=t, request=request) or [])
        except SyncError:
            pass  # a fault beyond the retry budget: the records still count
    for action in ("grant", "revoke"):
        with contextlib.suppress(PluginError):  # a fault may fail the call; records count
            plugin.provision(
                tenant=t,
                request=ProvisionRequest(
                    action=action, entitlement_id="role:5:member", principal_id="7"
                ),
            )
    plugin.close()
    records = plugin_records(caplog.records)
    messages = {r.getMessage() for r in records}
    assert "retry scheduled" in messages, "the faults made retries: the test saw them"
    assert "token minted" in messages
    assert "connector closed" in messages
    assert any(r.name == "coupa_plugin.connector.provisioning" for r in records)
    unnamed = [(r.name, r.getMessage()) for r in records if getattr(r, "tenant", None) != "faulty"]
    assert unnamed == []
    assert not [r for r in records if r.name == "stamina"], "no bare stamina line"


def test_a_retry_outside_any_tenant_still_reaches_the_hooks_set_before() -> None:
    seen: list[str] = []

    def host_hook(details: instrumentation.RetryDetails) -> None:
        seen.append(details.name)

    before = instrumentation.get_on_retry_hooks()
    instrumentation.set_on_retry_hooks([host_hook])
    try:
        route_retries()
        route_retries()  # once is enough: not stacked twice
        calls = 0

        @stamina.retry(on=ValueError, attempts=2)
        def flaky() -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise ValueError("once")

        flaky()
        assert len(seen) == 1, "the host's retry went to the host's hook, once"
        with tenant_context("acme"):
            calls = 0
            flaky()
        assert len(seen) == 2, "a tenant's retry reaches the host's other hooks too"
    finally:
        instrumentation.set_on_retry_hooks(before)


def test_every_logger_of_the_plugin_names_the_tenant() -> None:
    names = set()
    for path in PACKAGE.rglob("*.py"):
        if {"sandbox", "refhost", "testing"} & set(path.relative_to(PACKAGE).parts):
            continue
        names |= set(re.findall(r'getLogger\("([^"]+)"\)', path.read_text()))
    assert names, "the scan found the package's loggers"
    covered = set(COUPA_LOGGERS) | set(CONNECTOR_LOGGERS)
    assert names <= covered, names - covered
    for name in covered:
        assert any(isinstance(f, TenantFilter) for f in logging.getLogger(name).filters), name


def test_a_record_naming_its_own_tenant_keeps_it() -> None:
    record: Any = logging.LogRecord("coupa_plugin.coupa", logging.INFO, "", 0, "m", None, None)
    record.tenant = "own"
    with tenant_context("outer"):
        TenantFilter().filter(record)
    assert record.tenant == "own"
