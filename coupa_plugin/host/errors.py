"""Errors a plugin raises through the hooks (host contract v1).

Every error a hook raises is a :class:`PluginError`; hosts may catch the base class and use the
subclass to decide what to do (fix settings, re-authenticate, retry later, ...). Messages never
contain secrets. The tree::

    PluginError
    ├── ConfigurationError      bad settings (the key is named)
    ├── AuthenticationError     credentials refused
    ├── ReadOnlyError           a write asked of a read-only tenant; nothing was sent
    ├── NotFoundError           unknown principal or entitlement
    ├── ProvisioningError       a write failed; the message states what the user holds now
    │   └── RefusedError        refused by policy before anything was written
    └── SyncError               a sync could not complete; what was streamed is incomplete
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "NotFoundError",
    "PluginError",
    "ProvisioningError",
    "ReadOnlyError",
    "RefusedError",
    "SyncError",
]


class PluginError(Exception):
    """Base class of every error a plugin raises through a hook."""


class ConfigurationError(PluginError):
    """The tenant's settings are invalid; the message names the offending key."""


class AuthenticationError(PluginError):
    """The remote system refused the credentials (or every scope set asked for)."""


class ReadOnlyError(PluginError):
    """A write was asked of a tenant that runs in read-only mode. Nothing was sent."""


class NotFoundError(PluginError):
    """An unknown principal or entitlement was named."""


class ProvisioningError(PluginError):
    """A write failed. The message says what state the remote system was left in."""


class RefusedError(ProvisioningError):
    """A rule refused the change before anything was written: a protected login
    (``protected_logins``), the integration's own API user, the last active holder of an
    omnipotent role, a flag Coupa marks read-only. Retrying will not help; the request itself
    must change."""


class SyncError(PluginError):
    """A sync could not complete. Whatever was streamed before it is incomplete."""
