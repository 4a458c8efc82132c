"""The Coupa client: Coupa's endpoints as typed reads and writes, complete listings, the
license flags a tenant shows. Scope negotiation lives in ``negotiation``, the request loop
in ``http``. It knows nothing of the IGA host."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from itertools import pairwise
from typing import Any, Final, Literal, TypeVar

import httpx

from coupa_plugin.coupa._auth import AccessToken, CoupaAuth, TokenSource
from coupa_plugin.coupa._config import ClientConfig
from coupa_plugin.coupa._errors import (
    CoupaHTTPError,
    CoupaResponseError,
    GraphQLError,
    ReadOnlyClientError,
    RecordError,
    plain,
)
from coupa_plugin.coupa._fields import FieldSpec, TenantFields, snake
from coupa_plugin.coupa._http import GRAPHQL_PATH, RequestLoop
from coupa_plugin.coupa._logs import route_retries
from coupa_plugin.coupa._models import (
    KNOWN_LICENSE_FLAGS,
    MAX_ID,
    PROFILE_FIELDS,
    USER_LIST_KEYS,
    AccountGroup,
    BusinessGroup,
    GroupChanges,
    LookupCollection,
    Membership,
    ProfileChanges,
    Role,
    User,
    UserGroup,
    UserList,
    UserRecord,
    WriteEcho,
    is_license_flag,
    profile_body,
    structure,
    structure_profile,
    structure_user,
)
from coupa_plugin.coupa._negotiation import Mode, ScopeGrant, negotiate, read_scopes
from coupa_plugin.coupa._paging import MAX_PAGE, PageSize, read_all, read_keyset
from coupa_plugin.coupa._ratelimit import RateLimiter, SharedRateLimiter
from coupa_plugin.coupa._scopes import OPTIONAL_SCOPES, PROVISIONING_SCOPES
from coupa_plugin.coupa._telemetry import Telemetry
from coupa_plugin.coupa._transport import (
    ACCEPT_ENCODING,
    DeadlineTransport,
    PacedTransport,
    inherit_deadline,
)

__all__ = [
    "MAX_CATALOG_ROWS",
    "USER_FIELDS",
    "USER_REQUIRED_FIELDS",
    "ClientConfig",
    "CoupaClient",
    "GraphQLError",
    "Mode",
    "ScopeGrant",
]

log = logging.getLogger("coupa_plugin.coupa")
T = TypeVar("T")
_MAX_ROLE_PAGES: Final = 10_000
# the read scopes of the first set negotiation asks for: GraphQL's token when that set is
# granted, and the main token when only the read-only set (with the optional scope) is
_EARLY_READ_SCOPES: Final = read_scopes(PROVISIONING_SCOPES | OPTIONAL_SCOPES) or frozenset()
# a role catalog is small (tens to hundreds); far more is a server gone wrong
_MAX_ROLES: Final = 100_000
# groups, content groups and account groups: catalogs, held whole while users stream; far
# above any real tenant's, far below what would exhaust memory
MAX_CATALOG_ROWS: Final = 200_000
# What a sync reads of a user, as a ``fields=`` selection (snake_case, nested by association).
USER_FIELDS: Final[tuple[Any, ...]] = (
    "id",
    "login",
    "email",
    "firstname",
    "lastname",
    "fullname",
    "employee_number",
    "active",
    "authentication_method",
    "sso_identifier",
    "api_user",
    "support_user",
    "supplier_user",
    "msp_user",
    "created_at",
    "updated_at",
    {"manager": ["id", "login"]},
    *({name: ["id", "name"]} for name in USER_LIST_KEYS),  # the lists that carry access
)
# Without these a user record cannot be mapped: a refusal of one is an error, not a drop.
USER_REQUIRED_FIELDS: Final = frozenset({"id", "login", *USER_LIST_KEYS})
_CATALOG_REQUIRED: Final = frozenset({"id", "name"})
_USER_GROUP_FIELDS: Final = FieldSpec(
    "user_groups", ("id", "name", "description", "active", "can_approve"), _CATALOG_REQUIRED
)
_BUSINESS_GROUP_FIELDS: Final = FieldSpec(
    "business_groups", ("id", "name", "description"), _CATALOG_REQUIRED
)
# R39's AccountGroup has neither description nor active; newer releases may: ask, learn.
_ACCOUNT_GROUP_FIELDS: Final = FieldSpec(
    "account_groups", ("id", "name", "description", "active"), _CATALOG_REQUIRED
)
Answer = tuple[int, httpx.Headers, bytes]
# What a provisioning read asks beyond the sync's fields: the profile a caller may set (the
# manager is among the sync's fields) and the stamp of the last change, who made it and when.
_RECORD_EXTRA: Final = tuple(name for name in PROFILE_FIELDS if name != "manager")
_RECORD_NESTED: Final = {"updated_by": ("id", "login")}
# What the answer to a write of a user is asked to carry: who made it.
_ECHO_FIELDS: Final = '["id","updated-at",{"updated_by":["id","login"]}]'


def _record(row: Any, cls: type[T], what: str) -> T:
    try:
        return structure(row, cls)
    except RecordError as exc:
        raise CoupaResponseError(f"{what}: {exc}") from None


def _descending_top(rows: Any) -> int | None:
    """The first id of ``rows`` when there are at least two and their ids strictly descend
    (``order_by=id&dir=desc`` was honoured), else None."""
    if not isinstance(rows, list) or len(rows) < 2:
        return None
    ids = [row.get("id") if isinstance(row, dict) else None for row in rows]
    numbers = [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]
    if len(numbers) != len(ids):
        return None
    return numbers[0] if all(a > b for a, b in pairwise(numbers)) else None


def _settled(future: Future[AccessToken] | None) -> AccessToken | None:
    """The token ``future`` minted, once it has finished; None when it failed (the scopes
    were refused, or the mint failed as the main one would have: nothing to report twice)."""
    if future is None:
        return None
    try:
        return future.result()
    except Exception:  # noqa: BLE001 - a token asked for ahead of need; its failure is moot
        return None


def _updated_at_or_before(row: Mapping[str, Any], moment: datetime) -> bool:
    value = row.get("updated-at")
    if not isinstance(value, str):
        return False
    try:
        stamp = datetime.fromisoformat(value)  # reads a trailing Z since Python 3.11
    except ValueError:
        return False
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)) <= moment


class CoupaClient:
    """A client for one Coupa instance and one OAuth client (never shared across tenants)."""

    def __init__(
        self,
        config: ClientConfig,
        transport: httpx.BaseTransport | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        telemetry: Telemetry | None = None,
    ) -> None:
        """``telemetry``: where the client's requests, pacing waits, 429s and tokens are
        measured (nothing by default)."""
        self.config = config
        self.telemetry = telemetry or Telemetry(None, config.tenant, clock)
        route_retries()  # stamina's retries of this client's requests name the tenant
        self.limiter: RateLimiter = limiter or (
            SharedRateLimiter(
                config.shared_rate_limit_file,
                config.base_url,
                config.requests_per_second,
                burst=config.burst,
                sleep=sleep,
            )
            if config.shared_rate_limit_file
            else RateLimiter(
                config.requests_per_second, burst=config.burst, clock=clock, sleep=sleep
            )
        )
        self._clock = clock
        inner = transport or DeadlineTransport()
        self._transport = PacedTransport(inner, self.limiter, config.max_body_bytes, self.telemetry)
        timeout = httpx.Timeout(config.timeout_s)
        limits = httpx.Limits(
            max_connections=config.max_in_flight + 2,
            max_keepalive_connections=config.max_in_flight + 2,
        )
        self._token_http = httpx.Client(
            transport=self._transport, timeout=timeout, base_url=config.base_url
        )

        def token_source() -> TokenSource:
            return TokenSource(
                f"{config.base_url}/oauth2/token",
                config.client_id,
                config.client_secret,
                self._token_http,
                clock=clock,
                budget_s=config.retry_timeout_s,
                attempt_s=config.timeout_s,
                max_body_bytes=config.max_body_bytes,
                tenant=config.tenant,
                on_minted=self.telemetry.token_minted,
            )

        def api_client(auth: CoupaAuth) -> httpx.Client:
            return httpx.Client(
                transport=self._transport,
                timeout=timeout,
                limits=limits,
                base_url=config.base_url,
                auth=auth,
                headers={
                    "Accept": "application/json",
                    "Accept-Encoding": ACCEPT_ENCODING,
                    "User-Agent": "coupa-plugin",
                },
            )

        self.tokens = token_source()
        self._http = api_client(CoupaAuth(self.tokens, sleep))
        # GraphQL takes read scopes only: its own token, with the granted scopes minus the
        # write ones (in read-only mode that is the main token itself)
        self.read_tokens = token_source()
        self._graphql_auth = CoupaAuth(self.read_tokens, sleep)
        self._graphql_http = api_client(self._graphql_auth)
        self.http = RequestLoop(
            config,
            api=self._http,
            graphql=self._graphql_http,
            limiter=self.limiter,
            clock=clock,
            telemetry=self.telemetry,
        )
        self.fields = TenantFields()
        self._license_flags: frozenset[str] = frozenset()  # seen on this tenant
        self._flags_discovered = False
        self._grant: ScopeGrant | None = None
        self._page_size = PageSize()
        self.newest_user_id: int | None = None  # from the last license-flag probe
        self._lock = threading.Lock()
        self._learning = threading.Lock()
        self._graphql_ordering: bool | None = None  # honours order_by/dir; None: not yet seen

    # -- lifecycle and scopes ------------------------------------------------------------------

    def close(self) -> None:
        """Close the client's connections (its threads belong to the listings running: each
        ends with its listing)."""
        self._http.close()
        self._graphql_http.close()
        self._token_http.close()
        if isinstance(self.limiter, SharedRateLimiter):
            self.limiter.close()

    def __enter__(self) -> CoupaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def grant(self) -> ScopeGrant:
        return self._grant if self._grant is not None else self.connect()

    def connect(self, *, refresh: bool = False) -> ScopeGrant:
        """Authenticate and detect the granted scopes; decides read-only or provisioning.

        The result is kept; ``refresh`` negotiates again (the admin may have changed the
        OAuth client's scopes in Coupa since). GraphQL's token for the read scopes of the
        fullest set asked for is minted meanwhile, not after: it is GraphQL's token when that
        set is granted, and the read-only set's token when only that is.
        """
        with self._lock:
            if self._grant is None or refresh:
                early = self._mint_read_token_early()
                try:
                    prepared = {} if early is None else {_EARLY_READ_SCOPES: early.result}
                    self._grant = negotiate(
                        self.tokens, self.config.mode, self.config.tenant, prepared=prepared
                    )
                finally:
                    ready = _settled(early)
                self._use_read_tokens(ready)
            return self._grant

    def _mint_read_token_early(self) -> Future[AccessToken] | None:
        """GraphQL's likely token, asked for on another thread while the main one is, unless
        the mode is read-only (GraphQL then uses the main token) or it is held already."""
        if self.config.mode == "read-only" or self.read_tokens.holds(_EARLY_READ_SCOPES):
            return None
        # a thread of its own: the page pool's threads may all be busy (or waiting on this
        # very negotiation), and a token must not queue behind them
        pool = ThreadPoolExecutor(1, thread_name_prefix=f"coupa-{self.config.tenant}-token")
        try:
            return pool.submit(inherit_deadline(partial(self.read_tokens.mint, _EARLY_READ_SCOPES)))
        finally:
            pool.shutdown(wait=False)

    def _use_read_tokens(self, early: AccessToken | None = None) -> None:
        """Point GraphQL at a token without write scopes (``early`` when it is for them,
        else minted on first use; refreshed like the other one)."""
        scopes = self.tokens.scopes
        read = read_scopes(scopes)
        if read is None or read == scopes:
            self._graphql_auth.source = self.tokens
            return
        if early is not None and read == _EARLY_READ_SCOPES:
            self.read_tokens.use(read, early)
        elif self.read_tokens.scopes != read:  # keep a valid token across re-negotiations
            self.read_tokens.use(read)
        self._graphql_auth.source = self.read_tokens

    @property
    def requests(self) -> int:
        """Requests sent (attempts, retries included; tokens not)."""
        return self.http.requests

    @property
    def retries(self) -> int:
        return self.http.retries

    @property
    def server_time(self) -> float | None:
        """Coupa's clock (seconds since the epoch) by the Date of its latest answer, or None
        before any answer carried one."""
        return self.http.server_time

    def log_stats(self) -> None:
        """One INFO record with the request counters (the reference host shows them)."""
        self.http.log_stats()

    @property
    def writes_allowed(self) -> bool:
        return self.grant.mode == "provisioning"

    # -- requests ------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Send one request (paced, retried where safe) and return the decoded JSON body.

        Reads are retried freely. A write is retried only when ``idempotent`` (sending it twice
        leaves the same state) or when it provably never left (connection refused, 429).
        Answers that cannot change (a redirect, an HTML page, a body over the size limit) are
        not retried. Each attempt must end within ``timeout_s`` (connect, send and the whole
        body), and the call with its retries within ``retry_timeout_s``.
        """
        read = method == "GET" or (method == "POST" and path == GRAPHQL_PATH)
        grant = self.grant  # authenticate (once) before the first request
        if not read and grant.mode != "provisioning":
            raise ReadOnlyClientError(
                f"{method} {path} refused: this client runs in read-only mode"
            )
        safe = read or bool(idempotent)
        return self.http.send(method, path, params=params, body=body, safe=safe)

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def get_fields(
        self, path: str, spec: FieldSpec, params: Mapping[str, Any] | None = None
    ) -> Any:
        """GET with ``fields=`` from ``spec``, less what this tenant refused. When Coupa answers
        400 naming fields, those are dropped, remembered for the tenant, and the read retried.

        :raises FieldsRefusedError: Coupa refused a field ``spec`` cannot do without.
        """
        while True:
            sent = self.fields.render(spec)
            try:
                return self.get(path, {**(params or {}), "fields": sent})
            except CoupaHTTPError as exc:
                if exc.status != 400:
                    raise
                with self._learning:  # pages refused together are pinned down once
                    if self.fields.render(spec) != sent:
                        continue  # learnt meanwhile, from another page's refusal: read again
                    dropped = self.fields.learn(spec, exc, self._fields_probe(path, params))
                if not dropped:
                    raise
                log.warning(
                    "Coupa refused fields; reading without them",
                    extra={
                        "tenant": self.config.tenant,
                        "path": path,
                        "fields": ",".join(sorted(dropped)),
                    },
                )

    def _fields_probe(self, path: str, params: Mapping[str, Any] | None) -> Callable[[str], bool]:
        """Does Coupa take this ``fields=`` value on ``path``? One record's read per probe."""

        def accepts(fields: str) -> bool:
            try:
                self.get(path, {**(params or {}), "limit": 1, "fields": fields})
            except CoupaHTTPError as exc:
                if exc.status == 400:
                    return False
                raise
            return True

        return accepts

    def _list(
        self,
        path: str,
        params: Mapping[str, Any],
        what: str,
        spec: FieldSpec | None = None,
        last_id: int | None = None,
        in_flight: int | None = None,
        max_rows: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        def fetch(offset: int, limit: int) -> list[dict[str, Any]]:
            page_params = {**params, "limit": limit, "offset": offset}
            page = (
                self.get(path, page_params)
                if spec is None
                else self.get_fields(path, spec, page_params)
            )
            if not isinstance(page, list) or not all(isinstance(r, dict) for r in page):
                raise CoupaResponseError(f"GET {path}: expected a JSON array of records")
            return page

        depth = in_flight or self.config.max_in_flight
        # a pool per listing, its threads started as pages go ahead and ended with the
        # listing: an idle client keeps no thread
        pool = ThreadPoolExecutor(depth, thread_name_prefix=f"coupa-{self.config.tenant}")
        try:
            yield from read_all(
                fetch,
                pool,
                limit=MAX_PAGE,
                in_flight=depth,
                what=what,
                page_size=self._page_size,
                saturated=self.limiter.saturated,
                max_rows=min(
                    max_rows or self.config.max_listing_rows, self.config.max_listing_rows
                ),
                last_id=last_id,
                start_depth=self._start_depth(),
            )
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _start_depth(self) -> int:
        """Pages a bounded listing starts with: enough to keep the pacer busy at its rate over
        the round trip seen so far (at least two)."""
        round_trip = self.http.round_trip_s
        if round_trip is None:
            return 2
        return max(2, min(self.config.max_in_flight, int(self.limiter.rate * round_trip)))

    def graphql(self, query: str) -> dict[str, Any]:
        payload = self.request("POST", GRAPHQL_PATH, body={"query": query})
        if not isinstance(payload, dict):
            raise CoupaResponseError("POST /api/graphql: expected a JSON object")
        errors = payload.get("errors")
        if errors:
            items = errors if isinstance(errors, list) else [errors]
            raise GraphQLError(
                [plain(e.get("message") if isinstance(e, dict) else e) for e in items[:20]]
            )
        data = payload.get("data")
        if not isinstance(data, dict):
            raise CoupaResponseError("POST /api/graphql: no data in the response")
        return data

    # -- reads ---------------------------------------------------------------------------------

    def user_fields(self, license_flags: Iterable[str] = ()) -> FieldSpec:
        """What a sync (and every provisioning read) asks of a user: :data:`USER_FIELDS` and
        every license flag known here, seen on this tenant, or given."""
        flags = sorted(set(KNOWN_LICENSE_FLAGS) | self._license_flags | set(license_flags))
        return FieldSpec("users", USER_FIELDS, USER_REQUIRED_FIELDS).plus(flags)

    def newest_users(self) -> frozenset[str]:
        """One page of the newest users, unfiltered: the license flags it shows (among them
        flags not known here; newer ones show only when named, as the sync's user pass names
        them), the largest id, which bounds the next user listing so that it requests no page
        past the end (``newest_user_id``), and, when the page is full, the page size, so that
        listing pipelines from its first page."""
        page = self.get("/api/users", {"limit": MAX_PAGE, "order_by": "id", "dir": "desc"})
        if not isinstance(page, list):
            raise CoupaResponseError("GET /api/users: expected a JSON array of records")
        ids = [row.get("id") for row in page if isinstance(row, dict)]
        numeric = [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]
        self.newest_user_id = max(numeric) if numeric and len(numeric) == len(ids) else None
        if len(page) == MAX_PAGE:
            self._page_size.served_in_full = MAX_PAGE
        return self._flags_in(page)

    def discover_license_flags(self) -> frozenset[str]:
        """Every license flag this tenant has, without a user pass: the newest users' page
        unfiltered (:meth:`newest_users`: flags not known here) and one record naming every
        flag known here (Coupa shows newer fields only when named)."""
        named = FieldSpec("users", ("id",)).plus(
            sorted(set(KNOWN_LICENSE_FLAGS) | self._license_flags)
        )
        unfiltered = self.newest_users()
        page = self.get_fields("/api/users", named, {"limit": 1})
        if not isinstance(page, list):
            raise CoupaResponseError("GET /api/users: expected a JSON array of records")
        found = unfiltered | self._flags_in(page)
        with self._lock:
            self._flags_discovered = True
        return found

    def _flags_in(self, page: list[Any]) -> frozenset[str]:
        found = frozenset(
            k
            for row in page
            if isinstance(row, dict)
            for k, v in row.items()
            if is_license_flag(k, v)
        )
        with self._lock:
            self._license_flags |= found
        return found

    def users_raw(
        self,
        *,
        fields: FieldSpec | None = None,
        since: datetime | None = None,
        ids: Iterable[int] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """User payloads: all, changed since ``since``, or the users with ``ids``.

        Filters are applied by Coupa and checked here: a user changed at or before ``since``
        is left out, and when a server ignores ``id[in]`` the remaining users are read one by
        one instead of scanning the tenant.
        """
        return self._user_rows(fields or self.user_fields(), since, ids)

    def _user_rows(
        self,
        spec: FieldSpec | None,
        since: datetime | None,
        ids: Iterable[int] | None,
        where: Mapping[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """:meth:`users_raw` with ``spec`` None (unfiltered records) and ``where`` filters."""
        params: dict[str, Any] = dict(where or {})
        moment = None
        if since is not None:
            moment = since if since.tzinfo else since.replace(tzinfo=UTC)
            # an explicit offset, as Coupa's examples do (they warn about time-zone effects)
            params["updated_at[gt]"] = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        rows = (
            self._list("/api/users", params, "users", spec, last_id=self.newest_user_id)
            if ids is None
            else self._users_by_id(sorted(set(ids)), params, spec)
        )
        for row in rows:
            if moment is not None and _updated_at_or_before(row, moment):
                continue
            yield row

    def _users_by_id(
        self, wanted: list[int], params: dict[str, Any], spec: FieldSpec | None
    ) -> Iterator[dict[str, Any]]:
        for start in range(0, len(wanted), MAX_PAGE):
            chunk = set(wanted[start : start + MAX_PAGE])
            listing = self._list(
                "/api/users",
                {**params, "id[in]": ",".join(map(str, sorted(chunk)))},
                "users",
                spec,
            )
            seen: set[int] = set()
            honoured = True
            for row in listing:
                ident = row.get("id")
                if not isinstance(ident, int) or isinstance(ident, bool) or ident not in chunk:
                    honoured = False
                    break
                seen.add(row["id"])
                yield row
            if honoured:
                continue
            log.info(
                "id[in] is not honoured; reading users one by one",
                extra={"tenant": self.config.tenant, "users": len(chunk - seen)},
            )
            for user_id in sorted(chunk - seen):
                path = f"/api/users/{user_id}"
                try:
                    row = self.get(path) if spec is None else self.get_fields(path, spec)
                except CoupaHTTPError as exc:
                    if exc.status == 404:
                        continue
                    raise
                if isinstance(row, dict):
                    yield row

    def refused_flags(self) -> frozenset[str]:
        """The license flags (as records name them) seen on this tenant's user records that
        it refused in a users ``fields=``: a user pass does not show them. (A flag refused and
        never seen is one this tenant's release does not have.)"""
        refused = self.fields.refused("users")
        with self._lock:
            seen = self._license_flags
        return frozenset(flag for flag in seen if snake(flag) in refused)

    def flag_holders(
        self, flag: str, *, since: datetime | None = None, ids: Iterable[int] | None = None
    ) -> Iterator[int]:
        """The ids of the users holding license ``flag`` (all, changed since ``since``, or
        among ``ids``), read without ``fields=``: the way to read a flag the tenant refuses
        there. Asks Coupa for the holders only (``<flag>=true``) and checks every row, so a
        server that ignores the filter costs time, not correctness.

        :raises CoupaResponseError: the records do not show the flag: its holders cannot be
            read.
        """
        shown = False
        rows = 0
        for row in self._user_rows(None, since, ids, {snake(flag): "true"}):
            rows += 1
            shown = shown or flag in row
            if row.get(flag) is True:
                yield row["id"]
        if rows and not shown:
            raise CoupaResponseError(
                f"license flag {flag}: Coupa refuses it in fields= and its user records do "
                "not show it: its holders cannot be read"
            )

    def users(
        self,
        *,
        fields: FieldSpec | None = None,
        since: datetime | None = None,
        ids: Iterable[int] | None = None,
    ) -> Iterator[User]:
        """Typed users, as :meth:`users_raw` selects them."""
        for payload in self.users_raw(fields=fields, since=since, ids=ids):
            try:
                yield structure_user(payload)
            except RecordError as exc:
                raise CoupaResponseError(f"GET /api/users: {exc}") from None

    def user_record(self, user_id: int) -> UserRecord:
        """One user read fresh, as provisioning needs it: the sync's fields (so newer license
        flags are there too), the profile (:data:`~.models.PROFILE_FIELDS`) and who changed it
        last; the flags the tenant refuses in ``fields=`` come from its unfiltered record.

        :raises RecordError: the answer is a user record with a field of the wrong type (a
            :class:`CoupaResponseError`: its message names the record and the field).
        :raises CoupaResponseError: the answer is not a JSON object.
        """
        if not self._flags_discovered:  # flags this plugin does not know are named too
            self.discover_license_flags()
        path = f"/api/users/{user_id}"
        payload = self.get_fields(path, self.user_fields().plus(_RECORD_EXTRA, _RECORD_NESTED))
        if not isinstance(payload, dict):
            raise CoupaResponseError(f"GET {path}: expected a JSON object")
        unread = self.refused_flags()
        if unread:  # flags the tenant refuses in fields=: from the unfiltered record
            whole = self.get(path)
            if not isinstance(whole, dict):
                raise CoupaResponseError(f"GET {path}: expected a JSON object")
            payload.update({flag: whole[flag] for flag in unread if flag in whole})
        return UserRecord(structure_user(payload), structure_profile(payload))

    def user_groups(self, *, in_flight: int | None = None) -> Iterator[UserGroup]:
        for row in self._list(
            "/api/user_groups",
            {},
            "user groups",
            _USER_GROUP_FIELDS,
            in_flight=in_flight,
            max_rows=MAX_CATALOG_ROWS,
        ):
            yield _record(row, UserGroup, "GET /api/user_groups")

    def user_group(self, group_id: int) -> UserGroup | None:
        """One user group, or None when Coupa has no group ``group_id`` (404)."""
        path = f"/api/user_groups/{group_id}"
        try:
            row = self.get_fields(path, _USER_GROUP_FIELDS)
        except CoupaHTTPError as exc:
            if exc.status == 404:
                return None
            raise
        return _record(row, UserGroup, f"GET {path}")

    def user_groups_named(self, name: str) -> list[UserGroup]:
        """The user groups whose name is exactly ``name`` (Coupa keeps names unique)."""
        rows = self.get_fields("/api/user_groups", _USER_GROUP_FIELDS, {"name": name})
        if not isinstance(rows, list):
            raise CoupaResponseError("GET /api/user_groups: expected a JSON array of records")
        found = [_record(row, UserGroup, "GET /api/user_groups") for row in rows]
        return [group for group in found if group.name == name]

    def business_groups(self, *, in_flight: int | None = None) -> Iterator[BusinessGroup]:
        for row in self._list(
            "/api/business_groups",
            {},
            "content groups",
            _BUSINESS_GROUP_FIELDS,
            in_flight=in_flight,
            max_rows=MAX_CATALOG_ROWS,
        ):
            yield _record(row, BusinessGroup, "GET /api/business_groups")

    def account_groups(self, *, in_flight: int | None = None) -> Iterator[AccountGroup]:
        for row in self._list(
            "/api/account_groups",
            {},
            "account groups",
            _ACCOUNT_GROUP_FIELDS,
            in_flight=in_flight,
            max_rows=MAX_CATALOG_ROWS,
        ):
            yield _record(row, AccountGroup, "GET /api/account_groups")

    def other_active_holders(self, role_id: int, user_id: int) -> list[int]:
        """Ids of active users other than ``user_id`` who hold role ``role_id`` (one page:
        one is enough to know the role keeps a holder). Coupa's filters are checked on every
        row too: a server that ignored them must not make an arbitrary user look like one."""
        rows = self.get(
            "/api/users",
            {
                "roles[id]": role_id,
                "active": "true",
                "id[not_eq]": user_id,
                "limit": 50,
                "fields": '["id","active",{"roles":["id"]}]',
            },
        )
        found = []
        for row in rows if isinstance(rows, list) else []:
            if not isinstance(row, dict) or row.get("active") is not True:
                continue
            ident = row.get("id")
            held = row.get("roles") or []
            if (
                isinstance(ident, int)
                and not isinstance(ident, bool)
                and ident != user_id
                and isinstance(held, list)
                and any(isinstance(r, dict) and r.get("id") == role_id for r in held)
            ):
                found.append(ident)
        return found

    def user_id_by_login(self, login: str) -> int | None:
        """The id of the user whose login is exactly ``login``, or None."""
        rows = self.get("/api/users", {"login": login, "fields": '["id","login"]'})
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and row.get("login") == login:
                ident = row.get("id")
                if isinstance(ident, int) and not isinstance(ident, bool):
                    return ident
        return None

    def memberships(
        self, *, user_id: int | None = None, group_id: int | None = None
    ) -> Iterator[Membership]:
        params: dict[str, Any] = {}
        if user_id is not None:
            params["user_id"] = user_id
        if group_id is not None:
            params["user_group_id"] = group_id
        path = "/api/user_group_memberships"
        if user_id is not None and group_id is not None:
            # one user in one group: a page holds them all (no read-ahead of empty pages)
            page = self.get(path, {**params, "limit": MAX_PAGE, "offset": 0})
            if not isinstance(page, list) or not all(isinstance(r, dict) for r in page):
                raise CoupaResponseError(f"GET {path}: expected a JSON array of records")
            if len(page) < MAX_PAGE:
                for row in page:
                    yield _record(row, Membership, f"GET {path}")
                return
        for row in self._list(path, params, "memberships"):
            yield _record(row, Membership, f"GET {path}")

    def roles(self) -> Iterator[Role]:
        """Every role, from GraphQL (Coupa has no REST list of roles), paged by id.

        GraphQL's page size is undocumented, so the end is an empty page, unless the first
        page's answer also shows the largest role id: it asks for the roles in descending id
        order too (``last:``), and when GraphQL honours ``order_by`` / ``dir`` there (the ids
        come back descending), the page that reaches that id is the last. A GraphQL that
        ignores them or refuses them is read to its empty page, and not asked again.
        """
        selections = ["id name description omnipotent", "id name"]
        top: int | None = None

        def fetch_after(cursor: int) -> list[dict[str, Any]]:
            nonlocal top
            while True:
                ask_last = cursor == 0 and self._graphql_ordering is not False
                last = ' last: roles(query: "order_by=id&dir=desc") { id }' if ask_last else ""
                try:
                    data = self.graphql(
                        f'{{ roles(query: "id[gt]={cursor}") {{ {selections[0]} }}{last} }}'
                    )
                except GraphQLError as exc:
                    self._plainer_roles_query(exc, selections, asked_last=ask_last)
                    continue
                rows = data.get("roles")
                if not isinstance(rows, list):
                    raise CoupaResponseError("GraphQL roles: expected a list")
                if ask_last:
                    top = _descending_top(data.get("last"))
                    if top is None and isinstance(data.get("last"), list) and len(data["last"]) > 1:
                        self._graphql_ordering = False  # not descending: ignored here
                return [r for r in rows if isinstance(r, dict)]

        for row in read_keyset(
            fetch_after,
            what="roles",
            max_pages=_MAX_ROLE_PAGES,
            max_rows=_MAX_ROLES,
            last_id=lambda: top,
        ):
            yield _record(row, Role, "GraphQL roles")

    def _plainer_roles_query(
        self, exc: GraphQLError, selections: list[str], *, asked_last: bool
    ) -> None:
        """After GraphQL refused a roles query: make the next one plainer, or raise ``exc``.
        The ordering asked for by ``last:`` goes first when the refusal names it; a missing
        field (an older schema) costs the selection its extras, once."""
        text = " ".join(exc.messages).lower()
        if asked_last and ("order_by" in text or "dir" in text):
            self._graphql_ordering = False
        elif len(selections) > 1 and "field" in text:
            selections.pop(0)
        elif asked_last:
            self._graphql_ordering = False  # refused some other way: ask plainly
        else:
            raise exc

    # -- writes --------------------------------------------------------------------------------

    def _put_user(self, user_id: int, body: dict[str, Any]) -> WriteEcho:
        """``PUT /api/users/:id`` (idempotent: the same body twice leaves the same user)."""
        path = f"/api/users/{user_id}"
        answer = self.request(
            "PUT", path, body=body, params={"fields": _ECHO_FIELDS}, idempotent=True
        )
        if not isinstance(answer, dict):
            raise CoupaResponseError(f"PUT {path}: the answer was not a user record")
        writer = answer.get("updated-by")
        ident = writer.get("id") if isinstance(writer, dict) else None
        return WriteEcho(ident if ident.__class__ is int and 0 < ident < MAX_ID else None)

    def put_user_list(
        self, user_id: int, attribute: UserList, ids: Collection[int] | None
    ) -> WriteEcho:
        """Write one of the user's lists whole: ``ids`` in ascending order, or ``None`` (a
        ``null``, the other form of clearing a list that some tenants need)."""
        items = None if ids is None else [{"id": ident} for ident in sorted(ids)]
        return self._put_user(user_id, {USER_LIST_KEYS[attribute]: items})

    def set_license(self, user_id: int, flag: str, *, held: bool) -> WriteEcho:
        """Set the user's license flag ``flag`` (e.g. ``expense-user``)."""
        if not is_license_flag(flag, value=held):
            raise ValueError(f"{flag[:60]!r} is not a license flag")
        return self._put_user(user_id, {flag: held})

    def set_active(self, user_id: int, *, active: bool) -> WriteEcho:
        return self._put_user(user_id, {"active": active})

    def update_profile(self, user_id: int, changes: ProfileChanges) -> WriteEcho:
        """Set the profile attributes in ``changes`` (``None`` clears one)."""
        return self._put_user(user_id, profile_body(changes))

    def create_user(
        self,
        profile: ProfileChanges,
        *,
        roles: Collection[int] = (),
        licenses: Collection[str] = (),
    ) -> int:
        """``POST /api/users`` (not idempotent: sent once); the new user's id.

        :raises CoupaResponseError: the answer carries no user id (the user may exist).
        """
        body = profile_body(profile)
        if roles:
            body["roles"] = [{"id": ident} for ident in sorted(roles)]
        for flag in sorted(licenses):
            if not is_license_flag(flag, value=True):
                raise ValueError(f"{flag[:60]!r} is not a license flag")
            body[flag] = True
        answer = self.request("POST", "/api/users", body=body, idempotent=False)
        ident = answer.get("id") if isinstance(answer, dict) else None
        if ident.__class__ is not int or not 0 < ident < MAX_ID:
            raise CoupaResponseError("POST /api/users: the answer carried no user id")
        return int(ident)

    def exists(self, collection: LookupCollection, record_id: int) -> bool:
        """Whether Coupa has record ``record_id`` in ``collection`` (a 404 says no)."""
        try:
            found = self.get(f"/api/{collection}/{record_id}", {"fields": '["id"]'})
        except CoupaHTTPError as exc:
            if exc.status != 404:
                raise
            return False
        return isinstance(found, dict)

    def ping(self) -> None:
        """The cheapest read there is (one user's id): a round trip to measure."""
        self.get("/api/users", {"limit": 1, "fields": '["id"]'})

    def create_user_group(self, *, name: str, description: str | None = None) -> UserGroup:
        """``POST /api/user_groups``: a new, active user group."""
        body: dict[str, Any] = {"name": name, "active": True}
        if description is not None:
            body["description"] = description
        result = self.request("POST", "/api/user_groups", body=body, idempotent=False)
        return _record(result, UserGroup, "POST /api/user_groups")

    def update_user_group(self, group_id: int, changes: GroupChanges) -> None:
        """``PUT /api/user_groups/:id`` with ``changes`` (the caller reads the group back)."""
        self.request("PUT", f"/api/user_groups/{group_id}", body=dict(changes), idempotent=True)

    def add_membership(self, user_id: int, group_id: int) -> Membership:
        result = self.request(
            "POST",
            "/api/user_group_memberships",
            body={"user-id": user_id, "user-group-id": group_id},
            idempotent=False,
        )
        return _record(result, Membership, "POST /api/user_group_memberships")

    def delete_membership(self, membership_id: int) -> None:
        self.request("DELETE", f"/api/user_group_memberships/{membership_id}", idempotent=True)

    def business_group(self, user_id: int, group_id: int, action: Literal["add", "remove"]) -> None:
        self.request(
            "PUT",
            f"/api/users/{user_id}/business_groups/{group_id}/{action}",
            body={},
            idempotent=True,
        )
