"""scim2-tester (python-scim's compliance checker, run through its ``scim2 … test`` command from
the scim2-cli package) against the facade on the sandbox.

Every discovery, User and Group check passes: the Group checks create, rename and delete Coupa
user groups (``create_group``, ``update_group``, ``deactivate_group``) and change their members.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coupa_plugin.refhost._scim.server import ScimFacade
from coupa_plugin.sandbox import CoupaSandbox, Operations, generate_tenant
from tests.scim.conftest import TOKEN

STATUSES = ("SUCCESS", "COMPLIANT", "ACCEPTABLE", "DEVIATION", "ERROR", "CRITICAL", "SKIPPED")


@pytest.fixture
def sandbox() -> CoupaSandbox:
    """A small tenant: the checker lists every user more than once."""
    return CoupaSandbox(generate_tenant(users=10, seed=3), operations=Operations(rate_limit=False))


def _scim2() -> str:
    found = shutil.which("scim2", path=str(Path(sys.executable).parent)) or shutil.which("scim2")
    if found is None:
        pytest.skip("scim2-cli is not installed (it comes with the test extra)")
    return found


def _results(output: str) -> list[tuple[str, str, str]]:
    """``(status, check, reason)`` per result line of ``scim2 test``."""
    results: list[tuple[str, str, str]] = []
    for line in output.splitlines():
        status, _, check = line.partition(" ")
        if status in STATUSES:
            results.append((status, check, ""))
        elif line.startswith("  ") and results and not results[-1][2]:
            status, check, _ = results[-1]
            results[-1] = (status, check, line.strip())
    return results


def test_scim2_tester_finds_no_error(facade: ScimFacade) -> None:
    done = subprocess.run(  # noqa: S603 - the checker's own command, our arguments
        [_scim2(), "--url", str(facade.url), "-h", f"Authorization: Bearer {TOKEN}", "test"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    results = _results(done.stdout)
    assert len(results) > 40, done.stdout + done.stderr
    assert [r for r in results if r[0] in ("ERROR", "CRITICAL")] == []
    # the same checks run per resource type, User first, then Group
    first_group = [i for i, r in enumerate(results) if r[1] == "object_creation"][1]
    discovery_and_users, groups = results[:first_group], results[first_group:]
    for part in (discovery_and_users, groups):
        assert {status for status, _, _ in part} <= {"SUCCESS", "SKIPPED"}, [
            r for r in part if r[0] not in ("SUCCESS", "SKIPPED")
        ]
        succeeded = {check for status, check, _ in part if status == "SUCCESS"}
        assert {
            "object_creation",
            "object_query",
            "object_replacement",
            "object_deletion",
            "check_add_attribute",
            "check_replace_attribute",
            "check_remove_attribute",
        } <= succeeded, part
    assert TOKEN not in done.stdout + done.stderr
