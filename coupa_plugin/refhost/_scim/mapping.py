"""Coupa, as the plugin reports it, to SCIM documents and back.

| SCIM | Coupa (the plugin's user profile / provision attributes) |
| --- | --- |
| ``id`` | the user id |
| ``userName`` | ``login`` |
| ``name.givenName`` / ``name.familyName`` | ``firstname`` / ``lastname`` |
| ``emails`` (the first) | ``email`` |
| ``active`` | ``active`` (``enable_account`` / ``disable_account``) |
| ``externalId`` | ``sso_identifier`` |
| enterprise ``employeeNumber`` | ``employee_number`` |
| enterprise ``manager.value`` | the manager's user id (written as the manager's ``login``) |
| Group ``id`` | the entitlement id (``role:2:member``) |
| Group ``displayName`` | a user group's name (``create_group`` / ``update_group``); "Kind: name" |
| Group ``members`` | the users holding it (``grant`` / ``revoke``) |
| Group ``externalId`` | kept by the facade in memory (Coupa has no field for it) |
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from coupa_plugin.host.model import Resource
from coupa_plugin.refhost._scim.directory import GroupEntry
from coupa_plugin.refhost._scim.schema import ENTERPRISE_SCHEMA, GROUP_SCHEMA, USER_SCHEMA

__all__ = [
    "MEMBER_OF",
    "WRITABLE",
    "current_attributes",
    "group_document",
    "user_document",
    "version_of",
    "wanted_attributes",
]

# the provision attributes the facade writes, as the user profile names them when read
WRITABLE: Final = {
    "login": "login",
    "firstname": "firstname",
    "lastname": "lastname",
    "email": "email",
    "employee_number": "employee_number",
    "sso_identifier": "sso_identifier",
    "manager": "manager_login",
}
MEMBER_OF: Final = "direct"


def version_of(document: Mapping[str, Any]) -> str:
    """A weak ETag that changes whenever the document does."""
    digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
    return f'W/"{digest[:20]}"'


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _meta(document: dict[str, Any], resource_type: str, **times: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceType": resource_type, "version": version_of(document)}
    meta.update({key: value for key, value in times.items() if value})
    return {**document, "meta": meta}


def user_document(user: Resource, groups: Iterable[GroupEntry]) -> dict[str, Any]:
    """The SCIM User of a Coupa user."""
    p = user.profile
    document: dict[str, Any] = {
        "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
        "id": user.id,
        "userName": p.get("login"),
        "displayName": user.display_name,
        "active": bool(p.get("active")),
    }
    name = {
        "givenName": _text(p.get("firstname")),
        "familyName": _text(p.get("lastname")),
    }
    document["name"] = {k: v for k, v in name.items() if v}
    if _text(p.get("email")):
        document["emails"] = [{"value": p["email"], "type": "work"}]
    if _text(p.get("sso_identifier")):
        document["externalId"] = p["sso_identifier"]
    member_of = [
        {
            "value": g.entitlement.id,
            "$ref": f"Groups/{g.entitlement.id}",
            "display": g.display_name,
            "type": MEMBER_OF,
        }
        for g in groups
    ]
    if member_of:
        document["groups"] = member_of
    enterprise: dict[str, Any] = {}
    if _text(p.get("employee_number")):
        enterprise["employeeNumber"] = p["employee_number"]
    manager_id = _text(p.get("manager_id"))
    if manager_id:
        enterprise["manager"] = {"value": manager_id, "$ref": f"Users/{manager_id}"}
    if enterprise:
        document[ENTERPRISE_SCHEMA] = enterprise
    return _meta(
        document,
        "User",
        created=_text(p.get("created_at")),
        lastModified=_text(p.get("updated_at")),
    )


def group_document(
    entry: GroupEntry,
    members: Iterable[str] | None,
    listed: frozenset[str] | None = None,
    external_id: str | None = None,
) -> dict[str, Any]:
    """The SCIM Group of a Coupa entitlement; ``members`` are the holders' user ids (``None``
    leaves the members out). ``listed`` keeps only those members in the document, whose
    version stays the whole group's. ``external_id`` is the client's id for the group."""
    document: dict[str, Any] = {
        "schemas": [GROUP_SCHEMA],
        "id": entry.entitlement.id,
        "displayName": entry.display_name,
    }
    if external_id:
        document["externalId"] = external_id
    if members is not None:
        document["members"] = [
            {"value": uid, "$ref": f"Users/{uid}", "type": "User"}
            for uid in sorted(members, key=lambda m: (len(m), m))
        ]
    document = _meta(document, "Group")
    if listed is not None and members is not None:
        document["members"] = [m for m in document["members"] if m["value"] in listed]
    return document


def current_attributes(user: Resource) -> dict[str, Any]:
    """The writable attributes of a user as the plugin last read them."""
    return {name: _text(user.profile.get(key)) for name, key in WRITABLE.items()}


def _email(emails: Any) -> str | None:
    """The first address: Coupa holds one (``primary`` is not kept, so not sent along)."""
    if not isinstance(emails, list) or not emails or not isinstance(emails[0], dict):
        return None
    return _text(emails[0].get("value"))


def wanted_attributes(document: Mapping[str, Any], manager_login: str | None) -> dict[str, Any]:
    """The provision attributes a SCIM User asks for (``None``: cleared or not given)."""
    name = document.get("name") or {}
    enterprise = document.get(ENTERPRISE_SCHEMA) or {}
    return {
        "login": _text(document.get("userName")),
        "firstname": _text(name.get("givenName")),
        "lastname": _text(name.get("familyName")),
        "email": _email(document.get("emails")),
        "employee_number": _text(enterprise.get("employeeNumber")),
        "sso_identifier": _text(document.get("externalId")),
        "manager": manager_login,
    }


def manager_id_of(document: Mapping[str, Any]) -> str | None:
    enterprise = document.get(ENTERPRISE_SCHEMA) or {}
    manager = enterprise.get("manager") or {}
    return _text(manager.get("value")) if isinstance(manager, dict) else None
