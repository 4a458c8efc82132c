"""The orchestrator of ``tests/typing/orchestrator.py`` (type-checked by mypy in
``scripts/test``) runs against the sandbox, so the typed example is also a working one."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from coupa_plugin.host.model import Tenant
from coupa_plugin.sandbox import CoupaSandbox

HERE = Path(__file__).resolve().parents[1]


def orchestrator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("orchestrator", HERE / "typing/orchestrator.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_typed_orchestrator_runs(coupa_tenant: Tenant, coupa_sandbox: CoupaSandbox) -> None:
    state = coupa_sandbox.state
    user = next(u for u in state.users.values() if u["active"] and 2 not in u["roles"])
    planned, counts = orchestrator().run(coupa_tenant, str(user["id"]), "role:2:member")
    assert planned.startswith("planned: ")
    assert f"user {user['id']}" in planned
    assert counts["user"] == len(state.users)
    assert counts["role"] == len(state.roles)
    expected = sum(len(u["roles"]) for u in state.users.values())
    assert counts["grant"] == expected


def test_the_orchestrator_reports_an_unknown_principal(coupa_tenant: Tenant) -> None:
    planned, _ = orchestrator().run(coupa_tenant, "999999", "role:2:member")
    assert planned.startswith("unknown: ")
