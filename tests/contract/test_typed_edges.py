"""The connector composes the client's typed methods: it never sends a request of its own
(a path, a ``fields=`` selection, a GraphQL query or a body it built), so what Coupa receives is
decided in one place, the client."""

from __future__ import annotations

import ast
from pathlib import Path

import coupa_plugin

PACKAGE = Path(coupa_plugin.__file__).parent
# the client's ways of sending what a caller built; the connector calls the typed methods
RAW_SENDS = frozenset({"get", "request", "graphql", "get_fields", "_list"})


def _receiver(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def raw_sends(source: str) -> list[str]:
    """Every call of a client's raw send (``client.get(…)``, ``self.client.request(…)``) and
    every ``fields=`` selection written as JSON text, in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in RAW_SENDS
            and "client" in (_receiver(node.func.value) or "")
        ):
            found.append(f"line {node.lineno}: {ast.unparse(node)[:80]}")
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith(('["', "[{", "query ", "{ "))
        ):
            found.append(f"line {node.lineno}: {node.value[:60]!r}")
    return found


def test_the_connector_sends_nothing_it_built_itself() -> None:
    offences = {
        str(path.relative_to(PACKAGE)): found
        for path in sorted((PACKAGE / "connector").rglob("*.py"))
        if (found := raw_sends(path.read_text("utf-8")))
    }
    assert offences == {}


def test_the_check_finds_what_it_looks_for() -> None:
    """The scan above is not vacuous: each form of a hand-built request is caught."""
    assert raw_sends('self.client.get("/api/users", {"limit": 1})')
    assert raw_sends("client.request('PUT', path, body=body)")
    assert raw_sends("self.client.graphql(text)")
    assert raw_sends('x = \'["id","login"]\'')
    assert not raw_sends("self.client.user_record(5)")
    assert not raw_sends("settings.get('domain')")
