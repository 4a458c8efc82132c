"""Each package names its public API in ``__all__``; every other module is private (a leading
underscore), so what a user may import is written in one place per package."""

from __future__ import annotations

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
