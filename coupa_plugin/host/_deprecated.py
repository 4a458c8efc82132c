"""The reference host's modules that lived in :mod:`coupa_plugin.host` until 0.x and moved to
:mod:`coupa_plugin.refhost`. Their old paths stay importable for one release: importing one
warns with a :class:`DeprecationWarning` and hands out the new module itself (so names,
private ones included, and monkeypatches are shared). This module imports nothing of the
package itself: the new module is found by name, so ``host/`` stays the contract alone.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import Final

__all__ = ["MOVED", "moved"]

MOVED: Final = {
    "coupa_plugin.host.cli": "coupa_plugin.refhost.cli",
    "coupa_plugin.host.facts": "coupa_plugin.refhost.facts",
    "coupa_plugin.host.jobs": "coupa_plugin.refhost.jobs",
    "coupa_plugin.host.logfmt": "coupa_plugin.refhost.logfmt",
    "coupa_plugin.host.progress": "coupa_plugin.refhost.progress",
    "coupa_plugin.host.reports": "coupa_plugin.refhost.reports",
    "coupa_plugin.host.review": "coupa_plugin.refhost.review",
    "coupa_plugin.host.review_html": "coupa_plugin.refhost.review_html",
    "coupa_plugin.host.runner": "coupa_plugin.refhost.manager",
    "coupa_plugin.host.snapshot": "coupa_plugin.refhost.snapshot",
    "coupa_plugin.host.tenants": "coupa_plugin.refhost.tenants",
}
"""Old module path -> new module path."""


def moved(old: str) -> None:
    """Warn that ``old`` moved and put the new module in its place in ``sys.modules``."""
    new = MOVED[old]
    warnings.warn(
        f"{old} moved to {new}; the old path goes away in the next release",
        DeprecationWarning,
        stacklevel=3,
    )
    sys.modules[old] = importlib.import_module(new)
