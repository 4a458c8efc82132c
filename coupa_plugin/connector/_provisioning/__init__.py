"""Provisioning that never strips access.

Principles, in the order they are applied:

* Refuse before writing: read-only tenants, malformed requests, unknown users or
  entitlements, protected accounts (``protected_logins``, ``integration_login`` and the API
  user this integration writes as), and removing the last active holder of an omnipotent role.
* Recover first: a rewrite of this user that a dead process left half-done is finished, or
  reported and dropped when someone else changed the user since (see :mod:`.lists`).
* Read fresh, change only what was asked, and write nothing when nothing needs to change
  (``unchanged``). ``dry_run`` returns the writes it would make (``planned``).
* Prefer per-item endpoints (user-group memberships, content-group add/remove); where only a
  whole list can be written, rewrite it safely under either PUT semantics (:mod:`.lists`).
* Verify every write by reading the user back; every failure after a write states what the
  user holds now.
"""

from coupa_plugin.connector._provisioning.command import parse_command
from coupa_plugin.connector._provisioning.core import Permits, Provisioner, ProvisionerConfig
from coupa_plugin.connector._provisioning.journal import (
    DEFAULT_JOURNAL_MAX_AGE_S,
    default_state_dir,
)
from coupa_plugin.connector._provisioning.lists import Recovery

__all__ = [
    "DEFAULT_JOURNAL_MAX_AGE_S",
    "Permits",
    "Provisioner",
    "ProvisionerConfig",
    "Recovery",
    "default_state_dir",
    "parse_command",
]
