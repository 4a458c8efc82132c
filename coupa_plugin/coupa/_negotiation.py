"""Scope negotiation: which OAuth scopes the client was granted, and the mode (read-only
or provisioning) that follows. Tries the documented scope sets first, then scope by scope."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import attrs

from coupa_plugin.coupa._auth import AccessToken, TokenSource
from coupa_plugin.coupa._errors import ScopeError
from coupa_plugin.coupa._scopes import (
    OPTIONAL_SCOPES,
    PROVISIONING_SCOPES,
    READ_ONLY_SCOPES,
    REQUIRED_SCOPES,
    WRITE_SCOPES,
)

__all__ = ["Mode", "ScopeGrant", "negotiate", "read_scopes"]

log = logging.getLogger("coupa_plugin.coupa")
Mode = Literal["auto", "read-only", "provisioning"]


@attrs.frozen(kw_only=True)
class ScopeGrant:
    """What the token endpoint granted and the mode that follows from it."""

    mode: Literal["read-only", "provisioning"]
    scopes: frozenset[str]
    optional_missing: frozenset[str]
    reported_by_server: bool
    documented_missing: frozenset[str] = frozenset()


def read_scopes(scopes: frozenset[str] | None) -> frozenset[str] | None:
    """``scopes`` without the write ones (what GraphQL takes), or None when unknown."""
    if scopes is None:
        return None
    return frozenset(s for s in scopes if not s.endswith(".write")) - {"offline_access"}


class _Negotiation:
    """One negotiation for a tenant's token source in ``mode``."""

    def __init__(
        self,
        tokens: TokenSource,
        mode: Mode,
        tenant: str,
        prepared: Mapping[frozenset[str], Callable[[], AccessToken]],
    ) -> None:
        self.tokens, self.mode, self.tenant = tokens, mode, tenant
        self.prepared = prepared

    def _mint(self, asked: frozenset[str]) -> AccessToken:
        """A token for ``asked``: one already asked for (``prepared``), else a new one."""
        ready = self.prepared.get(asked)
        return ready() if ready is not None else self.tokens.mint(asked)

    def _negotiate(self) -> ScopeGrant:
        mode = self.mode
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
                    token = self._mint(asked)
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
        writes = self.mode != "read-only" and scopes >= WRITE_SCOPES
        if self.mode == "provisioning" and not writes:
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
            extra={"tenant": self.tenant, "mode": grant.mode, "scopes": len(scopes)},
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


def negotiate(
    tokens: TokenSource,
    mode: Mode,
    tenant: str = "",
    *,
    prepared: Mapping[frozenset[str], Callable[[], AccessToken]] | None = None,
) -> ScopeGrant:
    """Mint ``tokens``' token with the scopes the OAuth client was granted, and decide the
    mode. ``prepared`` maps a scope set to a token already being minted for it (the call
    returns it or raises as :meth:`TokenSource.mint` does); a set tried in that order is not
    asked for again.

    :raises ScopeError: the client lacks what ``mode`` needs."""
    return _Negotiation(tokens, mode, tenant, prepared or {})._negotiate()
