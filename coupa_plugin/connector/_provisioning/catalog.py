"""Catalog facts a provisioning call needs, kept per tenant so a call does not fetch them: which
roles exist and which are omnipotent (from GraphQL's role listing), which groups exist (one
look-up per id, the first time it is named). A fact older than ``ttl_s`` is read again; a role
id the listing lacks reads the listing again (a role created since), at most once per call."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

from coupa_plugin.connector._kinds import by_name
from coupa_plugin.coupa import CoupaClient, CoupaError, CoupaHTTPError, GraphQLError
from coupa_plugin.host.errors import NotFoundError, ProvisioningError

__all__ = ["Catalog"]

ADMIN_ROLE: Final = 2  # Coupa's Admin role, omnipotent when the listing cannot say
DEFAULT_TTL_S: Final = 900.0
_MAX_KNOWN: Final = 100_000


class Catalog:
    """Which catalog items exist, and which roles are omnipotent, for one tenant."""

    def __init__(
        self, client: CoupaClient, clock: Callable[[], float], *, ttl_s: float = DEFAULT_TTL_S
    ) -> None:
        self.client = client
        self._clock = clock
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._roles: dict[int, bool] | None = None  # id -> omnipotent; None: GraphQL refused
        self._roles_at: float | None = None
        self._known: dict[tuple[str, int], float] = {}  # (kind, id) -> when seen

    def _fresh(self, at: float | None) -> bool:
        return at is not None and self._clock() - at < self._ttl_s

    def _role_listing(self, *, again: bool = False) -> dict[int, bool] | None:
        """Role id -> omnipotent, or None when GraphQL cannot list roles here."""
        with self._lock:
            if not again and self._fresh(self._roles_at):
                return self._roles
        try:
            roles: dict[int, bool] | None = {r.id: r.omnipotent for r in self.client.roles()}
        except CoupaHTTPError as exc:
            if exc.status not in {401, 403, 404}:
                raise
            roles = None  # GraphQL itself is refused or absent here
        except GraphQLError:
            roles = None
        with self._lock:
            self._roles, self._roles_at = roles, self._clock()
        return roles

    def omnipotent_roles(self) -> set[int]:
        """Ids of roles with full system access (Admin when the listing cannot say)."""
        try:
            roles = self._role_listing()
        except CoupaError:
            return {ADMIN_ROLE}
        found = {ident for ident, omnipotent in (roles or {}).items() if omnipotent}
        return found or {ADMIN_ROLE}

    def require_exists(self, kind: str, target: int) -> None:
        """NotFoundError unless Coupa has ``target`` of ``kind``. Where Coupa cannot be asked
        (GraphQL refused), the write's read-back verifies instead."""
        try:
            exists = self._exists(kind, target)
        except CoupaError as exc:
            raise ProvisioningError(
                f"checking {kind} {target} failed: {exc}; nothing was written"
            ) from None
        if not exists:
            known = by_name(kind)
            raise NotFoundError(f"Coupa has no {known.label if known else kind} {target}")

    def _exists(self, kind: str, target: int) -> bool:
        if kind == "role":
            roles = self._role_listing()
            if roles is not None and target not in roles:
                roles = self._role_listing(again=True)  # created since the listing was read
            return roles is None or target in roles
        known = by_name(kind)
        path = known.item_path if known is not None else None
        if path is None:
            return True
        with self._lock:
            if self._fresh(self._known.get((kind, target))):
                return True
        found = self.client.exists(path, target)
        if found:
            with self._lock:
                if len(self._known) >= _MAX_KNOWN:
                    self._known.clear()
                self._known[(kind, target)] = self._clock()
        return found
