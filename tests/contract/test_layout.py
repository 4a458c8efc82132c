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

Across the whole package: no module imports itself back through others (an import cycle),
counting imports inside functions and under ``TYPE_CHECKING``; and every exception class lives
in its layer's ``_errors.py`` (``coupa/``, ``connector/``, ``refhost/``, ``sandbox/``, and the
contract's ``host/errors.py``), whose docstring draws the tree, except private signals (a
leading underscore) raised and caught inside one module.
"""

from __future__ import annotations

import ast
import builtins
import graphlib
import importlib
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
    "__main__.py": ("coupa_plugin.refhost",),
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


def use_a_copy_with(
    module: Path, addition: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Point the rules at a copy of the package where ``module`` ends with ``addition``."""
    copy = tmp_path / "coupa_plugin"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    changed = copy / module.relative_to(PACKAGE)
    changed.write_text(changed.read_text("utf-8") + addition, "utf-8")
    monkeypatch.setattr(f"{__name__}.PACKAGE", copy)


@pytest.mark.parametrize(
    ("entry", "forbidden"),
    [
        ("host", "import coupa_plugin.connector"),
        ("coupa", "from coupa_plugin.host.model import Tenant"),
        ("sandbox", "import coupa_plugin.coupa.client"),
        ("connector", "from coupa_plugin.refhost import manager"),
        ("refhost", "from coupa_plugin import plugin"),
        ("refhost", "from coupa_plugin.connector._settings import CoupaSettings"),
        ("plugin.py", "import coupa_plugin.sandbox"),
    ],
)
def test_a_forbidden_import_is_caught(
    entry: str, forbidden: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The rules bite: a copy of the package with one forbidden import added fails them."""
    target = PACKAGE / entry
    module = (target / "__init__.py") if target.is_dir() else target
    use_a_copy_with(module, f"\n{forbidden}\n", monkeypatch, tmp_path)
    with pytest.raises(AssertionError):
        test_dependencies_point_one_way(entry, ALLOWED[entry])


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["coupa_plugin", *parts[1:]])


def import_graph() -> dict[str, set[str]]:
    """Each module of the package and the modules of the package it imports: at the top, in
    functions or under ``TYPE_CHECKING``; ``from pkg import mod`` names ``pkg.mod``, relative
    imports are resolved."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                for alias in node.names:
                    if f"{base}.{alias.name}" in modules:
                        found.add(f"{base}.{alias.name}")
                    elif base in modules:
                        found.add(base)
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name in modules}
        graph[name] = found - {name}
    return graph


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "coupa_plugin.sandbox._app" in graph["coupa_plugin.sandbox"]  # the graph is read
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        pytest.fail("import cycle: " + " -> ".join(exc.args[1]))


def test_an_import_cycle_is_caught(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The rule bites: an import under ``TYPE_CHECKING`` that closes a circle is named."""
    addition = (
        "\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ._app import CoupaSandbox\n"
    )
    use_a_copy_with(PACKAGE / "sandbox" / "_wire.py", addition, monkeypatch, tmp_path)
    with pytest.raises(pytest.fail.Exception, match=r"sandbox\._app -> .*sandbox\._wire"):
        test_the_package_has_no_import_cycle()


_BUILTIN_ERRORS = frozenset(
    name
    for name, obj in vars(builtins).items()
    if isinstance(obj, type) and issubclass(obj, BaseException)
)


def exception_classes() -> dict[str, list[str]]:
    """The exception classes of each module (by path relative to the package): classes
    deriving from a builtin exception, from a class named ``*Error`` or ``*Exception`` (a
    library's), or from another exception class of the package."""
    classes = [
        (path.relative_to(PACKAGE).as_posix(), node)
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text("utf-8")))
        if isinstance(node, ast.ClassDef)
    ]
    known = set(_BUILTIN_ERRORS)
    found: dict[str, list[str]] = {}
    grew = True
    while grew:
        grew = False
        for where, node in classes:
            if node.name in found.get(where, []):
                continue
            bases = [ast.unparse(b).rpartition(".")[2] for b in node.bases]
            if any(b in known or b.endswith(("Error", "Exception")) for b in bases):
                found.setdefault(where, []).append(node.name)
                known.add(node.name)
                grew = True
    return found


ERRORS_MODULES = (
    "coupa/_errors.py",
    "connector/_errors.py",
    "host/errors.py",
    "refhost/_errors.py",
    "sandbox/_errors.py",
)


def test_every_exception_class_lives_in_its_layers_errors_module() -> None:
    found = exception_classes()
    assert {"CoupaError", "RecordError"} <= set(found["coupa/_errors.py"])  # the scan sees them
    strays = {
        f"{where}: {name}"
        for where, names in found.items()
        for name in names
        if where not in ERRORS_MODULES and not name.startswith("_")
    }
    assert strays == set()


def test_a_stray_exception_class_is_caught(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    addition = (
        "\n\nclass _Signal(Exception):\n    pass\n\n\nclass Stray(CoupaResponseError):\n    pass\n"
    )
    use_a_copy_with(PACKAGE / "connector" / "_sync.py", addition, monkeypatch, tmp_path)
    with pytest.raises(AssertionError, match=r"connector/_sync\.py: Stray") as caught:
        test_every_exception_class_lives_in_its_layers_errors_module()
    assert "_Signal" not in str(caught.value)


@pytest.mark.parametrize("where", ERRORS_MODULES)
def test_each_errors_module_draws_its_tree(where: str) -> None:
    tree = ast.parse((PACKAGE / where).read_text("utf-8"))
    drawing = ast.get_docstring(tree) or ""
    assert "::" in drawing  # the tree is a literal block
    drawn = {line.strip(" │├└─").split(" ")[0] for line in drawing.splitlines()}
    defined = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    assert defined
    assert defined <= drawn


ROOTS: dict[str, tuple[str, str]] = {
    "coupa_plugin.host.errors": ("PluginError", ""),
    "coupa_plugin.coupa._errors": ("CoupaError", ""),
    "coupa_plugin.connector._errors": ("ConnectorError", ""),
    "coupa_plugin.refhost._errors": ("PluginError", "Interrupted"),
    "coupa_plugin.sandbox._errors": ("SandboxError", "SimulatedCrash"),
}


@pytest.mark.parametrize("module", sorted(ROOTS))
def test_each_layers_errors_derive_from_its_root_not_from_builtins(module: str) -> None:
    """A layer's errors are its root's subclasses, so ``except ValueError`` or ``except
    OSError`` never catches one by accident. The one exception per layer that stands for the
    process being stopped (``Interrupted``, ``SimulatedCrash``) derives from a
    ``BaseException`` on purpose, and its module's docstring says so."""
    errors = importlib.import_module(module)
    root_name, deliberate = ROOTS[module]
    root = getattr(errors, root_name)
    classes = {
        name: obj
        for name, obj in vars(errors).items()
        if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == module
    }
    assert classes
    for name, cls in classes.items():
        builtin = [
            base.__name__
            for base in cls.__mro__
            if base.__module__ == "builtins" and base not in (Exception, BaseException, object)
        ]
        if name == deliberate:
            assert not issubclass(cls, Exception)
            assert name in (errors.__doc__ or "") and "on purpose" in (errors.__doc__ or "")
        else:
            assert issubclass(cls, root), name
            assert builtin == [], name
