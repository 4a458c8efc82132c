"""The SCIM facade's throughput: reads served from its copy, writes through ``provision``.

    python -m benchmarks.scim_bench                      # 2,000 users, 8 readers for 10 s
    python -m benchmarks.scim_bench --users 20000 --readers 16 --seconds 20 --writes 40

The Coupa sandbox serves on loopback with Coupa's rate limit (25 requests/s, burst 20); the
plugin is the installed one (entry point), driven by the facade like any host. Reported: the
time to read the tenant before serving, reads/s and latency of ``userName eq`` lookups (what
Entra ID and Okta send before every change) with the Coupa requests they cost (expected 0),
then membership writes (PATCH add, PATCH remove) to the largest group per second with their
Coupa requests.
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
from typing import Any

import httpx

from coupa_plugin.refhost._manager import Host
from coupa_plugin.refhost._scim.command import sandbox_tenant
from coupa_plugin.refhost._scim.server import ScimFacade
from coupa_plugin.sandbox import CoupaSandbox, generate_tenant

TOKEN = "bench-token"  # noqa: S105 - a throwaway token for a loopback run
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def _reader(url: str, logins: list[str], until: float, seed: int, out: list[float]) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as client:
        while time.monotonic() < until:
            login = rng.choice(logins)
            started = time.perf_counter()
            answer = client.get("/Users", params={"filter": f'userName eq "{login}"'})
            out.append(time.perf_counter() - started)
            if answer.status_code != 200 or answer.json()["totalResults"] != 1:
                raise SystemExit(f"lookup of {login} answered {answer.status_code}")


def _reads(facade: ScimFacade, sandbox: CoupaSandbox, readers: int, seconds: float) -> None:
    logins = [str(u.profile["login"]) for u in facade.directory.users()]
    coupa_before = sandbox.api_requests
    until = time.monotonic() + seconds
    latencies: list[list[float]] = [[] for _ in range(readers)]
    threads = [
        threading.Thread(target=_reader, args=(str(facade.url), logins, until, i, latencies[i]))
        for i in range(readers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = sorted(x for per in latencies for x in per)
    print(
        f"reads: {len(every) / seconds:,.0f}/s with {readers} readers, "
        f"p50 {statistics.median(every) * 1000:.1f} ms, "
        f"p99 {every[int(len(every) * 0.99)] * 1000:.1f} ms, "
        f"Coupa requests {sandbox.api_requests - coupa_before}"
    )


def _writes(facade: ScimFacade, sandbox: CoupaSandbox, count: int) -> None:
    directory = facade.directory
    eligible = [
        u.id for u in directory.users() if u.profile.get("active") and not u.profile.get("api_user")
    ]
    # the largest group that enough users do not hold yet (a common license, say)
    by_size = sorted(directory.groups(), key=lambda g: -len(directory.members(g.entitlement.id)))
    for entry in by_size:
        group, holders = entry.entitlement.id, directory.members(entry.entitlement.id)
        users = [u for u in eligible if u not in holders][:count]
        if len(users) == count:
            break
    coupa_before = sandbox.api_requests
    started = time.perf_counter()
    with httpx.Client(base_url=str(facade.url), headers=HEADERS, timeout=60) as client:
        for user_id in users:
            for op in (
                {"op": "add", "path": "members", "value": [{"value": user_id}]},
                {"op": "remove", "path": f'members[value eq "{user_id}"]'},
            ):
                body: dict[str, Any] = {"schemas": [PATCH_OP], "Operations": [op]}
                answer = client.patch(f"/Groups/{group}", json=body)
                if answer.status_code not in (200, 204):
                    raise SystemExit(f"PATCH answered {answer.status_code}: {answer.text}")
    elapsed = time.perf_counter() - started
    writes = 2 * len(users)
    print(
        f"writes: {writes} membership PATCHes of {group} ({len(holders):,} members) in "
        f"{elapsed:.1f} s ({writes / elapsed:.1f}/s), "
        f"{(sandbox.api_requests - coupa_before) / writes:.1f} Coupa requests each"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--readers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--writes", type=int, default=20, help="users added and removed")
    args = parser.parse_args()
    sandbox = CoupaSandbox(generate_tenant(users=args.users, seed=1))
    host = Host()
    host.load_entry_points()
    with sandbox_tenant(sandbox) as tenant:
        started = time.perf_counter()
        with ScimFacade(host.hooks(tenant, "coupa"), TOKEN) as facade:
            print(
                f"start: {len(facade.directory.users()):,} users read in "
                f"{time.perf_counter() - started:.1f} s ({sandbox.api_requests} Coupa requests)"
            )
            _reads(facade, sandbox, args.readers, args.seconds)
            _writes(facade, sandbox, args.writes)


if __name__ == "__main__":
    main()
