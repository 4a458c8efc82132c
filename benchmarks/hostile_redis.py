"""How long the hooks take, and how much memory they use, when ``shared_state`` points at a
Redis that misbehaves: the fake RESP server of the test suite (``tests/fake_redis.py``) in
each of its modes, on loopback, with the sandbox in process.

    python -m benchmarks.hostile_redis                  # every mode, timeout_s = 30
    python -m benchmarks.hostile_redis --modes hold huge --timeout-s 5

Each mode runs in a fresh process, so its peak RSS is its own. Printed per mode: the seconds
``configure``, ``provision`` (a revoke) and ``discover_resources`` took, what each ended with
(``ok``, a warning count, or the error type), the peak RSS, and the bytes the server sent.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import resource
import tempfile
import time
from collections.abc import Callable
from typing import Any

from coupa_plugin.host.errors import PluginError
from coupa_plugin.host.model import ProvisionRequest, SyncRequest
from coupa_plugin.sandbox import CoupaSandbox, Operations, generate_tenant
from tests.fake_redis import MODES, Mode, fake_redis
from tests.kit import plugin_for, tenant


def _timed(call: Callable[[], Any]) -> tuple[float, str]:
    started = time.monotonic()
    try:
        outcome = call()
    except PluginError as exc:
        return time.monotonic() - started, type(exc).__name__
    warnings = getattr(outcome, "warnings", ())
    return time.monotonic() - started, f"ok ({len(warnings)} warnings)" if warnings else "ok"


def _run(mode: Mode, timeout_s: float, queue: Any) -> None:
    logging.disable(logging.CRITICAL)
    coupa = CoupaSandbox(generate_tenant(users=50, seed=3), operations=Operations(rate_limit=False))
    coupa.state.users[7]["roles"] = [3, 4, 5, 8]
    plugin = plugin_for(coupa)
    with tempfile.TemporaryDirectory() as state_dir, fake_redis(mode) as fake:
        t = tenant(state_dir=state_dir, shared_state=fake.url("pw"), timeout_s=timeout_s)
        request = ProvisionRequest(
            action="revoke", entitlement_id="role:4:member", principal_id="7"
        )
        rows = [
            ("configure", *_timed(lambda: plugin.configure(tenant=t))),
            ("provision", *_timed(lambda: plugin.provision(tenant=t, request=request))),
            (
                "discover",
                *_timed(
                    lambda: list(plugin.discover_resources(tenant=t, request=SyncRequest()) or [])
                ),
            ),
        ]
        sent = fake.sent
    plugin.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((rows, rss_mb, sent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", nargs="*", choices=MODES, default=list(MODES))
    parser.add_argument("--timeout-s", type=float, default=30.0)
    args = parser.parse_args()
    context = mp.get_context("spawn")
    print(f"timeout_s = {args.timeout_s:g}")
    print(f"{'mode':8} {'hook':10} {'seconds':>8}  outcome")
    for mode in args.modes:
        queue = context.Queue()
        process = context.Process(target=_run, args=(mode, args.timeout_s, queue))
        process.start()
        rows, rss_mb, sent = queue.get()
        process.join()
        for hook, seconds, outcome in rows:
            print(f"{mode:8} {hook:10} {seconds:8.2f}  {outcome}")
        print(f"{mode:8} {'peak RSS':10} {rss_mb:7.0f}M  server sent {sent / 1e6:,.1f} MB")


if __name__ == "__main__":
    main()
