"""How to reach and pace one Coupa instance: the client's configuration, in a module of its own
(the request loop and the endpoints both read it)."""

from __future__ import annotations

import attrs

from coupa_plugin.coupa._negotiation import Mode
from coupa_plugin.coupa._ratelimit import COUPA_BURST
from coupa_plugin.coupa._secret import Secret
from coupa_plugin.coupa._transport import DEFAULT_MAX_BODY_BYTES

__all__ = ["ClientConfig"]


@attrs.frozen(kw_only=True)
class ClientConfig:
    """How to reach and pace one Coupa instance."""

    base_url: str
    client_id: str
    client_secret: Secret
    mode: Mode = "auto"
    requests_per_second: float = 24.0
    burst: int = COUPA_BURST - 4  # the rest of Coupa's burst is margin for jitter
    max_in_flight: int = 8
    timeout_s: float = 30.0
    retry_attempts: int = 8
    retry_timeout_s: float = 120.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # the most rows one listing may have: far above any real tenant, far below "for ever"
    max_listing_rows: int = 2_000_000
    tenant: str = ""
    shared_rate_limit_file: str | None = None
