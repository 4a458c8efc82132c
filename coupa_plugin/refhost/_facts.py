"""Facts about a sync run that the snapshot rows do not carry: which Coupa instance (or other
service) was read and which plugin version read it. Recorded when a run completes, shown by
the access-review report.

Only non-secret settings are read: the ``domain`` or ``base_url`` of the plugin's section, cut
down to scheme, host and port (any user info or path is dropped).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlsplit

from coupa_plugin.host.model import Tenant
from coupa_plugin.host.spec import ENTRY_POINT_GROUP

__all__ = ["plugin_version", "run_facts", "service_instance"]


def service_instance(section: Mapping[str, Any]) -> str | None:
    """The instance a plugin section points at (``base_url`` wins over ``domain``), or None."""
    for key in ("base_url", "domain"):
        value = section.get(key)
        if not isinstance(value, str) or not value.strip():
            continue
        text = value.strip()
        parts = urlsplit(text if "://" in text else f"https://{text}")
        if not parts.hostname:
            continue
        host = parts.hostname.lower()
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}" if key == "base_url" else host
    return None


def plugin_version(name: str) -> str | None:
    """The version of the distribution that provides the ``iga.plugins`` entry point ``name``."""
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        if ep.dist is not None:
            return ep.dist.version
    return None


def run_facts(tenant: Tenant, plugin: str) -> dict[str, str]:
    """The facts to record with a run of ``plugin`` for ``tenant``."""
    facts: dict[str, str] = {}
    if (instance := service_instance(tenant.plugins.get(plugin, {}))) is not None:
        facts["instance"] = instance
    if (version := plugin_version(plugin)) is not None:
        facts["plugin_version"] = version
    return facts
