"""The connector's own errors: failures of its state (the journal, the learnt facts, the
shared state in Redis) before they are told to a host. The tree::

    ConnectorError             base of the connector's own errors
    ├── StoreUnavailable       the shared state cannot be read or written (names where)
    ├── ReplyTooLargeError     a Redis reply was larger than its limit; reading it stopped
    ├── InvalidEntry           a journal file that is not a rewrite this plugin could have made
    └── SealError              a state file that is not sealed, or whose seal does not match

None of them leaves a hook: what a hook raises is a
:class:`~coupa_plugin.host.errors.PluginError` (the contract's tree, in
:mod:`coupa_plugin.host.errors`). The provisioner turns ``StoreUnavailable`` into a
``ProvisioningError`` saying what was written; journal and facts files that fail their seal
or their checks are set aside or learnt again; :func:`coupa_plugin.connector._boundary.boundary`
turns whatever is left into the hook's PluginError. None derives from a builtin error: a
failing disk under ``state_dir`` is an ``OSError``, the shared state's failures are not.

Private signals stay beside the code that raises and catches them and never leave their
module: ``_Replan`` (a list changed meanwhile: plan again, in
:mod:`~coupa_plugin.connector._provisioning.lists`), ``_NoRoute`` (no per-item route: write
the whole list, in :mod:`~coupa_plugin.connector._provisioning.per_item`) and ``_GarbageReply``
(a reply Redis would not send, in :mod:`~coupa_plugin.connector._shared_state`, told as
``StoreUnavailable``).
"""

from __future__ import annotations

__all__ = ["ConnectorError", "InvalidEntry", "ReplyTooLargeError", "SealError", "StoreUnavailable"]


class ConnectorError(Exception):
    """Base class of the connector's own errors; none leaves a hook."""


class StoreUnavailable(ConnectorError):
    """The shared state could not be read or written (its message names where, never a
    secret)."""


class ReplyTooLargeError(ConnectorError):
    """A Redis reply was larger than the limit; reading it was stopped (and is not retried)."""


class InvalidEntry(ConnectorError):
    """A journal file that does not describe a rewrite this plugin could have made."""


class SealError(ConnectorError):
    """A state file that is not a sealed one, or was altered (or sealed with another client
    secret)."""
