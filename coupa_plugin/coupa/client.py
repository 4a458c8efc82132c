"""The Coupa client: scopes and mode, paced and retried requests, complete listings, typed
records. It knows nothing of the IGA host."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Final, Literal
from urllib.parse import quote, urlencode

import attrs
import httpx
import orjson
import stamina

from coupa_plugin.coupa._secret import Secret
from coupa_plugin.coupa.auth import CoupaAuth, TokenSource
from coupa_plugin.coupa.errors import (
    CoupaError,
    CoupaHTTPError,
    CoupaResponseError,
    CoupaTransportError,
    ReadOnlyClientError,
    ScopeError,
    excerpt,
)
from coupa_plugin.coupa.models import (
    KNOWN_LICENSE_FLAGS,
    AccountGroup,
    BusinessGroup,
    Membership,
    Role,
    User,
    UserGroup,
    converter,
    is_license_flag,
    structure_user,
)
from coupa_plugin.coupa.paging import MAX_PAGE, PageSize, read_all, read_keyset
from coupa_plugin.coupa.ratelimit import RateLimiter, SharedRateLimiter
from coupa_plugin.coupa.scopes import (
    OPTIONAL_SCOPES,
    PROVISIONING_SCOPES,
    READ_ONLY_SCOPES,
    REQUIRED_SCOPES,
    WRITE_SCOPES,
)
from coupa_plugin.coupa.transport import PacedTransport, retry_after_seconds

__all__ = ["USER_FIELDS", "ClientConfig", "CoupaClient", "GraphQLError", "ScopeGrant"]

log = logging.getLogger("coupa_plugin.coupa")
Mode = Literal["auto", "read-only", "provisioning"]
_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
_GRAPHQL_PATH: Final = "/api/graphql"
_NEVER_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_STATS_EVERY: Final = 50
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
    {"roles": ["id", "name"]},
    {"user_groups": ["id", "name"]},
    {"content_groups": ["id", "name"]},
    {"account_groups": ["id", "name"]},
    {"approval_groups": ["id", "name"]},
)


class GraphQLError(CoupaError):
    """Coupa's GraphQL endpoint answered with errors."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__("GraphQL: " + "; ".join(messages)[:500])


@attrs.frozen(kw_only=True)
class ClientConfig:
    """How to reach and pace one Coupa instance."""

    base_url: str
    client_id: str
    client_secret: Secret
    mode: Mode = "auto"
    requests_per_second: float = 24.0
    burst: int = 16  # Coupa allows bursts of 20; the rest is margin for jitter
    max_in_flight: int = 8
    timeout_s: float = 30.0
    retry_attempts: int = 8
    retry_timeout_s: float = 120.0
    tenant: str = ""
    shared_rate_limit_file: str | None = None


@attrs.frozen(kw_only=True)
class ScopeGrant:
    """What the token endpoint granted and the mode that follows from it."""

    mode: Literal["read-only", "provisioning"]
    scopes: frozenset[str]
    optional_missing: frozenset[str]
    reported_by_server: bool
    documented_missing: frozenset[str] = frozenset()


class _Retryable(Exception):
    """Internal: a failed attempt worth another try."""

    def __init__(
        self, reason: str, response: httpx.Response | None = None, wait: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason, self.response, self.wait = reason, response, wait


def _updated_at_or_before(row: Mapping[str, Any], moment: datetime) -> bool:
    value = row.get("updated-at")
    if not isinstance(value, str):
        return False
    try:
        stamp = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        return False
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)) <= moment


def _backoff(exc: Exception) -> bool | float:
    if isinstance(exc, _Retryable):
        return exc.wait if exc.wait is not None else True
    return False


class CoupaClient:
    """A client for one Coupa instance and one OAuth client (never shared across tenants)."""

    def __init__(
        self,
        config: ClientConfig,
        transport: httpx.BaseTransport | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.limiter: RateLimiter = (
            SharedRateLimiter(
                config.shared_rate_limit_file,
                config.base_url,
                config.requests_per_second,
                burst=config.burst,
            )
            if config.shared_rate_limit_file
            else RateLimiter(config.requests_per_second, burst=config.burst)
        )
        inner = transport or httpx.HTTPTransport(retries=0)
        self._transport = PacedTransport(inner, self.limiter)
        timeout = httpx.Timeout(config.timeout_s)
        limits = httpx.Limits(
            max_connections=config.max_in_flight + 2,
            max_keepalive_connections=config.max_in_flight + 2,
        )
        self._token_http = httpx.Client(
            transport=self._transport, timeout=timeout, base_url=config.base_url
        )
        self.tokens = TokenSource(
            f"{config.base_url}/oauth2/token",
            config.client_id,
            config.client_secret,
            self._token_http,
            clock=clock,
        )
        self._http = httpx.Client(
            transport=self._transport,
            timeout=timeout,
            limits=limits,
            base_url=config.base_url,
            auth=CoupaAuth(self.tokens),
            headers={"Accept": "application/json", "User-Agent": "coupa-plugin"},
        )
        self._executor = ThreadPoolExecutor(
            config.max_in_flight, thread_name_prefix=f"coupa-{config.tenant}"
        )
        self._grant: ScopeGrant | None = None
        self._page_size = PageSize()
        self.newest_user_id: int | None = None  # from the last license-flag probe
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0

    # -- lifecycle and scopes ------------------------------------------------------------------

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._http.close()
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

    def connect(self, refresh: bool = False) -> ScopeGrant:
        """Authenticate and detect the granted scopes; decides read-only or provisioning.

        The result is kept; ``refresh`` negotiates again (the admin may have changed the
        OAuth client's scopes in Coupa since).
        """
        with self._lock:
            if self._grant is None or refresh:
                self._grant = self._negotiate()
            return self._grant

    def _negotiate(self) -> ScopeGrant:
        mode = self.config.mode
        bases: list[frozenset[str]] = []
        if mode in {"auto", "provisioning"}:
            # offline_access is in the documented set, but client credentials get no refresh
            # token anyway: writing does not depend on it
            bases += [PROVISIONING_SCOPES, PROVISIONING_SCOPES - {"offline_access"}]
        if mode in {"auto", "read-only"}:
            bases.append(READ_ONLY_SCOPES)
        for base in bases:
            for asked in (base | OPTIONAL_SCOPES, base):
                try:
                    token = self.tokens.mint(asked)
                except ScopeError:
                    continue
                self.tokens.use(asked, token)
                documented = PROVISIONING_SCOPES if base != READ_ONLY_SCOPES else READ_ONLY_SCOPES
                return self._decide(asked, token.reported_scopes, documented - asked)
        # None of the documented sets: find out scope by scope what the client may have.
        candidates = (
            READ_ONLY_SCOPES if mode == "read-only" else PROVISIONING_SCOPES
        ) | OPTIONAL_SCOPES
        refused = frozenset(self._refused_scopes(candidates))
        granted = candidates - refused
        required = REQUIRED_SCOPES | (WRITE_SCOPES if mode == "provisioning" else frozenset())
        if required - granted:
            raise ScopeError(
                f"the OAuth client was not granted the scopes mode {mode!r} needs; missing: "
                f"{' '.join(sorted(required - granted))}"
                + (
                    f" (also not granted: {' '.join(sorted(refused - required))})"
                    if refused - required
                    else ""
                )
                + ". Grant them to the client under Setup > Integrations > "
                "OAuth2/OpenID Connect Clients"
            )
        token = self.tokens.mint(granted)
        self.tokens.use(granted, token)
        return self._decide(granted, token.reported_scopes, refused - OPTIONAL_SCOPES)

    def _decide(
        self, asked: frozenset[str], reported: frozenset[str] | None, missing: frozenset[str]
    ) -> ScopeGrant:
        scopes = reported if reported is not None else asked
        writes = self.config.mode != "read-only" and scopes >= WRITE_SCOPES
        if self.config.mode == "provisioning" and not writes:
            raise ScopeError(
                "the OAuth client was not granted the scopes mode 'provisioning' needs; "
                f"missing: {' '.join(sorted(WRITE_SCOPES - scopes))}"
            )
        grant = ScopeGrant(
            mode="provisioning" if writes else "read-only",
            scopes=scopes,
            optional_missing=OPTIONAL_SCOPES - scopes,
            reported_by_server=reported is not None,
            documented_missing=missing | ((READ_ONLY_SCOPES - scopes) if reported else frozenset()),
        )
        log.info(
            "scopes negotiated",
            extra={"tenant": self.config.tenant, "mode": grant.mode, "scopes": len(scopes)},
        )
        return grant

    def _refused_scopes(self, scopes: Iterable[str]) -> list[str]:
        refused = []
        for scope in sorted(scopes):
            try:
                self.tokens.mint({scope})
            except ScopeError:
                refused.append(scope)
        return refused

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
        """
        read = method == "GET" or (method == "POST" and path == _GRAPHQL_PATH)
        grant = self.grant  # authenticate (once) before the first request
        if not read and grant.mode != "provisioning":
            raise ReadOnlyClientError(
                f"{method} {path} refused: this client runs in read-only mode"
            )
        safe = read or bool(idempotent)
        content = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            for attempt in stamina.retry_context(
                on=_backoff,
                attempts=self.config.retry_attempts,
                timeout=self.config.retry_timeout_s,
                wait_initial=0.5,
                wait_max=30.0,
                wait_jitter=1.0,
            ):
                with attempt:
                    if attempt.num > 1:
                        with self._lock:
                            self.retries += 1
                    return self._attempt(method, path, params, content, headers, safe, attempt.num)
        except _Retryable as exc:
            if exc.response is not None:
                raise self._http_error(method, path, exc.response) from None
            raise CoupaTransportError(
                f"{method} {path} failed after {self.config.retry_attempts} attempts: {exc.reason}"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        content: bytes | None,
        headers: dict[str, str] | None,
        safe: bool,
        attempt: int,
    ) -> Any:
        started = time.monotonic()
        with self._lock:
            self.requests += 1
            report = self.requests % _STATS_EVERY == 0
        if report:
            self.log_stats()
        try:
            response = self._http.request(
                method, self._url(path, params), content=content, headers=headers
            )
        except httpx.TransportError as exc:
            reason = type(exc).__name__
            log.info(
                "request failed",
                extra={
                    "tenant": self.config.tenant,
                    "method": method,
                    "path": path,
                    "error": reason,
                    "attempt": attempt,
                },
            )
            if safe or isinstance(exc, _NEVER_SENT):
                raise _Retryable(reason) from None
            raise CoupaTransportError(
                f"{method} {path} failed ({reason}); Coupa may or may not have applied it"
            ) from None
        elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        status = response.status_code
        log.debug(
            "request",
            extra={
                "tenant": self.config.tenant,
                "method": method,
                "path": path,
                "status": status,
                "attempt": attempt,
                "elapsed_ms": elapsed_ms,
            },
        )
        if status == 401 and safe:
            # the auth flow already re-minted once; a token can still be revoked between the
            # mint and the retry, so safe requests get another round
            raise _Retryable("HTTP 401", response)
        # a 500 on a read is as transient as a 502-504; a write answered 500 is reported (the
        # caller's read-back tells what Coupa holds)
        if (status in _RETRY_STATUSES and (safe or status == 429)) or (
            status == 500 and (method == "GET" or path == _GRAPHQL_PATH)
        ):
            log.info(
                "retrying",
                extra={
                    "tenant": self.config.tenant,
                    "method": method,
                    "path": path,
                    "status": status,
                    "attempt": attempt,
                },
            )
            wait = retry_after_seconds(response) if status == 429 else None
            raise _Retryable(f"HTTP {status}", response, wait)
        if status >= 400:
            raise self._http_error(method, path, response)
        if not response.content.strip():
            return None
        try:
            return orjson.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            problem = (
                f"{method} {path}: invalid JSON in the response ({excerpt(response.content, 80)})"
            )
            if safe:
                raise _Retryable(problem) from None
            raise CoupaResponseError(problem) from None

    def _url(self, path: str, params: Mapping[str, Any] | None) -> httpx.URL:
        """The absolute, percent-encoded URL, built once: httpx validates a URL character by
        character each time it parses or merges one, and ``fields=[…]`` makes it long."""
        query = urlencode(params, quote_via=quote) if params else ""
        return httpx.URL(f"{self.config.base_url}{path}{'?' + query if query else ''}")

    @staticmethod
    def _http_error(method: str, path: str, response: httpx.Response) -> CoupaHTTPError:
        errors = None
        try:
            payload = response.json()
            if isinstance(payload, dict) and isinstance(payload.get("errors"), dict):
                errors = payload["errors"]
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass
        return CoupaHTTPError(method, path, response.status_code, excerpt(response.content), errors)

    def log_stats(self) -> None:
        """One INFO record with the request counters (``requests``, ``retries``,
        ``throttled``, ``rate``): the reference host shows them as progress."""
        log.info(
            "request stats",
            extra={
                "tenant": self.config.tenant,
                "requests": self.requests,
                "retries": self.retries,
                "throttled": self.limiter.throttled,
                "rate": round(self.limiter.rate, 2),
            },
        )

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def _list(
        self,
        path: str,
        params: Mapping[str, Any],
        what: str,
        last_id: int | None = None,
        in_flight: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        def fetch(offset: int, limit: int) -> list[dict[str, Any]]:
            page = self.get(path, {**params, "limit": limit, "offset": offset})
            if not isinstance(page, list) or not all(isinstance(r, dict) for r in page):
                raise CoupaResponseError(f"GET {path}: expected a JSON array of records")
            return page

        return read_all(
            fetch,
            self._executor,
            limit=MAX_PAGE,
            in_flight=in_flight or self.config.max_in_flight,
            what=what,
            page_size=self._page_size,
            saturated=self.limiter.saturated,
            last_id=last_id,
        )

    def graphql(self, query: str) -> dict[str, Any]:
        payload = self.request("POST", "/api/graphql", body={"query": query})
        if not isinstance(payload, dict):
            raise CoupaResponseError("POST /api/graphql: expected a JSON object")
        if payload.get("errors"):
            raise GraphQLError(
                [
                    str(e.get("message", e)) if isinstance(e, dict) else str(e)
                    for e in payload["errors"]
                ]
            )
        data = payload.get("data")
        if not isinstance(data, dict):
            raise CoupaResponseError("POST /api/graphql: no data in the response")
        return data

    # -- reads ---------------------------------------------------------------------------------

    def user_fields(self, license_flags: Iterable[str]) -> str:
        flags = sorted(set(KNOWN_LICENSE_FLAGS) | set(license_flags))
        return json.dumps(
            [*USER_FIELDS, *(f.replace("-", "_") for f in flags)], separators=(",", ":")
        )

    def discover_license_flags(self) -> frozenset[str]:
        """License flags present in this tenant's user payloads (one page of full records).

        The page read is the newest users': the largest id bounds the next user listing, which
        then requests no page ahead past the end (``newest_user_id``), and a full page shows
        the page size, so that listing pipelines from its first page."""
        page = self.get("/api/users", {"limit": MAX_PAGE, "order_by": "id", "dir": "desc"})
        if not isinstance(page, list):
            raise CoupaResponseError("GET /api/users: expected a JSON array of records")
        ids = [row.get("id") for row in page if isinstance(row, dict)]
        numeric = [i for i in ids if isinstance(i, int)]
        self.newest_user_id = max(numeric) if numeric and len(numeric) == len(ids) else None
        if len(page) == MAX_PAGE:
            self._page_size.served_in_full = MAX_PAGE
        return frozenset(
            k
            for row in page
            if isinstance(row, dict)
            for k, v in row.items()
            if is_license_flag(k, v)
        )

    def users_raw(
        self,
        *,
        fields: str,
        since: datetime | None = None,
        ids: Iterable[int] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """User payloads: all, changed since ``since``, or the users with ``ids``.

        Filters are applied by Coupa and checked here: a user changed at or before ``since``
        is left out, and when a server ignores ``id[in]`` the remaining users are read one by
        one instead of scanning the tenant.
        """
        params: dict[str, Any] = {"fields": fields}
        moment = None
        if since is not None:
            moment = since if since.tzinfo else since.replace(tzinfo=UTC)
            params["updated_at[gt]"] = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows = (
            self._list("/api/users", params, "users", last_id=self.newest_user_id)
            if ids is None
            else self._users_by_id(sorted(set(ids)), params)
        )
        for row in rows:
            if moment is not None and _updated_at_or_before(row, moment):
                continue
            yield row

    def _users_by_id(self, wanted: list[int], params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        for start in range(0, len(wanted), MAX_PAGE):
            chunk = set(wanted[start : start + MAX_PAGE])
            listing = self._list(
                "/api/users", {**params, "id[in]": ",".join(map(str, sorted(chunk)))}, "users"
            )
            seen: set[int] = set()
            honoured = True
            for row in listing:
                if row.get("id") not in chunk:
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
                try:
                    row = self.get(f"/api/users/{user_id}", {"fields": params["fields"]})
                except CoupaHTTPError as exc:
                    if exc.status == 404:
                        continue
                    raise
                if isinstance(row, dict):
                    yield row

    def users(self, **kwargs: Any) -> Iterator[User]:
        for payload in self.users_raw(**kwargs):
            try:
                yield structure_user(payload)
            except ValueError as exc:
                raise CoupaResponseError(f"GET /api/users: {exc}") from None

    def user(self, user_id: int, fields: str | None = None) -> User:
        payload = self.get(f"/api/users/{user_id}", {"fields": fields} if fields else None)
        if not isinstance(payload, dict):
            raise CoupaResponseError(f"GET /api/users/{user_id}: expected a JSON object")
        try:
            return structure_user(payload)
        except ValueError as exc:
            raise CoupaResponseError(f"GET /api/users/{user_id}: {exc}") from None

    def user_groups(self, *, in_flight: int | None = None) -> Iterator[UserGroup]:
        """Every user group; ``in_flight`` caps the pages requested at once (as do the other
        catalog listings)."""
        fields = '["id","name","description","active","can_approve"]'
        for row in self._list(
            "/api/user_groups", {"fields": fields}, "user groups", in_flight=in_flight
        ):
            yield converter.structure(row, UserGroup)

    def business_groups(self, *, in_flight: int | None = None) -> Iterator[BusinessGroup]:
        fields = '["id","name","description"]'
        for row in self._list(
            "/api/business_groups", {"fields": fields}, "content groups", in_flight=in_flight
        ):
            yield converter.structure(row, BusinessGroup)

    def account_groups(self, *, in_flight: int | None = None) -> Iterator[AccountGroup]:
        fields = '["id","name","description","active"]'
        for row in self._list(
            "/api/account_groups", {"fields": fields}, "account groups", in_flight=in_flight
        ):
            yield converter.structure(row, AccountGroup)

    def memberships(
        self, *, user_id: int | None = None, group_id: int | None = None
    ) -> Iterator[Membership]:
        params: dict[str, Any] = {}
        if user_id is not None:
            params["user_id"] = user_id
        if group_id is not None:
            params["user_group_id"] = group_id
        for row in self._list("/api/user_group_memberships", params, "memberships"):
            yield converter.structure(row, Membership)

    def roles(self) -> Iterator[Role]:
        """Every role, from GraphQL (Coupa has no REST list of roles), paged by id."""
        selections = ["id name description omnipotent", "id name"]

        def fetch_after(cursor: int) -> list[dict[str, Any]]:
            while True:
                try:
                    data = self.graphql(
                        f'{{ roles(query: "id[gt]={cursor}") {{ {selections[0]} }} }}'
                    )
                except GraphQLError as exc:
                    # an older schema may lack a field: fall back to the essentials once
                    if len(selections) > 1 and any("field" in m.lower() for m in exc.messages):
                        selections.pop(0)
                        continue
                    raise
                rows = data.get("roles")
                if not isinstance(rows, list):
                    raise CoupaResponseError("GraphQL roles: expected a list")
                return [r for r in rows if isinstance(r, dict)]

        for row in read_keyset(fetch_after, what="roles"):
            yield converter.structure(row, Role)

    # -- writes --------------------------------------------------------------------------------

    def update_user(
        self,
        user_id: int,
        body: Mapping[str, Any],
        *,
        fields: str | None = None,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        result = self.request(
            "PUT",
            f"/api/users/{user_id}",
            body=dict(body),
            params={"fields": fields} if fields else None,
            idempotent=idempotent,
        )
        if not isinstance(result, dict):
            raise CoupaResponseError(f"PUT /api/users/{user_id}: expected a JSON object")
        return result

    def create_user(self, body: Mapping[str, Any]) -> dict[str, Any]:
        result = self.request("POST", "/api/users", body=dict(body), idempotent=False)
        if not isinstance(result, dict):
            raise CoupaResponseError("POST /api/users: expected a JSON object")
        return result

    def add_membership(self, user_id: int, group_id: int) -> Membership:
        result = self.request(
            "POST",
            "/api/user_group_memberships",
            body={"user-id": user_id, "user-group-id": group_id},
            idempotent=False,
        )
        return converter.structure(result, Membership)

    def delete_membership(self, membership_id: int) -> None:
        self.request("DELETE", f"/api/user_group_memberships/{membership_id}", idempotent=True)

    def business_group(self, user_id: int, group_id: int, action: Literal["add", "remove"]) -> None:
        self.request(
            "PUT",
            f"/api/users/{user_id}/business_groups/{group_id}/{action}",
            body={},
            idempotent=True,
        )
