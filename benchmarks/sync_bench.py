"""Sync benchmarks. Figures are ratios and counts measured within one run, medians over runs.

    python -m benchmarks.sync_bench rate     # 20k users, 150 ms latency, 25 req/s enforced
    python -m benchmarks.sync_bench memory   # peak RSS of the syncing process, 100k users
    python -m benchmarks.sync_bench cpu      # client-side users/s with zero latency
    python -m benchmarks.sync_bench all

The sandbox runs as a separate process (``python -m coupa_plugin.sandbox``) for ``rate`` and
``memory``, so its work is not counted against the plugin.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from coupa_plugin.host.model import SyncRequest, Tenant
from coupa_plugin.plugin import CoupaPlugin


@contextmanager
def sandbox_process(
    users: int, latency: float, *, rate_limit: bool, semantics: str = "replace"
) -> Iterator[str]:
    args = [
        sys.executable,
        "-m",
        "coupa_plugin.sandbox",
        "--users",
        str(users),
        "--port",
        "0",
        "--latency",
        str(latency),
        "--seed",
        "1",
    ]
    if not rate_limit:
        args.append("--no-rate-limit")
    if semantics != "replace":
        args += ["--list-put", semantics]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        yield info["base_url"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def tenant(url: str, **extra: Any) -> Tenant:
    return Tenant(
        id="bench",
        plugins={
            "coupa": {
                "base_url": url,
                "allow_insecure_base_url": True,
                "client_id": "sandbox-client",
                "client_secret": "sandbox-secret",
                **extra,
            }
        },
    )


def full_sync(plugin: CoupaPlugin, t: Tenant) -> dict[str, Any]:
    started = time.perf_counter()
    cpu_started = time.process_time()
    plugin.configure(tenant=t)
    users = resources = grants = 0
    for r in plugin.discover_resources(tenant=t, request=SyncRequest()) or []:
        resources += 1
        users += r.type == "user"
    for _ in plugin.sync_grants(tenant=t, request=SyncRequest()) or []:
        grants += 1
    elapsed = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    connector = plugin.connector(t)
    assert connector is not None
    client = connector.client
    calls = client.requests + client.tokens.minted + client.read_tokens.minted  # GraphQL's own
    return {
        "users": users,
        "resources": resources,
        "grants": grants,
        "elapsed_s": elapsed,
        "cpu_s": cpu_s,
        "api_calls": calls,
        "retries": client.retries,
        "throttled_429": client.limiter.throttled,
    }


def bench_rate(runs: int, users: int) -> dict[str, Any]:
    results = []
    with sandbox_process(users, latency=0.15, rate_limit=True) as url:
        for _ in range(runs):
            plugin = CoupaPlugin()
            r = full_sync(plugin, tenant(url))
            plugin.close()
            bound_s = r["api_calls"] / 25.0
            r["rate_limit_efficiency"] = bound_s / r["elapsed_s"]
            r["share_429"] = r["throttled_429"] / r["api_calls"]
            results.append(r)
            time.sleep(1.0)  # let the server's bucket drain between runs
    return {
        "runs": results,
        "median_efficiency": statistics.median(r["rate_limit_efficiency"] for r in results),
        "median_share_429": statistics.median(r["share_429"] for r in results),
        "median_api_calls": statistics.median(r["api_calls"] for r in results),
    }


def peak_rss_mb() -> float:
    """This process's peak resident set size. VmHWM belongs to the process image, unlike
    ``ru_maxrss``, which Linux carries over from the parent across fork and exec."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_memory(runs: int, users: int) -> dict[str, Any]:
    code = (
        "import json, resource, sys\n"
        "from benchmarks.sync_bench import full_sync, tenant\n"
        "from coupa_plugin.plugin import CoupaPlugin\n"
        "r = full_sync(CoupaPlugin(), tenant(sys.argv[1], requests_per_second=5000,"
        " max_in_flight=8))\n"
        "from benchmarks.sync_bench import peak_rss_mb\n"
        "r['peak_rss_mb'] = peak_rss_mb()\n"
        "print(json.dumps(r))\n"
    )
    results = []
    with sandbox_process(users, latency=0.0, rate_limit=False) as url:
        for _ in range(runs):
            out = subprocess.run(
                [sys.executable, "-c", code, url], capture_output=True, text=True, check=True
            )
            results.append(json.loads(out.stdout))
    peaks = [r["peak_rss_mb"] for r in results]
    return {
        "runs": results,
        "median_peak_rss_mb": statistics.median(peaks),
        "max_peak_rss_mb": max(peaks),
    }


def bench_cpu(runs: int, users: int) -> dict[str, Any]:
    """Client-side processing only: pages are rendered once, then replayed from memory."""
    from coupa_plugin.sandbox import CoupaSandbox, Operations, generate_tenant
    from coupa_plugin.sandbox._server import SandboxTransport

    sandbox = CoupaSandbox(
        generate_tenant(users=users, seed=1), operations=Operations(rate_limit=False)
    )
    live = [SandboxTransport(sandbox)]  # emptied once every response is cached
    cache: dict[str, httpx.Response] = {}

    def replay(request: httpx.Request) -> httpx.Response:
        key = f"{request.method} {request.url} {request.content!r}"
        if key not in cache:
            response = live[0].handle_request(request)
            cache[key] = httpx.Response(
                response.status_code, headers=response.headers, content=response.read()
            )
        cached = cache[key]
        return httpx.Response(cached.status_code, headers=cached.headers, content=cached.content)

    transport = httpx.MockTransport(replay)
    t = tenant("http://sandbox", requests_per_second=10_000)
    full_sync(CoupaPlugin(transport_factory=lambda s: transport), t)  # warm the cache
    # the sandbox's records would otherwise sit in this process and slow every garbage
    # collection down; the replay needs only the cached responses
    del sandbox
    live.clear()
    gc.collect()
    rates, cpu_rates = [], []
    for _ in range(runs):
        r = full_sync(CoupaPlugin(transport_factory=lambda s: transport), t)
        rates.append(r["users"] / r["elapsed_s"])
        cpu_rates.append(r["users"] / r["cpu_s"])
    # users per CPU-second is what the client costs, whatever else the shared machine runs;
    # users per wall-clock second is what a sync sees
    return {
        "users": users,
        "users_per_s": rates,
        "median_users_per_s": statistics.median(rates),
        "users_per_cpu_s": cpu_rates,
        "median_users_per_cpu_s": statistics.median(cpu_rates),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["rate", "memory", "cpu", "all"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate-users", type=int, default=20_000)
    parser.add_argument("--memory-users", type=int, default=100_000)
    parser.add_argument("--cpu-users", type=int, default=20_000)
    args = parser.parse_args()
    report: dict[str, Any] = {}
    if args.what in {"cpu", "all"}:
        report["cpu"] = bench_cpu(args.runs, args.cpu_users)
        print(json.dumps({"cpu": report["cpu"]}), flush=True)
    if args.what in {"memory", "all"}:
        report["memory"] = bench_memory(args.runs, args.memory_users)
        print(json.dumps({"memory": report["memory"]}), flush=True)
    if args.what in {"rate", "all"}:
        report["rate"] = bench_rate(args.runs, args.rate_users)
        print(json.dumps({"rate": report["rate"]}), flush=True)


if __name__ == "__main__":
    main()
