"""What the sandbox's request handlers read of the sandbox they run on, as a protocol: they
depend on it, not on :class:`~coupa_plugin.sandbox._app.CoupaSandbox`, which imports them."""

from __future__ import annotations

from typing import Protocol

from coupa_plugin.sandbox._config import Quirks
from coupa_plugin.sandbox._render import Renderer
from coupa_plugin.sandbox._state import TenantState

__all__ = ["SandboxView"]


class SandboxView(Protocol):
    """A sandbox's tenant state, its quirks and its renderer."""

    @property
    def state(self) -> TenantState: ...

    @property
    def quirks(self) -> Quirks: ...

    @property
    def renderer(self) -> Renderer: ...
