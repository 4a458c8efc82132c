"""Resources and grants of one tenant, read in as few requests as Coupa allows.

A full sync is one pass over the users (each record carries its roles, groups and license
flags) plus one listing per catalog. ``discover_resources`` keeps the grants it saw in a
compact spool, so a ``sync_grants`` for the same request that follows it replays them instead
of reading every user again; the two hooks then describe the same moment. The catalog
listings are read in the background while the users stream (from the moment the first user
page has shown the server's page size), so the rate limit is never idle waiting for them; they
stop when the host abandons the stream. A catalog listing ``configure`` began (its first page
is the probe that tells whether the OAuth client may read it) is carried on from there when the
sync follows within ``HEAD_START_TTL_S``, so that page is not read twice.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Final, TypeVar

import attrs

from coupa_plugin.connector._boundary import guard_stream
from coupa_plugin.connector._kinds import KINDS
from coupa_plugin.connector._mapping import (
    GRANT_SOURCES,
    account_group_resource,
    approval_group_resource,
    content_group_resource,
    entitlement_id,
    group_resource,
    license_resource,
    parse_id,
    role_resource,
    user_entitlements,
    user_grants,
    user_resource,
)
from coupa_plugin.coupa import (
    MAX_CATALOG_ROWS,
    AccountGroup,
    BusinessGroup,
    CoupaClient,
    CoupaError,
    CoupaHTTPError,
    CoupaResponseError,
    GraphQLError,
    Role,
    User,
    UserGroup,
)
from coupa_plugin.host.errors import SyncError
from coupa_plugin.host.model import Grant, Resource, SyncRequest

__all__ = ["CatalogFetch", "GrantSpool", "TenantSync", "begin", "catalog_listings", "guard"]

log = logging.getLogger("coupa_plugin.connector")
T = TypeVar("T")
SPOOL_TTL_S: Final = 15 * 60.0
GRANT_TYPES: Final = frozenset({kind for _, kind in GRANT_SOURCES} | {"license"})
HEAD_START_TTL_S: Final = 60.0  # how long a listing begun by ``configure`` may be carried on


def catalog_listings(client: CoupaClient) -> dict[str, Callable[[], Iterable[Any]]]:
    """The catalog listings by kind, as the sync reads them (each kind's ``catalog``)."""
    return {
        kind.name: functools.partial(kind.catalog, client)
        for kind in KINDS
        if kind.catalog is not None
    }


def begin(listing: Callable[[], Iterable[T]]) -> Begun[T]:
    """Start ``listing`` and read its first page now, raising what that raises; the iterator
    returned yields every row (the first page's too) and closes the listing when closed,
    whether or not it was ever read from."""
    rows = iter(listing())
    try:
        first = [next(rows)]
    except StopIteration:
        first = []
    return Begun(first, rows)


class Begun(Iterator[T]):
    """A listing's first row, read (if it had one), and the rest of it, still to come."""

    def __init__(self, first: list[T], rows: Iterator[T]) -> None:
        self._first = first
        self._rows = rows

    def __next__(self) -> T:
        if self._first:
            return self._first.pop()
        return next(self._rows)

    def close(self) -> None:
        self._first.clear()
        close = getattr(self._rows, "close", None)
        if close is not None:
            close()


def guard(items: Iterable[T], what: str, tenant: str) -> Iterator[T]:
    """Re-raise any failure while streaming as a SyncError naming what failed."""
    return guard_stream(items, tenant, what, SyncError)


def _request_key(request: SyncRequest, types: frozenset[str]) -> tuple[object, ...]:
    return (types, request.since, request.principal_ids)


# Distinct groups, roles, … that users may hold (each kept for the whole pass): no more than
# a catalog may list; and license flags in one tenant.
MAX_HELD_PER_KIND: Final = MAX_CATALOG_ROWS
MAX_LICENSE_FLAGS: Final = 1_000


def _bounded(held: Mapping[str, Mapping[int, object]], flags: set[str]) -> None:
    for kind, ids in held.items():
        if len(ids) > MAX_HELD_PER_KIND:
            raise CoupaResponseError(
                f"users hold more than {MAX_HELD_PER_KIND:,} distinct {kind} ids; no tenant "
                "has that many: refusing to go on"
            )
    if len(flags) > MAX_LICENSE_FLAGS:
        raise CoupaResponseError(
            f"users show more than {MAX_LICENSE_FLAGS:,} distinct license flags; refusing to go on"
        )


@attrs.define
class GrantSpool:
    """Grants of one user pass, stored as pairs of small integers (8 bytes a grant)."""

    key: tuple[object, ...]
    entitlements: dict[str, int] = attrs.field(factory=dict)
    pairs: array[int] = attrs.field(factory=lambda: array("q"))
    complete_at: float | None = None

    def add(self, user_id: int, entitlements: Iterable[str]) -> None:
        index = self.entitlements
        append = self.pairs.append
        for entitlement in entitlements:
            append(index.setdefault(entitlement, len(index)))
            append(user_id)

    def replay(self) -> Iterator[Grant]:
        names = list(self.entitlements)
        pairs = iter(self.pairs)
        last, principal = -1, ""
        for entitlement, user in zip(pairs, pairs, strict=True):  # (entitlement, user) pairs
            if user != last:  # a user's grants are stored together
                last = user
                principal = str(user)
            yield Grant(entitlement_id=names[entitlement], principal_id=principal)

    def usable_for(self, key: tuple[object, ...], now: float) -> bool:
        return (
            self.complete_at is not None
            and self.key == key
            and now - self.complete_at < SPOOL_TTL_S
        )


class CatalogFetch:
    """Catalog listings read in the background, each on a thread of its own, into lists.

    ``start`` begins them (once); ``result`` waits for one and re-raises its failure;
    ``cancel`` stops them: a listing stops before its next row (so before its next page)."""

    def __init__(
        self, jobs: dict[str, Callable[[], Iterable[Any]]], name: str = "coupa-catalog"
    ) -> None:
        self._jobs = jobs
        self._name = name
        self._stop = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[str, Future[list[Any]]] = {}

    def start(self) -> None:
        if self._pool is not None or not self._jobs or self._stop.is_set():
            return
        self._pool = ThreadPoolExecutor(len(self._jobs), thread_name_prefix=self._name)
        self._futures = {
            # each in a copy of the caller's context: its records' tenant, its spans' parent
            name: self._pool.submit(contextvars.copy_context().run, self._collect, job)
            for name, job in self._jobs.items()
        }

    def _collect(self, job: Callable[[], Iterable[Any]]) -> list[Any]:
        rows: list[Any] = []
        items = iter(job())
        try:
            for item in items:
                if self._stop.is_set():
                    break
                rows.append(item)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a paged listing cancels the pages it has not started
        return rows

    def result(self, name: str) -> list[Any]:
        self.start()
        return self._futures[name].result()

    def cancel(self) -> None:
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def wait(self, timeout: float | None = None) -> bool:
        """True once every listing has finished (or was never started)."""
        # a future cancelled by ``shutdown`` never notifies waiters: leave it out
        running = [f for f in self._futures.values() if not f.cancelled()]
        return not wait(running, timeout).not_done


class TenantSync:
    """Reads one tenant for the sync hooks."""

    def __init__(
        self,
        client: CoupaClient,
        tenant_id: str,
        enabled_types: frozenset[str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.tenant_id = tenant_id
        self.enabled_types = enabled_types
        self._clock = clock
        self._spool: GrantSpool | None = None
        self.catalog_fetch: CatalogFetch | None = None  # the last discover pass's
        self._begun: dict[str, tuple[float, Begun[Any]]] = {}
        self._flags: tuple[float, frozenset[str]] | None = None

    def carry_on(self, begun: dict[str, Begun[Any]], flags: frozenset[str] | None = None) -> None:
        """Catalog listings ``configure`` began (by kind) and the license flags it read; the
        next discover pass uses them if it starts within ``HEAD_START_TTL_S``, else reads them
        afresh."""
        self._drop_begun()
        now = self._clock()
        self._begun = {kind: (now, rows) for kind, rows in begun.items()}
        self._flags = (now, flags) if flags is not None else None

    def _license_flags(self) -> frozenset[str]:
        """The flags ``configure`` read while fresh (once), else read now."""
        kept, self._flags = self._flags, None
        if kept is not None and self._clock() - kept[0] < HEAD_START_TTL_S:
            return kept[1]
        return self.client.newest_users()

    def _drop_begun(self) -> None:
        for _, rows in self._begun.values():
            rows.close()
        self._begun = {}

    def _job(self, kind: str, listing: Callable[[], Iterable[Any]]) -> Callable[[], Iterable[Any]]:
        """The listing of ``kind``: the one ``configure`` began while fresh (once), or anew."""
        begun = self._begun.pop(kind, None)
        if begun is None:
            return listing
        at, rows = begun
        if self._clock() - at >= HEAD_START_TTL_S:
            rows.close()
            return listing
        return lambda: rows

    def forget_pass(self) -> None:
        """Drop the grants kept from the last discover pass (access is about to change)."""
        self._spool = None

    def types_for(self, request: SyncRequest) -> frozenset[str]:
        if request.resource_types is None:
            return self.enabled_types
        return self.enabled_types & request.resource_types

    def _user_ids(self, request: SyncRequest) -> list[int] | None:
        if request.principal_ids is None:
            return None
        ids = [i for i in map(parse_id, request.principal_ids) if i is not None]
        if len(ids) != len(request.principal_ids):
            log.warning(
                "ignoring principal ids that are not Coupa user ids",
                extra={"tenant": self.tenant_id},
            )
        return ids

    def _users(self, request: SyncRequest, flags: Iterable[str]) -> Iterator[User]:
        ids = self._user_ids(request)
        if ids == []:
            return
        fields = self.client.user_fields(flags)
        yield from self.client.users(fields=fields, since=request.since, ids=ids)

    # -- discover_resources ----------------------------------------------------------------

    def discover(self, request: SyncRequest) -> Iterator[Resource]:
        return guard(self._discover(request), "discover_resources", self.tenant_id)

    def _catalog_jobs(self, types: frozenset[str]) -> dict[str, Callable[[], Iterable[Any]]]:
        listings = catalog_listings(self.client)
        jobs: dict[str, Callable[[], Iterable[Any]]] = {}
        if "role" in types:
            jobs["role"] = self._job("role", listings["role"])
        if types & {"group", "approval_group"}:
            jobs["group"] = listings["group"]
        if "content_group" in types:
            jobs["content_group"] = self._job("content_group", listings["content_group"])
        if "account_group" in types:
            jobs["account_group"] = self._job("account_group", listings["account_group"])
        self._drop_begun()  # what this pass did not take is no longer wanted
        return jobs

    def _discover(self, request: SyncRequest) -> Iterator[Resource]:
        types = self.types_for(request)
        catalogs = self.catalog_fetch = CatalogFetch(
            self._catalog_jobs(types), f"coupa-{self.tenant_id}-catalog"
        )
        try:
            flags: set[str] = set()
            if types & {"user", "license"}:
                flags |= self._license_flags()
            held: dict[str, dict[int, str | None]] = {kind: {} for _, kind in GRANT_SOURCES}
            read_users = 0
            if "user" in types:
                spool = GrantSpool(_request_key(request, types))
                self._spool = None
                for count, user in enumerate(self._users(request, flags), start=1):
                    # the first page has shown the page size: the catalogs can go
                    catalogs.start()
                    yield user_resource(user)
                    flags.update(user.licenses)
                    for attribute, kind in GRANT_SOURCES:
                        for ref in getattr(user, attribute):
                            held[kind].setdefault(ref.id, ref.name)
                    _bounded(held, flags)
                    spool.add(user.id, user_entitlements(user, types))
                    read_users = count
                    if count % 5000 == 0:
                        log.info("users read", extra={"tenant": self.tenant_id, "users": count})
                for user_id, entitlement in self._unread_licenses(request, types, flags):
                    spool.add(user_id, (entitlement,))
                spool.complete_at = self._clock()
                self._spool = spool
            if "license" in types and not read_users:
                # no user record named the known flags: newer ones show only when named
                flags |= self.client.discover_license_flags()
            yield from self._catalogs(types, flags, held, catalogs)
        finally:
            catalogs.cancel()  # nothing left to do when complete; stops them when abandoned
        self.client.log_stats()

    def _catalogs(
        self,
        types: frozenset[str],
        flags: set[str],
        held: dict[str, dict[int, str | None]],
        fetched: CatalogFetch,
    ) -> Iterator[Resource]:
        if "role" in types:
            yield from self._roles(held["role"], fetched)
        groups: list[UserGroup] = []
        if types & {"group", "approval_group"}:
            groups = fetched.result("group")
        if "group" in types:
            yield from _listed_and_held(
                groups,
                held["group"],
                group_resource,
                lambda gid, name: UserGroup(id=gid, name=name or f"User group {gid}"),
            )
        if "approval_group" in types:
            by_id = {g.id: g for g in groups}
            approval_ids = {g.id for g in groups if g.can_approve} | set(held["approval_group"])
            for gid in sorted(approval_ids):
                group = by_id.get(gid) or UserGroup(
                    id=gid, name=held["approval_group"][gid] or f"Approval group {gid}"
                )
                yield approval_group_resource(group)
        if "content_group" in types:
            yield from _listed_and_held(
                fetched.result("content_group"),
                held["content_group"],
                content_group_resource,
                lambda cid, name: BusinessGroup(id=cid, name=name or str(cid)),
            )
        if "account_group" in types:
            yield from _listed_and_held(
                fetched.result("account_group"),
                held["account_group"],
                account_group_resource,
                lambda aid, name: AccountGroup(id=aid, name=name or str(aid)),
            )
        if "license" in types:
            for flag in sorted(flags):
                yield license_resource(flag)

    def _roles(self, held: dict[int, str | None], fetched: CatalogFetch) -> Iterator[Resource]:
        roles: list[Role]
        try:
            roles = fetched.result("role")
        except CoupaError as exc:
            # refused (401/403: a token GraphQL will not take even fresh) or absent (404)
            if isinstance(exc, GraphQLError) or (
                isinstance(exc, CoupaHTTPError) and exc.status in {401, 403, 404}
            ):
                log.warning(
                    "role catalog unavailable from GraphQL; listing held roles only",
                    extra={"tenant": self.tenant_id, "error": str(exc)[:200]},
                )
                roles = []
            else:
                raise
        listed = {r.id for r in roles}
        yield from (role_resource(r) for r in roles)
        for rid, name in sorted(held.items()):
            if rid not in listed:
                yield role_resource(Role(id=rid, name=name or f"Role {rid}"))

    # -- sync_grants -----------------------------------------------------------------------

    def grants(self, request: SyncRequest) -> Iterator[Grant]:
        return guard(self._grants(request), "sync_grants", self.tenant_id)

    def _grants(self, request: SyncRequest) -> Iterator[Grant]:
        types = self.types_for(request) & GRANT_TYPES
        if not types:
            return
        spool, self._spool = self._spool, None
        if spool is not None and spool.usable_for(
            _request_key(request, self.types_for(request)), self._clock()
        ):
            log.info(
                "grants replayed from the discover pass",
                extra={"tenant": self.tenant_id, "grants": len(spool.pairs) // 2},
            )
            yield from spool.replay()
            return
        flags = self._license_flags() if "license" in types else set()
        for user in self._users(request, flags):
            yield from user_grants(user, types)
        for user_id, entitlement in self._unread_licenses(request, types, set(flags)):
            yield Grant(entitlement_id=entitlement, principal_id=str(user_id))
        self.client.log_stats()

    def _unread_licenses(
        self, request: SyncRequest, types: frozenset[str], flags: set[str]
    ) -> Iterator[tuple[int, str]]:
        """(user id, entitlement id) for the license flags the user pass could not read (the
        tenant refuses them in ``fields=``): read without ``fields=``, holders only. Each such
        flag joins ``flags``; one whose holders cannot be read fails the sync, naming it."""
        ids = self._user_ids(request)
        if "license" not in types or ids == []:
            return
        for flag in sorted(self.client.refused_flags()):
            log.info(
                "license flag refused in fields=; reading its holders apart",
                extra={"tenant": self.tenant_id, "flag": flag},
            )
            flags.add(flag)
            entitlement = entitlement_id("license", flag)
            try:
                for user_id in self.client.flag_holders(flag, since=request.since, ids=ids):
                    yield user_id, entitlement
            except CoupaError as exc:
                raise CoupaResponseError(
                    f"the holders of license flag {flag} (refused in fields=) could not be "
                    f"read: {exc}"
                ) from None


G = TypeVar("G", UserGroup, BusinessGroup, AccountGroup)


def _listed_and_held(
    listed: Iterable[G],
    held: Mapping[int, str | None],
    resource: Callable[[G], Resource],
    unlisted: Callable[[int, str | None], G],
) -> Iterator[Resource]:
    """The catalog's items as listed, then those users hold that the listing lacked (by the
    name seen on a user, when there was one)."""
    seen = set()
    for item in listed:
        seen.add(item.id)
        yield resource(item)
    for ident, name in sorted(held.items()):
        if ident not in seen:
            yield resource(unlisted(ident, name))
