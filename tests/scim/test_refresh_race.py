"""A write made while a background full read streams is not undone when that read replaces
the facade's copy: the written user is read again at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import httpx

from coupa_plugin.host import model as m
from coupa_plugin.host.spec import hookimpl
from coupa_plugin.plugin import CoupaPlugin
from coupa_plugin.refhost._manager import Host
from coupa_plugin.refhost._scim.server import ScimFacade
from coupa_plugin.sandbox import CoupaSandbox
from tests.kit import plugin_for, tenant
from tests.scim.conftest import TOKEN
from tests.scim.messages import patch


class _Interleaving:
    """The Coupa plugin, with ``during`` run once a full read has streamed ``after`` users."""

    def __init__(self, inner: CoupaPlugin, after: int) -> None:
        self.inner = inner
        self.after = after
        self.during: list[Callable[[list[str]], None]] = []

    @hookimpl
    def configure(self, tenant: m.Tenant) -> m.ConnectorStatus | None:
        return self.inner.configure(tenant=tenant)

    @hookimpl
    def discover_resources(
        self, tenant: m.Tenant, request: m.SyncRequest
    ) -> Iterable[m.Resource] | None:
        found = self.inner.discover_resources(tenant=tenant, request=request)
        if found is None or request.principal_ids is not None or not self.during:
            return found
        return self._interleaved(found, self.during.pop())

    def _interleaved(
        self, found: Iterable[m.Resource], during: Callable[[list[str]], None]
    ) -> Iterator[m.Resource]:
        streamed: list[str] = []
        for resource in found:
            if len(streamed) == self.after:
                during(streamed)
            streamed.append(resource.id)
            yield resource

    @hookimpl
    def sync_grants(self, tenant: m.Tenant, request: m.SyncRequest) -> Iterable[m.Grant] | None:
        return self.inner.sync_grants(tenant=tenant, request=request)

    @hookimpl
    def provision(self, tenant: m.Tenant, request: m.ProvisionRequest) -> m.ProvisionResult | None:
        return self.inner.provision(tenant=tenant, request=request)


def test_a_write_during_a_full_read_survives_it(sandbox: CoupaSandbox, tmp_path: Path) -> None:
    plugin = _Interleaving(plugin_for(sandbox), after=8)
    host = Host()
    host.register(plugin, "coupa")
    t = tenant("scim", mode="provisioning", state_dir=str(tmp_path))
    with (
        ScimFacade(host.hooks(t, "coupa"), TOKEN) as facade,
        httpx.Client(base_url=str(facade.url), headers={"Authorization": f"Bearer {TOKEN}"}) as c,
    ):

        def rename(streamed: list[str]) -> None:
            assert "5" in streamed  # the full read already holds user 5 as it was
            renamed = c.patch(
                "/Users/5", json=patch({"op": "replace", "path": "name.familyName", "value": "New"})
            )
            assert renamed.status_code == 204, renamed.text

        plugin.during.append(rename)
        facade.directory.refresh_all()
        assert plugin.during == []  # the write ran inside the full read
        assert c.get("/Users/5").json()["name"]["familyName"] == "New"
    assert sandbox.state.users[5]["lastname"] == "New"
