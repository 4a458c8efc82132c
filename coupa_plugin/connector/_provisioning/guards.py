"""Refusals checked before any write, by every path that writes (recovery included)."""

from __future__ import annotations

from coupa_plugin.connector._provisioning.catalog import Catalog
from coupa_plugin.connector._provisioning.facts import TenantFacts
from coupa_plugin.coupa import CoupaClient, CoupaError, User
from coupa_plugin.host.errors import RefusedError

__all__ = ["Guards"]


class Guards:
    """Protected accounts, the integration's own API user and the last omnipotent holder."""

    def __init__(
        self,
        client: CoupaClient,
        facts: TenantFacts,
        catalog: Catalog,
        protected_logins: frozenset[str],
        integration_login: str | None,
    ) -> None:
        self.client = client
        self.catalog = catalog
        self.facts = facts
        self.protected_logins = protected_logins
        self.integration_login = integration_login

    def protected(self, user: User) -> str | None:
        """Why ``user`` must never be changed, or None."""
        login = user.login.lower()
        if login in self.protected_logins:
            return f"user {user.id} ({user.login}) is listed in protected_logins"
        if self.integration_login is not None and login == self.integration_login:
            return (
                f"user {user.id} ({user.login}) is the integration's API user (integration_login)"
            )
        if user.id == self.facts.own_user_id:
            return f"user {user.id} ({user.login}) is the API user this integration writes as"
        return None

    def refuse_protected(self, user: User) -> None:
        if why := self.protected(user):
            raise RefusedError(f"refused: {why}; nothing was written")

    def refuse_login(self, login: str) -> None:
        lowered = login.lower()
        if lowered in self.protected_logins or lowered == self.integration_login:
            raise RefusedError(
                f"refused: login {login} is protected (protected_logins or integration_login); "
                "nothing was written"
            )

    def last_admin(self, user: User, losing: set[int]) -> str | None:
        """Why ``user`` may not lose ``losing`` (the last active holder of an omnipotent role
        among them), or None. A holder Coupa cannot confirm counts as missing."""
        for role_id in sorted(losing & self.catalog.omnipotent_roles()):
            try:
                others = self.client.other_active_holders(role_id, user.id)
            except CoupaError as exc:
                return (
                    f"cannot confirm that another active user holds omnipotent role {role_id} "
                    f"({str(exc)[:160]})"
                )
            if not others:
                return (
                    f"user {user.id} ({user.login}) is the last active holder of "
                    f"omnipotent role {role_id}"
                )
        return None

    def refuse_last_admin(self, user: User, losing: set[int]) -> None:
        if why := self.last_admin(user, losing):
            raise RefusedError(f"refused: {why}; nothing was written")
