"""Read the reference host's tenants file (TOML).

Layout: one table per tenant and, inside it, one table per plugin::

    [tenants.acme.coupa]
    enabled = true                          # the per-tenant toggle
    domain = "acme.coupahost.com"
    client_id = "c1d2…"
    client_secret = "${ACME_COUPA_SECRET}"  # taken from the environment when the file is read

``${NAME}`` in any string value is replaced by the environment variable ``NAME``; ``$$`` stands
for a literal ``$``. A variable that is not set is an error naming the variable (never its value).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coupa_plugin.host.errors import ConfigurationError
from coupa_plugin.host.model import Tenant

__all__ = ["expand_env", "load_tenants", "parse_tenants"]

_VAR_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{[^}]*\}?")


def expand_env(value: Any, env: Mapping[str, str], *, where: str) -> Any:
    """Replace ``${NAME}`` in every string inside ``value`` (recursively)."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            found = match.group(0)
            if found == "$$":
                return "$"
            name = match.group(1)
            if name is None:
                raise ConfigurationError(f"{where}: malformed variable reference {found!r}")
            if name not in env:
                raise ConfigurationError(f"{where}: environment variable {name} is not set")
            return env[name]

        return _VAR_RE.sub(substitute, value)
    if isinstance(value, Mapping):
        return {k: expand_env(v, env, where=f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, where=f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def parse_tenants(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> list[Tenant]:
    """Build tenants from the parsed TOML document."""
    env = os.environ if env is None else env
    unknown = sorted(set(data) - {"tenants"})
    if unknown:
        raise ConfigurationError(f"tenants file: unknown top-level key(s) {unknown}")
    tenants = data.get("tenants", {})
    if not isinstance(tenants, Mapping):
        raise ConfigurationError("tenants file: 'tenants' must be a table of tenants")
    result = []
    for tenant_id, plugins in tenants.items():
        if not isinstance(plugins, Mapping) or not all(
            isinstance(section, Mapping) for section in plugins.values()
        ):
            raise ConfigurationError(
                f"tenants.{tenant_id}: expected one table per plugin, "
                f"e.g. [tenants.{tenant_id}.coupa]"
            )
        sections = {
            name: expand_env(section, env, where=f"tenants.{tenant_id}.{name}")
            for name, section in plugins.items()
        }
        result.append(Tenant(id=str(tenant_id), plugins=sections))
    return result


def load_tenants(path: Path, env: Mapping[str, str] | None = None) -> list[Tenant]:
    """Read and parse a tenants file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read tenants file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"tenants file {path} is not valid TOML: {exc}") from None
    return parse_tenants(data, env)
