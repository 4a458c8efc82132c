"""The integrator kit: pytest fixtures for a running Coupa sandbox and a configured tenant
(loaded automatically through the ``pytest11`` entry point), and contract checks for any
``iga.plugins`` plugin (:mod:`coupa_plugin.testing.contract`)."""

# the kit's public modules are named, not re-exported: ``contract`` (the checks),
# ``contract_tests`` (``pytest --pyargs coupa_plugin.testing.contract_tests``) and
# ``pytest_plugin`` (the fixtures, through the ``pytest11`` entry point)
__all__: list[str] = []
