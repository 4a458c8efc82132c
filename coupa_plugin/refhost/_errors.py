"""The reference host's errors. The command line maps a failure to its exit code by the
contract's class (:func:`coupa_plugin.refhost._jobs.error_kind`; the exit-code table is in
docs/reference-host.md), so the host's own errors are kinds of the contract's
(:mod:`coupa_plugin.host.errors`). The tree::

    PluginError                       (coupa_plugin.host.errors)
    ├── ContractViolation             a plugin returned what the contract does not allow
    └── ConfigurationError            (coupa_plugin.host.errors; exit 3)
        ├── UsageError                the command named what does not exist, or input that
        │   │                         does not fit (exit 2)
        │   ├── UnknownTypeError      resource types the plugin does not offer the tenant
        │   └── DecisionsError        a decisions file that does not match its campaign
        ├── ForeignFileError          an output path another user could read; nothing written
        ├── UnusableSnapshotError     the snapshot path cannot be opened or created
        └── SnapshotBusyError         another process kept the snapshot locked too long

    KeyboardInterrupt
    └── Interrupted                   SIGINT or SIGTERM while a run streamed (exit 128 + signal)

``Interrupted`` is a :class:`KeyboardInterrupt` on purpose: a stop request must pass every
``except Exception`` on its way out, exactly as Ctrl-C does, so the run is recorded as
``interrupted`` and the command ends with the signal's exit code.

The SCIM facade's ``_Unavailable`` (in :mod:`coupa_plugin.refhost._scim.storage`) is the SCIM
library's error type, which that library renders as a ``503`` answer: it stays beside the
code that raises it, as the library is an optional extra this module does not import.
"""

from __future__ import annotations

from coupa_plugin.host.errors import ConfigurationError, PluginError

__all__ = [
    "ContractViolation",
    "DecisionsError",
    "ForeignFileError",
    "Interrupted",
    "SnapshotBusyError",
    "UnknownTypeError",
    "UnusableSnapshotError",
    "UsageError",
]


class ContractViolation(PluginError):
    """A plugin returned something the host contract does not allow."""


class UsageError(ConfigurationError):
    """The command named something that does not exist or gave input that does not fit
    (exit 2, as a usage error)."""


class UnknownTypeError(UsageError):
    """A sync or a query asked for resource types the plugin does not offer for this tenant
    (a usage error: the command named something that does not exist)."""


class DecisionsError(UsageError):
    """A decisions file that does not match its campaign; the message names the lines."""


class ForeignFileError(ConfigurationError):
    """An output path names a file someone else could read after it is written: owned by
    another user, or with another name (a hard link) elsewhere. Nothing was written to it."""


class UnusableSnapshotError(ConfigurationError):
    """The snapshot path cannot be opened or created (a symbolic link, a directory the
    system refuses)."""


class SnapshotBusyError(ConfigurationError):
    """The snapshot stayed locked by another process for longer than the wait allowed."""


class Interrupted(KeyboardInterrupt):
    """The process was asked to stop (SIGINT or SIGTERM) while a run was streaming."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum
