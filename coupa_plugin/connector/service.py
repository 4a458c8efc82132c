"""One tenant's Coupa connector: the object behind the four hooks."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import httpx

from coupa_plugin.connector.journal import Journal, default_state_dir
from coupa_plugin.connector.provisioning import Provisioner
from coupa_plugin.connector.settings import CoupaSettings
from coupa_plugin.connector.sync import TenantSync
from coupa_plugin.coupa import (
    ClientConfig,
    CoupaAuthError,
    CoupaClient,
    CoupaError,
    ScopeError,
)
from coupa_plugin.coupa.client import GraphQLError, ScopeGrant
from coupa_plugin.coupa.scopes import ACCOUNT_GROUP_SCOPE
from coupa_plugin.host.errors import (
    AuthenticationError,
    ConfigurationError,
    PluginError,
    ReadOnlyError,
)
from coupa_plugin.host.model import (
    PROVISION_ACTIONS,
    ConnectorStatus,
    Grant,
    ProvisionRequest,
    ProvisionResult,
    Resource,
    SyncRequest,
)

__all__ = ["PLUGIN_NAME", "CoupaConnector"]

PLUGIN_NAME = "coupa"
log = logging.getLogger("coupa_plugin.connector")


class CoupaConnector:
    """Settings, client, status and sync state of one tenant."""

    def __init__(
        self,
        tenant_id: str,
        settings: CoupaSettings,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.settings = settings
        self.client = CoupaClient(
            ClientConfig(
                base_url=settings.base_url,
                client_id=settings.client_id,
                client_secret=settings.client_secret,
                mode=settings.mode,
                requests_per_second=settings.requests_per_second,
                max_in_flight=settings.max_in_flight,
                timeout_s=settings.timeout_s,
                tenant=tenant_id,
            ),
            transport,
        )
        self._lock = threading.Lock()
        self._status: ConnectorStatus | None = None
        self._sync: TenantSync | None = None
        self.provisioner = Provisioner(
            self.client,
            tenant_id,
            Journal(settings.state_dir or default_state_dir(), tenant_id),
            settings.protected_logins,
            self._grant_types,
        )

    def _grant_types(self) -> frozenset[str]:
        return self.configure().resource_types - {"user"}

    def close(self) -> None:
        self.client.close()

    # -- configure -------------------------------------------------------------------------

    def configure(self) -> ConnectorStatus:
        """Authenticate, detect scopes and decide the mode (once; later calls reuse it)."""
        with self._lock:
            if self._status is None:
                self._status = self._configure()
                self._sync = TenantSync(self.client, self.tenant_id, self._status.resource_types)
            return self._status

    def _configure(self) -> ConnectorStatus:
        try:
            grant = self.client.connect()
        except ScopeError as exc:
            raise ConfigurationError(f"tenant {self.tenant_id}: {exc}") from None
        except CoupaAuthError as exc:
            raise AuthenticationError(f"tenant {self.tenant_id}: {exc}") from None
        except CoupaError as exc:
            raise PluginError(
                f"tenant {self.tenant_id}: cannot reach Coupa at {self.settings.base_url}: {exc}"
            ) from None
        types, warnings = self._resource_types(grant)
        if "role" in types:
            warnings += self._check_role_catalog()
        capabilities = {"discover_resources", "sync_grants", "incremental_sync", "targeted_sync"}
        if grant.mode == "provisioning":
            capabilities |= {f"provision:{action}" for action in PROVISION_ACTIONS}
        status = ConnectorStatus(
            plugin=PLUGIN_NAME,
            tenant_id=self.tenant_id,
            mode=grant.mode,
            capabilities=frozenset(capabilities),
            granted_scopes=grant.scopes,
            resource_types=types,
            warnings=tuple(warnings),
        )
        log.info(
            "configured",
            extra={
                "tenant": self.tenant_id,
                "mode": grant.mode,
                "resource_types": ",".join(sorted(types)),
            },
        )
        return status

    def _resource_types(self, grant: ScopeGrant) -> tuple[frozenset[str], list[str]]:
        types = set(self.settings.resource_types)
        warnings = []
        if "account_group" in types and ACCOUNT_GROUP_SCOPE not in grant.scopes:
            types.discard("account_group")
            warnings.append(
                f"account groups are off: the OAuth client lacks {ACCOUNT_GROUP_SCOPE}; grant it "
                "to sync account groups"
            )
        if grant.mode == "read-only" and self.settings.mode == "auto":
            warnings.append(
                "read-only mode: the OAuth client lacks core.user.write, core.user_group.write "
                "or offline_access, so provisioning is off"
            )
        return frozenset(types), warnings

    def _check_role_catalog(self) -> list[str]:
        try:
            self.client.graphql('{ roles(query: "id[gt]=0") { id } }')
        except (GraphQLError, CoupaError) as exc:
            return [
                f"the role catalog (GraphQL) is unavailable ({str(exc)[:120]}); roles that "
                "nobody holds will be missing"
            ]
        return []

    @property
    def sync(self) -> TenantSync:
        self.configure()
        assert self._sync is not None
        return self._sync

    # -- hooks -----------------------------------------------------------------------------

    def discover_resources(self, request: SyncRequest) -> Iterator[Resource]:
        return self.sync.discover(request)

    def sync_grants(self, request: SyncRequest) -> Iterator[Grant]:
        return self.sync.grants(request)

    def provision(self, request: ProvisionRequest) -> ProvisionResult:
        if self.settings.mode == "read-only":
            raise ReadOnlyError(
                f"tenant {self.tenant_id} is configured read-only; nothing was sent"
            )
        status = self.configure()
        if status.mode != "provisioning":
            raise ReadOnlyError(
                f"tenant {self.tenant_id} runs in read-only mode (the OAuth client lacks the "
                "write scopes); nothing was sent"
            )
        return self.provisioner.provision(request)
