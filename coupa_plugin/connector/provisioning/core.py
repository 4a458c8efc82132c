"""The provision call: refusals, recovery of the user's interrupted rewrites, the change
itself, and a result that lists every write the call sent."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from coupa_plugin.connector.errors import StoreUnavailable
from coupa_plugin.connector.kinds import by_name
from coupa_plugin.connector.locks import KeyedLocks
from coupa_plugin.connector.mapping import (
    check_grantable,
    parse_entitlement_id,
    parse_id,
    user_grants,
)
from coupa_plugin.connector.provisioning.accounts import Accounts
from coupa_plugin.connector.provisioning.catalog import Catalog
from coupa_plugin.connector.provisioning.facts import TenantFacts
from coupa_plugin.connector.provisioning.groups import GROUP_ACTIONS, Groups
from coupa_plugin.connector.provisioning.guards import Guards
from coupa_plugin.connector.provisioning.journal import Journal, Rejected, state_key
from coupa_plugin.connector.provisioning.lists import ListWriter, Recovery
from coupa_plugin.connector.provisioning.per_item import PerItem
from coupa_plugin.connector.provisioning.repair import Repairer, RepairSchedule, Wait
from coupa_plugin.connector.provisioning.session import (
    LIST_KEYS,
    UserSession,
    ids_of,
)
from coupa_plugin.connector.provisioning.store import LocalStore, StateStore
from coupa_plugin.connector.statefiles import Seal
from coupa_plugin.coupa import CoupaClient
from coupa_plugin.coupa.models import User
from coupa_plugin.host.errors import NotFoundError, PluginError, ProvisioningError
from coupa_plugin.host.model import ProvisionRequest, ProvisionResult

__all__ = ["Provisioner", "ProvisionerConfig"]

log = logging.getLogger("coupa_plugin.connector.provisioning")

DEFAULT_JOURNAL_MAX_AGE_S = 24 * 3600.0
_MAX_ID = 10**18 - 1


class ProvisionerConfig:
    """Where a tenant's provisioning state lives and the rules it obeys."""

    def __init__(
        self,
        *,
        tenant_id: str,
        instance: str,
        state_dir: Path,
        seal: Seal,
        protected_logins: frozenset[str] = frozenset(),
        integration_login: str | None = None,
        journal_max_age_s: float = DEFAULT_JOURNAL_MAX_AGE_S,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        store: StateStore | None = None,
        repair_wait: Wait | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.instance = instance
        self.state_dir = state_dir
        self.seal = seal
        self.protected_logins = protected_logins
        self.integration_login = integration_login.lower() if integration_login else None
        self.journal_max_age_s = journal_max_age_s
        self.wall_clock = wall_clock
        self.clock = clock  # catalog freshness and the self-repair schedule
        self.repair_wait = repair_wait  # how the self-repair thread waits (tests: controlled)
        # where the journal, the learnt facts and the per-user locks live (default: state_dir)
        self.store = store or LocalStore(state_dir, state_key(tenant_id, instance))


def parse_user_id(principal_id: object) -> int:
    """A Coupa user id given as canonical ASCII digits (no sign, no leading zero, < 10^18)."""
    user_id = parse_id(principal_id)
    if user_id is None:
        shown = repr(principal_id)[:40]
        raise NotFoundError(f"unknown principal {shown}: Coupa user ids are numbers")
    return user_id


class Provisioner:
    """Carries out provisioning requests for one tenant."""

    def __init__(
        self,
        client: CoupaClient,
        config: ProvisionerConfig,
        grant_types: Callable[[], frozenset[str]],
    ) -> None:
        self.client = client
        self.config = config
        self._grant_types = grant_types
        self.journal = Journal(
            config.store,
            config.tenant_id,
            config.instance,
            config.seal,
            max_age_s=config.journal_max_age_s,
            wall_clock=config.wall_clock,
        )
        self.facts = TenantFacts(config.store, config.tenant_id, config.instance, config.seal)
        self.catalog = Catalog(client, config.clock)
        self.guards = Guards(
            client, self.facts, self.catalog, config.protected_logins, config.integration_login
        )
        self.repairer = Repairer(
            RepairSchedule(config.clock),
            self._repair_pass,
            name="coupa-repair",
            **({"wait": config.repair_wait} if config.repair_wait else {}),
        )
        self.lists = ListWriter(
            self.journal,
            self.facts,
            self.guards,
            wall_clock=config.wall_clock,
            max_age_s=config.journal_max_age_s,
            on_pending=self.repairer.kick,
        )
        self.per_item = PerItem(self.lists)
        self.accounts = Accounts(client, self.guards, grant_types, self._session, self._result)
        self.groups = Groups(client, grant_types)
        self._user_locks: KeyedLocks[int] = KeyedLocks()
        # whether the tenant may be written now (the connector says: provisioning mode)
        self.writes_allowed: Callable[[], bool] = lambda: True

    def _session(self, user_id: int) -> UserSession:
        return UserSession(self.client, self.facts, user_id)

    # -- entry point -----------------------------------------------------------------------

    def provision(self, request: ProvisionRequest) -> ProvisionResult:
        problems = request.problems()
        if problems:
            raise ProvisioningError(
                "malformed request: " + "; ".join(problems) + "; nothing was written"
            )
        if not request.dry_run:
            self.journal.ensure()
        self.facts.refresh()
        if request.action == "create_account":
            return self.accounts.create(request, self.provision)
        if request.action in GROUP_ACTIONS:  # a group's, not a user's: no user lock
            return self.groups.handle(request)
        user_id = parse_user_id(request.principal_id)
        try:
            notes, result = self._for_user(user_id, request)
        except PluginError:
            if not request.dry_run and self._left_pending(user_id):
                self.repairer.kick()  # repaired once Coupa answers, without another call
            raise
        if not notes:
            return result
        message = "; ".join([*notes, result.message] if result.message else notes)
        return ProvisionResult(
            status=result.status,
            grants=result.grants,
            changes=result.changes,
            message=message,
            principal_id=result.principal_id,
        )

    def _for_user(
        self, user_id: int, request: ProvisionRequest
    ) -> tuple[list[str], ProvisionResult]:
        """Under the user's lock: recover the user's interrupted rewrites, then carry out
        ``request``. Returns what recovery reports and the request's result."""
        s: UserSession | None = None
        try:
            with self._locked(user_id):
                s = self._session(user_id)
                notes = (
                    self._recover_user(s) if not request.dry_run else self._pending_note(user_id)
                )
                recovered = len(s.changes)
                try:
                    return notes, self._handle(s, request)
                except PluginError as exc:
                    if recovered:
                        raise self._after_recovery(s, exc, recovered) from None
                    if notes:  # what recovery dropped is said even when the call fails
                        message = f"{str(exc).rstrip('.')}. Journal: {'; '.join(notes)}"
                        raise type(exc)(message) from exc
                    raise
        except StoreUnavailable as exc:
            if s is None:
                raise ProvisioningError(f"{exc}; nothing was written") from None
            raise s.failure(str(exc)) from None

    def _left_pending(self, user_id: int) -> bool:
        try:
            return any(True for _ in self.journal.pending(user_id))
        except (StoreUnavailable, OSError):
            return False

    # -- self-repair -----------------------------------------------------------------------

    def repair_if_due(self) -> None:
        """Recover what calls (or a dead process) left pending, when the self-repair schedule
        says an attempt is due: at the first call of a process, then after a call left a user
        stripped (backing off while Coupa keeps failing)."""
        self.repairer.run_if_due()

    def recover_now(self) -> list[Recovery]:
        """:meth:`recover_pending` on demand (``configure``): its outcome sets when the next
        self-repair attempt is due."""
        outcomes = self.recover_pending()
        self.repairer.schedule.ran(left=any(o.outcome == "failed" for o in outcomes))
        return outcomes

    def _repair_pass(self) -> bool:
        """One pass over every pending entry; True while something is left to repair. None
        while writes are not allowed (the tenant turned read-only since)."""
        if not self.writes_allowed():
            return False
        outcomes = self.recover_pending()
        return any(o.outcome == "failed" for o in outcomes)

    def close(self) -> None:
        """Stop the self-repair thread."""
        self.repairer.close()

    def statement(self, user_id: int) -> str:
        """What ``user_id`` holds now, read fresh (or why that cannot be said): for errors
        raised outside a session."""
        return self._session(user_id).statement()

    def _handle(self, s: UserSession, request: ProvisionRequest) -> ProvisionResult:
        if request.action in ("grant", "revoke"):
            return self._grant_or_revoke(s, request)
        if request.action == "update_account":
            return self.accounts.update(s, request)
        return self.accounts.set_active(s, request)

    @staticmethod
    def _after_recovery(s: UserSession, exc: PluginError, recovered: int) -> PluginError:
        """``exc``, raised by the request after recovery wrote: the same error type, saying
        what recovery wrote and what the user holds now."""
        message = str(exc).replace("; nothing was written", "").rstrip(".")
        if len(s.changes) == recovered:
            message += " (this request itself wrote nothing)"
        written = "; ".join(s.changes[:recovered])
        text = f"{message}. Recovery of an interrupted rewrite had written: {written}."
        if "now holds" not in message and "could not be read" not in message:
            text += f" {s.statement()}"
        return type(exc)(text)

    @contextmanager
    def _locked(self, user_id: int) -> Iterator[None]:
        with self._user_locks.hold(user_id), self.config.store.user_lock(user_id):
            yield

    def _result(self, status: str, s: UserSession, message: str) -> ProvisionResult:
        user = s.last_seen if s.last_seen is not None else s.user()
        if status == "unchanged" and s.changes:
            status = "applied"  # recovery wrote: "unchanged" promises that nothing was
        grants = tuple(user_grants(user, self._grant_types()))
        return ProvisionResult(
            status=status,
            grants=grants,
            changes=tuple(s.changes),
            message="; ".join(part for part in (message, *s.notes) if part),
            principal_id=str(user.id),
        )

    # -- recovery --------------------------------------------------------------------------

    def _pending_note(self, user_id: int) -> list[str]:
        if any(True for _ in self.journal.pending(user_id)):
            return [
                "an interrupted rewrite of this user is journaled; the next real change "
                "recovers it first"
            ]
        return []

    def _recover_user(self, s: UserSession) -> list[str]:
        """Apply the recovery rule to every journal entry of the call's user (under its lock).
        A failed repair fails the call; what was dropped is reported in the result."""
        rejected: list[Rejected] = []
        notes = []
        for entry in list(self.journal.pending(s.user_id, rejected)):
            outcome = self.lists.recover(s, entry)
            self._log(outcome)
            notes.append(outcome.detail)
        notes += [f"journal file {r.name} was set aside, not applied: {r.reason}" for r in rejected]
        return notes

    def recover_pending(self) -> list[Recovery]:
        """Apply the recovery rule to every pending entry of the tenant (what ``configure``
        runs in provisioning mode). A repair that fails is reported, not raised."""
        rejected: list[Rejected] = []
        outcomes = []
        try:
            user_ids = sorted({entry.user_id for entry in self.journal.pending(None, rejected)})
        except StoreUnavailable as exc:
            raise ProvisioningError(f"{exc}; nothing was written") from None
        for user_id in user_ids:
            try:
                with self._locked(user_id):
                    s = self._session(user_id)
                    for entry in list(self.journal.pending(user_id, rejected)):
                        try:
                            outcome = self.lists.recover(s, entry)
                        except PluginError as exc:
                            outcome = Recovery(user_id, "failed", f"recovery failed: {exc}")
                        self._log(outcome)
                        outcomes.append(outcome)
            except (StoreUnavailable, OSError) as exc:
                # a lock or journal file that cannot be used (planted, unreadable) fails this
                # user's recovery, not the tenant's configure
                detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                outcome = Recovery(user_id, "failed", f"recovery failed: {detail}")
                self._log(outcome)
                outcomes.append(outcome)
        outcomes += [
            Recovery(None, "rejected", f"journal file {r.name} was set aside: {r.reason}")
            for r in rejected
        ]
        return outcomes

    @staticmethod
    def _log(outcome: Recovery) -> None:
        level = (
            logging.INFO if outcome.outcome in ("repaired", "nothing_to_do") else logging.WARNING
        )
        log.log(
            level,
            "journal recovery",
            extra={"user": outcome.user_id, "outcome": outcome.outcome, "detail": outcome.detail},
        )

    # -- grant and revoke ------------------------------------------------------------------

    def _grant_or_revoke(self, s: UserSession, request: ProvisionRequest) -> ProvisionResult:
        granting = request.action == "grant"
        parsed = parse_entitlement_id(request.entitlement_id or "")
        if parsed is None:
            raise NotFoundError(f"unknown entitlement {request.entitlement_id!r}")
        kind, ident, _ = parsed
        if kind not in self._grant_types():
            raise NotFoundError(
                f"entitlement {request.entitlement_id!r}: resource type {kind!r} "
                "is not enabled for this tenant"
            )
        check_grantable(kind, ident)
        user = s.user()
        if kind == "license":
            return self._license(s, user, ident, granting=granting, dry_run=request.dry_run)
        target = int(ident)
        key, attribute = LIST_KEYS[kind]
        record = by_name(kind)
        assert record is not None  # a list kind: LIST_KEYS has it
        before = ids_of(user, attribute)
        if (target in before) == granting:
            held = "holds" if granting else "does not hold"
            return self._result(
                "unchanged", s, f"user {s.user_id} already {held} {request.entitlement_id}"
            )
        self.catalog.require_exists(kind, target)
        self.guards.refuse_protected(user)
        if not granting and kind == "role":
            self.guards.refuse_last_admin(user, {target})
        verb = "add" if granting else "remove"
        if request.dry_run:
            s.changes.append(
                f"{verb} {kind} {target} {'to' if granting else 'from'} user {s.user_id}"
            )
            return self._result("planned", s, "dry run: nothing was written")
        if record.writes == "per_item":
            now = self.per_item.change(s, kind, target, granting=granting, before=before)
        else:
            desired = before | {target} if granting else before - {target}
            now = self.lists.change(s, key, before, desired)
        if (target in now) != granting:
            raise s.failure(f"Coupa did not {verb} {kind} {target} for user {s.user_id}")
        expected = (before | {target}) if granting else (before - {target})
        lost = expected - now - {target}
        if lost:
            raise s.failure(
                f"user {s.user_id} lost {key} {sorted(lost)} while {kind} {target} was "
                f"{'granted' if granting else 'revoked'}"
            )
        return self._result("applied", s, "")

    def _license(
        self, s: UserSession, user: User, flag: str, *, granting: bool, dry_run: bool
    ) -> ProvisionResult:
        if flag not in user.licenses:
            raise NotFoundError(
                f"unknown license flag {flag!r}: user records of this tenant have no such flag"
            )
        entitlement = f"license:{flag}:assigned"
        if user.licenses[flag] == granting:
            held = "holds" if granting else "does not hold"
            return self._result("unchanged", s, f"user {user.id} already {held} {entitlement}")
        self.guards.refuse_protected(user)
        change = f"set {flag} = {str(granting).lower()} on user {user.id}"
        if dry_run:
            s.changes.append(change)
            return self._result("planned", s, "dry run: nothing was written")
        after = s.write(
            lambda: s.send_put({flag: granting}, change),
            lambda u: u.licenses.get(flag) == granting,
            change,
        )
        if after.licenses.get(flag) != granting:
            raise s.failure(f"Coupa ignored {change}")
        return self._result("applied", s, "")
