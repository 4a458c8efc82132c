"""One provision call's dealings with one user: fresh reads, writes, and what to say on failure.

Every :class:`ProvisioningError` raised after a write was sent states what the user holds now;
when that cannot be read, it says so and gives the last state seen and the writes sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from coupa_plugin.connector._kinds import LIST_KINDS
from coupa_plugin.connector._mapping import user_grants
from coupa_plugin.connector._provisioning.facts import TenantFacts
from coupa_plugin.connector._provisioning.journal import Stamp
from coupa_plugin.coupa import (
    CoupaClient,
    CoupaError,
    CoupaHTTPError,
    Profile,
    RecordError,
    User,
    UserList,
    UserRecord,
    WriteEcho,
)
from coupa_plugin.host.errors import NotFoundError, ProvisioningError
from coupa_plugin.host.model import ProvisionResult

__all__ = ["ATTRIBUTE_OF", "LIST_KEYS", "SENDS", "UserSession", "describe", "holdings"]

# how many times one call sends a write whose answer was an error and whose read-back shows it
# did not land (each read-back is retried by the client on transient failures)
SENDS: Final = 3

# entitlement type -> (the list's name in journal entries and messages, the User model's list)
LIST_KEYS: Final[dict[str, tuple[str, UserList]]] = {
    kind.name: (kind.put_key or "", kind.attribute)
    for kind in LIST_KINDS
    if kind.attribute is not None
}
ATTRIBUTE_OF: Final[dict[str, UserList]] = dict(LIST_KEYS.values())


def describe(ids: set[int] | tuple[int, ...] | frozenset[int]) -> str:
    return "[" + ", ".join(str(i) for i in sorted(ids)) + "]"


def ids_of(user: User, attribute: UserList) -> set[int]:
    return {ref.id for ref in getattr(user, attribute)}


def holdings(user: User) -> str:
    """Everything a user holds, in one line."""
    lists = ", ".join(f"{key} {describe(ids_of(user, attr))}" for key, attr in LIST_KEYS.values())
    licenses = sorted(flag for flag, held in user.licenses.items() if held)
    return f"{lists}, licenses {licenses}, active={str(user.active).lower()}"


def stamp_of(user: User) -> Stamp:
    return Stamp(
        user.updated_at.isoformat() if user.updated_at is not None else None,
        user.updated_by.id if user.updated_by is not None else None,
    )


def _refusal(error: CoupaError) -> bool:
    """An answer that sending the same write again cannot change (a 4xx other than a timeout,
    a conflict or a throttle)."""
    return (
        isinstance(error, CoupaHTTPError)
        and 400 <= error.status < 500
        and error.status not in {408, 409, 429}
    )


class UserSession:
    """Reads and writes of one call for one user; ``changes`` lists every write sent,
    ``notes`` what the result must say beyond them."""

    def __init__(
        self,
        client: CoupaClient,
        facts: TenantFacts,
        user_id: int,
        kinds: frozenset[str] = frozenset(),
    ) -> None:
        self.client = client
        self.facts = facts
        self.user_id = user_id
        self.kinds = kinds  # the entitlement kinds the tenant enables: what results list
        self.changes: list[str] = []
        self.notes: list[str] = []
        self.last_seen: User | None = None
        self.last_profile: Profile | None = None  # the profile of the last read

    # -- reading ---------------------------------------------------------------------------

    def read(self) -> UserRecord:
        """The user as Coupa has it now (a full record, read fresh)."""
        uid = self.user_id
        try:
            record = self.client.user_record(uid)
        except RecordError as exc:
            raise self.failure(f"reading user {uid}: {exc}") from None
        except CoupaHTTPError as exc:
            if exc.status == 404 and not self.changes:
                raise NotFoundError(f"Coupa has no user {uid}") from None
            raise self.failure(f"reading user {uid} failed: {exc}") from None
        except CoupaError as exc:
            raise self.failure(f"reading user {uid} failed: {exc}") from None
        if record.user.id != uid:
            raise self.failure(f"reading user {uid}: Coupa answered with user {record.user.id}")
        self.last_seen, self.last_profile = record.user, record.profile
        return record

    def user(self) -> User:
        return self.read().user

    def current(self, attribute: UserList) -> set[int]:
        return ids_of(self.user(), attribute)

    # -- writing ---------------------------------------------------------------------------

    def send(self, call: Callable[[], WriteEcho], line: str) -> CoupaError | None:
        """Send one write of the user (``call``, a client method): the error Coupa answered
        with (the write may still have landed: a read tells), or None."""
        try:
            echo = call()
        except CoupaError as exc:
            self.changes.append(f"{line} (Coupa answered: {str(exc)[:160]})")
            return exc
        self.changes.append(line)
        # Coupa records who made a change: on our own write, that is the API user this
        # integration writes as, which provisioning must never change or lock out
        if echo.writer_id is not None:
            self.facts.learn_own_user(echo.writer_id)
        return None

    def write(
        self,
        send: Callable[[], CoupaError | None],
        landed: Callable[[User], bool],
        what: str,
    ) -> User:
        """Send an idempotent write and read the user back; returns that read. A write Coupa
        answered with an error, or whose answer was lost, is not taken as failed: the read
        tells whether it landed, and one that did not is sent again, up to
        :data:`SENDS` times. Raises, stating the holdings, only when Coupa keeps failing.
        A write Coupa accepted but ignored is returned as read: the caller says so."""
        for _ in range(SENDS):
            error = send()
            user = self.user()
            if error is None or landed(user):
                return user
            if _refusal(error):
                raise self.failure(f"{what} failed: {error}")
        raise self.failure(f"{what} failed {SENDS} times; Coupa last answered: {error}")

    def record(self, line: str) -> None:
        """Note a write sent through another endpoint."""
        self.changes.append(line)

    def result(self, status: str, message: str) -> ProvisionResult:
        """The call's result: the user's grants as last read, every write sent, ``message``
        and the notes."""
        user = self.last_seen if self.last_seen is not None else self.user()
        if status == "unchanged" and self.changes:
            status = "applied"  # recovery wrote: "unchanged" promises that nothing was
        return ProvisionResult(
            status=status,
            grants=tuple(user_grants(user, self.kinds)),
            changes=tuple(self.changes),
            message="; ".join(part for part in (message, *self.notes) if part),
            principal_id=str(user.id),
        )

    # -- failing honestly ------------------------------------------------------------------

    def failure(self, message: str, *, sent: bool = False) -> ProvisioningError:
        """A ProvisioningError for ``message`` that states the user's holdings when anything
        was (or, with ``sent``, may have been) written in this call, or says why they cannot
        be stated."""
        if not self.changes and not sent:
            return ProvisioningError(f"{message.rstrip('.')}; nothing was written")
        return ProvisioningError(f"{message.rstrip('.')}. {self.statement()}")

    def statement(self) -> str:
        """What the user holds now, read fresh; or, when that fails, the last state seen and
        every write this call sent."""
        try:
            user = self.client.user_record(self.user_id).user
        except CoupaError as exc:
            problem = str(exc)[:160]
        else:
            if user.id == self.user_id:
                self.last_seen = user
                return f"User {self.user_id} now holds {holdings(user)}."
            problem = "the answer was not this user's record"
        seen = (
            f"last seen holding {holdings(self.last_seen)}"
            if self.last_seen is not None
            else "never read in this call"
        )
        return (
            f"User {self.user_id}'s current state could not be read ({problem}); it was "
            f"{seen}; writes sent: " + ("; ".join(self.changes) or "the one that failed") + "."
        )
