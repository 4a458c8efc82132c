"""User-group memberships and content groups through Coupa's per-item endpoints, with the
whole-list rewrite as the fallback where an endpoint does not exist."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from coupa_plugin.connector.provisioning.lists import ListWriter
from coupa_plugin.connector.provisioning.session import LIST_KEYS, UserSession
from coupa_plugin.coupa import (
    CoupaError,
    CoupaHTTPError,
    CoupaResponseError,
    CoupaTransportError,
)

__all__ = ["PerItem"]

log = logging.getLogger("coupa_plugin.connector.provisioning")


class PerItem:
    """Per-item writes for ``group`` and ``content_group`` entitlements."""

    def __init__(self, lists: ListWriter) -> None:
        self.lists = lists

    def change(
        self, s: UserSession, kind: str, target: int, *, granting: bool, before: set[int]
    ) -> None:
        write: Callable[[], None] = (
            (lambda: self._membership(s, target, granting=granting))
            if kind == "group"
            else (lambda: self._business_group(s, target, granting=granting))
        )
        try:
            write()
        except CoupaHTTPError as exc:
            # a missing route (404/405), or a DELETE Coupa does not support through the API
            # (400: its docs say deleting is not supported; R39 declares 200/201/400/404)
            if not (exc.status in {404, 405} or (exc.status == 400 and not granting)):
                raise s.failure(
                    f"changing {kind} {target} of user {s.user_id} failed: {exc}", sent=True
                ) from None
            log.info(
                "per-item endpoint unavailable; writing the user's list",
                extra={"user": s.user_id, "kind": kind},
            )
            key = LIST_KEYS[kind][0]
            desired = before | {target} if granting else before - {target}
            self.lists.change(s, key, before, desired)
        except CoupaError as exc:
            raise s.failure(
                f"changing {kind} {target} of user {s.user_id} failed: {exc}", sent=True
            ) from None

    @staticmethod
    def _membership(s: UserSession, group_id: int, *, granting: bool) -> None:
        """User-group membership through the per-item membership API."""
        uid, client = s.user_id, s.client
        if granting:
            line = f"added user {uid} to user group {group_id} (POST /api/user_group_memberships)"
            try:
                client.add_membership(uid, group_id)
            except (CoupaTransportError, CoupaResponseError):
                pass  # may have been applied (or answered oddly after the write): read back
            except CoupaHTTPError as exc:
                if exc.status == 404 or group_id not in s.current("user_groups"):
                    raise
            s.record(line)
            return
        found = [
            m
            for m in client.memberships(user_id=uid, group_id=group_id)
            if m.user_id == uid and m.user_group_id == group_id
        ]
        if not found:
            raise CoupaHTTPError("GET", "/api/user_group_memberships", 404, "no membership record")
        for membership in found:
            client.delete_membership(membership.id)
            s.record(
                f"removed user {uid} from user group {group_id} "
                f"(DELETE /api/user_group_memberships/{membership.id})"
            )

    @staticmethod
    def _business_group(s: UserSession, group_id: int, *, granting: bool) -> None:
        """Content groups through the per-user add/remove routes."""
        action: Literal["add", "remove"] = "add" if granting else "remove"
        s.client.business_group(s.user_id, group_id, action)
        s.record(
            f"{action} content group {group_id} for user {s.user_id} "
            f"(PUT /api/users/{s.user_id}/business_groups/{group_id}/{action})"
        )
