"""What the host hands to the hooks, checked before anything is sent to Coupa.

The contract types its fields, but a host is another program: a list where a string belongs,
``attributes=None`` or a 64 KB login must end in a typed error naming the field, with no
request sent, never in an ``AttributeError`` from deep inside.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Final

from coupa_plugin.connector.mapping import parse_entitlement_id, parse_id
from coupa_plugin.coupa.models import MAX_TEXT_CHARS
from coupa_plugin.host.errors import NotFoundError, ProvisioningError, SyncError
from coupa_plugin.host.model import PROVISION_ACTIONS, ProvisionRequest, SyncRequest

__all__ = ["MAX_PRINCIPAL_IDS", "check_provision_request", "check_sync_request", "unsendable"]

# A targeted refresh names users one by one; more than this is a full sync in disguise.
MAX_PRINCIPAL_IDS: Final = 100_000


# entitlements one create_account may grant; each costs requests of its own
MAX_CREATE_ENTITLEMENTS: Final = 1_000

# C0 and C1 control characters (tab, newline and the rest): no Coupa user field holds them,
# and echoed to a terminal or a spreadsheet they are escape sequences
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def unsendable(text: str) -> str | None:
    """Why ``text`` cannot be written to Coupa as a field value, or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid Unicode text (a lone surrogate)"
    if match := _CONTROL.search(text):
        return f"holds the control character U+{ord(match.group()):04X}"
    return None

def _kind(value: object) -> str:
    return "None" if value is None else type(value).__name__


def _strings(value: object) -> bool:
    return isinstance(value, frozenset | set) and all(isinstance(item, str) for item in value)


def check_sync_request(request: object, hook: str) -> None:
    """Refuse a malformed :class:`SyncRequest` with a :class:`SyncError` naming the field."""

    def refuse(problem: str) -> SyncError:
        return SyncError(f"{hook}: malformed request: {problem}; nothing was read")

    if not isinstance(request, SyncRequest):
        raise refuse(f"expected a SyncRequest, got {_kind(request)}")
    if request.resource_types is not None and not _strings(request.resource_types):
        raise refuse(
            f"resource_types: expected a set of strings, got {_kind(request.resource_types)}"
        )
    if request.since is not None and not isinstance(request.since, datetime):
        raise refuse(f"since: expected a datetime, got {_kind(request.since)}")
    if request.since is not None:
        try:
            request.since.astimezone(UTC)  # what the filter is built from
        except (OverflowError, ValueError):
            raise refuse("since: out of the range of dates") from None
    ids = request.principal_ids
    if ids is not None:
        if not _strings(ids):
            raise refuse(f"principal_ids: expected a set of strings, got {_kind(ids)}")
        if len(ids) > MAX_PRINCIPAL_IDS:
            raise refuse(f"principal_ids: more than {MAX_PRINCIPAL_IDS:,} users")


def check_provision_request(request: object) -> None:  # noqa: C901 - one check per field of the contract, in its order
    """Refuse a malformed :class:`ProvisionRequest` before any request is sent: wrong types
    and oversized values are a :class:`ProvisioningError`, a principal or entitlement id
    this plugin never hands out a :class:`NotFoundError`."""

    def refuse(problem: str) -> ProvisioningError:
        return ProvisioningError(f"malformed request: {problem}; nothing was written")

    if not isinstance(request, ProvisionRequest):
        raise refuse(f"expected a ProvisionRequest, got {_kind(request)}")
    action = request.action
    if not isinstance(action, str) or action not in PROVISION_ACTIONS:
        shown = repr(action[:40]) if isinstance(action, str) else _kind(action)
        raise refuse(f"unknown action {shown} (expected one of {sorted(PROVISION_ACTIONS)})")
    for name in ("entitlement_id", "principal_id"):
        value = getattr(request, name)
        if value is not None and not isinstance(value, str):
            raise refuse(f"{name}: expected a string, got {_kind(value)}")
    if not isinstance(request.dry_run, bool):
        raise refuse(f"dry_run: expected true or false, got {_kind(request.dry_run)}")
    attributes = request.attributes
    if not isinstance(attributes, Mapping):
        raise refuse(f"attributes: expected a mapping, got {_kind(attributes)}")
    for key, value in attributes.items():
        if not isinstance(key, str):
            raise refuse(f"attributes: keys must be strings, got {_kind(key)}")
        if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
            raise refuse(f"attributes.{key[:40]}: longer than {MAX_TEXT_CHARS:,} characters")
        if isinstance(value, str) and (why := unsendable(value)):
            raise refuse(f"attributes.{key[:40]}: {why}")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
            raise refuse(f"attributes.{key[:40]}: number out of range")
    principal = request.principal_id
    if action != "create_account" and principal is not None and parse_id(principal) is None:
        raise NotFoundError(
            f"unknown principal {principal[:40]!r}: Coupa user ids are numbers (ASCII "
            "digits, no leading zero, at most 18); nothing was written"
        )
    if action in {"create_group", "update_group"}:
        _check_group_attributes(attributes, refuse)
    entitlement = request.entitlement_id
    if (
        action in {"grant", "revoke", "update_group", "deactivate_group"}
        and entitlement is not None
        and parse_entitlement_id(entitlement) is None
    ):
        raise NotFoundError(f"unknown entitlement {entitlement[:80]!r}; nothing was written")
    granted = attributes.get("entitlements") if action == "create_account" else None
    if granted is not None:
        if not isinstance(granted, list | tuple) or not all(isinstance(e, str) for e in granted):
            raise refuse("entitlements: expected a list of entitlement ids")
        if len(granted) > MAX_CREATE_ENTITLEMENTS or len(set(granted)) != len(granted):
            # each is checked and granted with requests of its own: no repeats, a sane count
            raise refuse(
                f"entitlements: at most {MAX_CREATE_ENTITLEMENTS} distinct entitlement ids "
                f"(got {len(granted)}, {len(set(granted))} distinct)"
            )
        for item in granted:
            if parse_entitlement_id(item) is None:
                raise NotFoundError(f"unknown entitlement {item[:80]!r}; nothing was written")


# Coupa's limit on a user group's name
MAX_GROUP_NAME_CHARS: Final = 255


def _check_group_attributes(
    attributes: Mapping[str, object], refuse: Callable[[str], ProvisioningError]
) -> None:
    """``name`` (non-empty text, at most 255 characters) and ``description`` (text or None)
    of ``create_group`` and ``update_group``."""
    name = attributes.get("name")
    if "name" in attributes and (not isinstance(name, str) or not name.strip()):
        raise refuse("attributes.name: a user group's name must be non-empty text")
    if isinstance(name, str) and len(name) > MAX_GROUP_NAME_CHARS:
        raise refuse(f"attributes.name: longer than {MAX_GROUP_NAME_CHARS} characters")
    description = attributes.get("description")
    if description is not None and not isinstance(description, str):
        raise refuse(f"attributes.description: expected text, got {_kind(description)}")
