"""The sandbox's request handling: a Coupa API in one framework-free object.

:class:`CoupaSandbox.handle` takes a :class:`SandboxRequest` and returns a
:class:`SandboxResponse`; the loopback server and the in-process httpx transport both call it,
so they behave the same. It is thread-safe: many requests run at once and injected latency
is slept outside every lock.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from email.utils import formatdate
from typing import Any, Final
from urllib.parse import parse_qsl

from coupa_plugin.sandbox import _writes as writes
from coupa_plugin.sandbox._config import Operations, Quirks
from coupa_plugin.sandbox._errors import HttpError, QueryError, SimulatedCrash
from coupa_plugin.sandbox._graphql_api import GraphQLApi
from coupa_plugin.sandbox._oauth import Tokens
from coupa_plugin.sandbox._query import (
    compile_filters,
    kebab,
    parse_fields,
    select,
)
from coupa_plugin.sandbox._render import USER_SIMPLE_KEYS, Renderer, select_plain, to_xml
from coupa_plugin.sandbox._state import (
    ASSOCIATIONS,
    TenantState,
)
from coupa_plugin.sandbox._wire import RequestLogEntry, SandboxRequest, SandboxResponse
from coupa_plugin.sandbox._wire import errors as _errors
from coupa_plugin.sandbox._wire import parse_int as _int
from coupa_plugin.sandbox._wire import request_fields as _fields
from coupa_plugin.sandbox._wire import route_of as _route_of

__all__ = ["CoupaSandbox", "RequestLogEntry", "SandboxRequest", "SandboxResponse"]

_RESERVED: Final = frozenset(
    {"limit", "offset", "fields", "order_by", "dir", "return_object", "filter", "status"}
)
_USER_REFS: Final = frozenset({"manager", "created-by", "updated-by"})
_SCOPE_FOR: Final = {
    ("users", False): "core.user.read",
    ("users", True): "core.user.write",
    ("user_groups", False): "core.user_group.read",
    ("user_groups", True): "core.user_group.write",
    ("memberships", False): "core.user_group.read",
    ("memberships", True): "core.user_group.write",
    ("business_groups", False): "core.business_entity.read",
    ("account_groups", False): "core.accounting.read",
}


class CoupaSandbox:
    """One emulated Coupa instance."""

    def __init__(
        self,
        state: TenantState,
        quirks: Quirks | None = None,
        operations: Operations | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.state = state
        self.quirks = quirks or Quirks()
        self.ops = operations or Operations()
        self._clock = clock
        self._sleep = sleep
        self._bucket_level = 0.0
        self._bucket_at = clock()
        self._meta = threading.Lock()
        self.tokens = Tokens(state, self.quirks, self.ops, self._meta, clock)
        self._occurrences: Counter[str] = Counter()
        self._local = threading.local()
        self._query_cache: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self.writes = 0
        self.api_requests = 0
        self.throttled = 0
        self.calls: Counter[tuple[str, str]] = Counter()
        self.log: deque[RequestLogEntry] = deque(maxlen=100_000)
        lacks: dict[str, set[str]] = {}
        for entry in self.quirks.schema_lacks:
            table, _, key = entry.partition(".")
            lacks.setdefault(table, set()).add(key)
        self.renderer = Renderer(
            state,
            hide_new_fields=self.quirks.hide_new_fields,
            shown_flags=self.quirks.fields_refuse_flags,
            lacks={t: frozenset(k) for t, k in lacks.items()},
        )
        self.graphql = GraphQLApi(self)

    # -- bookkeeping -------------------------------------------------------------------------

    @property
    def tokens_issued(self) -> int:
        """How many tokens the token endpoint issued (since :meth:`reset_counters`)."""
        return self.tokens.issued

    def reset_counters(self) -> None:
        with self._meta:
            self.writes = self.throttled = self.tokens.issued = 0
            self.calls.clear()
            self.log.clear()

    def expire_tokens(self) -> None:
        """Make every issued token expired (as if a day had passed)."""
        self.tokens.expire_all()

    def _throttle(self) -> bool:
        """Leaky bucket: True when the request must be refused with 429."""
        if not self.ops.rate_limit:
            return False
        with self._meta:
            now = self._clock()
            level = max(0.0, self._bucket_level - (now - self._bucket_at) * self.ops.rate_per_s)
            self._bucket_at = now
            if level + 1 > self.ops.burst:
                self._bucket_level = level
                self.throttled += 1
                return True
            self._bucket_level = level + 1
            return False

    def _chance(self, signature: str, salt: str) -> float:
        digest = hashlib.blake2b(
            f"{self.ops.seed}|{salt}|{signature}".encode(), digest_size=8
        ).digest()
        return int.from_bytes(digest, "big") / 2**64

    # -- entry point ---------------------------------------------------------------------------

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        crash = None
        if request.path.startswith("/api/"):
            with self._meta:
                self.api_requests += 1
                crash = self.ops.crash_at.get(self.api_requests)
        if crash == "before":
            raise SimulatedCrash(f"client died before request {self.api_requests}")
        response = self._timed(request)
        # Coupa dates every answer (RFC 9110 Date); the plugin reads Coupa's clock from it
        response.headers.setdefault("date", formatdate(usegmt=True))
        if crash == "after":
            raise SimulatedCrash(f"client died after request {self.api_requests}")
        return response

    def actor(self) -> int | None:
        """The user the current request acts as: its OAuth client's user, or the administrator
        of :meth:`admin_update`."""
        actor: int | None = getattr(self._local, "actor", None)
        return actor

    def admin_update(self, user_id: int, body: dict[str, Any], admin_id: int = 3) -> None:
        """Change a user as an administrator would in Coupa's UI: lists given in ``body``
        become exactly those lists (the UI has no merge), ``updated-by`` becomes ``admin_id``
        and ``updated-at`` moves on."""
        previous = self.actor()
        self._local.actor = admin_id
        with self.state.lock:
            semantics, self.quirks.list_put = self.quirks.list_put, "replace"
            try:
                writes.update_user(self, user_id, body, [])
            finally:
                self.quirks.list_put = semantics
                self._local.actor = previous

    def _timed(self, request: SandboxRequest) -> SandboxResponse:
        low, high = self.ops.latency_s
        delay = (
            low
            + (high - low)
            * self._chance(f"{request.method} {request.path}?{request.query}", "latency")
            if high > 0
            else 0.0
        )
        if delay:
            self._sleep(delay / 2)
        response, client_id = self._handle(request)
        with self._meta:
            self.calls[(request.method, _route_of(request.path))] += 1
            self.log.append(
                RequestLogEntry(
                    time.time(),
                    request.method,
                    _route_of(request.path),
                    request.path,
                    request.query,
                    response.status,
                    client_id,
                )
            )
        if delay:
            self._sleep(delay / 2)
        return response

    def _handle(self, request: SandboxRequest) -> tuple[SandboxResponse, str | None]:  # noqa: C901 - the request pipeline: auth, bucket, faults, route
        json_wanted = "application/json" in request.headers.get("accept", "")
        client_id: str | None = None
        try:
            if self._throttle():
                headers = {"Retry-After": "1"} if self.quirks.retry_after else {}
                raise HttpError(429, {"errors": {"base": ["Too many requests"]}}, headers)
            if request.path == "/oauth2/token":
                return self.tokens.token(request), None
            if not request.path.startswith("/api/"):
                raise _errors(404, "base", "Not found")
            client_id, scopes = self.tokens.authenticate(request)
            self._local.actor = self.state.client_users.get(client_id)
            fault = self._fault(request)
            if fault is not None:
                return fault, client_id
            down_after = self.ops.user_reads_fail_after_write
            if (
                down_after is not None
                and self.writes >= down_after
                and request.method == "GET"
                and re.fullmatch(r"/api/users/\d+", request.path)
            ):
                raise _errors(500, "base", "Internal server error (injected read fault)")
            write = (
                request.method in {"POST", "PUT", "PATCH", "DELETE"}
                and request.path != "/api/graphql"
            )
            failure = crash = None
            if write:
                with self._meta:
                    self.writes += 1
                    failure = self.ops.fail_writes.get(self.writes)
                    crash = self.ops.crash_at_write.get(self.writes)
                if crash == "before":
                    raise SimulatedCrash(f"client died before write {self.writes}")
                if failure == "error":
                    raise _errors(500, "base", "Internal server error (injected)")
                if failure == "drop_before_apply":
                    return SandboxResponse(0, {}, b"", drop=True), client_id
            status, root, payload = self._dispatch(request, scopes)
            if write and crash == "after":
                raise SimulatedCrash(f"client died after write {self.writes} was applied")
            if failure == "drop_after_apply":
                return SandboxResponse(0, {}, b"", drop=True), client_id
            if failure == "error_after_apply":
                raise _errors(500, "base", "Internal server error (injected, after applying)")
        except HttpError as exc:
            status, root, payload = exc.status, "errors", exc.payload
            body, ctype = self._encode(
                payload, root, as_json=json_wanted or request.path == "/api/graphql"
            )
            return SandboxResponse(status, {"Content-Type": ctype, **exc.headers}, body), client_id
        except QueryError as exc:
            body, ctype = self._encode(
                {"errors": {"base": [str(exc)]}}, "errors", as_json=json_wanted
            )
            return SandboxResponse(400, {"Content-Type": ctype}, body), client_id
        body, ctype = self._encode(
            payload, root, as_json=json_wanted or request.path == "/api/graphql"
        )
        if (
            request.method == "GET"
            and self.ops.malformed_rate
            and self._chance(self._signature(request), "malformed") < self.ops.malformed_rate
        ):
            body = body[: max(1, len(body) // 2)]
        return SandboxResponse(status, {"Content-Type": ctype}, body), client_id

    def _signature(self, request: SandboxRequest) -> str:
        return f"{request.method} {request.path}?{request.query}#{request.body!r}"

    def _fault(self, request: SandboxRequest) -> SandboxResponse | None:
        ops = self.ops
        if not (ops.error_rate or ops.drop_rate):
            return None
        key = self._signature(request)
        with self._meta:
            self._occurrences[key] += 1
            signature = f"{key}#{self._occurrences[key]}"
        roll = self._chance(signature, "fault")
        if roll < ops.drop_rate:
            return SandboxResponse(0, {}, b"", drop=True)
        if roll < ops.drop_rate + ops.error_rate:
            status = (500, 502, 503, 504)[int(self._chance(signature, "status") * 4)]
            body = b"<html><body><h1>Service Unavailable</h1></body></html>"
            return SandboxResponse(status, {"Content-Type": "text/html"}, body)
        return None

    def _encode(self, payload: Any, root: str, *, as_json: bool) -> tuple[bytes, str]:
        if as_json:
            return json.dumps(payload, separators=(",", ":")).encode(), "application/json"
        return to_xml(root, payload), "application/xml"

    # -- OAuth ---------------------------------------------------------------------------------

    # -- routing -------------------------------------------------------------------------------

    def _dispatch(self, request: SandboxRequest, scopes: frozenset[str]) -> tuple[int, str, Any]:
        parts = request.path.strip("/").split("/")[1:]
        method = request.method
        params = parse_qsl(request.query, keep_blank_values=True)
        if parts == ["graphql"] and method == "POST":
            writes = sorted(s for s in scopes if s.endswith(".write"))
            if self.quirks.graphql_read_scopes_only and writes:
                message = "GraphQL supports read scopes only; the access token carries " + " ".join(
                    writes
                )
                return 200, "data", {"data": None, "errors": [{"message": message}]}
            return 200, "data", self.graphql.execute(request.body, scopes)
        resource = parts[0] if parts else ""
        table = {
            "users": "users",
            "user_groups": "user_groups",
            "user_group_memberships": "memberships",
            "business_groups": "business_groups",
            "account_groups": "account_groups",
        }.get(resource)
        if table is None:
            raise _errors(404, "base", f"No route matches {method} {request.path}")
        write = method != "GET"
        needed = _SCOPE_FOR.get((table, write)) or _SCOPE_FOR.get((table, False))
        if table == "users" and len(parts) >= 3 and parts[2] == "business_groups":
            needed = "core.user.write" if write else "core.user.read"
        if needed not in scopes:
            raise _errors(403, "base", f"The access token lacks the scope {needed}")
        with self.state.lock:
            return self._route(table, parts[1:], method, params, request)

    def _route(
        self,
        table: str,
        rest: list[str],
        method: str,
        params: list[tuple[str, str]],
        request: SandboxRequest,
    ) -> tuple[int, str, Any]:
        ident = _int(rest[0]) if rest else None
        if rest and ident is None:
            raise _errors(404, "base", "Not found")
        fields = _fields(params)
        if fields is not None and self.quirks.refuse_unknown_fields:
            unknown = self._unknown_fields(table, fields)
            if unknown:
                raise _errors(400, "fields", "Unknown field(s): " + ", ".join(unknown))
        refused = self._refused_flags(table, fields)
        if refused:
            raise _errors(400, "fields", "Unknown field(s): " + ", ".join(refused))
        if table == "users" and len(rest) >= 2 and rest[1] == "business_groups":
            return writes.user_business_groups(self, ident, rest[2:], method)
        route = _ROUTES.get((table, "PUT" if method == "PATCH" else method, bool(rest)))
        missing = (
            table == "memberships" and method == "DELETE" and not self.quirks.membership_delete
        )
        if route is None or len(rest) > 1 or missing:
            raise _errors(404, "base", f"No route matches {method} {request.path}")
        status, root, handler = route
        return status, root, handler(self, ident, params, request)

    # -- reads ---------------------------------------------------------------------------------

    def _records(self, table: str) -> dict[int, dict[str, Any]]:
        if table == "memberships":
            return {mid: self.renderer.membership(mid) for mid in self.state.memberships}
        records: dict[int, dict[str, Any]] = getattr(self.state, table)
        return records

    def render(self, table: str, record: dict[str, Any], fields: list[Any] | None) -> Any:
        """``record`` of ``table`` as a response shows it, trimmed to ``fields``."""
        if table == "users":
            return self.renderer.user(record, fields)
        if table == "user_groups":
            return self.renderer.user_group(record, fields)
        return select_plain(self.renderer.strip(table, record), fields)

    def _schema(self, table: str) -> frozenset[str]:
        """The keys (kebab-case) the tenant's schema has for ``table``."""
        if table in _USER_REFS:
            return frozenset(USER_SIMPLE_KEYS)
        if table == "memberships":
            first = next(iter(self.state.memberships), None)
            keys = set(self.renderer.membership(first)) if first is not None else set()
        else:
            keys = set(next(iter(self._records(table).values()), {}))
        if table == "users":
            keys |= set(ASSOCIATIONS) | _USER_REFS
        elif table == "user_groups":
            keys |= {"users", "content-groups"}
        return frozenset(keys) - self.renderer.lacks.get(table, frozenset())

    def _refused_flags(self, table: str, fields: list[Any] | None) -> list[str]:
        """The flags of ``Quirks.fields_refuse_flags`` a users ``fields`` selection names."""
        if table != "users" or fields is None:
            return []
        flags = self.quirks.fields_refuse_flags
        return [f for f in fields if isinstance(f, str) and kebab(f) in flags]

    def _unknown_fields(self, table: str, fields: list[Any]) -> list[str]:
        """The names in a ``fields`` selection that the tenant's schema lacks, as sent."""
        known = self._schema(table)
        unknown = []
        for item in fields:
            for name, sub in item.items() if isinstance(item, dict) else [(item, [])]:
                if kebab(name) not in known:
                    unknown.append(name)
                    continue
                if sub and table == "users":
                    inner = self._schema(ASSOCIATIONS.get(kebab(name), kebab(name)))
                    unknown += [s for s in sub if isinstance(s, str) and kebab(s) not in inner]
        return unknown

    def _show(self, table: str, ident: int | None, params: list[tuple[str, str]]) -> Any:
        record = self._records(table).get(ident or -1)
        if record is None:
            raise _errors(404, "base", "Record not found")
        fields = next((parse_fields(v) for k, v in params if k == "fields"), None)
        return self.render(table, record, fields)

    def _resolver(self, record: Mapping[str, Any], association: str) -> list[Any] | None:
        if association in ASSOCIATIONS and "login" in record:
            return self.renderer.related(record, association)
        if association == "manager":
            simple = self.renderer.user_simple(record.get("manager"))
            return [simple] if simple else []
        value = record.get(association)
        return value if isinstance(value, list) else None

    def filtered(self, table: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Records of ``table`` matching the filters in ``params``, ordered (cached per version)."""
        filters = tuple((k, v) for k, v in params if k not in _RESERVED)
        reserved = {k: v for k, v in params if k in _RESERVED}
        order_by = reserved.get("order_by")
        descending = reserved.get("dir", "asc").lower() == "desc"
        status = reserved.get("status")
        key = (table, filters, order_by, descending, status, self.state.version)
        cached = self._query_cache.get(key)
        if cached is not None:
            return cached
        records = self._records(table)
        sample = next(iter(records.values()), {})
        known = (
            frozenset(sample)
            | frozenset(ASSOCIATIONS if table == "users" else ())
            | {"manager", "id"}
        )
        predicate = compile_filters(filters, known, self._resolver)
        if status is not None:
            inner, wanted = predicate, status.lower() == "active"
            predicate = lambda r: inner(r) and bool(r.get("active")) == wanted  # noqa: E731
        result = select(records.values(), predicate, order_by, descending=descending)
        if len(self._query_cache) > 64:
            self._query_cache.clear()
        self._query_cache[key] = result  # type: ignore[assignment]
        return result  # type: ignore[return-value]

    def _list(self, table: str, params: list[tuple[str, str]]) -> list[Any]:
        reserved = {k: v for k, v in params if k in _RESERVED}
        try:
            limit = int(reserved.get("limit", self.quirks.page_cap))
            offset = int(reserved.get("offset", 0))
        except ValueError:
            raise QueryError("limit and offset must be integers") from None
        limit = max(0, min(limit, self.quirks.page_cap))
        fields = parse_fields(reserved["fields"]) if "fields" in reserved else None
        rows = self.filtered(table, params)[max(0, offset) : max(0, offset) + limit]
        return [self.render(table, r, fields) for r in rows]

    # -- writes --------------------------------------------------------------------------------


Params = list[tuple[str, str]]
Handler = Callable[["CoupaSandbox", int | None, Params, SandboxRequest], Any]


def _reads(table: str) -> tuple[Handler, Handler]:
    """The routes that show one record of ``table`` and list them."""

    def show(sb: CoupaSandbox, ident: int | None, params: Params, _: SandboxRequest) -> Any:
        return sb._show(table, ident, params)

    def listing(sb: CoupaSandbox, _: int | None, params: Params, __: SandboxRequest) -> Any:
        return sb._list(table, params)

    return show, listing


def _route_table() -> dict[tuple[str, str, bool], tuple[int, str, Handler]]:
    """(table, method, with an id) -> (status, the answer's root element, what answers)."""
    roots = {
        "users": "user",
        "user_groups": "user-group",
        "memberships": "user-group-membership",
        "business_groups": "business-group",
        "account_groups": "account-group",
    }
    routes: dict[tuple[str, str, bool], tuple[int, str, Handler]] = {}
    for table, root in roots.items():
        show, listing = _reads(table)
        routes[table, "GET", True] = (200, root, show)
        routes[table, "GET", False] = (200, root + "s", listing)
    routes["users", "POST", False] = (
        201,
        "user",
        lambda sb, _, p, r: writes.create_user(sb, writes.request_body(sb, r, "user"), p),
    )
    routes["users", "PUT", True] = (
        200,
        "user",
        lambda sb, i, p, r: writes.update_user(sb, i, writes.request_body(sb, r, "user"), p),
    )
    routes["user_groups", "POST", False] = (
        201,
        "user-group",
        lambda sb, _, p, r: writes.create_group(sb, writes.request_body(sb, r, "user_group")),
    )
    routes["user_groups", "PUT", True] = (
        200,
        "user-group",
        lambda sb, i, p, r: writes.update_group(sb, i, writes.request_body(sb, r, "user_group")),
    )
    routes["memberships", "POST", False] = (
        201,
        "user-group-membership",
        lambda sb, _, p, r: writes.create_membership(
            sb, writes.request_body(sb, r, "user_group_membership")
        ),
    )
    routes["memberships", "DELETE", True] = (
        200,
        "user-group-membership",
        lambda sb, i, p, r: writes.delete_membership(sb, i),
    )
    return routes


_ROUTES: Final = _route_table()
