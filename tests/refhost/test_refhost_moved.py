"""The reference host lives in ``coupa_plugin.refhost``; ``coupa_plugin.host`` is the contract
alone."""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from coupa_plugin.refhost import _manager as manager
from coupa_plugin.refhost._logfmt import HOST_LOGGER, configure_logging


def test_the_host_package_holds_the_contract_alone() -> None:
    folder = importlib.import_module("coupa_plugin.host").__path__[0]
    modules = {p.stem for p in Path(folder).glob("*.py")}
    assert modules == {"__init__", "spec", "model", "errors"}


def test_the_command_line_entry_point_is_the_refhost_cli() -> None:
    [script] = [ep for ep in entry_points(group="console_scripts") if ep.name == "coupa-iga"]
    assert script.value == "coupa_plugin.refhost:main"


def test_the_host_logs_under_its_own_namespace(caplog: pytest.LogCaptureFixture) -> None:
    """A broken plugin is reported on the host's logger, not on a plugin's namespace."""
    from importlib.metadata import EntryPoint

    host = manager.Host()
    with caplog.at_level(logging.ERROR):
        host.load_entry_points(
            loader=lambda group: [
                EntryPoint(name="broken", value="no_such_module_anywhere:plugin", group=group)
            ]
        )
    [record] = caplog.records
    assert record.name == HOST_LOGGER and not record.name.startswith("coupa_plugin")


def test_configure_logging_shows_plugin_records_without_touching_their_logger(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(logging.INFO)
    logging.getLogger("coupa_plugin.coupa.client").info("retrying", extra={"tenant": "t"})
    logging.getLogger("httpx").info("HTTP Request: GET https://example.test")
    err = capsys.readouterr().err
    assert "logger=coupa_plugin.coupa.client msg=retrying tenant=t" in err
    assert "HTTP Request" not in err  # chatty libraries show warnings only
    assert logging.getLogger("coupa_plugin").handlers == []
    configure_logging(logging.WARNING)  # called again: one handler, not two
    logging.getLogger("coupa_plugin").warning("once")
    assert capsys.readouterr().err.count("msg=once") == 1
