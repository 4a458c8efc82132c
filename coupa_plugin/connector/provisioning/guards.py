"""Refusals checked before any write, by every path that writes (recovery included)."""

from __future__ import annotations

from typing import Final

from coupa_plugin.connector.provisioning.facts import TenantFacts
from coupa_plugin.coupa import CoupaClient, CoupaError, CoupaHTTPError
from coupa_plugin.coupa.errors import GraphQLError
from coupa_plugin.coupa.models import User
from coupa_plugin.host.errors import NotFoundError, ProvisioningError, RefusedError

__all__ = ["Guards"]

_ADMIN_ROLE: Final = 2
# entitlement type -> the listing that shows one item by id
_ITEM_PATHS: Final = {
    "group": "user_groups",
    "approval_group": "user_groups",
    "content_group": "business_groups",
    "account_group": "account_groups",
}


class Guards:
    """Protected accounts, the integration's own API user and the last omnipotent holder."""

    def __init__(
        self,
        client: CoupaClient,
        facts: TenantFacts,
        protected_logins: frozenset[str],
        integration_login: str | None,
    ) -> None:
        self.client = client
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

    def omnipotent_roles(self) -> set[int]:
        """Ids of roles with full system access (from the role catalog; Admin by default)."""
        try:
            return {role.id for role in self.client.roles() if role.omnipotent} or {_ADMIN_ROLE}
        except (GraphQLError, CoupaError):
            return {_ADMIN_ROLE}

    def last_admin(self, user: User, losing: set[int]) -> str | None:
        """Why ``user`` may not lose ``losing`` (the last active holder of an omnipotent role
        among them), or None. A holder Coupa cannot confirm counts as missing."""
        for role_id in sorted(losing & self.omnipotent_roles()):
            try:
                others = self.client.get(
                    "/api/users",
                    {
                        "roles[id]": role_id,
                        "active": "true",
                        "id[not_eq]": user.id,
                        "limit": 50,
                        "fields": '["id","active",{"roles":["id"]}]',
                    },
                )
            except CoupaError as exc:
                return (
                    f"cannot confirm that another active user holds omnipotent role {role_id} "
                    f"({str(exc)[:160]})"
                )
            # the filters are checked here too: a server that ignored them must not make an
            # arbitrary user look like another admin
            if not isinstance(others, list) or not any(
                isinstance(o, dict)
                and o.get("id") != user.id
                and o.get("active") is True
                and any(
                    isinstance(r, dict) and r.get("id") == role_id for r in o.get("roles") or []
                )
                for o in others
            ):
                return (
                    f"user {user.id} ({user.login}) is the last active holder of "
                    f"omnipotent role {role_id}"
                )
        return None

    def refuse_last_admin(self, user: User, losing: set[int]) -> None:
        if why := self.last_admin(user, losing):
            raise RefusedError(f"refused: {why}; nothing was written")

    def require_exists(self, kind: str, target: int) -> None:
        path = _ITEM_PATHS.get(kind)
        try:
            if kind == "role":
                data = self.client.graphql(f"{{ role(id: {target}) {{ id }} }}")
                exists = bool(data.get("role"))
            elif path is not None:
                exists = isinstance(
                    self.client.get(f"/api/{path}/{target}", {"fields": '["id"]'}), dict
                )
            else:
                exists = True
        except CoupaHTTPError as exc:
            if kind == "role" and exc.status in {401, 403, 404}:
                # GraphQL itself is refused or absent here (its own answer for an unknown
                # role is a null): the read-back verifies instead, as the sync lists held roles
                exists = True
            elif exc.status != 404:
                raise ProvisioningError(
                    f"checking {kind} {target} failed: {exc}; nothing was written"
                ) from None
            else:
                exists = False
        except GraphQLError:
            exists = True  # no role lookup on this tenant: the read-back verifies instead
        except CoupaError as exc:
            raise ProvisioningError(
                f"checking {kind} {target} failed: {exc}; nothing was written"
            ) from None
        if not exists:
            raise NotFoundError(f"Coupa has no {kind.replace('_', ' ')} {target}")
