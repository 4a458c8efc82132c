"""An orchestrator's plain install: no click, rich, graphql-core or OpenTelemetry. Each case
runs a real interpreter in which those packages cannot be imported (as if never installed)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from coupa_plugin.testing.pytest_plugin import MISSING_SANDBOX

EXTRAS = ("click", "rich", "jinja2", "graphql", "opentelemetry")
BLOCK = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = {blocked!r}
    class Missing(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None
    sys.meta_path.insert(0, Missing())
    """
)


def run(code: str, *, blocked: tuple[str, ...] = EXTRAS, cwd: Path | None = None) -> str:
    script = BLOCK.format(blocked=blocked) + textwrap.dedent(code)
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    return f"rc={done.returncode}\n{done.stdout}{done.stderr}"


def test_an_orchestrator_loads_and_calls_the_plugin_without_the_extras() -> None:
    out = run(
        """
        import sys, pluggy
        from coupa_plugin.host.model import Tenant
        from coupa_plugin.host.spec import ENTRY_POINT_GROUP, PROJECT_NAME, HostSpec
        import coupa_plugin.testing.pytest_plugin  # what pytest auto-loads
        pm = pluggy.PluginManager(PROJECT_NAME)
        pm.add_hookspecs(HostSpec)
        assert pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name="coupa") == 1
        assert pm.hook.configure(tenant=Tenant(id="t", plugins={})) == []
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("click", "rich", "graphql")
                        or m.startswith(("coupa_plugin.sandbox", "coupa_plugin.refhost")))
        print("loaded:", loaded)
        """
    )
    assert out == "rc=0\nloaded: []\n"


def test_the_pytest_plugin_fails_only_the_tests_that_need_the_sandbox(tmp_path: Path) -> None:
    (tmp_path / "test_kit.py").write_text(
        "def test_needs_sandbox(coupa_tenant):\n    pass\n\ndef test_plain():\n    pass\n"
    )
    out = run(
        """
        import sys, pytest
        sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "test_kit.py"]))
        """,
        blocked=("graphql",),
        cwd=tmp_path,
    )
    assert out.startswith("rc=1\n")
    assert MISSING_SANDBOX in out
    assert "1 passed, 1 error" in out


@pytest.mark.parametrize("blocked", [EXTRAS, ("jinja2",)])
def test_the_command_line_names_the_missing_extra(blocked: tuple[str, ...]) -> None:
    """Any library of the host extra missing (an install of the extra from before it needed
    jinja2, say) gives one line naming the extra, never a traceback at the first report."""
    out = run("from coupa_plugin.refhost._cli import main\n", blocked=blocked)
    assert "rc=1" in out
    assert "coupa-iga needs the host extra: pip install 'coupa-plugin[host]'" in out


@pytest.mark.parametrize("blocked", [("graphql",)])
def test_sync_sandbox_names_the_missing_extra(blocked: tuple[str, ...], tmp_path: Path) -> None:
    out = run(
        """
        from coupa_plugin.refhost._cli import main
        main(["sync", "--sandbox", "--users", "3"], prog_name="coupa-iga")
        """,
        blocked=blocked,
        cwd=tmp_path,
    )
    assert out.startswith("rc=2\n")
    assert "--sandbox needs the sandbox extra: pip install 'coupa-plugin[sandbox]'" in out
    assert not (tmp_path / "snapshot.sqlite").exists()
