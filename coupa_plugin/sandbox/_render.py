"""Render sandbox records the way Coupa does: JSON with kebab-case keys, or XML."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from xml.sax.saxutils import escape

from coupa_plugin.sandbox._query import kebab
from coupa_plugin.sandbox._state import ASSOCIATIONS, NEW_FLAGS, TenantState

__all__ = ["USER_SIMPLE_KEYS", "Renderer", "to_xml"]

_GROUP_SUMMARY: Final = (
    "id",
    "name",
    "description",
    "active",
    "can-approve",
    "open",
    "type",
    "mention-name",
    "created-at",
    "updated-at",
)
USER_SIMPLE_KEYS: Final = (
    "id",
    "login",
    "email",
    "firstname",
    "lastname",
    "fullname",
    "employee-number",
)


class Renderer:
    """Turns stored records into Coupa-shaped dicts, honouring ``fields`` selections."""

    def __init__(
        self,
        state: TenantState,
        *,
        hide_new_fields: bool,
        lacks: Mapping[str, frozenset[str]] | None = None,
        shown_flags: frozenset[str] = frozenset(),
    ) -> None:
        self.state = state
        self.hide_new_fields = hide_new_fields
        self.shown_flags = shown_flags  # shown unfiltered even when newer ones are hidden
        # table -> keys the tenant's schema does not have (never rendered)
        self.lacks: Mapping[str, frozenset[str]] = lacks or {}

    def strip(self, table: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """``record`` without the keys the tenant's schema lacks for ``table``."""
        lacking = self.lacks.get(table, frozenset())
        return {k: v for k, v in record.items() if k not in lacking}

    def user_simple(self, user_id: int | None) -> dict[str, Any] | None:
        user = self.state.users.get(user_id) if user_id is not None else None
        return None if user is None else {k: user.get(k) for k in USER_SIMPLE_KEYS}

    def group_summary(self, group: Mapping[str, Any]) -> dict[str, Any]:
        return {k: group.get(k) for k in _GROUP_SUMMARY}

    def related(self, user: Mapping[str, Any], association: str) -> list[dict[str, Any]]:
        """The records ``user`` is associated with through ``association`` (kebab name)."""
        state = self.state
        if association == "user-groups":
            ids = sorted(state.groups_of.get(user["id"], ()))
        else:
            ids = user[association]
        table: dict[int, dict[str, Any]] = getattr(state, ASSOCIATIONS[association])
        return [table[i] for i in ids if i in table]

    def user(self, user: Mapping[str, Any], fields: list[Any] | None = None) -> dict[str, Any]:  # noqa: C901 - one branch per kind of user field
        lacking = self.lacks.get("users", frozenset())
        if fields is None:
            out = {
                k: v
                for k, v in user.items()
                if k not in ASSOCIATIONS and k != "manager" and k not in lacking
            }
            if self.hide_new_fields:
                for flag in NEW_FLAGS - self.shown_flags:
                    out.pop(flag, None)
            for key in ("manager", "created-by", "updated-by"):
                out[key] = self.user_simple(user.get(key))
            for association in ASSOCIATIONS:
                out[association] = self._association(user, association, None)
            return out
        out = {}
        for item in fields:
            if isinstance(item, str):
                key = kebab(item)
                if key in ASSOCIATIONS:
                    out[key] = self._association(user, key, None)
                elif key in ("manager", "created-by", "updated-by"):
                    out[key] = self.user_simple(user.get(key))
                elif key in user and key not in lacking:
                    out[key] = user[key]
            else:
                for name, sub in item.items():
                    key = kebab(name)
                    if key in ASSOCIATIONS:
                        out[key] = self._association(
                            user, key, [kebab(s) for s in sub if isinstance(s, str)]
                        )
                    elif key in ("manager", "created-by", "updated-by"):
                        simple = self.user_simple(user.get(key))
                        out[key] = (
                            None
                            if simple is None
                            else {kebab(s): simple.get(kebab(s)) for s in sub if isinstance(s, str)}
                        )
        return out

    def _association(
        self, user: Mapping[str, Any], association: str, keys: list[str] | None
    ) -> list[dict[str, Any]]:
        table = ASSOCIATIONS[association]
        records = [self.strip(table, r) for r in self.related(user, association)]
        if keys is not None:
            return [{k: r.get(k) for k in keys if k in r} for r in records]
        if table == "user_groups":
            return [self.group_summary(r) for r in records]
        return records

    def user_group(
        self, group: Mapping[str, Any], fields: list[Any] | None = None
    ) -> dict[str, Any]:
        out = self.strip("user_groups", group)
        out["users"] = [
            self.user_simple(uid) for uid in sorted(self.state.members_of.get(group["id"], {}))
        ]
        out["content-groups"] = []
        return select_plain(out, fields)

    def membership(self, membership_id: int) -> dict[str, Any]:
        user_id, group_id = self.state.memberships[membership_id]
        group = self.state.user_groups.get(group_id, {})
        return {
            "id": membership_id,
            "user-id": user_id,
            "user-group-id": group_id,
            "user": self.user_simple(user_id),
            "user-group": self.group_summary(group) if group else None,
            "user-group-type": group.get("type"),
            "owner": False,
            "participant": True,
        }


def select_plain(record: dict[str, Any], fields: list[Any] | None) -> dict[str, Any]:
    """Apply a ``fields`` selection to a record without special associations."""
    if fields is None:
        return record
    out = {}
    for item in fields:
        if isinstance(item, str) and kebab(item) in record:
            out[kebab(item)] = record[kebab(item)]
        elif isinstance(item, dict):
            for name, sub in item.items():
                value = record.get(kebab(name))
                if isinstance(value, list):
                    out[kebab(name)] = [
                        {kebab(s): v.get(kebab(s)) for s in sub}
                        for v in value
                        if isinstance(v, dict)
                    ]
    return out


def _xml_value(name: str, value: Any) -> str:
    if value is None:
        return f'<{name} nil="true"/>'
    if isinstance(value, bool):
        return f'<{name} type="boolean">{"true" if value else "false"}</{name}>'
    if isinstance(value, int):
        return f'<{name} type="integer">{value}</{name}>'
    if isinstance(value, list):
        child = name[:-1] if name.endswith("s") else "item"
        return (
            f'<{name} type="array">' + "".join(_xml_value(child, v) for v in value) + f"</{name}>"
        )
    if isinstance(value, Mapping):
        return f"<{name}>" + "".join(_xml_value(k, v) for k, v in value.items()) + f"</{name}>"
    return f"<{name}>{escape(str(value))}</{name}>"


def to_xml(root: str, value: Any) -> bytes:
    """Coupa-style XML for a record or a list of records."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + _xml_value(root, value)).encode()
