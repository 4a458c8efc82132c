"""A typed client for Coupa's API. It knows nothing of the IGA host."""

from coupa_plugin.coupa._secret import Secret
from coupa_plugin.coupa.client import ClientConfig, CoupaClient
from coupa_plugin.coupa.errors import (
    CoupaAuthError,
    CoupaError,
    CoupaHTTPError,
    CoupaResponseError,
    CoupaTransportError,
    PagingError,
    ReadOnlyClientError,
    ScopeError,
)
from coupa_plugin.coupa.negotiation import ScopeGrant

__all__ = [
    "ClientConfig",
    "CoupaAuthError",
    "CoupaClient",
    "CoupaError",
    "CoupaHTTPError",
    "CoupaResponseError",
    "CoupaTransportError",
    "PagingError",
    "ReadOnlyClientError",
    "ScopeError",
    "ScopeGrant",
    "Secret",
]
