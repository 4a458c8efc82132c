"""Read a tenant's ``coupa`` section into :class:`CoupaSettings`, by the declarations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from coupa_plugin.connector._settings._registry import DEFAULT, SETTING, SETTINGS, CoupaSettings
from coupa_plugin.connector._shared_state import scoped
from coupa_plugin.coupa import COUPA_RATE
from coupa_plugin.host.errors import ConfigurationError

_KNOWN_KEYS: Final = frozenset(SETTING)


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


def _address(section: Mapping[str, Any]) -> tuple[str, bool]:
    """The instance's URL and whether it is a sandbox's (``base_url``)."""
    insecure = (
        SETTING["allow_insecure_base_url"].reader(
            "allow_insecure_base_url",
            section.get("allow_insecure_base_url", DEFAULT["allow_insecure_base_url"]),
        )
        is True
    )
    if "base_url" in section:
        if not insecure:
            raise ConfigurationError(
                "base_url: only allowed together with allow_insecure_base_url = true"
            )
        base_url = SETTING["base_url"].reader("base_url", section["base_url"])
        if "domain" in section:
            SETTING["domain"].reader("domain", section["domain"])
    else:
        if insecure:
            raise ConfigurationError(
                "allow_insecure_base_url: only meaningful together with base_url"
            )
        if "domain" not in section:
            raise ConfigurationError("domain: required setting is missing")
        base_url = SETTING["domain"].reader("domain", section["domain"])
    return str(base_url), insecure


def parse_settings(section: Mapping[str, Any]) -> CoupaSettings:
    """Validate a tenant's ``coupa`` section into :class:`CoupaSettings`.

    :raises ConfigurationError: naming every key that is wrong (unknown, missing, of the
        wrong type or out of its range), all at once so one edit fixes the section.
    """
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
        f"{setting.name}: required setting is missing"
        for setting in SETTINGS
        if setting.required and setting.name not in section
    ]
    if "domain" not in section and "base_url" not in section:
        problems.append("domain: required setting is missing (or base_url for a sandbox)")
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.step == "value" and setting.name in section:
            try:
                values[setting.name] = setting.reader(setting.name, section[setting.name])
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
    base_url, insecure = _address(section)
    return CoupaSettings(base_url=base_url, insecure=insecure, **values)
