"""The sandbox's OAuth2: client-credentials tokens with per-client scopes, Coupa's error
answers, and the bearer check of every API request, over the tokens :class:`Tokens` keeps."""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

from coupa_plugin.sandbox._config import Operations, Quirks
from coupa_plugin.sandbox._state import TenantState
from coupa_plugin.sandbox._wire import SandboxRequest, SandboxResponse
from coupa_plugin.sandbox._wire import errors as _errors

__all__ = ["Tokens", "oauth_error"]


class Tokens:
    """The tokens one sandbox issued (who holds each, with which scopes, until when), the
    token endpoint that issues them and the bearer check. ``lock`` guards them and
    :attr:`issued`, the count of tokens issued."""

    def __init__(
        self,
        state: TenantState,
        quirks: Quirks,
        ops: Operations,
        lock: threading.Lock,
        clock: Callable[[], float],
    ) -> None:
        self._state, self._quirks, self._ops = state, quirks, ops
        self._lock, self._clock = lock, clock
        self._tokens: dict[str, tuple[str, frozenset[str], float]] = {}
        self.issued = 0

    def expire_all(self) -> None:
        """Make every issued token expired (as if a day had passed)."""
        with self._lock:
            self._tokens = {t: (c, s, 0.0) for t, (c, s, _) in self._tokens.items()}

    def token(self, request: SandboxRequest) -> SandboxResponse:
        """``POST /oauth2/token``: a client-credentials token, or Coupa's error answer."""
        if request.method != "POST":
            raise _errors(404, "base", "Not found")
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(auth[6:].strip()).decode()
            except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
                decoded = ""
            user, _, password = decoded.partition(":")
            client_id, secret = unquote(user), unquote(password)
        if form.get("grant_type") != "client_credentials":
            return oauth_error(400, "unsupported_grant_type")
        known = self._state.clients.get(client_id or "")
        if known is None or not secret or not secrets.compare_digest(known[0], secret):
            return oauth_error(401, "invalid_client")
        granted = known[1]
        asked = frozenset(form.get("scope", "").split())
        if asked - granted:
            return oauth_error(self._quirks.invalid_scope_status, "invalid_scope")
        scopes = asked or granted
        header = base64.urlsafe_b64encode(b'{"alg":"RS256","typ":"JWT"}').rstrip(b"=").decode()
        claims = (
            base64.urlsafe_b64encode(
                json.dumps({"sub": client_id, "scope": " ".join(sorted(scopes))}).encode()
            )
            .rstrip(b"=")
            .decode()
        )
        token = f"{header}.{claims}.{secrets.token_urlsafe(32)}"
        with self._lock:
            self._tokens[token] = (client_id or "", scopes, self._clock() + self._ops.token_ttl_s)
            self.issued += 1
        payload: dict[str, Any] = {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": int(self._ops.token_ttl_s),
        }
        if self._quirks.token_scope_field:
            payload["scope"] = " ".join(sorted(scopes))
        return SandboxResponse(
            200, {"Content-Type": "application/json"}, json.dumps(payload).encode()
        )

    def authenticate(self, request: SandboxRequest) -> tuple[str, frozenset[str]]:
        """The client id and scopes of a request's bearer token; a 401 when it has none
        that is valid."""
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _errors(401, "base", "Authentication required")
        with self._lock:
            entry = self._tokens.get(token.strip())
        if entry is None or entry[2] <= self._clock():
            raise _errors(401, "base", "Invalid or expired access token")
        return entry[0], entry[1]


def oauth_error(status: int, error: str) -> SandboxResponse:
    """Coupa's OAuth error answer: ``{"error": error}`` with ``status``."""
    return SandboxResponse(
        status, {"Content-Type": "application/json"}, json.dumps({"error": error}).encode()
    )
