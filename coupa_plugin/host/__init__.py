"""The host contract (v1), as the orchestrator defines it: :mod:`~coupa_plugin.host.spec`
(hookspecs, markers, project name, entry-point group), :mod:`~coupa_plugin.host.model` and
:mod:`~coupa_plugin.host.errors`. It imports nothing else of the package.

The reference host that loads plugins and runs them per tenant lives in
:mod:`coupa_plugin.refhost`.
"""

from coupa_plugin.host import errors, model, spec

__all__ = ["errors", "model", "spec"]
