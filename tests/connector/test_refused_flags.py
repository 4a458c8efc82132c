"""No silent gaps: a license flag Coupa refuses in ``fields=`` while its records carry it is
read another way, or the sync fails naming it."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest

from coupa_plugin.connector._mapping import entitlement_id
from coupa_plugin.host.errors import SyncError
from coupa_plugin.host.model import SyncRequest
from coupa_plugin.plugin import CoupaPlugin
from coupa_plugin.sandbox import CoupaSandbox, Operations, Quirks, generate_tenant
from coupa_plugin.sandbox._server import SandboxTransport
from tests.kit import VirtualTime, plugin_for, sync, tenant, truth_grants
from tests.sandbox_helpers import Raw

FLAG = "intake-user"


def refusing(**quirks: object) -> CoupaSandbox:
    return CoupaSandbox(
        generate_tenant(users=300, seed=11),
        quirks=Quirks(fields_refuse_flags=frozenset({FLAG}), **quirks),  # type: ignore[arg-type]
        operations=Operations(rate_limit=False),
    )


def holders(sandbox: CoupaSandbox) -> set[int]:
    return {uid for uid, user in sandbox.state.users.items() if user.get(FLAG) is True}


def rewriting(
    sandbox: CoupaSandbox, change: Callable[[httpx.Request], httpx.Request | None]
) -> CoupaPlugin:
    """A plugin whose requests pass ``change`` first (it may return a new request); a None
    answer means: strip the flag from the answer's records."""
    inner = SandboxTransport(sandbox)

    class Rewrite(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            changed = change(request)
            if changed is not None:
                return inner.handle_request(changed)
            response = inner.handle_request(request)
            rows = json.loads(response.read())
            for row in rows:
                row.pop(FLAG, None)
            return httpx.Response(response.status_code, json=rows, request=request)

    virtual = VirtualTime()
    return CoupaPlugin(
        transport_factory=lambda _s: Rewrite(), clock=virtual.clock, sleep=virtual.sleep
    )


def holder_read(request: httpx.Request) -> bool:
    return request.url.path == "/api/users" and "intake_user" in dict(request.url.params)


def test_the_sandbox_refuses_the_flag_in_fields_and_shows_it_in_records() -> None:
    sandbox = refusing(hide_new_fields=True)
    raw = Raw(sandbox)
    refused = raw.get("/api/users", fields='["id","intake_user"]')
    assert refused.status_code == 400 and "intake_user" in refused.text
    rows = raw.json("/api/users", limit=50)
    assert all(FLAG in row for row in rows), "unfiltered records carry it, hidden or not"


@pytest.mark.parametrize("hidden", [False, True])
def test_targeted_syncs_of_holders_equal_ground_truth(hidden: bool) -> None:
    sandbox = refusing(hide_new_fields=hidden)
    assert len(holders(sandbox)) >= 3, "the tenant has holders"
    some = [*sorted(holders(sandbox))[:3], 5, 250]
    request = SyncRequest(principal_ids=frozenset(map(str, some)))
    _, grants = sync(plugin_for(sandbox), tenant(), request)
    assert grants == truth_grants(sandbox.state, set(some))
    assert {(entitlement_id("license", FLAG), str(u)) for u in some[:3]} <= grants


def test_a_server_ignoring_the_holder_filter_still_gives_ground_truth() -> None:
    sandbox = refusing()

    def drop_filter(request: httpx.Request) -> httpx.Request:
        if not holder_read(request):
            return request
        query = [(k, v) for k, v in parse_qsl(request.url.query.decode()) if k != "intake_user"]
        url = request.url.copy_with(query=urlencode(query).encode())
        return httpx.Request(request.method, url, headers=request.headers)

    plugin = rewriting(sandbox, drop_filter)
    _, grants = sync(plugin, tenant())
    assert grants == truth_grants(sandbox.state)
    _, replayed = sync(plugin, tenant(), SyncRequest(resource_types=frozenset({"license"})))
    assert {g for g in replayed if FLAG in g[0]} == {g for g in grants if FLAG in g[0]}


def test_holders_that_cannot_be_read_fail_the_sync_naming_the_flag() -> None:
    sandbox = refusing()
    plugin = rewriting(sandbox, lambda r: None if holder_read(r) else r)
    with pytest.raises(SyncError, match="intake-user"):
        sync(plugin, tenant())
