"""Parse and validate a tenant's ``coupa`` settings section.

Every problem is a :class:`~coupa_plugin.host.errors.ConfigurationError` naming the key. Nothing
here touches the network: a refused setting never causes a request.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, get_args
from urllib.parse import urlsplit

import attrs

from coupa_plugin.connector.inputs import unsendable
from coupa_plugin.connector.shared_state import (
    SharedStateURL,
    parse_password_env,
    parse_shared_state,
    scoped,
)
from coupa_plugin.coupa import Secret
from coupa_plugin.coupa.client import ClientConfig
from coupa_plugin.coupa.negotiation import Mode as Mode  # the client's type, re-exported
from coupa_plugin.coupa.ratelimit import COUPA_RATE, MAX_RATE, MIN_RATE
from coupa_plugin.coupa.transport import DEFAULT_MAX_BODY_BYTES
from coupa_plugin.host.errors import ConfigurationError

__all__ = [
    "MODES",
    "RESOURCE_TYPES",
    "SETTINGS_SCHEMA",
    "CoupaSettings",
    "SettingSpec",
    "parse_base_url",
    "parse_domain",
    "parse_settings",
]

MODES: Final[tuple[Mode, ...]] = get_args(Mode)
RESOURCE_TYPES: Final = (
    "user",
    "group",
    "role",
    "license",
    "content_group",
    "account_group",
    "approval_group",
)

# One DNS label (the customer's instance name) in front of one of Coupa's two host domains.
_HOST_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.(?:coupahost|coupacloud)\.com")
_SCHEME_RE: Final = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*)://")
_LOOSE_HOST_RE: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


@attrs.frozen
class SettingSpec:
    """One key of the settings section, as plugin.toml documents it."""

    name: str
    type: str
    default: Any = attrs.field(kw_only=True)
    required: bool = attrs.field(kw_only=True)
    secret: bool = attrs.field(kw_only=True)
    description: str = attrs.field(kw_only=True)


# the client's own defaults are the settings' defaults: how to reach and pace Coupa is the
# client's business, written once in ClientConfig
_CLIENT: Final = {a.name: a.default for a in attrs.fields(ClientConfig)}

SETTINGS_SCHEMA: Final[tuple[SettingSpec, ...]] = (
    SettingSpec(
        "domain",
        "string",
        default=None,
        required=False,
        secret=False,
        description=(
            "Coupa instance host, e.g. acme.coupahost.com (required unless base_url is set)"
        ),
    ),
    SettingSpec(
        "client_id",
        "string",
        default=None,
        required=True,
        secret=False,
        description="OAuth2 client identifier",
    ),
    SettingSpec(
        "client_secret",
        "string",
        default=None,
        required=True,
        secret=True,
        description="OAuth2 client secret",
    ),
    SettingSpec(
        "mode",
        "string",
        default=_CLIENT["mode"],
        required=False,
        secret=False,
        description="auto, read-only or provisioning",
    ),
    SettingSpec(
        "base_url",
        "string",
        default=None,
        required=False,
        secret=False,
        description="URL of a sandbox or emulator; only together with allow_insecure_base_url",
    ),
    SettingSpec(
        "allow_insecure_base_url",
        "boolean",
        default=False,
        required=False,
        secret=False,
        description="must be true for base_url to be used",
    ),
    SettingSpec(
        "requests_per_second",
        "number",
        default=_CLIENT["requests_per_second"],
        required=False,
        secret=False,
        description=(
            "client-side request rate limit for this tenant (25, Coupa's limit, when a "
            "shared pacer is set)"
        ),
    ),
    SettingSpec(
        "max_in_flight",
        "integer",
        default=_CLIENT["max_in_flight"],
        required=False,
        secret=False,
        description="how many requests may be outstanding at once",
    ),
    SettingSpec(
        "timeout_s",
        "number",
        default=_CLIENT["timeout_s"],
        required=False,
        secret=False,
        description=(
            "wall-clock limit of one attempt of a request (connect, send, the whole answer)"
        ),
    ),
    SettingSpec(
        "max_response_mb",
        "number",
        default=DEFAULT_MAX_BODY_BYTES / (1024 * 1024),
        required=False,
        secret=False,
        description="largest response body accepted, in MB, as sent and once decompressed",
    ),
    SettingSpec(
        "resource_types",
        "array",
        default=list(RESOURCE_TYPES),
        required=False,
        secret=False,
        description="resource types to sync",
    ),
    SettingSpec(
        "protected_logins",
        "array",
        default=[],
        required=False,
        secret=False,
        description="logins that provisioning must never change",
    ),
    SettingSpec(
        "shared_rate_limit_file",
        "string",
        default=None,
        required=False,
        secret=False,
        description="SQLite file through which several processes share one instance's rate limit",
    ),
    SettingSpec(
        "shared_state",
        "string",
        default=None,
        required=False,
        secret=True,
        description=(
            "redis:// or rediss:// URL of the Redis that every worker of this tenant shares "
            "(journal, per-user locks, learnt facts, pacing); password from the URL or "
            "shared_state_password_env"
        ),
    ),
    SettingSpec(
        "shared_state_ca_file",
        "string",
        default=None,
        required=False,
        secret=False,
        description=(
            "PEM file of the CA that signed the rediss:// server's certificate (a private CA); "
            "default: the system's trust store"
        ),
    ),
    SettingSpec(
        "shared_state_password_env",
        "string",
        default=None,
        required=False,
        secret=False,
        description=(
            "name of the environment variable holding this tenant's Redis password: "
            "COUPA_SHARED_STATE_PASSWORD or COUPA_SHARED_STATE_PASSWORD_<NAME>"
        ),
    ),
    SettingSpec(
        "state_dir",
        "string",
        default=None,
        required=False,
        secret=False,
        description="directory for the provisioning journal (default: a per-user state directory)",
    ),
    SettingSpec(
        "integration_login",
        "string",
        default=None,
        required=False,
        secret=False,
        description=(
            "login of the API user this integration writes as; provisioning never changes it"
        ),
    ),
    SettingSpec(
        "journal_max_age_s",
        "number",
        default=86_400.0,
        required=False,
        secret=False,
        description="journal entries older than this are reported, never applied",
    ),
    SettingSpec(
        "enabled",
        "boolean",
        default=True,
        required=False,
        secret=False,
        description="per-tenant toggle, read by the host",
    ),
)
_KNOWN_KEYS: Final = frozenset(spec.name for spec in SETTINGS_SCHEMA)
_DEFAULT: Final[dict[str, Any]] = {spec.name: spec.default for spec in SETTINGS_SCHEMA}


@attrs.frozen(kw_only=True)
class CoupaSettings:
    """A tenant's validated settings. Its repr masks the client secret."""

    base_url: str
    client_id: str
    client_secret: Secret
    mode: Mode = _DEFAULT["mode"]
    insecure: bool = _DEFAULT["allow_insecure_base_url"]
    requests_per_second: float = _DEFAULT["requests_per_second"]
    max_in_flight: int = _DEFAULT["max_in_flight"]
    timeout_s: float = _DEFAULT["timeout_s"]
    max_response_mb: float = _DEFAULT["max_response_mb"]
    resource_types: frozenset[str] = frozenset(_DEFAULT["resource_types"])
    protected_logins: frozenset[str] = frozenset(_DEFAULT["protected_logins"])
    state_dir: Path | None = None
    shared_rate_limit_file: str | None = None
    shared_state: SharedStateURL | None = None
    integration_login: str | None = None
    journal_max_age_s: float = _DEFAULT["journal_max_age_s"]
    enabled: bool = _DEFAULT["enabled"]


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


# no setting is a long text: a longer value is a mistake (or an attack), not a setting
_MAX_SETTING_CHARS: Final = 4_096


def _string(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"{key}: expected a string, got {type(value).__name__}")
    if len(value) > _MAX_SETTING_CHARS:
        raise ConfigurationError(f"{key}: longer than {_MAX_SETTING_CHARS:,} characters")
    if why := unsendable(value):
        raise ConfigurationError(f"{key}: {why}")
    return value


def _nonempty(key: str, value: object) -> str:
    text = _string(key, value).strip()
    if not text:
        raise ConfigurationError(f"{key}: must not be empty")
    return text


def _boolean(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{key}: expected true or false, got {type(value).__name__}")
    return value


def _number(key: str, value: object, low: float, high: float) -> float:
    """A finite number from ``low`` to ``high`` (both included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{key}: expected a number, got {type(value).__name__}")
    if not low <= value <= high:  # also refuses nan
        raise ConfigurationError(f"{key}: must be from {low:g} to {high:g}")
    return float(value)


def _integer(key: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{key}: expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise ConfigurationError(f"{key}: must be between {low} and {high}")
    return value


def _string_list(key: str, value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise ConfigurationError(f"{key}: expected a list of strings, got {type(value).__name__}")
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(
                f"{key}: expected a list of strings, found a {type(item).__name__}"
            )
        if why := unsendable(item):
            raise ConfigurationError(f"{key}: an item {why}")
    return items


def _resource_types(key: str, value: object) -> frozenset[str]:
    items = _string_list(key, value)
    unknown = sorted(set(items) - set(RESOURCE_TYPES))
    if unknown:
        raise ConfigurationError(
            f"{key}: unknown resource type(s) {unknown} (known: {list(RESOURCE_TYPES)})"
        )
    if not items:
        raise ConfigurationError(f"{key}: must name at least one resource type")
    return frozenset(items)


def _secret(key: str, value: object) -> Secret:
    if isinstance(value, Secret):
        secret = value
    elif isinstance(value, str):
        secret = Secret(_string(key, value).strip())  # the same checks, never echoing it
    else:
        raise ConfigurationError(f"{key}: expected a string, got {type(value).__name__}")
    if not secret:
        raise ConfigurationError(f"{key}: must not be empty")
    return secret


def _mode(key: str, value: object) -> Mode:
    text = _string(key, value)
    for mode in MODES:
        if text == mode:
            return mode
    raise ConfigurationError(f"{key}: expected one of {list(MODES)}, got {text!r}")


def _path(key: str, value: object) -> Path:
    text = _nonempty(key, value)
    if "\x00" in text or len(text) > 4096:
        raise ConfigurationError(f"{key}: not a usable path")
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # ~nosuchuser/...
        raise ConfigurationError(f"{key}: cannot expand '~' in {text[:80]!r}") from None
    if path.is_symlink():
        raise ConfigurationError(f"{key}: {str(path)[:200]} is a symbolic link; name the target")
    return path


_SQLITE_HEADER: Final = b"SQLite format 3\x00"


def _rate_limit_file(key: str, value: object) -> Path:
    """The shared rate-limit file: in an existing directory, itself absent, empty or a
    SQLite database (never a directory, a symbolic link or some other file)."""
    path = _path(key, value)
    shown = str(path)[:200]
    if not path.parent.is_dir():
        raise ConfigurationError(f"{key}: the directory of {shown} does not exist")
    if path.exists():
        if not path.is_file():
            raise ConfigurationError(f"{key}: {shown} is not a regular file")
        try:
            with path.open("rb") as handle:
                header = handle.read(len(_SQLITE_HEADER))
        except OSError as exc:
            raise ConfigurationError(f"{key}: cannot read {shown}: {exc.strerror}") from None
        if header and header != _SQLITE_HEADER:
            raise ConfigurationError(f"{key}: {shown} exists and is not a SQLite database")
    return path


def _ca_file(key: str, value: object) -> Path:
    """A readable file of PEM certificates (checked by loading it, as TLS will)."""
    path = _path(key, value)
    shown = str(path)[:200]
    if not path.is_file():
        raise ConfigurationError(f"{key}: {shown} is not a regular file")
    try:
        ssl.create_default_context().load_verify_locations(cafile=str(path))
    except OSError as exc:  # ssl.SSLError included
        reason = exc.strerror or "not a PEM file of certificates"
        raise ConfigurationError(f"{key}: cannot load {shown}: {reason}") from None
    return path


def _shared_state(values: dict[str, Any]) -> list[str]:
    """Fold the CA bundle and the password's variable into the ``shared_state`` URL; the
    problems found."""
    ca_file = values.pop("shared_state_ca_file", None)
    password_env = values.pop("shared_state_password_env", None)
    if "shared_state" not in values:
        named = [
            k
            for k, v in (
                ("shared_state_ca_file", ca_file),
                ("shared_state_password_env", password_env),
            )
            if v
        ]
        return [f"{k}: only meaningful together with shared_state" for k in named]
    try:
        values["shared_state"] = scoped(
            values["shared_state"], ca_file=ca_file, password_env=password_env
        )
    except ConfigurationError as exc:
        return [str(exc)]
    problems = []
    if "shared_rate_limit_file" in values:
        problems.append(
            "shared_state: paces through Redis; remove shared_rate_limit_file (only one "
            "shared pacer can hold an instance's budget)"
        )
    return problems


_FIELD_PARSERS: Final[dict[str, Callable[[str, object], object]]] = {
    "client_id": _nonempty,
    "client_secret": _secret,
    "mode": _mode,
    "requests_per_second": lambda k, v: _number(k, v, MIN_RATE, MAX_RATE),
    "max_in_flight": lambda k, v: _integer(k, v, 1, 256),
    "timeout_s": lambda k, v: _number(k, v, 0.1, 3_600.0),
    "max_response_mb": lambda k, v: _number(k, v, 0.001, 1_024.0),
    "resource_types": _resource_types,
    "protected_logins": lambda k, v: frozenset(s.strip().lower() for s in _string_list(k, v)),
    "state_dir": _path,
    "shared_rate_limit_file": lambda k, v: str(_rate_limit_file(k, v)),
    "shared_state": parse_shared_state,
    "shared_state_ca_file": lambda k, v: str(_ca_file(k, v)),
    "shared_state_password_env": parse_password_env,
    "integration_login": lambda k, v: _nonempty(k, v).lower(),
    "journal_max_age_s": lambda k, v: _number(k, v, 0.0, 90 * 86_400.0),
    "enabled": _boolean,
}


def parse_settings(section: Mapping[str, Any]) -> CoupaSettings:  # noqa: C901 - one check per settings key
    """Validate a tenant's ``coupa`` section into :class:`CoupaSettings`."""
    if not isinstance(section, Mapping):
        raise ConfigurationError(
            f"coupa settings: expected a table of settings, got {type(section).__name__}"
        )
    problems = []
    unknown = sorted(str(k)[:60] for k in section if k not in _KNOWN_KEYS)
    if unknown:
        shown = unknown[:20] + ([f"… {len(unknown) - 20} more"] if len(unknown) > 20 else [])
        problems.append(f"unknown setting(s) {shown}; known settings: {sorted(_KNOWN_KEYS)}")
    problems += [
        f"{spec.name}: required setting is missing"
        for spec in SETTINGS_SCHEMA
        if spec.required and spec.name not in section
    ]
    if "domain" not in section and "base_url" not in section:
        problems.append("domain: required setting is missing (or base_url for a sandbox)")
    values: dict[str, Any] = {}
    for name, parse in _FIELD_PARSERS.items():
        if name in section:
            try:
                values[name] = parse(name, section[name])
            except ConfigurationError as exc:
                problems.append(str(exc))
    problems += _shared_state(values)
    if problems:  # every problem at once, so one edit fixes the file
        raise ConfigurationError("; ".join(problems))
    if "requests_per_second" not in values and (
        "shared_state" in values or "shared_rate_limit_file" in values
    ):
        # a shared pacer holds the instance's whole budget: every worker of the plugin takes
        # its turns from it, so no margin below Coupa's limit is kept for them
        values["requests_per_second"] = COUPA_RATE
    insecure = _boolean(
        "allow_insecure_base_url",
        section.get("allow_insecure_base_url", _DEFAULT["allow_insecure_base_url"]),
    )
    if "base_url" in section:
        if not insecure:
            raise ConfigurationError(
                "base_url: only allowed together with allow_insecure_base_url = true"
            )
        base_url = parse_base_url(_string("base_url", section["base_url"]))
        if "domain" in section:
            parse_domain(_string("domain", section["domain"]))
    else:
        if insecure:
            raise ConfigurationError(
                "allow_insecure_base_url: only meaningful together with base_url"
            )
        if "domain" not in section:
            raise ConfigurationError("domain: required setting is missing")
        base_url = parse_domain(_string("domain", section["domain"]))
    return CoupaSettings(base_url=base_url, insecure=insecure, **values)
