"""The host contract (v1), as the orchestrator defines it, plus a reference host.

``spec``, ``model`` and ``errors`` are the contract; ``runner``, ``snapshot`` and ``cli`` make up
the reference host that loads plugins from entry points and runs them per tenant.
"""
