"""OAuth2 client credentials for Coupa: one token per client, minted once however many threads
ask at the same time, refreshed before it expires and once when Coupa answers 401."""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable
from typing import Final

import attrs
import httpx
import orjson
import stamina

from coupa_plugin.coupa._errors import (
    CoupaAuthError,
    CoupaError,
    CoupaHTTPError,
    CoupaResponseError,
    CoupaTimeoutError,
    CoupaTransportError,
    ScopeError,
    excerpt,
    plain,
)
from coupa_plugin.coupa._logs import tenant_context
from coupa_plugin.coupa._secret import Secret
from coupa_plugin.coupa._transport import (
    DEFAULT_MAX_BODY_BYTES,
    deadline,
    pacing_budget,
    read_body,
    retry_after_seconds,
    seconds_left,
)

__all__ = ["AccessToken", "CoupaAuth", "TokenSource"]

log = logging.getLogger("coupa_plugin.coupa.auth")
# Coupa recommends a new token every 20 hours although tokens live 24; refresh well before.
_MAX_TOKEN_AGE_S = 20 * 3600.0
_REFRESH_MARGIN = 0.1
# Coupa documents that a token may be refused for a few seconds after it was minted.
_WARMUP_S = 5.0
# A token said to live less than this is still used this long: a server claiming
# ``expires_in: 1e-9`` must not cost a token request before every request.
_MIN_TOKEN_LIFETIME_S: Final = 60.0
# Bearer tokens (RFC 6750 b64token) of a sane length: anything else would go out as a header.
_MAX_TOKEN_CHARS: Final = 8192
_TOKEN_RE: Final = re.compile(rf"[A-Za-z0-9\-._~+/]{{1,{_MAX_TOKEN_CHARS}}}={{0,2}}")
_MINT_ATTEMPTS: Final = 4


class _MintRetry(Exception):
    """Internal: a token request worth another try (429, 5xx, a dropped connection)."""

    def __init__(
        self, error: CoupaError, wait: float | None = None, *, timed_out: bool = False
    ) -> None:
        super().__init__(str(error))
        self.error, self.wait, self.timed_out = error, wait, timed_out

    def final(self, attempts: int) -> CoupaError:
        tries = f" (after {attempts} attempt{'s' if attempts != 1 else ''})"
        if self.timed_out:
            return CoupaTimeoutError(
                f"POST /oauth2/token did not complete within its time budget{tries}"
            )
        if isinstance(self.error, CoupaHTTPError):
            return CoupaHTTPError(
                self.error.method,
                self.error.path,
                self.error.status,
                self.error.excerpt + tries,
                None,
            )
        return type(self.error)(f"{self.error}{tries}")


@attrs.frozen(repr=False)
class AccessToken:
    """A bearer token; its repr never shows the value."""

    value: Secret
    scopes: frozenset[str]
    minted_at: float
    refresh_at: float
    reported_scopes: frozenset[str] | None = None

    def __repr__(self) -> str:
        return f"AccessToken(scopes={sorted(self.scopes)}, value=***)"


class TokenSource:
    """Mints and caches the token of one OAuth client for one scope set."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: Secret,
        http: httpx.Client,
        *,
        clock: Callable[[], float] = time.monotonic,
        before_request: Callable[[], object] | None = None,
        budget_s: float = 60.0,
        attempt_s: float = 30.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        tenant: str = "",
        on_minted: Callable[[], object] | None = None,
    ) -> None:
        self._url = token_url
        self._tenant = tenant
        self._on_minted = on_minted
        self._client_id = client_id
        self._secret = client_secret
        self._http = http
        self._clock = clock
        self._before = before_request
        self._budget_s = budget_s
        self._attempt_s = attempt_s
        self._max_body_bytes = max_body_bytes
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self.scopes: frozenset[str] | None = None
        self.minted = 0

    def mint(self, scopes: Iterable[str] | None) -> AccessToken:
        """Ask the token endpoint for ``scopes`` (None: whatever the client was granted).

        A 429, a 5xx or a dropped connection is retried (within :data:`_MINT_ATTEMPTS` and
        the budget); what is left is reported as what it is, not as refused credentials.
        """
        with tenant_context(self._tenant):
            token = self._mint(scopes)
        if self._on_minted is not None:
            self._on_minted()
        return token

    def _mint(self, scopes: Iterable[str] | None) -> AccessToken:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._secret.reveal(),
        }
        asked = frozenset(scopes) if scopes is not None else frozenset()
        if scopes is not None:
            form["scope"] = " ".join(sorted(asked))
        started = self._clock()
        until = started + self._budget_s
        made = 0

        def on(exc: Exception) -> bool | float:
            if not isinstance(exc, _MintRetry):
                return False
            wait = exc.wait if exc.wait is not None else min(8.0, 0.5 * 2 ** (made - 1))
            socket_left = seconds_left()
            left = until - self._clock()
            if socket_left is not None:
                left = min(left, socket_left)
            return wait if wait < left else False

        try:
            for attempt in stamina.retry_context(on=on, attempts=_MINT_ATTEMPTS, timeout=None):
                with attempt:
                    made = attempt.num
                    left = max(until - self._clock(), 0.0)
                    # paced under the same budget as any request: a pacer holding it
                    # longer fails the attempt instead of waiting past the deadline
                    with deadline(min(self._attempt_s, left)), pacing_budget(left):
                        return self._mint_once(form, asked, started)
        except _MintRetry as exc:
            raise exc.final(made) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _mint_once(
        self, form: dict[str, str], asked: frozenset[str], started: float
    ) -> AccessToken:
        if self._before:
            self._before()
        try:
            request = self._http.build_request(
                "POST", self._url, data=form, headers={"Accept": "application/json"}
            )
            response = self._http.send(request, stream=True)
            body = read_body(response, self._max_body_bytes, "POST /oauth2/token")
        except httpx.HTTPError as exc:
            raise _MintRetry(
                CoupaTransportError(f"POST /oauth2/token failed: {type(exc).__name__}"),
                timed_out=isinstance(exc, httpx.TimeoutException),
            ) from None
        self.minted += 1
        status = response.status_code
        try:
            payload = orjson.loads(body) if body.strip() else None
        except orjson.JSONDecodeError:
            payload = None
        error = payload.get("error") if isinstance(payload, dict) else None
        if error == "invalid_scope":
            raise ScopeError(f"the token endpoint refused the scopes {sorted(asked)}")
        if status == 429 or status >= 500:
            raise _MintRetry(
                CoupaHTTPError("POST", "/oauth2/token", status, excerpt(body)),
                wait=retry_after_seconds(response) if status == 429 else None,
            )
        if status in {401, 403} or (status == 400 and isinstance(error, str)):
            detail = plain(error, 80) if error else excerpt(body)
            raise CoupaAuthError(
                f"POST /oauth2/token -> HTTP {status}: {detail}"
                " (check client_id and client_secret, and that the OAuth client uses the"
                " client-credentials grant)"
            )
        if status != 200 or not isinstance(payload, dict):
            raise CoupaResponseError(
                f"POST /oauth2/token -> HTTP {status}: not a token response ({excerpt(body)})"
            )
        value = payload.get("access_token")
        if not isinstance(value, str) or not _TOKEN_RE.fullmatch(value):
            raise CoupaResponseError(
                "POST /oauth2/token: the response has no usable access_token (expected up to "
                f"{_MAX_TOKEN_CHARS:,} token characters, got "
                + (f"{len(value):,} characters" if isinstance(value, str) else plain(value, 0))
                + ")"
            )
        kind = payload.get("token_type", "bearer")  # RFC 6749 requires it; Coupa sends Bearer
        if not isinstance(kind, str) or kind.lower() != "bearer":
            raise CoupaResponseError(
                f"POST /oauth2/token: a token of type {plain(kind, 40)}, not a bearer token; "
                "the plugin sends bearer tokens only"
            )
        expires_in = payload.get("expires_in")
        lifetime = (
            float(expires_in)
            if isinstance(expires_in, int | float)
            and not isinstance(expires_in, bool)
            and math.isfinite(expires_in)
            and expires_in > 0
            else 3600.0
        )
        lifetime = min(
            max(lifetime * (1 - _REFRESH_MARGIN), _MIN_TOKEN_LIFETIME_S), _MAX_TOKEN_AGE_S
        )
        reported = payload.get("scope")
        token = AccessToken(
            value=Secret(value),
            scopes=asked,
            minted_at=started,
            refresh_at=started + lifetime,
            reported_scopes=(
                frozenset(reported.split())
                if isinstance(reported, str) and len(reported) <= 10_000
                else None
            ),
        )
        log.debug(
            "token minted",
            extra={"tenant": self._tenant, "scopes": len(asked), "lifetime_s": lifetime},
        )
        return token

    def use(self, scopes: frozenset[str] | None, token: AccessToken | None = None) -> None:
        """Fix the scope set that :meth:`current` mints for (and optionally its first token)."""
        with self._lock:
            self.scopes = scopes
            self._token = token

    def holds(self, scopes: frozenset[str]) -> bool:
        """True when a token for ``scopes`` is held and not yet due for refresh."""
        with self._lock:
            token = self._token
            return (
                token is not None
                and self.scopes == scopes
                and self._clock() < token.refresh_at
            )

    def current(self) -> AccessToken:
        """A valid token, minting one if there is none or it is due for refresh."""
        with self._lock:
            token = self._token
            if token is None or self._clock() >= token.refresh_at:
                token = self._token = self.mint(self.scopes)
            return token

    def refresh(self, stale: AccessToken) -> AccessToken:
        """Replace ``stale`` (refused with 401) unless another thread already did."""
        with self._lock:
            if self._token is stale or self._token is None:
                self._token = self.mint(self.scopes)
            return self._token

    def young(self, token: AccessToken) -> float:
        """Seconds until ``token`` is past Coupa's documented warm-up (0 when it is)."""
        return max(0.0, token.minted_at + _WARMUP_S - self._clock())


class CoupaAuth(httpx.Auth):
    """Adds the bearer token; on 401 waits out a fresh token's warm-up or mints a new one."""

    def __init__(self, source: TokenSource, sleep: Callable[[float], None] = time.sleep) -> None:
        self.source = source
        self._sleep = sleep

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.source.current()
        request.headers["Authorization"] = f"Bearer {token.value.reveal()}"
        response = yield request
        if response.status_code != 401:
            return
        wait = self.source.young(token)
        if wait > 0:
            self._sleep(wait)
        else:
            token = self.source.refresh(token)
        request.headers["Authorization"] = f"Bearer {token.value.reveal()}"
        yield request
