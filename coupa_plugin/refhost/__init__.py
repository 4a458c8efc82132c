"""The reference host: an application that drives plugins the way an orchestrator does.

It holds the pluggy plugin manager with per-tenant toggles, the tenants file, sync and provision
runs, the SQLite snapshot store, reports and the HTML access review, access-review campaigns,
the SCIM facade, the live progress display and the ``coupa-iga`` command line. It uses plugins
only through the contract (:mod:`coupa_plugin.host`) and the ``iga.plugins`` entry points;
``--sandbox`` starts the bundled Coupa emulator (:mod:`coupa_plugin.sandbox`, the ``sandbox``
extra).

Its public API is the command line, :func:`main` (``coupa-iga``); every module is private.
"""

__all__ = ["main"]


def main() -> None:
    """Run ``coupa-iga`` with the process's arguments (its libraries load only then)."""
    from coupa_plugin.refhost._cli import main as command

    command(prog_name="coupa-iga")
