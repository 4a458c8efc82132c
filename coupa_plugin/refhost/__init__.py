"""The reference host: an application that drives plugins the way an orchestrator does.

:mod:`~coupa_plugin.refhost.manager` (the pluggy plugin manager with per-tenant toggles),
:mod:`~coupa_plugin.refhost.tenants` (the tenants file), :mod:`~coupa_plugin.refhost.jobs`
(sync and provision runs), :mod:`~coupa_plugin.refhost.snapshot` (the SQLite store),
:mod:`~coupa_plugin.refhost.reports`, :mod:`~coupa_plugin.refhost.review` (+ ``review_html``:
the HTML access-review report), :mod:`~coupa_plugin.refhost.campaign` (+ ``campaign_cli``:
access-review campaigns, ``coupa-iga review``),
:mod:`~coupa_plugin.refhost.progress`, :mod:`~coupa_plugin.refhost.logfmt` and the command line
:mod:`~coupa_plugin.refhost.cli` (``coupa-iga``). It uses plugins only through the contract
(:mod:`coupa_plugin.host`) and the ``iga.plugins`` entry points; the command line's
``--sandbox`` starts the bundled Coupa emulator (:mod:`coupa_plugin.sandbox`, the ``sandbox``
extra).
"""
