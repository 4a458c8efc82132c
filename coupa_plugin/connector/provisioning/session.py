"""One provision call's dealings with one user: fresh reads, writes, and what to say on failure.

Every :class:`ProvisioningError` raised after a write was sent states what the user holds now;
when that cannot be read, it says so and gives the last state seen and the writes sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from coupa_plugin.connector.kinds import LIST_KINDS
from coupa_plugin.connector.provisioning.facts import TenantFacts
from coupa_plugin.connector.provisioning.journal import Stamp
from coupa_plugin.coupa import CoupaClient, CoupaError, CoupaHTTPError
from coupa_plugin.coupa.errors import RecordError
from coupa_plugin.coupa.models import User, structure_user
from coupa_plugin.host.errors import NotFoundError, ProvisioningError

__all__ = ["ATTRIBUTES", "LIST_KEYS", "SENDS", "UserSession", "describe", "holdings"]

# how many times one call sends a write whose answer was an error and whose read-back shows it
# did not land (each read-back is retried by the client on transient failures)
SENDS: Final = 3

# entitlement type -> (key of the list on PUT /api/users/:id, attribute of the User model)
LIST_KEYS: Final = {kind.name: (kind.put_key or "", kind.attribute or "") for kind in LIST_KINDS}
# update_account / create_account attributes (snake_case) -> Coupa's keys
ATTRIBUTES: Final[dict[str, str]] = {
    "login": "login",
    "email": "email",
    "firstname": "firstname",
    "lastname": "lastname",
    "middlename": "middlename",
    "employee_number": "employee-number",
    "sso_identifier": "sso-identifier",
    "authentication_method": "authentication-method",
    "default_locale": "default-locale",
    "mention_name": "mention-name",
    "business_group_security_type": "business-group-security-type",
    "account_security_type": "account-security-type",
    "manager": "manager",
}
ATTRIBUTE_OF: Final = dict(LIST_KEYS.values())
# every read of a user: the sync's fields, the attributes update_account compares, and the
# stamp of the last change (recovery tells our writes from anyone else's by it)
_READ_EXTRA: Final = tuple(key for key in ATTRIBUTES.values() if key != "manager")
_READ_NESTED: Final = {"updated_by": ("id", "login")}
_ECHO_FIELDS: Final = '["id","updated-at",{"updated_by":["id","login"]}]'


def describe(ids: set[int] | tuple[int, ...] | frozenset[int]) -> str:
    return "[" + ", ".join(str(i) for i in sorted(ids)) + "]"


def ids_of(user: User, attribute: str) -> set[int]:
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

    def __init__(self, client: CoupaClient, facts: TenantFacts, user_id: int) -> None:
        self.client = client
        self.facts = facts
        self.user_id = user_id
        self.changes: list[str] = []
        self.notes: list[str] = []
        self.last_seen: User | None = None
        self.last_raw: dict[str, Any] = {}  # the payload of the last read

    # -- reading ---------------------------------------------------------------------------

    def read(self) -> tuple[User, dict[str, Any]]:
        """The user as Coupa has it now (a full record, read fresh)."""
        uid = self.user_id
        try:
            raw = self.client.user_raw(uid, _READ_EXTRA, _READ_NESTED)
        except CoupaHTTPError as exc:
            if exc.status == 404 and not self.changes:
                raise NotFoundError(f"Coupa has no user {uid}") from None
            raise self.failure(f"reading user {uid} failed: {exc}") from None
        except CoupaError as exc:
            raise self.failure(f"reading user {uid} failed: {exc}") from None
        if not isinstance(raw, dict):
            raise self.failure(f"reading user {uid}: the answer was not a user record")
        try:
            user = structure_user(raw)
        except RecordError as exc:
            raise self.failure(f"reading user {uid}: {exc}") from None
        if user.id != uid:
            raise self.failure(f"reading user {uid}: Coupa answered with user {user.id}")
        self.last_seen, self.last_raw = user, raw
        return user, raw

    def user(self) -> User:
        return self.read()[0]

    def current(self, attribute: str) -> set[int]:
        return ids_of(self.user(), attribute)

    # -- writing ---------------------------------------------------------------------------

    def send_put(self, body: Mapping[str, Any], line: str) -> CoupaError | None:
        """``PUT /api/users/:id`` with ``body``: the error Coupa answered with (the write may
        still have landed: a read tells), or None."""
        try:
            echo = self.client.update_user(self.user_id, body, fields=_ECHO_FIELDS)
        except CoupaError as exc:
            self.changes.append(f"{line} (Coupa answered: {str(exc)[:160]})")
            return exc
        self.changes.append(line)
        # Coupa records who made a change: on our own write, that is the API user this
        # integration writes as, which provisioning must never change or lock out
        writer = echo.get("updated-by") if isinstance(echo, dict) else None
        if isinstance(writer, dict):
            ident = writer.get("id")
            if isinstance(ident, int) and not isinstance(ident, bool) and ident > 0:
                self.facts.learn_own_user(ident)
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
            raw = self.client.user_raw(self.user_id, _READ_EXTRA, _READ_NESTED)
            user = structure_user(raw)
        except CoupaError as exc:  # a malformed record (RecordError) included
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
