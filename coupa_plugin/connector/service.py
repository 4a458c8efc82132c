"""One tenant's Coupa connector: the object behind the four hooks."""

from __future__ import annotations

from collections.abc import Iterator

from coupa_plugin.connector.settings import CoupaSettings
from coupa_plugin.host.errors import PluginError
from coupa_plugin.host.model import (
    ConnectorStatus,
    Grant,
    ProvisionRequest,
    ProvisionResult,
    Resource,
    SyncRequest,
)

__all__ = ["CoupaConnector"]


class CoupaConnector:
    """Settings, client and status of one tenant."""

    def __init__(self, tenant_id: str, settings: CoupaSettings) -> None:
        self.tenant_id = tenant_id
        self.settings = settings

    def close(self) -> None:
        pass

    def configure(self) -> ConnectorStatus:
        raise PluginError("the Coupa client is not wired in yet")

    def discover_resources(self, request: SyncRequest) -> Iterator[Resource]:
        raise PluginError("the Coupa client is not wired in yet")

    def sync_grants(self, request: SyncRequest) -> Iterator[Grant]:
        raise PluginError("the Coupa client is not wired in yet")

    def provision(self, request: ProvisionRequest) -> ProvisionResult:
        raise PluginError("the Coupa client is not wired in yet")
