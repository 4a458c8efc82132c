"""OAuth2 client credentials for Coupa: one token per client, minted once however many threads
ask at the same time, refreshed before it expires and once when Coupa answers 401."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable

import attrs
import httpx

from coupa_plugin.coupa._secret import Secret
from coupa_plugin.coupa.errors import (
    CoupaAuthError,
    CoupaResponseError,
    CoupaTransportError,
    ScopeError,
    excerpt,
)
from coupa_plugin.coupa.transport import retry_after_seconds

__all__ = ["AccessToken", "CoupaAuth", "TokenSource", "TokenThrottled"]

log = logging.getLogger("coupa_plugin.coupa.auth")
# Coupa recommends a new token every 20 hours although tokens live 24; refresh well before.
_MAX_TOKEN_AGE_S = 20 * 3600.0
_REFRESH_MARGIN = 0.1
# Coupa documents that a token may be refused for a few seconds after it was minted.
_WARMUP_S = 5.0


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


class TokenThrottled(CoupaTransportError):
    """The token endpoint answered 429; ``wait`` is its ``Retry-After`` in seconds, if any."""

    def __init__(self, wait: float | None) -> None:
        super().__init__("POST /oauth2/token -> HTTP 429 (rate limited)")
        self.wait = wait


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
    ) -> None:
        self._url = token_url
        self._client_id = client_id
        self._secret = client_secret
        self._http = http
        self._clock = clock
        self._before = before_request
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self.scopes: frozenset[str] | None = None
        self.minted = 0

    def mint(self, scopes: Iterable[str] | None) -> AccessToken:
        """Ask the token endpoint for ``scopes`` (None: whatever the client was granted)."""
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._secret.reveal(),
        }
        asked = frozenset(scopes) if scopes is not None else frozenset()
        if scopes is not None:
            form["scope"] = " ".join(sorted(asked))
        if self._before:
            self._before()
        started = self._clock()
        try:
            response = self._http.post(self._url, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise CoupaTransportError(f"POST /oauth2/token failed: {type(exc).__name__}") from None
        self.minted += 1
        if response.status_code == 429:
            raise TokenThrottled(retry_after_seconds(response))
        try:
            payload = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = None
        error = payload.get("error") if isinstance(payload, dict) else None
        if error == "invalid_scope":
            raise ScopeError(f"the token endpoint refused the scopes {sorted(asked)}")
        if response.status_code != 200 or not isinstance(payload, dict):
            detail = error or excerpt(response.content)
            raise CoupaAuthError(
                f"POST /oauth2/token -> HTTP {response.status_code}: {detail}"
                " (check client_id and client_secret, and that the OAuth client uses the"
                " client-credentials grant)"
            )
        value = payload.get("access_token")
        if not isinstance(value, str) or not value:
            raise CoupaResponseError("POST /oauth2/token: the response has no access_token")
        expires_in = payload.get("expires_in")
        lifetime = (
            float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 3600.0
        )
        lifetime = min(lifetime * (1 - _REFRESH_MARGIN), _MAX_TOKEN_AGE_S)
        reported = payload.get("scope")
        token = AccessToken(
            value=Secret(value),
            scopes=asked,
            minted_at=started,
            refresh_at=started + lifetime,
            reported_scopes=frozenset(reported.split()) if isinstance(reported, str) else None,
        )
        log.debug("token minted", extra={"scopes": len(asked), "lifetime_s": lifetime})
        return token

    def use(self, scopes: frozenset[str] | None, token: AccessToken | None = None) -> None:
        """Fix the scope set that :meth:`current` mints for (and optionally its first token)."""
        with self._lock:
            self.scopes = scopes
            self._token = token

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
