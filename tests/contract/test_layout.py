"""The dependency rules of the layout, one row per folder or top-level module of the package.

* ``host/`` is the contract: it imports nothing of the package.
* ``coupa/`` is a Coupa client and knows nothing of the host, the connector, the reference
  host or the sandbox.
* ``sandbox/`` is a Coupa: it imports neither the client, the connector nor the contract.
* ``connector/`` maps Coupa onto the contract's model and errors; it never imports the
  reference host or the sandbox.
* ``plugin.py`` (the hookimpls) imports the connector and the contract only.
* ``refhost/`` uses plugins only through the contract and the ``iga.plugins`` entry points,
  never the plugin's own code. Its one other import is ``coupa_plugin.sandbox``, for
  ``coupa-iga sync --sandbox``: the sandbox is a stand-in for Coupa, not part of the plugin,
  and the command line imports it inside that command only (the ``sandbox`` extra).
* ``manifest.py`` reads the shipped ``plugin.toml`` and writes it from the connector's
  declarations, the client's scopes and the contract.
* ``testing/`` (the integrator kit) drives plugins through the contract and serves the sandbox.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "coupa_plugin"
HOST = "coupa_plugin.host"
CONTRACT = ("coupa_plugin.host.spec", "coupa_plugin.host.model", "coupa_plugin.host.errors")

ALLOWED: dict[str, tuple[str, ...]] = {
    "host": (HOST,),
    "coupa": ("coupa_plugin.coupa",),
    "sandbox": ("coupa_plugin.sandbox",),
    "connector": (
        "coupa_plugin.connector",
        "coupa_plugin.coupa",
        "coupa_plugin.host.model",
        "coupa_plugin.host.errors",
    ),
    "plugin.py": ("coupa_plugin.connector", *CONTRACT),
    "refhost": ("coupa_plugin.refhost", *CONTRACT, "coupa_plugin.sandbox"),
    "testing": ("coupa_plugin.testing", *CONTRACT, "coupa_plugin.sandbox"),
    "__init__.py": (),
    "__main__.py": ("coupa_plugin.refhost.cli",),
    "manifest.py": ("coupa_plugin.connector", "coupa_plugin.coupa", *CONTRACT),
}


def imported_modules(entry: str) -> set[str]:
    """Every ``coupa_plugin`` module imported anywhere in ``entry`` (a folder or a module),
    imports inside functions included."""
    target = PACKAGE / entry
    found = set()
    for path in target.rglob("*.py") if target.is_dir() else [target]:
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                if node.module == "coupa_plugin":  # ``from coupa_plugin import plugin``
                    found |= {f"coupa_plugin.{a.name}" for a in node.names if is_part(a.name)}
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
    return {m for m in found if m == "coupa_plugin" or m.startswith("coupa_plugin.")}


def is_part(name: str) -> bool:
    """Whether ``name`` is a module or subpackage of the package (not a name it defines)."""
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def stray(module: str, allowed: tuple[str, ...]) -> bool:
    if module == "coupa_plugin":  # the package itself (its version) is fine everywhere
        return False
    return not any(module == a or module.startswith(f"{a}.") for a in allowed)


@pytest.mark.parametrize(("entry", "allowed"), sorted(ALLOWED.items()))
def test_dependencies_point_one_way(entry: str, allowed: tuple[str, ...]) -> None:
    strays = {m for m in imported_modules(entry) if stray(m, allowed)}
    assert strays == set()


def test_every_part_of_the_package_has_a_rule() -> None:
    parts = {
        p.name
        for p in PACKAGE.iterdir()
        if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"
    }
    assert parts == set(ALLOWED)


@pytest.mark.parametrize(
    ("entry", "forbidden"),
    [
        ("host", "import coupa_plugin.connector"),
        ("coupa", "from coupa_plugin.host.model import Tenant"),
        ("sandbox", "import coupa_plugin.coupa.client"),
        ("connector", "from coupa_plugin.refhost import manager"),
        ("refhost", "from coupa_plugin import plugin"),
        ("refhost", "from coupa_plugin.connector.settings import CoupaSettings"),
        ("plugin.py", "import coupa_plugin.sandbox"),
    ],
)
def test_a_forbidden_import_is_caught(
    entry: str, forbidden: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The rules bite: a copy of the package with one forbidden import added fails them."""
    copy = tmp_path / "coupa_plugin"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / entry
    module = (target / "__init__.py") if target.is_dir() else target
    module.write_text(module.read_text("utf-8") + f"\n{forbidden}\n", "utf-8")
    monkeypatch.setattr(f"{__name__}.PACKAGE", copy)
    with pytest.raises(AssertionError):
        test_dependencies_point_one_way(entry, ALLOWED[entry])
