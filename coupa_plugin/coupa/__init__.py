"""A typed client for Coupa's API. It knows nothing of the IGA host.

This package's public API is what ``__all__`` names: the client and its configuration, the
records it reads and the values it writes, the scope sets, and the errors (their tree is drawn
at the top of the errors module). Every module is private.
"""

from coupa_plugin.coupa._client import CoupaClient
from coupa_plugin.coupa._config import ClientConfig
from coupa_plugin.coupa._errors import (
    BodyTooLargeError,
    CoupaAuthError,
    CoupaError,
    CoupaHTTPError,
    CoupaResponseError,
    CoupaTimeoutError,
    CoupaTransportError,
    FieldsRefusedError,
    GraphQLError,
    InvalidPaceState,
    PacingTimeout,
    PagingError,
    ReadOnlyClientError,
    RecordError,
    ScopeError,
)
from coupa_plugin.coupa._models import (
    PROFILE_FIELDS,
    USER_LIST_KEYS,
    AccountGroup,
    BusinessGroup,
    LookupCollection,
    Membership,
    Profile,
    ProfileChanges,
    ProfileField,
    Ref,
    Role,
    Unreadable,
    User,
    UserGroup,
    UserList,
    UserRecord,
    WriteEcho,
)
from coupa_plugin.coupa._negotiation import Mode, ScopeGrant
from coupa_plugin.coupa._scopes import (
    OPTIONAL_SCOPES,
    PROVISIONING_SCOPES,
    READ_ONLY_SCOPES,
)
from coupa_plugin.coupa._secret import Secret

__all__ = [
    "OPTIONAL_SCOPES",
    "PROFILE_FIELDS",
    "PROVISIONING_SCOPES",
    "READ_ONLY_SCOPES",
    "USER_LIST_KEYS",
    "AccountGroup",
    "BodyTooLargeError",
    "BusinessGroup",
    "ClientConfig",
    "CoupaAuthError",
    "CoupaClient",
    "CoupaError",
    "CoupaHTTPError",
    "CoupaResponseError",
    "CoupaTimeoutError",
    "CoupaTransportError",
    "FieldsRefusedError",
    "GraphQLError",
    "InvalidPaceState",
    "LookupCollection",
    "Membership",
    "Mode",
    "PacingTimeout",
    "PagingError",
    "Profile",
    "ProfileChanges",
    "ProfileField",
    "ReadOnlyClientError",
    "RecordError",
    "Ref",
    "Role",
    "ScopeError",
    "ScopeGrant",
    "Secret",
    "Unreadable",
    "User",
    "UserGroup",
    "UserList",
    "UserRecord",
    "WriteEcho",
]
