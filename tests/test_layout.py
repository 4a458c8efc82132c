"""The dependency rules of the layout: coupa/ knows nothing of the host, the sandbox is a
Coupa and imports neither the client nor the connector."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "coupa_plugin"


def imported_modules(folder: str) -> set[str]:
    found = set()
    for path in (PACKAGE / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
    return {m for m in found if m.startswith("coupa_plugin")}


@pytest.mark.parametrize(
    ("folder", "allowed"),
    [
        ("coupa", ("coupa_plugin.coupa",)),
        ("sandbox", ("coupa_plugin.sandbox",)),
        (
            "connector",
            (
                "coupa_plugin.connector",
                "coupa_plugin.coupa",
                "coupa_plugin.host.model",
                "coupa_plugin.host.errors",
            ),
        ),
    ],
)
def test_dependencies_point_one_way(folder: str, allowed: tuple[str, ...]) -> None:
    strays = {m for m in imported_modules(folder) if not m.startswith(allowed)}
    assert strays == set()
