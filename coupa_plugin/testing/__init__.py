"""The integrator kit: pytest fixtures for a running Coupa sandbox and a configured tenant
(loaded automatically through the ``pytest11`` entry point), and contract checks for any
``iga.plugins`` plugin (:mod:`coupa_plugin.testing.contract`)."""
