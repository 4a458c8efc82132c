"""User-group memberships and content groups through Coupa's per-item endpoints, with the
whole-list rewrite as the fallback where an endpoint does not exist."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Literal

from coupa_plugin.connector._kinds import EntitlementKind
from coupa_plugin.connector._provisioning.lists import ListWriter
from coupa_plugin.connector._provisioning.session import UserSession, ids_of
from coupa_plugin.coupa import CoupaError, CoupaHTTPError, User, UserList

__all__ = ["PerItem"]

log = logging.getLogger("coupa_plugin.connector.provisioning")


class _NoRoute(Exception):
    """Internal: Coupa has no per-item route for this change (the list write must do)."""


class PerItem:
    """Per-item writes for ``group`` and ``content_group`` entitlements."""

    def __init__(self, lists: ListWriter) -> None:
        self.lists = lists

    def change(
        self,
        s: UserSession,
        kind: EntitlementKind,
        target: int,
        *,
        granting: bool,
        before: set[int],
    ) -> set[int]:
        """Add or remove ``target`` through the kind's own route; returns the list as read back
        afterwards."""
        attribute, key = kind.attribute, kind.put_key
        assert attribute is not None  # a per-item kind is one of the user's lists
        assert key is not None
        try:
            if kind.writes == "membership":
                user = self._membership(s, target, attribute, granting=granting)
            else:
                user = self._business_group(s, target, attribute, granting=granting)
        except _NoRoute:
            log.info(
                "per-item endpoint unavailable; writing the user's list",
                extra={"user": s.user_id, "kind": kind.name},
            )
            desired = before | {target} if granting else before - {target}
            return self.lists.change(s, key, before, desired)
        return ids_of(user, attribute)

    @staticmethod
    def _no_route(exc: CoupaHTTPError, *, granting: bool) -> bool:
        # a missing route (404/405), or a DELETE Coupa does not support through the API (400:
        # its docs say deleting is not supported; R39 declares 200/201/400/404)
        return exc.status in {404, 405} or (exc.status == 400 and not granting)

    @staticmethod
    def _sender(
        s: UserSession, line: str, call: Callable[[], object], *, granting: bool
    ) -> Callable[[], CoupaError | None]:
        """One send of a per-item write for :meth:`UserSession.write`: the error Coupa
        answered with, or None. A first send refused as a missing route raises ``_NoRoute``."""
        sends = 0

        def send() -> CoupaError | None:
            nonlocal sends
            sends += 1
            try:
                call()
            except CoupaHTTPError as exc:
                if sends == 1 and PerItem._no_route(exc, granting=granting):
                    raise _NoRoute from None
                s.record(f"{line} (Coupa answered: {str(exc)[:160]})")
                return exc
            except CoupaError as exc:  # may have landed: the read tells
                s.record(f"{line} (Coupa answered: {str(exc)[:160]})")
                return exc
            s.record(line)
            return None

        return send

    def _membership(
        self, s: UserSession, group_id: int, attribute: UserList, *, granting: bool
    ) -> User:
        """User-group membership through the per-item membership API."""
        uid, client = s.user_id, s.client
        if granting:
            line = f"added user {uid} to user group {group_id} (POST /api/user_group_memberships)"
            send = self._sender(
                s, line, lambda: client.add_membership(uid, group_id), granting=True
            )
            return s.write(send, lambda u: group_id in ids_of(u, attribute), line)
        try:
            found = [
                m
                for m in client.memberships(user_id=uid, group_id=group_id)
                if m.user_id == uid and m.user_group_id == group_id
            ]
        except CoupaHTTPError as exc:
            if self._no_route(exc, granting=False):
                raise _NoRoute from None
            raise s.failure(f"listing the memberships of user {uid} failed: {exc}") from None
        except CoupaError as exc:
            raise s.failure(f"listing the memberships of user {uid} failed: {exc}") from None
        if not found:
            raise _NoRoute  # the membership is not a record here: the list write must do
        user: User | None = None
        for membership in found:
            path = f"/api/user_group_memberships/{membership.id}"
            line = f"removed user {uid} from user group {group_id} (DELETE {path})"
            send = self._sender(
                s, line, partial(client.delete_membership, membership.id), granting=False
            )
            user = s.write(send, lambda u: group_id not in ids_of(u, attribute), line)
        assert user is not None
        return user

    def _business_group(
        self, s: UserSession, group_id: int, attribute: UserList, *, granting: bool
    ) -> User:
        """Content groups through the per-user add/remove routes."""
        action: Literal["add", "remove"] = "add" if granting else "remove"
        line = (
            f"{action} content group {group_id} for user {s.user_id} "
            f"(PUT /api/users/{s.user_id}/business_groups/{group_id}/{action})"
        )
        send = self._sender(
            s,
            line,
            partial(s.client.business_group, s.user_id, group_id, action),
            granting=granting,
        )
        return s.write(send, lambda u: (group_id in ids_of(u, attribute)) == granting, line)
