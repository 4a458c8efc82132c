"""A tenant's ``coupa`` settings section: each setting declared once, and the parser.

Every problem is a :class:`~coupa_plugin.host.errors.ConfigurationError` naming the key. Nothing
here touches the network: a refused setting never causes a request.

* :mod:`._registry`: one :class:`Setting` per key (type, default, range, doc, reader, the client
  field it feeds) and :class:`CoupaSettings`, the validated section;
* :mod:`._parse`: :func:`parse_settings`, which reads a section by those declarations;
* :mod:`._values`, :mod:`._address`, :mod:`._files`: the readers of one value.
"""

from coupa_plugin.connector._settings._address import parse_base_url, parse_domain
from coupa_plugin.connector._settings._parse import parse_settings
from coupa_plugin.connector._settings._registry import (
    MODES,
    RESOURCE_TYPES,
    SETTINGS,
    ClientLink,
    CoupaSettings,
    Setting,
)
from coupa_plugin.connector._settings._values import Range

__all__ = [
    "MODES",
    "RESOURCE_TYPES",
    "SETTINGS",
    "ClientLink",
    "CoupaSettings",
    "Range",
    "Setting",
    "parse_base_url",
    "parse_domain",
    "parse_settings",
]
