"""How close provisioning comes to Coupa's rate limit after an access review: many grants and
revokes at once, beside a naive plan in the same run.

    python -m benchmarks.provision_bench                       # 500 calls, 8 threads, 100 ms
    python -m benchmarks.provision_bench --calls 200 --runs 3 --semantics merge

The sandbox serves from another process on loopback, with ``--latency`` per request and Coupa's
limit enforced (25 requests/s, burst 20). The calls (grants and revokes of roles, user groups,
content groups, account and approval groups and licenses, each on a user of its own) run through
the plugin's ``provision`` hook from ``--threads`` threads. Before the timed run, one call of
each kind learns the tenant's list semantics and catalog facts, as a running tenant has.

The bound is the fewest requests those calls need (the "Fewest requests" table in
docs/provisioning.md: read, write, read-back for most; five for a revoke of a whole list under
merge) at 25 per second; the share is that bound divided by the time taken. The naive plan,
against a fresh sandbox with the same calls and threads, reads the user and writes the list
(two requests, no read-back, no journal, no recovery): what a connector that loses people's
access costs. Both are paced at the same rate. Figures are medians of ``--runs`` runs;
p50/p95 are per call.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from benchmarks.sync_bench import sandbox_process, tenant
from coupa_plugin.host.model import ProvisionRequest

COUPA_RATE = 25.0
USERS = 2_000
# entitlement kind -> (items to pick from, fewest requests for a grant, for a revoke by semantics)
KINDS: dict[str, tuple[list[str], int, dict[str, int]]] = {
    "role": (["role:4:member", "role:5:member", "role:6:member"], 3, {"replace": 3, "merge": 5}),
    "group": (
        ["group:1:member", "group:2:member", "group:3:member"],
        3,
        {"replace": 4, "merge": 4},
    ),
    "content_group": (
        ["content_group:1:member", "content_group:2:member"],
        3,
        {"replace": 3, "merge": 3},
    ),
    "account_group": (
        ["account_group:1:member", "account_group:2:member"],
        3,
        {"replace": 3, "merge": 5},
    ),
    "license": (
        ["license:sourcing-user:assigned", "license:travel-user:assigned"],
        3,
        {"replace": 3, "merge": 3},
    ),
}
LIST_KEY = {
    "role": "roles",
    "group": "user-groups",
    "content_group": "content-groups",
    "account_group": "account-groups",
}


class Pacer:
    """The naive plan's pacing: at most ``rate`` request starts a second, burst 1."""

    def __init__(self, rate: float) -> None:
        self._lock = threading.Lock()
        self._next = time.monotonic()
        self._gap = 1.0 / rate

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._gap
        time.sleep(max(0.0, start - now))


def plan(calls: int, seed: int) -> list[dict[str, Any]]:
    """``calls`` grants and revokes, each on its own user (users 3 and up)."""
    rng = random.Random(seed)
    ops = []
    users = rng.sample(range(3, USERS), calls + len(KINDS))
    for n in range(calls):
        kind = rng.choice(sorted(KINDS))
        entitlement = rng.choice(KINDS[kind][0])
        ops.append(
            {
                "action": rng.choice(["grant", "revoke"]),
                "entitlement_id": entitlement,
                "principal_id": str(users[n]),
                "kind": kind,
            }
        )
    return ops


def fewest(ops: list[dict[str, Any]], semantics: str, statuses: list[str]) -> int:
    """The fewest requests the calls needed: one read for a call that found it already so."""
    total = 0
    for op, status in zip(ops, statuses, strict=True):
        if status == "unchanged":
            total += 1
            continue
        _, grant, revoke = KINDS[op["kind"]]
        total += grant if op["action"] == "grant" else revoke[semantics]
    return total


def timed(
    run: Callable[[dict[str, Any]], str], ops: list[dict[str, Any]], threads: int
) -> dict[str, Any]:
    durations: list[float] = []
    statuses: list[str] = []
    lock = threading.Lock()

    def one(op: dict[str, Any]) -> tuple[str, float]:
        started = time.monotonic()
        status = run(op)
        return status, time.monotonic() - started

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        for status, took in pool.map(one, ops):
            with lock:
                statuses.append(status)
                durations.append(took)
    elapsed = time.monotonic() - started
    quantiles = statistics.quantiles(durations, n=20)
    return {
        "seconds": round(elapsed, 2),
        "p50_ms": round(statistics.median(durations) * 1000),
        "p95_ms": round(quantiles[18] * 1000),
        "statuses": statuses,
    }


def plugin_run(url: str, ops: list[dict[str, Any]], threads: int, semantics: str) -> dict[str, Any]:
    from coupa_plugin.plugin import CoupaPlugin

    with tempfile_dir() as state_dir:
        t = tenant(url, state_dir=state_dir, requests_per_second=COUPA_RATE, max_in_flight=threads)
        plugin = CoupaPlugin()
        plugin.configure(tenant=t)
        # a running tenant knows its semantics and catalog facts: one call of each kind
        for n, kind in enumerate(sorted(KINDS)):
            for action in ("grant", "revoke"):
                plugin.provision(
                    tenant=t,
                    request=ProvisionRequest(
                        action=action,
                        entitlement_id=KINDS[kind][0][0],
                        principal_id=str(USERS - 1 - n),
                    ),
                )
        connector = plugin.connector(t)
        assert connector is not None
        sent_before = connector.client.requests

        def run(op: dict[str, Any]) -> str:
            request = ProvisionRequest(**{k: v for k, v in op.items() if k != "kind"})
            try:
                result = plugin.provision(tenant=t, request=request)
            except Exception as exc:  # noqa: BLE001 - a failed call is counted, not fatal
                return f"error: {type(exc).__name__}"
            assert result is not None
            return result.status

        out = timed(run, ops, threads)
        out["requests"] = connector.client.requests - sent_before
        plugin.close()
    out["fewest"] = fewest(ops, semantics, out["statuses"])
    out["share_of_bound"] = round(out["fewest"] / COUPA_RATE / out["seconds"], 3)
    return out


def naive_run(url: str, ops: list[dict[str, Any]], threads: int) -> dict[str, Any]:
    """Read the user, write the list (or the flag, or the membership), no read-back."""
    token = httpx.post(
        f"{url}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret",
            "scope": "core.user.read core.user.write core.user_group.read core.user_group.write "
            "core.common.read core.business_entity.read core.accounting.read",
        },
    ).json()["access_token"]
    pacer = Pacer(COUPA_RATE)
    client = httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        limits=httpx.Limits(max_connections=threads),
        timeout=30,
    )
    sent = 0
    count = threading.Lock()

    def send(method: str, path: str, **kwargs: Any) -> Any:
        nonlocal sent
        for _ in range(10):
            pacer.wait()
            with count:
                sent += 1
            response = client.request(method, path, **kwargs)
            if response.status_code != 429:
                return response.json() if response.content else None
        return None

    def run(op: dict[str, Any]) -> str:
        uid = op["principal_id"]
        kind, ident, _ = op["entitlement_id"].split(":")
        granting = op["action"] == "grant"
        user = send("GET", f"/api/users/{uid}")
        if kind == "license":
            send("PUT", f"/api/users/{uid}", json={ident: granting})
            return "applied"
        key = LIST_KEY[kind]
        held = {item["id"] for item in user.get(key) or []}
        wanted = held | {int(ident)} if granting else held - {int(ident)}
        send("PUT", f"/api/users/{uid}", json={key: [{"id": i} for i in sorted(wanted)]})
        return "applied"

    out = timed(run, ops, threads)
    client.close()
    out["requests"] = sent
    out["fewest"] = 2 * len(ops)
    out["share_of_bound"] = round(out["fewest"] / COUPA_RATE / out["seconds"], 3)
    return out


def tempfile_dir() -> Any:
    import tempfile

    return tempfile.TemporaryDirectory(prefix="coupa-provision-bench-")


def bench(calls: int, threads: int, latency: float, semantics: str, runs: int) -> dict[str, Any]:
    plugin_results, naive_results = [], []
    for run in range(runs):
        ops = plan(calls, seed=run + 1)
        print(f"  run {run + 1}/{runs}: the plugin, {calls} calls", file=sys.stderr, flush=True)
        with sandbox_process(USERS, latency, rate_limit=True, semantics=semantics) as url:
            plugin_results.append(plugin_run(url, ops, threads, semantics))
        print(f"  run {run + 1}/{runs}: the naive plan", file=sys.stderr, flush=True)
        with sandbox_process(USERS, latency, rate_limit=True, semantics=semantics) as url:
            naive_results.append(naive_run(url, ops, threads))

    def median(results: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(r[key] for r in results))

    def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
        errors = sum(1 for r in results for s in r["statuses"] if s.startswith("error"))
        return {
            key: median(results, key)
            for key in ("seconds", "requests", "fewest", "share_of_bound", "p50_ms", "p95_ms")
        } | {"errors": errors}

    return {
        "calls": calls,
        "threads": threads,
        "latency_s": latency,
        "semantics": semantics,
        "runs": runs,
        "plugin": summary(plugin_results),
        "naive": summary(naive_results),
        "plugin_seconds_per_naive_second": round(
            median(plugin_results, "seconds") / median(naive_results, "seconds"), 2
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--semantics", choices=["replace", "merge"], default="replace")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    print(
        json.dumps(
            bench(args.calls, args.threads, args.latency, args.semantics, args.runs), indent=2
        )
    )


if __name__ == "__main__":
    main()
