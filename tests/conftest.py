from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import stamina
from hypothesis import HealthCheck, settings

from coupa_plugin.refhost._logfmt import host_handlers
from tests.kit import use_scratch

# CI must be deterministic: the same examples on every run, bounded in number and time, and the
# failing example printed so it can be replayed with @reproduce_failure. Local runs explore
# randomly (the "dev" profile) unless HYPOTHESIS_PROFILE says otherwise.
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    max_examples=50,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


@pytest.fixture(autouse=True)
def _scratch_under_tmp_path(tmp_path: Path) -> None:
    """Folders a test's helpers make (``tests.kit.scratch_dir``) live under its tmp_path."""
    use_scratch(tmp_path)


@pytest.fixture(autouse=True)
def _no_retry_sleeps() -> Iterator[None]:
    """Retries keep their attempt counts but do not sleep between attempts."""
    with stamina.set_testing(True, attempts=1_000, cap=True):
        yield


@pytest.fixture(autouse=True)
def _host_log_handlers_per_test() -> Iterator[None]:
    """The reference host's stderr handler (installed on the root logger by ``coupa-iga``
    runs and ``configure_logging``) does not outlive the test that installed it."""
    yield
    root = logging.getLogger()
    for handler in host_handlers():
        root.removeHandler(handler)
