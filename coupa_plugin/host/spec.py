"""Hook specifications of the IGA host (host contract v1).

This module is the hook reference for integrators. A host builds its plugin manager like this::

    import pluggy
    from coupa_plugin.host.spec import HostSpec

    pm = pluggy.PluginManager("iga")
    pm.add_hookspecs(HostSpec)
    pm.load_setuptools_entrypoints("iga.plugins")   # registers the Coupa plugin as "coupa"
    pm.check_pending()

and calls every hook with keyword arguments only. A plugin implements a hook by decorating a
method (or function) of the same name with :data:`hookimpl`. An implementation may accept a
subset of the arguments; it must not give them default values (pluggy never passes those).

Every hook returns ``None`` for a tenant whose ``plugins`` mapping has no section for the plugin,
or whose section says ``enabled = false``.
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from coupa_plugin.host.model import (
    ConnectorStatus,
    Grant,
    ProvisionRequest,
    ProvisionResult,
    Resource,
    SyncRequest,
    Tenant,
)

__all__ = ["ENTRY_POINT_GROUP", "HOOK_NAMES", "PROJECT_NAME", "HostSpec", "hookimpl", "hookspec"]

PROJECT_NAME = "iga"
"""The pluggy project name: the markers below and a host's ``PluginManager`` use it."""
ENTRY_POINT_GROUP = "iga.plugins"
"""The entry-point group a host loads plugins from (the Coupa plugin is its entry ``coupa``)."""
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class HostSpec:
    """The four hooks a connector plugin implements."""

    @hookspec
    def configure(self, tenant: Tenant) -> ConnectorStatus | None:
        """Validate the tenant's settings, authenticate and decide the mode.

        Called by the host before any other hook for a tenant (the other hooks call it
        themselves if the host did not), and again whenever the tenant's settings change.

        :param tenant: the tenant; ``tenant.plugins[<plugin name>]`` is the plugin's section.
        :returns: a :class:`~coupa_plugin.host.model.ConnectorStatus` saying the mode
            (``read-only`` or ``provisioning``), the granted scopes, the resource types the
            tenant will yield, the capabilities and any warnings; ``None`` when the plugin is
            not configured or not enabled for the tenant.
        :raises ConfigurationError: invalid settings (the message names the key).
        :raises AuthenticationError: the credentials were refused.

        Example::

            [status] = pm.hook.configure(tenant=Tenant(id="acme", plugins={"coupa": {
                "domain": "acme.coupahost.com", "client_id": "...", "client_secret": "..."}}))
            status.mode          # "provisioning"
            status.warnings      # ("account groups are off: grant core.accounting.read ...",)
        """

    @hookspec
    def discover_resources(self, tenant: Tenant, request: SyncRequest) -> Iterable[Resource] | None:
        """Every governable object of the tenant, each with its entitlements.

        :param tenant: the tenant.
        :param request: what to cover: ``resource_types`` limits the types, ``principal_ids``
            asks for just those users (plus the catalogs), ``since`` for users changed since
            then (plus the catalogs, always in full).
        :returns: a lazy iterable of :class:`~coupa_plugin.host.model.Resource`; the host
            streams it, so a large tenant never sits in memory at once. ``None`` when the plugin
            is not configured or not enabled for the tenant.
        :raises SyncError: while iterating, when the listing cannot complete; what was
            streamed before is then incomplete and must not be stored as complete.

        Example::

            for results in pm.hook.discover_resources(tenant=tenant, request=SyncRequest()):
                for resource in results:
                    print(resource.type, resource.id, [e.id for e in resource.entitlements])
            # user 17 []
            # role 2 ['role:2:member']
            # license expense-user ['license:expense-user:assigned']
        """

    @hookspec
    def sync_grants(self, tenant: Tenant, request: SyncRequest) -> Iterable[Grant] | None:
        """Who holds what: every (entitlement, user) pair in scope of ``request``.

        :param tenant: the tenant.
        :param request: as for :meth:`discover_resources`; for ``since`` and ``principal_ids``
            every current grant of each selected user is yielded.
        :returns: a lazy iterable of :class:`~coupa_plugin.host.model.Grant`, or ``None``.
        :raises SyncError: while iterating, when the listing cannot complete.

        Example::

            for results in pm.hook.sync_grants(tenant=tenant, request=SyncRequest(
                    principal_ids=frozenset({"17"}))):
                print(sorted(g.entitlement_id for g in results))
            # ['group:4:member', 'license:expense-user:assigned', 'role:3:member']
        """

    @hookspec(firstresult=True)
    def provision(self, tenant: Tenant, request: ProvisionRequest) -> ProvisionResult | None:
        """Change access: grant or revoke an entitlement, create/update/enable/disable an
        account, or create/update/deactivate a group (``create_group``, ``update_group``,
        ``deactivate_group``; the result's ``entitlement_id`` names the group). The first
        plugin that returns a result ends the call (``firstresult``).

        :param tenant: the tenant.
        :param request: the change; ``dry_run=True`` plans it without writing.
        :returns: a :class:`~coupa_plugin.host.model.ProvisionResult` whose status is
            ``applied``, ``unchanged`` (already so; nothing written) or ``planned`` (dry run),
            and whose ``changes`` list what was (or would be) written; ``None`` when the plugin
            is not configured or not enabled for the tenant.
        :raises ReadOnlyError: the tenant runs in read-only mode; nothing was sent.
        :raises NotFoundError: the principal or entitlement does not exist.
        :raises RefusedError: a rule refused the change (a protected login, the integration's
            own API user, the last active holder of an omnipotent role, a flag Coupa marks
            read-only, a group kind the application does not let be created, changed or
            deleted); nothing was written. A subclass of ``ProvisioningError``.
        :raises ProvisioningError: a write failed; the message says what the user holds now.

        Example::

            result = pm.hook.provision(tenant=tenant, request=ProvisionRequest(
                action="revoke", entitlement_id="role:4:member", principal_id="17"))
            result.status    # "applied"
            result.changes   # ("removed role 4 (Buyer) from user 17",)

            result = pm.hook.provision(tenant=tenant, request=ProvisionRequest(
                action="create_group", attributes={"name": "Auditors"}))
            result.entitlement_id   # "group:31:member"
        """


HOOK_NAMES = ("configure", "discover_resources", "sync_grants", "provision")
