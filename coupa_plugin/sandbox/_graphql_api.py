"""The sandbox's GraphQL endpoint, executed by graphql-core (read-only, like Coupa's).

Collections take a ``query:`` argument in REST query-string syntax (``"id[gt]=40"``) and return
at most ``Quirks.graphql_page_cap`` records, in ascending id order unless ``order_by`` / ``dir``
say otherwise (``Quirks.graphql_ordering`` decides whether they are honoured).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl

from graphql import GraphQLError, GraphQLSchema, build_schema, graphql_sync

from coupa_plugin.sandbox._errors import QueryError
from coupa_plugin.sandbox._view import SandboxView

__all__ = ["GraphQLApi", "GraphQLSource"]

_SDL: Final = """
type Role { id: Int!  name: String  description: String  omnipotent: Boolean
            systemRole: Boolean  createdAt: String  updatedAt: String }
type UserSimple { id: Int!  login: String  email: String  firstname: String  lastname: String
                  fullname: String  employeeNumber: String }
type UserGroup { id: Int!  name: String  description: String  active: Boolean
                 canApprove: Boolean  open: Boolean  users: [UserSimple!]! }
type BusinessGroup { id: Int!  name: String  description: String }
type AccountGroup { id: Int!  name: String  description: String  active: Boolean }
type User {
  id: Int!  login: String  email: String  firstname: String  lastname: String
  fullname: String  employeeNumber: String  active: Boolean  apiUser: Boolean
  createdAt: String  updatedAt: String  authenticationMethod: String  ssoIdentifier: String
  manager: UserSimple  roles: [Role!]!  userGroups: [UserGroup!]!
  contentGroups: [BusinessGroup!]!  accountGroups: [AccountGroup!]!
  approvalGroups: [UserGroup!]!
}
type Query {
  roles(query: String): [Role!]!
  role(id: Int!): Role
  users(query: String): [User!]!
  user(id: Int!): User
  userGroups(query: String): [UserGroup!]!
}
"""
_SCOPES: Final = {
    "roles": "core.user.read",
    "role": "core.user.read",
    "users": "core.user.read",
    "user": "core.user.read",
    "userGroups": "core.user_group.read",
}
_CAMEL: Final = re.compile(r"(?<!^)(?=[A-Z])")


def _kebab(name: str) -> str:
    return _CAMEL.sub("-", name).lower()


class GraphQLSource(SandboxView, Protocol):
    """What the GraphQL endpoint reads of a sandbox
    (:class:`~coupa_plugin.sandbox._app.CoupaSandbox`)."""

    def filtered(self, table: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Records of ``table`` matching the REST-style filters in ``params``, ordered."""
        ...


@functools.cache
def _schema() -> GraphQLSchema:
    """The endpoint's schema, built once for every sandbox: it holds no resolver (each sandbox
    answers through its own ``field_resolver``), and building it costs more than a request."""
    return build_schema(_SDL)


class GraphQLApi:
    """Executes GraphQL documents against a sandbox's state."""

    def __init__(self, sandbox: GraphQLSource) -> None:
        self.sandbox = sandbox
        self.schema = _schema()
        self._queries: dict[str, Any] = {
            name: self._collection(name) for name in ("roles", "users", "userGroups")
        }
        self._queries["role"] = lambda _r, _i, id: sandbox.state.roles.get(id)
        self._queries["user"] = lambda _r, _i, id: sandbox.state.users.get(id)

    def _collection(self, name: str) -> Any:
        table = {"roles": "roles", "users": "users", "userGroups": "user_groups"}[name]

        def resolve(_root: Any, _info: Any, query: str | None = None) -> Any:
            params = parse_qsl(query or "", keep_blank_values=True)
            ordering = {k for k, _ in params} & {"order_by", "dir"}
            if ordering and self.sandbox.quirks.graphql_ordering == "refused":
                raise GraphQLError(f"Unknown filter: {sorted(ordering)[0]}")
            if ordering and self.sandbox.quirks.graphql_ordering == "ignored":
                params = [(k, v) for k, v in params if k not in ordering]
            try:
                rows = self.sandbox.filtered(table, params)
            except QueryError as exc:
                raise GraphQLError(str(exc)) from None
            return rows[: self.sandbox.quirks.graphql_page_cap]

        return resolve

    def _field(self, source: Any, info: Any, **arguments: Any) -> Any:
        if info.parent_type is info.schema.query_type:
            return self._queries[info.field_name](source, info, **arguments)
        key = _kebab(info.field_name)
        renderer = self.sandbox.renderer
        if key in {"roles", "user-groups", "content-groups", "account-groups", "approval-groups"}:
            return renderer.related(source, key)
        if key == "users" and "can-approve" in source:
            state = self.sandbox.state
            return [state.users[u] for u in sorted(state.members_of.get(source["id"], {}))]
        if key == "manager":
            return renderer.user_simple(source.get("manager"))
        return source.get(key) if isinstance(source, dict) else None

    def execute(self, body: bytes, scopes: frozenset[str]) -> dict[str, Any]:
        try:
            request = json.loads(body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"data": None, "errors": [{"message": "Malformed JSON body"}]}
        document = request.get("query") if isinstance(request, dict) else None
        if not isinstance(document, str):
            return {"data": None, "errors": [{"message": "Missing query"}]}
        variables = request.get("variables") if isinstance(request.get("variables"), dict) else None
        missing = sorted(
            {
                scope
                for field, scope in _SCOPES.items()
                if re.search(rf"\b{field}\s*[({{]", document) and scope not in scopes
            }
        )
        if missing:
            return {"data": None, "errors": [{"message": f"Missing scope(s): {' '.join(missing)}"}]}
        with self.sandbox.state.lock:
            result = graphql_sync(
                self.schema, document, variable_values=variables, field_resolver=self._field
            )
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [{"message": e.message} for e in result.errors]
        return out
