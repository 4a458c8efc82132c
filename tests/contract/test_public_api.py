"""Each package names its public API in ``__all__``; every other module is private (a leading
underscore), so what a user may import is written in one place per package."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import coupa_plugin

PACKAGE = Path(coupa_plugin.__file__).parent
# the modules a user may import by name: the contract, the plugin object, the manifest, the
# integrator kit's pytest plugin and checks; every other module is reached through its
# package's ``__all__`` or is internal
PUBLIC_MODULES = frozenset(
    {
        "coupa_plugin.host.spec",
        "coupa_plugin.host.model",
        "coupa_plugin.host.errors",
        "coupa_plugin.plugin",
        "coupa_plugin.manifest",
        "coupa_plugin.testing.contract",
        "coupa_plugin.testing.contract_tests",
        "coupa_plugin.testing.pytest_plugin",
    }
)


def _dotted(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(("coupa_plugin", *parts))


def _private(name: str) -> bool:
    return any(part.startswith("_") for part in name.split(".")[1:])


def public_modules(root: Path = PACKAGE) -> set[str]:
    """Modules (not packages) no part of whose name starts with an underscore."""
    return {
        name
        for path in root.rglob("*.py")
        if path.name != "__init__.py" and not _private(name := _dotted(path, root))
    }


PACKAGES = sorted(
    {
        _dotted(path.parent, PACKAGE) if path.parent != PACKAGE else "coupa_plugin"
        for path in PACKAGE.rglob("__init__.py")
    }
)
PUBLIC_PACKAGES = [name for name in PACKAGES if not _private(name)]


def test_every_module_outside_the_public_api_is_private() -> None:
    assert public_modules() == PUBLIC_MODULES


@pytest.mark.parametrize("name", PUBLIC_PACKAGES)
def test_each_package_names_its_public_api(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list), f"{name} has no __all__"
    for attribute in exported:
        assert hasattr(module, attribute), f"{name}.__all__ names {attribute}, which it lacks"


def test_a_public_module_outside_the_list_is_found(tmp_path: Path) -> None:
    """The scan bites: a module without a leading underscore in a package is reported, one
    inside a private package or with an underscore is not."""
    for path in ("coupa/__init__.py", "coupa/client.py", "coupa/_models.py", "_x/__init__.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("")
    (tmp_path / "_x" / "inner.py").write_text("")
    assert public_modules(tmp_path) == {"coupa_plugin.coupa.client"}


def private_imports_across(root: Path = PACKAGE) -> list[str]:
    """Imports of another package's private module (``coupa_plugin.coupa._client`` from the
    connector): a package is used through what its ``__all__`` names."""
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        own = parts[0] if len(parts) > 1 else None
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            modules = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for module in modules:
                names = module.split(".")
                if (
                    names[0] == "coupa_plugin"
                    and len(names) > 2
                    and names[1] != own
                    and any(name.startswith("_") for name in names[2:])
                ):
                    found.append(f"{path.relative_to(root)}: {module}")
    return found


def test_packages_use_each_other_through_their_public_api() -> None:
    assert private_imports_across() == []


def test_an_import_of_another_packages_private_module_is_found(tmp_path: Path) -> None:
    (tmp_path / "connector").mkdir()
    (tmp_path / "connector" / "_sync.py").write_text(
        "from coupa_plugin.coupa._client import CoupaClient\n"
        "from coupa_plugin.coupa import User\n"
        "from coupa_plugin.connector._kinds import KINDS\n"
    )
    assert private_imports_across(tmp_path) == [
        "connector/_sync.py: coupa_plugin.coupa._client"
    ]
