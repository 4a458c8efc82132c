"""The provision call: refusals, recovery of the user's interrupted rewrites, the change
itself, and a result that lists every write the call sent."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import attrs

from coupa_plugin.connector._errors import StoreUnavailable
from coupa_plugin.connector._locks import KeyedLocks
from coupa_plugin.connector._mapping import check_grantable, entitlement_id
from coupa_plugin.connector._provisioning.accounts import Accounts
from coupa_plugin.connector._provisioning.catalog import Catalog
from coupa_plugin.connector._provisioning.command import (
    DRY_RUN,
    GROUP_ACTIONS,
    ChangeAccess,
    Command,
    CreateAccount,
    CreateGroup,
    DeactivateGroup,
    Refused,
    SetActive,
    UpdateAccount,
    UpdateGroup,
    UserCommand,
)
from coupa_plugin.connector._provisioning.facts import TenantFacts
from coupa_plugin.connector._provisioning.groups import Groups
from coupa_plugin.connector._provisioning.guards import Guards
from coupa_plugin.connector._provisioning.journal import (
    DEFAULT_JOURNAL_MAX_AGE_S,
    Journal,
    Rejected,
    state_key,
)
from coupa_plugin.connector._provisioning.lists import ListWriter, Recovery
from coupa_plugin.connector._provisioning.per_item import PerItem
from coupa_plugin.connector._provisioning.repair import Repairer, RepairSchedule, Wait
from coupa_plugin.connector._provisioning.session import UserSession, ids_of
from coupa_plugin.connector._provisioning.store import LocalStore, StateStore
from coupa_plugin.connector._statefiles import Seal
from coupa_plugin.coupa import CoupaClient, User
from coupa_plugin.host.errors import NotFoundError, PluginError, ProvisioningError
from coupa_plugin.host.model import ProvisionResult

__all__ = ["Permits", "Provisioner", "ProvisionerConfig"]

log = logging.getLogger("coupa_plugin.connector.provisioning")



@attrs.frozen
class Permits:
    """What the tenant's status allows provisioning: the entitlement kinds it may change (the
    enabled resource types) and whether it may write at all (provisioning mode)."""

    kinds: frozenset[str] = frozenset()
    writes: bool = False


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


class Provisioner:
    """Carries out provisioning requests for one tenant."""

    def __init__(self, client: CoupaClient, config: ProvisionerConfig) -> None:
        self.client = client
        self.config = config
        # what the tenant's status allows; the connector says so each time it decides
        self.permits = Permits()
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
            repairer=self.repairer,
        )
        self.per_item = PerItem(self.lists)
        self.accounts = Accounts(client, self.facts, self.guards)
        self.groups = Groups(client)
        self._user_locks: KeyedLocks[int] = KeyedLocks()

    def permit(self, permits: Permits) -> None:
        """Take the tenant's current status (what the connector decided it allows)."""
        self.permits = permits

    def _session(self, user_id: int) -> UserSession:
        return UserSession(self.client, self.facts, user_id, self.permits.kinds)

    # -- entry point -----------------------------------------------------------------------

    def provision(self, command: Command) -> ProvisionResult:
        if isinstance(command, Refused) and command.first:
            raise command.error
        if not command.dry_run:
            self.journal.ensure()
        self.facts.refresh()
        if isinstance(command, CreateAccount):
            return self._create(command)
        if isinstance(command, CreateGroup | UpdateGroup | DeactivateGroup) or (
            isinstance(command, Refused) and command.action in GROUP_ACTIONS
        ):
            return self.groups.handle(command, self.permits.kinds)  # no user lock: a group's
        user_id = command.user_id
        if user_id is None:  # a create_account refused
            assert isinstance(command, Refused)
            raise command.error
        try:
            notes, result = self._for_user(user_id, command)
        except PluginError:
            if not command.dry_run and self._left_pending(user_id):
                self.repairer.kick()  # repaired once Coupa answers, without another call
            raise
        if not notes:
            return result
        message = "; ".join([*notes, result.message] if result.message else notes)
        return attrs.evolve(result, message=message)

    def _create(self, command: CreateAccount) -> ProvisionResult:
        """Create the account, then grant it what the list roles and flags of the create
        could not carry, each as a grant of its own."""
        created = self.accounts.create(command, self.permits.kinds)
        if isinstance(created, ProvisionResult):
            return created
        changes = [created.change]
        for ref in created.later:
            try:
                result = self.provision(
                    ChangeAccess(user_id=created.user_id, entitlement=ref, granting=True)
                )
            except ProvisioningError as exc:
                raise ProvisioningError(
                    f"user {created.user_id} ({command.login}) was created, but granting "
                    f"{ref.id} failed: {exc}"
                ) from None
            changes += list(result.changes)
        return self.accounts.verify_created(
            self._session(created.user_id), created, changes, command.profile
        )

    def _for_user(
        self, user_id: int, command: UserCommand | Refused
    ) -> tuple[list[str], ProvisionResult]:
        """Under the user's lock: recover the user's interrupted rewrites, then carry out
        ``command``. Returns what recovery reports and the command's result."""
        s: UserSession | None = None
        try:
            with self._locked(user_id):
                s = self._session(user_id)
                notes = (
                    self._recover_user(s) if not command.dry_run else self._pending_note(user_id)
                )
                recovered = len(s.changes)
                try:
                    return notes, self._handle(s, command)
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
        if not self.permits.writes:
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

    def _handle(self, s: UserSession, command: UserCommand | Refused) -> ProvisionResult:
        if isinstance(command, Refused):  # found where the call reaches it: after recovery
            raise command.error
        if isinstance(command, ChangeAccess):
            return self._grant_or_revoke(s, command)
        if isinstance(command, UpdateAccount):
            return self.accounts.update(s, command)
        assert isinstance(command, SetActive)
        return self.accounts.set_active(s, command)

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

    def _grant_or_revoke(self, s: UserSession, command: ChangeAccess) -> ProvisionResult:
        granting, ref = command.granting, command.entitlement
        kind = ref.kind
        if kind.name not in s.kinds:
            raise NotFoundError(
                f"entitlement {ref.id!r}: resource type {kind.name!r} is not enabled for this "
                "tenant"
            )
        check_grantable(kind.name, ref.key)
        user = s.user()
        if kind.attribute is None:
            return self._license(s, user, ref.key, granting=granting, dry_run=command.dry_run)
        target, key = ref.target, kind.put_key or kind.name
        before = ids_of(user, kind.attribute)
        if (target in before) == granting:
            held = "holds" if granting else "does not hold"
            return s.result("unchanged", f"user {s.user_id} already {held} {ref.id}")
        self.catalog.require_exists(kind.name, target)
        self.guards.refuse_protected(user)
        if not granting and kind.name == "role":
            self.guards.refuse_last_admin(user, {target})
        verb = "add" if granting else "remove"
        if command.dry_run:
            s.changes.append(
                f"{verb} {kind.name} {target} {'to' if granting else 'from'} user {s.user_id}"
            )
            return s.result("planned", DRY_RUN)
        if kind.per_item:
            now = self.per_item.change(s, kind, target, granting=granting, before=before)
        else:
            desired = before | {target} if granting else before - {target}
            now = self.lists.change(s, key, before, desired)
        if (target in now) != granting:
            raise s.failure(f"Coupa did not {verb} {kind.name} {target} for user {s.user_id}")
        expected = (before | {target}) if granting else (before - {target})
        lost = expected - now - {target}
        if lost:
            raise s.failure(
                f"user {s.user_id} lost {key} {sorted(lost)} while {kind.name} {target} was "
                f"{'granted' if granting else 'revoked'}"
            )
        return s.result("applied", "")

    def _license(
        self, s: UserSession, user: User, flag: str, *, granting: bool, dry_run: bool
    ) -> ProvisionResult:
        if flag not in user.licenses:
            raise NotFoundError(
                f"unknown license flag {flag!r}: user records of this tenant have no such flag"
            )
        entitlement = entitlement_id("license", flag)
        if user.licenses[flag] == granting:
            held = "holds" if granting else "does not hold"
            return s.result("unchanged", f"user {user.id} already {held} {entitlement}")
        self.guards.refuse_protected(user)
        change = f"set {flag} = {str(granting).lower()} on user {user.id}"
        if dry_run:
            s.changes.append(change)
            return s.result("planned", DRY_RUN)
        after = s.write(
            lambda: s.send(partial(s.client.set_license, s.user_id, flag, held=granting), change),
            lambda u: u.licenses.get(flag) == granting,
            change,
        )
        if after.licenses.get(flag) != granting:
            raise s.failure(f"Coupa ignored {change}")
        return s.result("applied", "")
