"""The settings of a tenant's ``coupa`` section, each declared once.

One :class:`Setting` per key: its type, default, range, whether it is required or secret, how
its value is read, the client field it feeds, its one-line description (``plugin.toml``) and
its documentation (the table of ``docs/configuration.md``). The parser, :class:`CoupaSettings`,
the client's configuration, ``plugin.toml`` and the docs table all come from :data:`SETTINGS`.

How to reach and pace Coupa is the client's business: the defaults of the settings that feed
:class:`~coupa_plugin.coupa._config.ClientConfig` are read from it (its fields' defaults), and
the journal's age limit from the provisioning package, so each default is written once, where
the code that uses it lives.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, get_args

import attrs

from coupa_plugin.connector._kinds import KINDS
from coupa_plugin.connector._provisioning import DEFAULT_JOURNAL_MAX_AGE_S
from coupa_plugin.connector._settings import _files, _values
from coupa_plugin.connector._settings._address import parse_base_url, parse_domain
from coupa_plugin.connector._settings._values import Range, Reader, shown
from coupa_plugin.connector._shared_state import (
    SharedStateURL,
    parse_password_env,
    parse_shared_state,
)
from coupa_plugin.coupa import (
    COUPA_BURST,
    COUPA_RATE,
    MAX_RATE,
    MIN_RATE,
    ClientConfig,
    Mode,
    Secret,
)
from coupa_plugin.host.errors import ConfigurationError

MODES: Final[tuple[Mode, ...]] = get_args(Mode)
RESOURCE_TYPES: Final = ("user", *(kind.name for kind in KINDS))
MB: Final = 1024 * 1024

SettingType = Literal["string", "boolean", "number", "integer", "array"]
Step = Literal["value", "address"]
_CLIENT_DEFAULTS: Final[Mapping[str, Any]] = {a.name: a.default for a in attrs.fields(ClientConfig)}


def _same(value: Any) -> Any:
    return value


@attrs.frozen
class ClientLink:
    """The :class:`ClientConfig` field a setting feeds, and how a value crosses over."""

    field: str
    to_client: Callable[[Any], Any] = _same
    from_client: Callable[[Any], Any] = _same

    def client_default(self) -> Any:
        """The setting's default: the client's, in the setting's unit (None: it has none)."""
        default = _CLIENT_DEFAULTS[self.field]
        return None if default is attrs.NOTHING else self.from_client(default)


@attrs.frozen(kw_only=True)
class Setting:
    """One key of the settings section."""

    name: str
    type: SettingType
    description: str  # one line, for plugin.toml
    doc: str  # Markdown, the meaning column of the docs table
    read: Reader | None = None  # how a given value is read (None: by its type, range, choices)
    range: Range | None = None  # numbers: the values accepted
    choices: tuple[str, ...] | None = None  # strings: the values accepted
    client: ClientLink | None = None  # the client field it feeds (the default is then its)
    default: Any = attrs.field()
    required: bool = False
    secret: bool = False
    # "value": read with every other value, their problems reported together; "address":
    # domain, base_url and allow_insecure_base_url, read together once the values are good
    step: Step = "value"
    shown_default: str = "{}"  # the docs' default column; "{}" is the default itself

    @default.default
    def _default(self) -> Any:
        return self.client.client_default() if self.client is not None else None

    def __attrs_post_init__(self) -> None:
        numeric = self.type in ("number", "integer")
        if numeric != (self.range is not None):
            raise TypeError(f"{self.name}: a range is declared for numbers, and only for them")
        if self.read is None and self.type in ("string", "array") and self.choices is None:
            raise TypeError(f"{self.name}: needs a reader")

    @property
    def reader(self) -> Reader:
        """How a given value is checked and converted."""
        if self.read is not None:
            return self.read
        if self.choices is not None:
            return functools.partial(_values.choice, choices=self.choices)
        if self.range is not None:
            parse = _values.integer if self.type == "integer" else _values.number
            return functools.partial(parse, within=self.range)
        return _values.boolean


def _resource_types(key: str, value: object) -> frozenset[str]:
    items = _values.string_list(key, value)
    unknown = sorted(set(items) - set(RESOURCE_TYPES))
    if unknown:
        raise ConfigurationError(
            f"{key}: unknown resource type(s) {unknown} (known: {list(RESOURCE_TYPES)})"
        )
    if not items:
        raise ConfigurationError(f"{key}: must name at least one resource type")
    return frozenset(items)


def _logins(key: str, value: object) -> frozenset[str]:
    return frozenset(s.strip().lower() for s in _values.string_list(key, value))


def _login(key: str, value: object) -> str:
    return _values.nonempty(key, value).lower()


def _domain(key: str, value: object) -> str:
    return parse_domain(_values.string(key, value), key=key)


def _base_url(key: str, value: object) -> str:
    return parse_base_url(_values.string(key, value), key=key)


def _rate_limit_file(key: str, value: object) -> str:
    return str(_files.rate_limit_file(key, value))


def _ca_file(key: str, value: object) -> str:
    return str(_files.ca_file(key, value))


_REDIS_DOCS: Final = "operations.md#many-workers-on-many-machines"

SETTINGS: Final[tuple[Setting, ...]] = (
    Setting(
        name="domain",
        type="string",
        read=_domain,
        step="address",
        description=(
            "Coupa instance host, e.g. acme.coupahost.com (required unless base_url is set)"
        ),
        shown_default="required unless `base_url`",
        doc=(
            "The Coupa instance: `acme.coupahost.com` or `acme.coupacloud.com`, in any case, "
            "with or without `https://`, a trailing slash or a path. Anything else is refused: "
            "other hosts, IP literals, ports, user info (`acme.coupahost.com@evil.com`), "
            "look-alikes (`acme.coupahost.com.evil.com`), `http://`."
        ),
    ),
    Setting(
        name="client_id",
        type="string",
        read=_values.nonempty,
        client=ClientLink("client_id"),
        required=True,
        description="OAuth2 client identifier",
        doc="The OAuth2 client's identifier.",
    ),
    Setting(
        name="client_secret",
        type="string",
        read=_values.secret,
        client=ClientLink("client_secret"),
        required=True,
        secret=True,
        description="OAuth2 client secret",
        doc=(
            "The OAuth2 client's secret. Held in a `Secret` that never appears in a repr, a log "
            "line, an error or a file."
        ),
    ),
    Setting(
        name="mode",
        type="string",
        choices=MODES,
        client=ClientLink("mode"),
        description=f"{', '.join(MODES[:-1])} or {MODES[-1]}",
        doc=(
            "`auto` asks for the provisioning scopes and falls back to read-only when Coupa "
            "refuses them. `read-only` never asks for a write scope, and its client refuses to "
            "send any write. `provisioning` fails `configure` with the missing scopes named."
        ),
    ),
    Setting(
        name="base_url",
        type="string",
        read=_base_url,
        step="address",
        client=ClientLink("base_url"),
        description="URL of a sandbox or emulator; only together with allow_insecure_base_url",
        doc=(
            "Point the plugin at a sandbox or emulator, e.g. `http://127.0.0.1:8080`. Only "
            "together with `allow_insecure_base_url = true`."
        ),
    ),
    Setting(
        name="allow_insecure_base_url",
        type="boolean",
        default=False,
        step="address",
        description="must be true for base_url to be used",
        doc="Must be `true` for `base_url` to be used.",
    ),
    Setting(
        name="requests_per_second",
        type="number",
        range=Range(MIN_RATE, MAX_RATE),
        client=ClientLink("requests_per_second"),
        description=(
            f"client-side request rate limit for this tenant ({shown(COUPA_RATE)}, Coupa's "
            "limit, when a shared pacer is set)"
        ),
        shown_default=(
            f"{{}} (`{shown(COUPA_RATE)}` with `shared_rate_limit_file` or `shared_state`)"
        ),
        doc=(
            f"Client-side pacing for this tenant (Coupa allows {shown(COUPA_RATE)}/s with a "
            f"burst of {COUPA_BURST}). A shared pacer holds the instance's whole budget; lower "
            "it when another integration uses the instance. Above Coupa's limit, `configure` "
            "warns: Coupa answers the excess with 429s."
        ),
    ),
    Setting(
        name="max_in_flight",
        type="integer",
        range=Range(1, 256),
        client=ClientLink("max_in_flight"),
        description="how many requests may be outstanding at once",
        doc="The most requests outstanding at once.",
    ),
    Setting(
        name="timeout_s",
        type="number",
        range=Range(0.1, 3_600.0),
        client=ClientLink("timeout_s"),
        description=(
            "wall-clock limit of one attempt of a request (connect, send, the whole answer)"
        ),
        doc=(
            "Wall-clock limit of one attempt of a request: connect, send and the whole answer. "
            "A call and its retries end within "
            f"{shown(_CLIENT_DEFAULTS['retry_timeout_s'])} s."
        ),
    ),
    Setting(
        name="max_response_mb",
        type="number",
        range=Range(0.001, 1_024.0),
        client=ClientLink(
            "max_body_bytes", to_client=lambda mb: int(mb * MB), from_client=lambda n: n / MB
        ),
        description="largest response body accepted, in MB, as sent and once decompressed",
        doc=(
            "The largest response body accepted, as sent and once decompressed; a larger one is "
            "stopped while it streams in and reported."
        ),
    ),
    Setting(
        name="resource_types",
        type="array",
        read=_resource_types,
        default=list(RESOURCE_TYPES),
        shown_default="all of them",
        description="resource types to sync",
        doc=("Which of " + ", ".join(f"`{name}`" for name in RESOURCE_TYPES) + " to sync."),
    ),
    Setting(
        name="protected_logins",
        type="array",
        read=_logins,
        default=[],
        description="logins that provisioning must never change",
        doc=(
            "Logins provisioning must never change (break-glass admins, the integration's own "
            "user)."
        ),
    ),
    Setting(
        name="shared_rate_limit_file",
        type="string",
        read=_rate_limit_file,
        client=ClientLink("shared_rate_limit_file"),
        description="SQLite file through which several processes share one instance's rate limit",
        doc=(
            "A SQLite file through which several worker processes syncing the same Coupa "
            f"instance share one rate budget (see [operations.md]({_REDIS_DOCS}))."
        ),
    ),
    Setting(
        name="shared_state",
        type="string",
        read=parse_shared_state,
        secret=True,
        description=(
            "redis:// or rediss:// URL of the Redis that every worker of this tenant shares "
            "(journal, per-user locks, learnt facts, pacing); password from the URL or "
            "shared_state_password_env"
        ),
        doc=(
            "`redis://[[user]:password@]host[:port][/db]` (`rediss://` for TLS): the Redis that "
            "every worker of this tenant shares, for the journal, the per-user locks, what "
            f"provisioning learns and the pacer (see [operations.md]({_REDIS_DOCS})). The "
            "password comes from the URL or from the variable `shared_state_password_env` names "
            "(no variable is read unless named); it never appears in a repr, log line or error. "
            "`rediss://` verifies the server's certificate and host name; `redis://` to anything "
            "but loopback is logged as a warning. Every call ends within `timeout_s` (and the "
            "hook's budget), every reply within 16 MB. Needs `pip install "
            "'coupa-plugin[redis]'`. Not together with `shared_rate_limit_file`."
        ),
    ),
    Setting(
        name="shared_state_ca_file",
        type="string",
        read=_ca_file,
        shown_default="system trust store",
        description=(
            "PEM file of the CA that signed the rediss:// server's certificate (a private CA); "
            "default: the system's trust store"
        ),
        doc=(
            "A PEM file of the CA that signed the `rediss://` server's certificate (a private "
            "CA). Checked when the settings are read; only with `rediss://`."
        ),
    ),
    Setting(
        name="shared_state_password_env",
        type="string",
        read=parse_password_env,
        description=(
            "name of the environment variable holding this tenant's Redis password: "
            "COUPA_SHARED_STATE_PASSWORD or COUPA_SHARED_STATE_PASSWORD_<NAME>"
        ),
        doc=(
            "The environment variable holding this tenant's Redis password: "
            "`COUPA_SHARED_STATE_PASSWORD` or `COUPA_SHARED_STATE_PASSWORD_<NAME>` (no other "
            "variable can be named, so settings cannot send another secret of the process to a "
            "Redis). Give each tenant its own; the variable must be set and not empty. Not "
            "together with a password in the URL."
        ),
    ),
    Setting(
        name="state_dir",
        type="string",
        read=_values.path,
        shown_default="per-user state dir",
        description="directory for the provisioning journal (default: a per-user state directory)",
        doc=(
            "Where the provisioning journal and what provisioning learns about the tenant (list "
            "semantics, the API user it writes as) live: 0700 folders, 0600 files, no symlinks "
            "below it."
        ),
    ),
    Setting(
        name="integration_login",
        type="string",
        read=_login,
        description=(
            "login of the API user this integration writes as; provisioning never changes it"
        ),
        doc=(
            "The login of the API user this integration writes as; provisioning never changes "
            "it, from the first call of a fresh installation on."
        ),
    ),
    Setting(
        name="journal_max_age_s",
        type="number",
        range=Range(0.0, 90 * 86_400.0),
        default=DEFAULT_JOURNAL_MAX_AGE_S,
        description="journal entries older than this are reported, never applied",
        doc="Journal entries older than this are reported and dropped, never applied.",
    ),
    Setting(
        name="enabled",
        type="boolean",
        default=True,
        description="per-tenant toggle, read by the host",
        doc="The per-tenant toggle; with `false` every hook returns `None`.",
    ),
)
SETTING: Final[Mapping[str, Setting]] = {setting.name: setting for setting in SETTINGS}
DEFAULT: Final[Mapping[str, Any]] = {setting.name: setting.default for setting in SETTINGS}


@attrs.frozen(kw_only=True)
class CoupaSettings:
    """A tenant's validated settings. Its repr masks the client secret."""

    base_url: str
    client_id: str
    client_secret: Secret
    mode: Mode = DEFAULT["mode"]
    insecure: bool = DEFAULT["allow_insecure_base_url"]
    requests_per_second: float = DEFAULT["requests_per_second"]
    max_in_flight: int = DEFAULT["max_in_flight"]
    timeout_s: float = DEFAULT["timeout_s"]
    max_response_mb: float = DEFAULT["max_response_mb"]
    resource_types: frozenset[str] = frozenset(DEFAULT["resource_types"])
    protected_logins: frozenset[str] = frozenset(DEFAULT["protected_logins"])
    state_dir: Path | None = DEFAULT["state_dir"]
    shared_rate_limit_file: str | None = DEFAULT["shared_rate_limit_file"]
    shared_state: SharedStateURL | None = DEFAULT["shared_state"]
    integration_login: str | None = DEFAULT["integration_login"]
    journal_max_age_s: float = DEFAULT["journal_max_age_s"]
    enabled: bool = DEFAULT["enabled"]

    def client_config(self, *, tenant: str) -> ClientConfig:
        """The client's configuration for ``tenant``: every setting that feeds the client
        (its :class:`ClientLink`), the rest at the client's own defaults."""
        linked = {
            link.field: link.to_client(getattr(self, setting.name))
            for setting in SETTINGS
            if (link := setting.client) is not None
        }
        return ClientConfig(tenant=tenant, **linked)
