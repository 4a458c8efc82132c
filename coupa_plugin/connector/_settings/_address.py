"""Where a tenant's Coupa is: a Coupa instance's domain, or a sandbox's URL."""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import urlsplit

from coupa_plugin.host.errors import ConfigurationError

# One DNS label (the customer's instance name) in front of one of Coupa's two host domains.
_HOST_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.(?:coupahost|coupacloud)\.com")
_SCHEME_RE: Final = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*)://")
_LOOSE_HOST_RE: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def parse_domain(value: str, *, key: str = "domain") -> str:
    """Return ``https://<host>`` for a Coupa instance given as a host or URL, or refuse it.

    Accepted: ``acme.coupahost.com`` or ``acme.coupacloud.com`` in any case, with or without
    ``https://``, with a trailing slash, path, query or fragment. Refused: any other host, IP
    literals, ports, user info, ``http://`` and other schemes, hosts that merely contain a Coupa
    domain.
    """
    text = value.strip()
    if not text:
        raise ConfigurationError(f"{key}: must not be empty")
    if scheme := _SCHEME_RE.match(text):
        if scheme.group(1).lower() != "https":
            raise ConfigurationError(
                f"{key}: only https:// is allowed for a Coupa instance (got {scheme.group(1)}://)"
            )
        text = text[scheme.end() :]
    authority = re.split(r"[/?#]", text, maxsplit=1)[0]
    if "@" in authority:
        raise ConfigurationError(f"{key}: user info ('…@') is not allowed in a Coupa domain")
    if ":" in authority or "[" in authority:
        raise ConfigurationError(f"{key}: ports and IP literals are not allowed in a Coupa domain")
    host = authority.lower()
    if not _HOST_RE.fullmatch(host):
        shown = authority if _LOOSE_HOST_RE.fullmatch(authority) and len(authority) < 256 else None
        detail = f" (got {shown!r})" if shown else ""
        raise ConfigurationError(
            f"{key}: expected a Coupa instance host such as acme.coupahost.com or "
            f"acme.coupacloud.com{detail}"
        )
    return f"https://{host}"


def parse_base_url(value: str, *, key: str = "base_url") -> str:
    """Validate a sandbox/emulator URL: http(s), a host, an optional port, nothing else."""
    text = value.strip().rstrip("/")
    match = re.fullmatch(r"(https?)://([^/?#@\s]+)", text, flags=re.IGNORECASE)
    if not match:
        raise ConfigurationError(
            f"{key}: expected http(s)://host[:port] with no path, user info, query or fragment"
        )
    hostport = match.group(2)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"{key}: invalid URL ({exc})") from None
    if port is not None and not 0 < port < 65536:
        raise ConfigurationError(f"{key}: invalid port {port}")
    host = parts.hostname or ""
    if not host:
        raise ConfigurationError(f"{key}: missing host")
    if hostport.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigurationError(f"{key}: invalid IPv6 address {host[:60]!r}") from None
    elif not _LOOSE_HOST_RE.fullmatch(host) or len(host) > 253:
        raise ConfigurationError(f"{key}: invalid host {host[:60]!r}")
    return f"{match.group(1).lower()}://{hostport.lower()}"
