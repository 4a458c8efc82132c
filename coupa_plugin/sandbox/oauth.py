"""The sandbox's OAuth2: client-credentials tokens with per-client scopes, Coupa's error
answers, and the bearer check of every API request. Each function runs on the sandbox it is
given."""

from __future__ import annotations

import base64
import json
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from coupa_plugin.sandbox.wire import SandboxRequest, SandboxResponse
from coupa_plugin.sandbox.wire import errors as _errors

if TYPE_CHECKING:
    from coupa_plugin.sandbox.app import CoupaSandbox

__all__ = ["authenticate", "oauth_error", "token"]


def token(sb: CoupaSandbox, request: SandboxRequest) -> SandboxResponse:
    if request.method != "POST":
        raise _errors(404, "base", "Not found")
    form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    client_id, secret = form.get("client_id"), form.get("client_secret")
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(auth[6:].strip()).decode()
        except (ValueError, UnicodeDecodeError):
            decoded = ""
        user, _, password = decoded.partition(":")
        client_id, secret = unquote(user), unquote(password)
    if form.get("grant_type") != "client_credentials":
        return oauth_error(sb, 400, "unsupported_grant_type")
    known = sb.state.clients.get(client_id or "")
    if known is None or not secret or not secrets.compare_digest(known[0], secret):
        return oauth_error(sb, 401, "invalid_client")
    granted = known[1]
    asked = frozenset(form.get("scope", "").split())
    if asked - granted:
        return oauth_error(sb, sb.quirks.invalid_scope_status, "invalid_scope")
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
    with sb._meta:
        sb._tokens[token] = (client_id or "", scopes, sb._clock() + sb.ops.token_ttl_s)
        sb.tokens_issued += 1
    payload: dict[str, Any] = {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": int(sb.ops.token_ttl_s),
    }
    if sb.quirks.token_scope_field:
        payload["scope"] = " ".join(sorted(scopes))
    return SandboxResponse(200, {"Content-Type": "application/json"}, json.dumps(payload).encode())


def oauth_error(sb: CoupaSandbox, status: int, error: str) -> SandboxResponse:
    return SandboxResponse(
        status, {"Content-Type": "application/json"}, json.dumps({"error": error}).encode()
    )


def authenticate(sb: CoupaSandbox, request: SandboxRequest) -> tuple[str, frozenset[str]]:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise _errors(401, "base", "Authentication required")
    with sb._meta:
        entry = sb._tokens.get(token.strip())
    if entry is None or entry[2] <= sb._clock():
        raise _errors(401, "base", "Invalid or expired access token")
    return entry[0], entry[1]
