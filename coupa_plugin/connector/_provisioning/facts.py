"""What provisioning learns about a tenant's Coupa and keeps across restarts.

* Whether a non-empty list on ``PUT /api/users/:id`` replaces or merges, per list key
  (undocumented; learnt from the first revoke's read-back).
* What Coupa gives a user whose roles were emptied (some tenants give the User role).
* The id of the API user this integration writes as (Coupa records it as ``updated-by`` on
  every change we make). Provisioning refuses to change that user, so a fresh process must know
  it before its first write: it is remembered in ``state_dir`` (or the shared state, where
  every worker of the tenant learns it at once).
"""

from __future__ import annotations

import logging
import threading
from typing import Final, Literal, TypeGuard

from coupa_plugin.connector._errors import SealError, StoreUnavailable
from coupa_plugin.connector._provisioning.journal import JOURNALED_KEYS
from coupa_plugin.connector._provisioning.store import StateStore
from coupa_plugin.connector._statefiles import Seal
from coupa_plugin.host.errors import PluginError

__all__ = ["Semantics", "TenantFacts"]

Semantics = Literal["replace", "merge"]
_SEMANTICS: Final = ("replace", "merge")
log = logging.getLogger("coupa_plugin.connector.provisioning")


def _is_id(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**18


def _defaults(raw: object) -> dict[str, int]:
    if not isinstance(raw, dict):
        return {}
    return {
        key: value
        for key, value in raw.items()
        if key in JOURNALED_KEYS and (_is_id(value) or value == 0)
    }


class TenantFacts:
    """Learnt facts of one tenant on one Coupa instance, persisted as one small sealed record
    in ``store`` (a 0600 file, or a key of the shared state)."""

    def __init__(self, store: StateStore, tenant_id: str, instance: str, seal: Seal) -> None:
        self._store = store
        self._seal = seal
        self._tenant, self._instance = tenant_id, instance
        self._lock = threading.Lock()
        self._loaded = False
        self._semantics: dict[str, Semantics] = {}
        self._own_user_id: int | None = None
        self._defaults: dict[str, int] = {}

    def refresh(self) -> None:
        """Read the record again on next use (another worker may have learnt since)."""
        with self._lock:
            self._loaded = False

    def _load(self, *, fresh: bool = False) -> None:
        if self._loaded and not fresh:
            return
        self._loaded = True
        data = self._store.read_facts()
        try:
            raw = self._seal.open(data) if data else {}
        except SealError:
            raw = {}  # unreadable or forged: learn again
        if not isinstance(raw, dict) or (raw.get("tenant"), raw.get("instance")) != (
            self._tenant,
            self._instance,
        ):
            return
        semantics = raw.get("semantics")
        if isinstance(semantics, dict):
            for key, value in semantics.items():
                if key in JOURNALED_KEYS and value in _SEMANTICS:
                    self._semantics[key] = value
        self._defaults.update(_defaults(raw.get("defaults")))
        own = raw.get("own_user_id")
        if _is_id(own):
            self._own_user_id = own

    def _save(self) -> None:
        """Persist what was learnt. A failure is logged, never raised: it comes right after a
        write to Coupa, and what was learnt is learnt again by the next write."""
        try:
            self._write()
        except (OSError, StoreUnavailable, PluginError) as exc:
            log.warning("could not keep what was learnt", extra={"error": str(exc)[:200]})

    def _write(self) -> None:
        self._store.write_facts(
            self._seal.seal(
                {
                    "tenant": self._tenant,
                    "instance": self._instance,
                    "semantics": self._semantics,
                    "own_user_id": self._own_user_id,
                    "defaults": self._defaults,
                }
            )
        )

    def semantics(self, key: str) -> Semantics | None:
        with self._lock:
            self._load()
            return self._semantics.get(key)

    def learn_semantics(self, key: str, value: Semantics) -> None:
        with self._lock:
            self._load(fresh=True)  # keep what other workers learnt meanwhile
            if self._semantics.get(key) != value:
                self._semantics[key] = value
                self._save()

    def defaults(self, key: str) -> frozenset[int] | None:
        """What Coupa gives a user whose ``key`` list was emptied (its User role; empty: it
        gives nothing), or None until a clear has been read back."""
        with self._lock:
            self._load()
            item = self._defaults.get(key)
            return None if item is None else frozenset({item} - {0})

    def learn_default(self, key: str, item: int) -> None:
        """``item``: what a clear's read-back showed alone in the list (0: nothing)."""
        with self._lock:
            self._load(fresh=True)
            if self._defaults.get(key) != item:
                self._defaults[key] = item
                self._save()

    @property
    def own_user_id(self) -> int | None:
        with self._lock:
            self._load()
            return self._own_user_id

    def learn_own_user(self, user_id: int) -> None:
        with self._lock:
            self._load(fresh=True)
            if self._own_user_id != user_id:
                self._own_user_id = user_id
                self._save()
