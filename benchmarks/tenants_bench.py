"""Tenant lifecycle benchmarks: what tenants cost a long-running host, and whether it lasts.

    python -m benchmarks.tenants_bench lifecycle --tenants 200   # threads and sockets
    python -m benchmarks.tenants_bench soak --cycles 400         # RSS and objects per cycle

``lifecycle`` syncs every tenant at once through a thread pool against a sandbox on loopback
(a separate process, so only the plugin's sockets are counted here), then changes every
tenant's settings (``configure`` with the new ones), then disables half of them (a hook call
with ``enabled = false``) and releases the others (``plugin.release``, as for a tenant the host
dropped), counting this process's threads and open sockets at each step against the baseline
taken before the first tenant. ``soak`` runs one tenant's full
sync followed by a grant and its revoke, ``--cycles`` times, and reports the slope of RSS and
of the live object count per cycle (least squares over the cycles after the first tenth).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs

from benchmarks.sync_bench import sandbox_process, tenant
from coupa_plugin.host.model import ProvisionRequest, SyncRequest, Tenant
from coupa_plugin.plugin import CoupaPlugin


def open_sockets() -> int:
    """This process's open sockets (Linux: the descriptors under /proc/self/fd)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
    return count


def plugin_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("coupa-")]


def settle() -> int:
    """Wait (bounded) for the plugin's threads that are ending; the count still alive."""
    for thread in plugin_threads():
        thread.join(10)
    return len(plugin_threads())


class Peaks:
    """The most plugin threads and open sockets seen while it runs (sampled every 20 ms)."""

    def __init__(self) -> None:
        self.threads = self.sockets = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="bench-sampler")

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.threads = max(self.threads, len(plugin_threads()))
            self.sockets = max(self.sockets, open_sockets())

    def __enter__(self) -> Peaks:
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sampler.join()


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def named(url: str, tenant_id: str, **extra: Any) -> Tenant:
    return attrs.evolve(tenant(url, requests_per_second=5_000, **extra), id=tenant_id)


def disabled(t: Tenant) -> Tenant:
    return attrs.evolve(t, plugins={"coupa": {**t.plugins["coupa"], "enabled": False}})


def full_sync(plugin: CoupaPlugin, t: Tenant) -> int:
    plugin.configure(tenant=t)
    count = sum(1 for _ in plugin.discover_resources(tenant=t, request=SyncRequest()) or [])
    return count + sum(1 for _ in plugin.sync_grants(tenant=t, request=SyncRequest()) or [])


def state(plugin: CoupaPlugin) -> dict[str, int]:
    return {
        "plugin_threads_still_alive": settle(),
        "threads": threading.active_count(),
        "sockets": open_sockets(),
        "tenants_holding_a_connector": len(plugin.tenants()),
    }


def bench_lifecycle(tenants: int, users: int, workers: int) -> dict[str, Any]:
    with sandbox_process(users, latency=0.0, rate_limit=False) as url:
        plugin = CoupaPlugin()
        baseline = {"threads": threading.active_count(), "sockets": open_sockets()}
        ts = [named(url, f"t{i:03d}") for i in range(tenants)]
        started = time.perf_counter()
        with Peaks() as peaks, ThreadPoolExecutor(workers) as pool:
            items = list(pool.map(lambda t: full_sync(plugin, t), ts))
        synced_s = time.perf_counter() - started
        after_sync = state(plugin)
        # new settings for every tenant: each configure builds a new connector, and the old
        # one, idle, closes at once
        changed = [
            attrs.evolve(t, plugins={"coupa": {**t.plugins["coupa"], "timeout_s": 31}}) for t in ts
        ]
        for t in changed:
            plugin.configure(tenant=t)
        after_reconfigure = state(plugin)
        # half the tenants disabled (a hook call says enabled = false), half dropped by the
        # host (plugin.release)
        for i, t in enumerate(changed):
            if i % 2:
                assert plugin.configure(tenant=disabled(t)) is None
            else:
                assert plugin.release(t.id)
        after_disable = state(plugin)
        plugin.close()
    return {
        "tenants": tenants,
        "users_per_tenant": users,
        "pool_workers": workers,
        "items_per_tenant": statistics.median(items),
        "sync_all_s": round(synced_s, 1),
        "baseline": baseline,
        "during_sync_peak": {"plugin_threads": peaks.threads, "sockets": peaks.sockets},
        "after_sync": after_sync,
        "idle_sockets_per_tenant": round(
            (after_sync["sockets"] - baseline["sockets"]) / tenants, 2
        ),
        "after_reconfigure": after_reconfigure,
        "after_disable_or_release": after_disable,
        "back_to_baseline": after_disable["threads"] == baseline["threads"]
        and after_disable["sockets"] == baseline["sockets"],
    }


def heap_growth(before: tracemalloc.Snapshot) -> dict[str, Any]:
    """What Python allocated since ``before`` and still holds: in all, and the top 3 lines."""
    gc.collect()
    stats = tracemalloc.take_snapshot().compare_to(before, "lineno")
    tracemalloc.stop()
    return {
        "kb": round(sum(s.size_diff for s in stats) / 1024, 1),
        "top": [f"{s.traceback[0]}: {s.size_diff / 1024:+.1f} KB" for s in stats[:3]],
    }


def live_types() -> Counter[str]:
    gc.collect()
    return Counter(type(o).__name__ for o in gc.get_objects())


def slope(values: list[float]) -> float:
    """Least-squares slope of ``values`` against their index."""
    n = len(values)
    mean_x, mean_y = (n - 1) / 2, statistics.fmean(values)
    num = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    den = sum((i - mean_x) ** 2 for i in range(n))
    return num / den if den else 0.0


def bench_soak(cycles: int, users: int, *, traced: bool = False) -> dict[str, Any]:
    with sandbox_process(users, latency=0.0, rate_limit=False) as url:
        plugin = CoupaPlugin()
        with tempfile.TemporaryDirectory() as state_dir:
            t = named(url, "soak", state_dir=state_dir)
            grant = {"action": "grant", "entitlement_id": "group:3:member", "principal_id": "5"}
            rss: list[float] = []
            objects: list[float] = []
            started = time.perf_counter()
            skip = max(1, cycles // 10)  # warm-up: caches, first allocations
            types_at_skip: Counter[str] = Counter()
            heap_at_skip: tracemalloc.Snapshot | None = None
            for cycle in range(cycles):
                if cycle == skip:
                    types_at_skip = live_types()
                    if traced:
                        tracemalloc.start()
                        heap_at_skip = tracemalloc.take_snapshot()
                full_sync(plugin, t)
                plugin.provision(tenant=t, request=ProvisionRequest(**grant))
                revoke = {**grant, "action": "revoke"}
                plugin.provision(tenant=t, request=ProvisionRequest(**revoke))
                gc.collect()
                rss.append(rss_mb())
                objects.append(len(gc.get_objects()))
            elapsed = time.perf_counter() - started
            grown = (live_types() - types_at_skip).most_common(5)
            heap = heap_growth(heap_at_skip) if heap_at_skip is not None else None
            plugin.close()
    return {
        "cycles": cycles,
        "users": users,
        "elapsed_s": round(elapsed, 1),
        "rss_mb_first_last": [round(rss[skip], 1), round(rss[-1], 1)],
        "rss_kb_per_cycle": round(slope(rss[skip:]) * 1024, 2),
        "objects_first_last": [int(objects[skip]), int(objects[-1])],
        "objects_per_cycle": round(slope(objects[skip:]), 2),
        "types_grown_since_warm_up": dict(grown),
        **({"python_heap_growth": heap} if heap is not None else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", choices=["lifecycle", "soak", "all"])
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--cycles", type=int, default=400)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument(
        "--tracemalloc", action="store_true", help="soak: also trace Python's heap (slower)"
    )
    args = parser.parse_args()
    report: dict[str, Any] = {}
    if args.which in {"lifecycle", "all"}:
        report["lifecycle"] = bench_lifecycle(args.tenants, args.users, args.workers)
    if args.which in {"soak", "all"}:
        report["soak"] = bench_soak(args.cycles, args.users, traced=args.tracemalloc)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
