"""scim2-server's storage over the plugin: reads from the :class:`Directory`, writes through the
``provision`` hook, then the written user is read again so the next read shows the write.

scim2-server does the protocol (validation, PATCH, ``attributes``, errors, ETags); this module
only says what a SCIM resource is in Coupa and which provision requests a change makes.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final, Union

from scim2_models import (
    ForbiddenException,
    InvalidValueException,
    NotFoundException,
    NotImplementedException,
    Resource,
    ResourceType,
    ResponseParameters,
    SCIMException,
    ScimFilter,
    SearchRequest,
    UniquenessException,
)
from scim2_models.path import CompareOperator, Comparison, ValuePath
from scim2_server.storage import ScimStorage, SearchPage
from scim2_server.utils import parametrize

from coupa_plugin.host.errors import (
    NotFoundError,
    PluginError,
    ProvisioningError,
    ReadOnlyError,
)
from coupa_plugin.host.model import ProvisionRequest, ProvisionResult
from coupa_plugin.host.model import Resource as CoupaUser
from coupa_plugin.refhost._manager import PluginHooks
from coupa_plugin.refhost._scim import LOGGER
from coupa_plugin.refhost._scim.directory import TYPE_LABELS, Directory, GroupEntry
from coupa_plugin.refhost._scim.mapping import (
    current_attributes,
    group_document,
    manager_id_of,
    user_document,
    wanted_attributes,
)

__all__ = ["CoupaStorage", "scim_error_of"]

log = logging.getLogger(LOGGER)

NO_GROUP_WRITES: Final = (
    "Coupa does not let roles, licenses, content, account or approval groups be created, "
    "renamed or deleted through its API: they exist in Coupa and are defined there. Only user "
    "groups are created (POST with a plain displayName), renamed and deleted (deactivated) "
    "over SCIM. Manage who holds any group by changing its members (PATCH add/remove members)."
)
# displayName prefixes naming a user group on POST ("User group: X" is how earlier clients
# matched one); any other kind's label is refused
_USER_GROUP_PREFIXES: Final = tuple(f"{label}: " for label in ("User group", "Group"))
_OTHER_KINDS: Final = tuple(
    f"{label}: " for kind, label in TYPE_LABELS.items() if kind != "group"
)


class _Unavailable(SCIMException):
    status = 503
    _default_detail = "Coupa could not be reached; try again later"


def scim_error_of(exc: PluginError) -> SCIMException:
    """The SCIM error a client gets for a plugin error (its message names what was wrong)."""
    if isinstance(exc, NotFoundError):
        return NotFoundException(detail=str(exc))
    if isinstance(exc, ReadOnlyError):
        return ForbiddenException(detail=str(exc))
    if isinstance(exc, ProvisioningError):
        return InvalidValueException(detail=str(exc))
    return _Unavailable(detail=f"{type(exc).__name__}: {exc}")


def _attr_name(comparison: Comparison) -> str:
    return comparison.attr_path.attr.casefold()


def _eq_value(node: Any, attribute: str) -> str | None:
    """The value of ``attribute eq "value"`` when ``node`` is that comparison."""
    if (
        isinstance(node, Comparison)
        and node.op == CompareOperator.eq
        and node.attr_path.sub_attr is None
        and _attr_name(node) == attribute
        and isinstance(node.value, str)
    ):
        return node.value
    return None


_INDEXED: Final = {"User": ("username", "externalid", "id"), "Group": ("displayname", "id")}


def _indexed(node: Any, kind: str) -> bool:
    """Whether the candidates of ``node`` are exactly its matches (the filters identity
    platforms send: ``userName``, ``externalId``, ``id`` on users, ``displayName``, ``id`` and
    ``members[value eq ...]`` on groups)."""
    if isinstance(node, ValuePath) and kind == "Group":
        return (
            node.attr_path.attr.casefold() == "members"
            and node.sub_attr is None
            and _eq_value(node.val_filter, "value") is not None
        )
    return any(_eq_value(node, name) is not None for name in _INDEXED.get(kind, ()))


def _named(entry: GroupEntry, display_name: str) -> bool:
    """Whether ``display_name`` names ``entry`` (a user group also as "User group: X")."""
    wanted = display_name.casefold()
    if entry.display_name.casefold() == wanted:
        return True
    return entry.entitlement.resource_type == "group" and any(
        f"{prefix}{entry.display_name}".casefold() == wanted for prefix in _USER_GROUP_PREFIXES
    )


def _member_ids(document: dict[str, Any]) -> set[str]:
    return {
        str(m["value"])
        for m in document.get("members") or ()
        if isinstance(m, dict) and m.get("value")
    }


_MEMBER_FILTER: Final = re.compile(r'members\[\s*value\s+eq\s+"([^"]*)"\s*\]', re.IGNORECASE)


def member_patch(path: str, body: bytes) -> tuple[str, frozenset[str]] | None:
    """``(group id, member ids)`` for a PATCH of a group that only adds or removes the named
    members (how Entra ID and Okta send membership changes), else None.

    Such a PATCH is applied to the group with just those members, so that it costs the same
    on a group of ten holders as on one of two hundred thousand; every other PATCH (a
    ``replace`` of the members, say) is applied to the whole group.
    """
    kind, _, group_id = path.strip("/").partition("/")
    if kind != "Groups" or not group_id or "/" in group_id:
        return None
    try:
        operations = json.loads(body).get("Operations")
    except (ValueError, AttributeError):
        return None
    named: set[str] = set()
    for op in operations if isinstance(operations, list) and operations else [None]:
        ids = _named_members(op)
        if ids is None:
            return None
        named |= ids
    return group_id, frozenset(named)


def _named_members(op: Any) -> set[str] | None:
    if not isinstance(op, dict) or str(op.get("op", "")).lower() not in ("add", "remove"):
        return None
    target = str(op.get("path", ""))
    if target.lower() == "members":
        values = op.get("value")
        if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
            return None
        return {str(v.get("value")) for v in values}
    found = _MEMBER_FILTER.fullmatch(target)
    if found is None or str(op["op"]).lower() != "remove":
        return None
    return {found.group(1)}


def user_group_name(display_name: object) -> str:
    """The Coupa name a SCIM displayName gives a user group: ``X``, ``User group: X`` or
    ``Group: X`` name ``X``; another kind's label ("Role: Buyer") is refused, as Coupa does
    not let those be created or renamed."""
    text = display_name.strip() if isinstance(display_name, str) else ""
    if text.startswith(_OTHER_KINDS):
        raise InvalidValueException(detail=f"displayName {text[:80]!r}: {NO_GROUP_WRITES}")
    for prefix in _USER_GROUP_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :].strip()
            break
    if not text:
        raise InvalidValueException(detail="displayName: a user group needs a name")
    return text


def _wants(params: ResponseParameters[Any] | None, attribute: str) -> bool:
    """Whether a response keeps ``attribute`` (a default-returned one)."""
    if params is None:
        return True

    def names(paths: list[Any] | None) -> set[str]:
        return {str(p).rsplit(":", 1)[-1].split(".")[0].casefold() for p in paths or ()}

    if params.attributes:
        return attribute in names(params.attributes)
    return attribute not in names(params.excluded_attributes)


class CoupaStorage(ScimStorage):
    """Users and entitlement groups of one Coupa tenant, for scim2-server."""

    def __init__(
        self,
        directory: Directory,
        hooks: PluginHooks,
        model_for: Callable[[str], type[Resource[Any]]],
    ) -> None:
        self.directory = directory
        self.hooks = hooks
        self._model_for = model_for
        self._write_lock = threading.Lock()
        # users deleted over SCIM: disabled in Coupa and not served while they stay inactive
        self._deleted: set[str] = set()
        # user groups deleted over SCIM (entitlement ids): likewise deactivated, and hidden
        self._deleted_groups: set[str] = set()
        # a group's externalId, as its client set it (Coupa has no field to keep it in)
        self._group_external: dict[str, str] = {}
        self._base = threading.local()
        self._request = threading.local()

    # -- documents ------------------------------------------------------

    def _visible(self, user: CoupaUser | None) -> CoupaUser | None:
        if user is None:
            return None
        if user.id in self._deleted:
            if not user.profile.get("active"):
                return None
            self._deleted.discard(user.id)
        return user

    def _group_visible(self, entry: GroupEntry | None) -> GroupEntry | None:
        if entry is None:
            return None
        if entry.entitlement.id in self._deleted_groups:
            if not entry.active:
                return None
            self._deleted_groups.discard(entry.entitlement.id)
        return entry

    def _user_model(self, user: CoupaUser) -> Resource[Any]:
        held = [g for g in self.directory.groups_held_by(user.id) if self._group_visible(g)]
        document = user_document(user, held)
        return self._model_for("User").model_validate(document)

    def expect(self, patch: tuple[str, frozenset[str]] | None) -> None:
        """What :func:`member_patch` found in the request this thread serves (or None)."""
        self._request.member_patch = patch

    def _group_model(
        self, entry: GroupEntry, *, members: bool = True, among: frozenset[str] | None = None
    ) -> Resource[Any]:
        holders = None
        if members:
            # a copy: _visible forgets users re-enabled in Coupa, and other threads write too
            deleted = tuple(self._deleted)
            hidden = {u for u in deleted if self._visible(self.directory.user(u)) is None}
            # the holders the copy knows as users
            holders = self.directory.logins(self.directory.members(entry.entitlement.id) - hidden)
        external = self._group_external.get(entry.entitlement.id)
        document = group_document(entry, holders, among, external)
        return self._model_for("Group").model_validate(document)

    def _user(self, user_id: str) -> CoupaUser:
        user = self._visible(self.directory.user(user_id))
        if user is None:
            raise NotFoundException(detail=f"no user {user_id}")
        return user

    def _group(self, group_id: str) -> GroupEntry:
        entry = self._group_visible(self.directory.group(group_id))
        if entry is None:
            raise NotFoundException(detail=f"no group {group_id}")
        return entry

    # -- reads ----------------------------------------------------------

    def get(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        response_parameters: ResponseParameters[Any] | None = None,
    ) -> Resource[Any]:
        expected = getattr(self._request, "member_patch", None)
        if resource_type.id == "User":
            model = self._user_model(self._user(resource_id))
        elif response_parameters is None and expected and expected[0] == resource_id:
            # the base of a PATCH that adds or removes these members: them alone
            model = self._group_model(self._group(resource_id), among=expected[1])
        else:
            model = self._group_model(
                self._group(resource_id), members=_wants(response_parameters, "members")
            )
        if response_parameters is None:
            # scim2-server reads the resource, applies a PUT or PATCH to it and calls update
            # in the same thread: what it read is the base the request changed
            # (dumped now: scim2-server applies the request to the model it was given)
            self._base.read = (resource_type.id, resource_id, model.model_dump())
        return model

    def search(
        self,
        resource_types: list[ResourceType],
        search_request: SearchRequest[Any],
        *,
        position: Any = None,
    ) -> SearchPage:
        if len(resource_types) != 1:
            raise NotImplementedException(detail="search /Users or /Groups, not the root")
        kind = resource_types[0].id
        scim_filter = search_request.filter
        model = self._model_for(kind or "")
        if scim_filter is not None and not scim_filter.models:
            scim_filter = parametrize(ScimFilter, Union[model])(str(scim_filter))  # noqa: UP007
        node = scim_filter.ast if scim_filter is not None else None
        if kind == "User":
            build: Callable[[Any], Resource[Any]] = self._user_model
            candidates: list[Any] = list(self._user_candidates(node))
        else:
            # a filter on members is matched against them, whatever the response keeps
            wants_members = _wants(search_request, "members") or (
                scim_filter is not None and "members" in str(scim_filter).casefold()
            )

            def build(entry: Any) -> Resource[Any]:
                return self._group_model(entry, members=wants_members)

            candidates = list(self._group_candidates(node))
        start = search_request.start_index_0 or 0
        stop = None if search_request.count is None else start + search_request.count
        if scim_filter is None or _indexed(node, kind or ""):
            return SearchPage(len(candidates), [build(c) for c in candidates[start:stop]])
        found = [r for r in map(build, candidates) if scim_filter.match(r)]
        return SearchPage(len(found), found[start:stop])

    def _user_candidates(self, node: Any) -> Iterator[CoupaUser]:
        login = _eq_value(node, "username")
        if login is not None:
            user = self._visible(self.directory.user_by_login(login))
            if user is not None:
                yield user
            return
        wanted_id = _eq_value(node, "id")
        external = _eq_value(node, "externalid")
        for user in self.directory.users():
            if wanted_id is not None and user.id != wanted_id:
                continue
            if external is not None and user.profile.get("sso_identifier") != external:
                continue
            if self._visible(user) is not None:
                yield user

    def _group_candidates(self, node: Any) -> Iterator[GroupEntry]:
        if (
            isinstance(node, ValuePath)
            and node.attr_path.attr.casefold() == "members"
            and node.sub_attr is None
        ):
            member = _eq_value(node.val_filter, "value")
            if member is not None:
                yield from filter(self._group_visible, self.directory.groups_held_by(member))
                return
        name = _eq_value(node, "displayname")
        wanted_id = _eq_value(node, "id")
        for entry in self.directory.groups():
            if name is not None and not _named(entry, name):
                continue
            if wanted_id is not None and entry.entitlement.id != wanted_id:
                continue
            if self._group_visible(entry) is not None:
                yield entry

    # -- writes ---------------------------------------------------------

    def _provision(self, request: ProvisionRequest) -> ProvisionResult:
        try:
            result = self.hooks.provision(request)
        except PluginError as exc:
            log.info(
                "provision %s refused: %s",
                request.action,
                type(exc).__name__,
                extra={"tenant": self.hooks.tenant.id},
            )
            raise scim_error_of(exc) from None
        if result is None:
            raise _Unavailable(detail=f"the plugin is not enabled for {self.hooks.tenant.id}")
        return result

    def _refresh(self, user_id: str) -> None:
        try:
            self.directory.refresh_user(user_id)
        except PluginError as exc:
            raise scim_error_of(exc) from None

    def _manager_login(self, document: dict[str, Any]) -> str | None:
        manager_id = manager_id_of(document)
        if manager_id is None:
            return None
        manager = self.directory.user(manager_id)
        if manager is None:
            raise InvalidValueException(detail=f"manager: no user {manager_id}")
        return str(manager.profile.get("login"))

    def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        if resource_type.id != "User":
            return self._create_group(resource.model_dump())
        document = resource.model_dump()
        wanted = wanted_attributes(document, self._manager_login(document))
        login = wanted["login"] or ""
        with self._write_lock:
            existing = self.directory.user_by_login(login)
            if existing is not None and existing.id in self._deleted:
                return self._revive(existing, wanted, document)
            if existing is not None:
                raise UniquenessException(detail=f"userName {login!r} is taken by {existing.id}")
            attributes = {k: v for k, v in wanted.items() if v is not None}
            result = self._provision(
                ProvisionRequest(action="create_account", attributes=attributes)
            )
            user_id = result.principal_id
            if user_id is None:
                raise _Unavailable(detail="the plugin did not name the created user")
            try:
                if document.get("active") is False:
                    request = ProvisionRequest(action="disable_account", principal_id=user_id)
                    self._provision(request)
            finally:  # the user exists now: a retry must find it by its userName
                self._refresh(user_id)
        return self._user_model(self._user(user_id))

    def _create_group(self, document: dict[str, Any]) -> Resource[Any]:
        """A new Coupa user group (``create_group``), then a grant per member given."""
        name = user_group_name(document.get("displayName"))
        unknown = sorted(u for u in _member_ids(document) if self.directory.user(u) is None)
        if unknown:  # said before the group is created
            raise InvalidValueException(detail=f"members: no user {', '.join(unknown)}")
        with self._write_lock:
            for entry in self.directory.groups():
                if entry.entitlement.resource_type == "group" and _named(entry, name):
                    raise UniquenessException(
                        detail=f"displayName {name!r} is taken by {entry.entitlement.id}"
                        + (" (inactive in Coupa, which keeps its name)" if not entry.active else "")
                    )
            result = self._provision(
                ProvisionRequest(action="create_group", attributes={"name": name})
            )
            group_id = result.entitlement_id
            if group_id is None:
                raise _Unavailable(detail="the plugin did not name the created group")
            self._refresh_groups()
            entry = self._group(group_id)
            self._keep_external(group_id, document)
            if _member_ids(document):
                self._write_members(entry, {"members": []}, document)
        return self._group_model(self._group(group_id))

    def _keep_external(self, group_id: str, document: dict[str, Any]) -> None:
        external = document.get("externalId")
        if isinstance(external, str) and external:
            self._group_external[group_id] = external
        else:
            self._group_external.pop(group_id, None)

    def _refresh_groups(self) -> None:
        try:
            self.directory.refresh_user_groups()
        except PluginError as exc:
            raise scim_error_of(exc) from None

    def _rename(self, entry: GroupEntry, base: dict[str, Any], document: dict[str, Any]) -> None:
        """``update_group`` when ``document`` changes the displayName of ``base``."""
        wanted = document.get("displayName")
        if wanted == base.get("displayName") or (isinstance(wanted, str) and _named(entry, wanted)):
            return
        # another kind's rename is refused by the plugin, before anything is written
        name = user_group_name(wanted) if entry.entitlement.resource_type == "group" else wanted
        request = ProvisionRequest(
            action="update_group", entitlement_id=entry.entitlement.id, attributes={"name": name}
        )
        self._provision(request)
        self._refresh_groups()

    def _revive(
        self, user: CoupaUser, wanted: dict[str, Any], document: dict[str, Any]
    ) -> Resource[Any]:
        """A create naming a user deleted over SCIM: enable and update that user."""
        self._deleted.discard(user.id)
        current = current_attributes(user)
        changed = {k: v for k, v in wanted.items() if v != current.get(k)}
        self._write_user(user, changed, active=document.get("active", True) is not False)
        return self._user_model(self._user(user.id))

    def _write_user(self, user: CoupaUser, changed: dict[str, Any], *, active: bool | None) -> None:
        """``update_account`` with ``changed``, then ``active`` (when given and different)."""
        was_active = bool(user.profile.get("active"))
        requests = [
            ProvisionRequest(action=action, principal_id=user.id, attributes=attributes)
            for action, attributes, wanted in (
                ("enable_account", {}, active is True and not was_active),
                ("update_account", changed, bool(changed)),
                ("disable_account", {}, active is False and was_active),
            )
            if wanted
        ]
        if not requests:
            return  # nothing to write, nothing to read again
        try:
            for request in requests:
                self._provision(request)
        finally:
            self._refresh(user.id)

    def _taken_base(self, kind: str, resource_id: str) -> dict[str, Any] | None:
        read = getattr(self._base, "read", None)
        self._base.read = None
        if read is None or read[:2] != (kind, resource_id):
            return None
        base: dict[str, Any] = read[2]
        return base

    def _user_changes(self, base: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
        """The attributes ``document`` changes from ``base`` (a concurrent change to another
        attribute is not written back)."""
        before, after = wanted_attributes(base, None), wanted_attributes(document, None)
        changed = {k: v for k, v in after.items() if k != "manager" and v != before[k]}
        if manager_id_of(document) != manager_id_of(base):
            changed["manager"] = self._manager_login(document)
        return changed

    def update(
        self,
        resource_type: ResourceType,
        resource: Resource[Any],
        *,
        expected_version: str | None = None,
    ) -> Resource[Any]:
        """A PUT or PATCH: what the request changed from the resource it was applied to.

        ``expected_version`` is not enforced: scim2-server already checked a client's
        ``If-Match`` against that base, and writing only the difference from the base lets
        concurrent requests (Entra ID sends membership changes of one group in parallel)
        compose instead of failing or undoing each other.
        """
        kind, resource_id = str(resource_type.id), str(resource.id)
        document = resource.model_dump()
        base = self._taken_base(kind, resource_id)
        with self._write_lock:
            if base is None:
                base = self.get(resource_type, resource_id).model_dump()
            if kind == "User":
                user = self._user(resource_id)
                active = document.get("active")
                changed = self._user_changes(base, document)
                self._write_user(
                    user, changed, active=active if active != base.get("active") else None
                )
                return self._user_model(self._user(resource_id))
            self._rename(self._group(resource_id), base, document)
            if document.get("externalId") != base.get("externalId"):
                self._keep_external(resource_id, document)
            self._write_members(self._group(resource_id), base, document)
            expected = getattr(self._request, "member_patch", None)
            among = expected[1] if expected and expected[0] == resource_id else None
            return self._group_model(self._group(resource_id), among=among)

    def _write_members(
        self, entry: GroupEntry, base: dict[str, Any], document: dict[str, Any]
    ) -> None:
        """A grant per member ``document`` adds to ``base``, a revoke per member it drops."""
        group_id = entry.entitlement.id
        before, wanted = _member_ids(base), _member_ids(document)
        unknown = sorted(u for u in wanted - before if self.directory.user(u) is None)
        if unknown:
            raise InvalidValueException(detail=f"members: no user {', '.join(unknown)}")
        current = self.directory.members(group_id)
        changes = [("grant", u) for u in sorted(wanted - before - current)]
        changes += [("revoke", u) for u in sorted((before - wanted) & current)]
        for done, (action, user_id) in enumerate(changes):
            request = ProvisionRequest(action=action, entitlement_id=group_id, principal_id=user_id)
            try:
                result = self._provision(request)
            except SCIMException as exc:
                self._refresh(user_id)
                if done:
                    applied = ", ".join(f"{a} {u}" for a, u in changes[:done])
                    raise type(exc)(detail=f"{exc.detail} (applied before: {applied})") from None
                raise
            # the result lists all the user holds afterwards: no need to ask Coupa again
            self.directory.set_holdings(user_id, result.grants)

    def delete(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        expected_version: str | None = None,
    ) -> None:
        with self._write_lock:
            if resource_type.id != "User":
                self._delete_group(self._group(resource_id))
                return
            self._write_user(self._user(resource_id), {}, active=False)
            self._deleted.add(resource_id)

    def _delete_group(self, entry: GroupEntry) -> None:
        """``deactivate_group`` (Coupa deletes no group; the plugin refuses every kind but
        user groups); the group is then not served while it stays inactive."""
        group_id = entry.entitlement.id
        self._provision(ProvisionRequest(action="deactivate_group", entitlement_id=group_id))
        self._deleted_groups.add(group_id)
        self._group_external.pop(group_id, None)
        self._refresh_groups()
