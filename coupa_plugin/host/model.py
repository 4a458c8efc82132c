"""Data exchanged between host and plugins (host contract v1).

All classes are frozen attrs classes whose fields can be given by keyword. Mappings default to
empty dicts and tuples to empty tuples, so a plugin only names what it knows.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import attrs

__all__ = [
    "PROVISION_ACTIONS",
    "PROVISION_STATUSES",
    "ConnectorStatus",
    "Entitlement",
    "Grant",
    "ProvisionRequest",
    "ProvisionResult",
    "Resource",
    "SyncRequest",
    "Tenant",
    "section_enabled",
]

PROVISION_ACTIONS: Final = frozenset(
    {
        "grant",
        "revoke",
        "create_account",
        "update_account",
        "enable_account",
        "disable_account",
        "create_group",
        "update_group",
        "deactivate_group",
    }
)
PROVISION_STATUSES: Final = frozenset({"applied", "unchanged", "planned"})
_NEEDS_ENTITLEMENT: Final = frozenset({"grant", "revoke", "update_group", "deactivate_group"})
_NEEDS_PRINCIPAL: Final = frozenset(
    {"grant", "revoke", "update_account", "enable_account", "disable_account"}
)


def section_enabled(section: object) -> bool:
    """Whether a plugin's settings section leaves the plugin on for the tenant: every section
    does except one that says ``enabled = false`` (exactly ``False``; a section that is not a
    mapping is on, and its plugin reports it as a configuration error)."""
    return not (isinstance(section, Mapping) and section.get("enabled", True) is False)


@attrs.frozen(kw_only=True, repr=False)
class Tenant:
    """One customer organisation and its per-plugin settings sections.

    ``plugins[name]`` is the settings section of the plugin registered as ``name``. Settings
    hold secrets, so the repr names the plugins but never shows a value.
    """

    id: str
    plugins: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)

    def __repr__(self) -> str:
        return f"Tenant(id={self.id!r}, plugins={sorted(self.plugins)!r})"

    __str__ = __repr__


@attrs.frozen(kw_only=True)
class SyncRequest:
    """What a sync should cover. ``None`` in a field means everything."""

    resource_types: frozenset[str] | None = None
    since: datetime | None = None
    principal_ids: frozenset[str] | None = None


@attrs.frozen(kw_only=True)
class Entitlement:
    """Something a principal can hold on a resource; id is ``"{type}:{id}:{slug}"``."""

    id: str
    resource_type: str
    resource_id: str
    slug: str
    display_name: str
    description: str | None = None
    grantable_to: frozenset[str] = frozenset({"user"})


@attrs.frozen(kw_only=True)
class Resource:
    """A governable object: a user account, a group, a role, a license, ..."""

    type: str
    id: str
    display_name: str
    description: str | None = None
    status: str | None = None
    profile: Mapping[str, Any] = attrs.field(factory=dict)
    entitlements: tuple[Entitlement, ...] = ()


@attrs.frozen(kw_only=True)
class Grant:
    """A principal (always a user) holds an entitlement."""

    entitlement_id: str
    principal_id: str


@attrs.frozen(kw_only=True)
class ProvisionRequest:
    """One change of access asked of a plugin.

    ``action`` is one of :data:`PROVISION_ACTIONS`:

    * ``grant`` / ``revoke``: ``entitlement_id`` to or from the user ``principal_id``;
    * ``create_account`` (``attributes``), ``update_account``, ``enable_account``,
      ``disable_account`` (``principal_id``): a user account;
    * ``create_group``: a new group, ``attributes`` ``name`` and optional ``description``; the
      result's ``entitlement_id`` is the new group's membership entitlement
      (``group:17:member``);
    * ``update_group``: ``entitlement_id`` of a group, ``attributes`` ``name`` and/or
      ``description``;
    * ``deactivate_group``: ``entitlement_id`` of a group. Where the application deletes
      nothing (Coupa), the group is deactivated and stays listed as disabled. Kinds the
      application does not let be created or deleted (roles, licenses, ...) are refused with
      ``RefusedError``.
    """

    action: str
    entitlement_id: str | None = None
    principal_id: str | None = None
    attributes: Mapping[str, Any] = attrs.field(factory=dict)
    dry_run: bool = False

    def problems(self) -> list[str]:
        """What makes this request malformed (empty when it is well formed)."""
        found: list[str] = []
        if self.action not in PROVISION_ACTIONS:
            found.append(
                f"unknown action {self.action!r} (expected one of {sorted(PROVISION_ACTIONS)})"
            )
        if self.action in _NEEDS_ENTITLEMENT and not self.entitlement_id:
            found.append(f"action {self.action!r} needs entitlement_id")
        if self.action in _NEEDS_PRINCIPAL and not self.principal_id:
            found.append(f"action {self.action!r} needs principal_id")
        return found


@attrs.frozen(kw_only=True)
class ProvisionResult:
    """What a provision call did: ``applied``, ``unchanged`` or ``planned`` (dry run).

    ``principal_id`` is the user acted on; ``entitlement_id`` the group acted on by
    ``create_group`` (the new group's entitlement), ``update_group`` and ``deactivate_group``
    (``None`` for the other actions and for a planned ``create_group``).
    """

    status: str
    grants: tuple[Grant, ...] = ()
    changes: tuple[str, ...] = ()
    message: str = ""
    principal_id: str | None = None
    entitlement_id: str | None = None


@attrs.frozen(kw_only=True)
class ConnectorStatus:
    """The outcome of ``configure``: the mode a tenant runs in and what it can do."""

    plugin: str
    tenant_id: str
    mode: str
    capabilities: frozenset[str]
    granted_scopes: frozenset[str]
    resource_types: frozenset[str]
    warnings: tuple[str, ...] = ()
