"""Shared test helpers: a plugin wired to an in-process sandbox, and ground truth."""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from coupa_plugin.connector._mapping import entitlement_id
from coupa_plugin.host.model import Resource, SyncRequest, Tenant
from coupa_plugin.plugin import CoupaPlugin
from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    CoupaSandbox,
    TenantState,
)
from coupa_plugin.sandbox._errors import SimulatedCrash
from coupa_plugin.sandbox._server import SandboxTransport

ALL_TYPES = frozenset(
    {"user", "group", "role", "license", "content_group", "account_group", "approval_group"}
)


_scratch: list[Path] = []


def use_scratch(folder: Path) -> None:
    """Where :func:`scratch_dir` makes folders for the running test (its ``tmp_path``; set by
    an autouse fixture, so pytest cleans them up as it does every ``tmp_path``)."""
    _scratch[:] = [folder]


def scratch_dir() -> Path:
    """A new empty folder under the running test's ``tmp_path``."""
    base = _scratch[0] if _scratch else None
    return Path(tempfile.mkdtemp(dir=base, prefix="scratch-"))


def tenant(tenant_id: str = "acme", **settings: Any) -> Tenant:
    section = {
        "client_id": SANDBOX_CLIENT_ID,
        "client_secret": SANDBOX_CLIENT_SECRET,
        "base_url": "http://sandbox",
        "allow_insecure_base_url": True,
        "requests_per_second": 10_000,
        **settings,
    }
    return Tenant(id=tenant_id, plugins={"coupa": section})


class VirtualTime:
    """A monotonic clock that a ``sleep`` moves forward instead of waiting: the plugin under
    test paces, waits out ``Retry-After`` and token warm-ups in no real time, and still sees
    time pass as it would. Shared by the client's threads; real time keeps running beneath,
    unless ``real=False``: then only sleeps move the clock, so what a test measures with it
    (a sandbox's bucket, say) does not depend on how fast the machine runs. ``start`` sets
    where the clock begins (a test may put it where floating-point sums round)."""

    def __init__(self, *, real: bool = True, start: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._real = real
        self._offset = start
        self.slept = 0.0

    def clock(self) -> float:
        return (time.monotonic() if self._real else 0.0) + self._offset

    def sleep(self, seconds: float) -> None:
        with self._lock:
            step = max(seconds, 0.0)
            self._offset += step
            self.slept += step


def ended(proc: subprocess.Popen[str], timeout_s: float = 60.0) -> str:
    """The rest of a process's standard error once it has ended; the test fails (and the
    process is killed) when it has not ended within ``timeout_s``."""
    try:
        return proc.communicate(timeout=timeout_s)[1] or ""
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"the process did not end within {timeout_s:g} s") from None


def no_background_repair(_stop: threading.Event, _seconds: float) -> bool:
    """A self-repair wait that ends the thread at once: repairs run at hook calls only, so a
    test's sandbox sees no write it did not cause (tests of the thread pass their own)."""
    return True


def plugin_for(
    sandbox: CoupaSandbox,
    virtual: VirtualTime | None = None,
    repair_wait: Callable[[threading.Event, float], bool] = no_background_repair,
) -> CoupaPlugin:
    """A plugin whose tenants talk to ``sandbox`` in process, on virtual time."""
    virtual = virtual or VirtualTime()
    return CoupaPlugin(
        transport_factory=lambda _settings: SandboxTransport(sandbox),
        clock=virtual.clock,
        sleep=virtual.sleep,
        repair_wait=repair_wait,
    )


def sync(
    plugin: CoupaPlugin, t: Tenant, request: SyncRequest | None = None
) -> tuple[list[Resource], set[tuple[str, str]]]:
    request = request or SyncRequest()
    resources = list(plugin.discover_resources(tenant=t, request=request) or [])
    grants = [
        (g.entitlement_id, g.principal_id)
        for g in plugin.sync_grants(tenant=t, request=request) or []
    ]
    assert len(grants) == len(set(grants)), "a grant was reported twice"
    return resources, set(grants)


def truth_grants(
    state: TenantState, user_ids: set[int] | None = None, types: frozenset[str] = ALL_TYPES
) -> set[tuple[str, str]]:
    grants: set[tuple[str, str]] = set()
    for uid, user in state.users.items():
        if user_ids is not None and uid not in user_ids:
            continue
        p = str(uid)
        sources = {
            "role": user["roles"],
            "group": sorted(state.groups_of.get(uid, ())),
            "content_group": user["content-groups"],
            "account_group": user["account-groups"],
            "approval_group": user["approval-groups"],
        }
        for kind, ids in sources.items():
            if kind in types:
                grants |= {(entitlement_id(kind, i), p) for i in ids}
        if "license" in types:
            grants |= {
                (entitlement_id("license", k), p)
                for k, v in user.items()
                if k.endswith("-user")
                and v is True
                and k not in {"api-user", "support-user", "supplier-user", "msp-user"}
            }
    return grants


def truth_resources(state: TenantState, user_ids: set[int] | None = None) -> set[tuple[str, str]]:
    users = {("user", str(u)) for u in state.users if user_ids is None or u in user_ids}
    flags = {
        k
        for u in state.users.values()
        for k, v in u.items()
        if k.endswith("-user") and isinstance(v, bool)
    } - {"api-user", "support-user", "supplier-user", "msp-user"}
    return (
        users
        | {("role", str(r)) for r in state.roles}
        | {("group", str(g)) for g in state.user_groups}
        | {("approval_group", str(g)) for g, rec in state.user_groups.items() if rec["can-approve"]}
        | {("content_group", str(c)) for c in state.business_groups}
        | {("account_group", str(a)) for a in state.account_groups}
        | {("license", f) for f in flags}
    )


class CrashingTransport(httpx.BaseTransport):
    """An in-process sandbox transport that "kills the process" (raises SimulatedCrash) at
    the first request matching ``when``, ``before`` it reaches the sandbox or ``after`` the
    sandbox applied it. Disarmed after firing."""

    def __init__(
        self,
        sandbox: CoupaSandbox,
        when: Callable[[httpx.Request], bool],
        point: str = "after",
    ) -> None:
        self.inner = SandboxTransport(sandbox)
        self.when, self.point, self.fired = when, point, False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        hit = not self.fired and self.when(request)
        if hit and self.point == "before":
            self.fired = True
            raise SimulatedCrash("client died before the request")
        response = self.inner.handle_request(request)
        if hit:
            self.fired = True
            raise SimulatedCrash("client died after the request was applied")
        return response


def clearing(key: str) -> Callable[[httpx.Request], bool]:
    """Matches the first step of a two-step rewrite of ``key``: a PUT clearing it."""
    marker = f'"{key}": []'.encode()
    compact = f'"{key}":[]'.encode()
    return lambda r: r.method == "PUT" and (marker in r.read() or compact in r.read())
