"""Every log record names its tenant: the tenant a thread works for, and stamina's retries.

The tenant is a context variable, set around each request (and, by the plugin, around each
hook call and each step of a stream); :class:`TenantFilter`, on each of the package's
loggers, adds it as ``record.tenant`` to a record that does not carry one. stamina reports
retries through process-wide hooks: :func:`route_retries` puts a hook in front of them that
logs the retries made for a tenant under ``coupa_plugin.coupa.retry`` with the tenant (and
hands every other retry, the host's own, to the hooks that were there).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from typing import Any, Final

import stamina.instrumentation as instrumentation

from coupa_plugin.coupa._errors import scrub

__all__ = [
    "COUPA_LOGGERS",
    "RETRY_LOGGER",
    "TenantFilter",
    "attach_tenant_filter",
    "current_tenant",
    "route_retries",
    "tenant_context",
]

RETRY_LOGGER: Final = "coupa_plugin.coupa.retry"
COUPA_LOGGERS: Final = (
    "coupa_plugin.coupa",
    "coupa_plugin.coupa.auth",
    "coupa_plugin.coupa.ratelimit",
    RETRY_LOGGER,
)
# stamina's own record-writing hooks: a tenant's retry is logged here instead
_STAMINA_LOGGING: Final = frozenset(
    {"stamina.instrumentation._logging", "stamina.instrumentation._structlog"}
)

_tenant: ContextVar[str | None] = ContextVar("coupa_plugin_tenant", default=None)
_install = threading.Lock()
log = logging.getLogger(RETRY_LOGGER)


def current_tenant() -> str | None:
    """The tenant the running code works for, if any."""
    return _tenant.get()


@contextmanager
def tenant_context(tenant: str) -> Iterator[None]:
    """Name ``tenant`` on every record logged meanwhile (in this thread) without one (an empty
    ``tenant`` changes nothing)."""
    if not tenant:
        yield
        return
    token = _tenant.set(tenant)
    try:
        yield
    finally:
        _tenant.reset(token)


class TenantFilter(logging.Filter):
    """Adds ``tenant`` to a record logged for a tenant that does not name it itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        tenant = _tenant.get()
        if tenant and getattr(record, "tenant", None) is None:
            record.tenant = tenant
        return True


def attach_tenant_filter(*names: str) -> None:
    """Put a :class:`TenantFilter` on each named logger (once)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, TenantFilter) for f in logger.filters):
            logger.addFilter(TenantFilter())


class _TenantRetries:
    """A stamina retry hook: a tenant's retry is one record of the plugin's, with the tenant;
    other retries go to the hooks it stands in front of."""

    def __init__(self, others: tuple[Any, ...]) -> None:
        self.others = others

    def __call__(self, details: instrumentation.RetryDetails) -> Any:
        tenant = _tenant.get()
        hooks = self.others
        if tenant:
            hooks = tuple(h for h in hooks if getattr(h, "__module__", "") not in _STAMINA_LOGGING)
            log.warning(
                "retry scheduled",
                extra={
                    "tenant": tenant,
                    "retry": details.retry_num,
                    "wait_s": round(details.wait_for, 2),
                    "waited_s": round(details.waited_so_far, 2),
                    "caused_by": scrub(f"{type(details.caused_by).__name__}: {details.caused_by}")[
                        :200
                    ],
                },
            )
        managers = [m for m in (hook(details) for hook in hooks) if m is not None]
        return _together(managers) if managers else None


@contextmanager
def _together(managers: list[Any]) -> Iterator[None]:
    """The context managers other hooks returned, entered when stamina enters this one."""
    with ExitStack() as stack:
        for manager in managers:
            stack.enter_context(manager)
        yield


def route_retries() -> None:
    """Put the tenant-naming hook in front of stamina's current retry hooks (once; again if
    the host has set other hooks since)."""
    with _install:
        hooks = instrumentation.get_on_retry_hooks()
        if any(isinstance(h, _TenantRetries) for h in hooks):
            return
        instrumentation.set_on_retry_hooks([_TenantRetries(hooks)])


attach_tenant_filter(*COUPA_LOGGERS)
