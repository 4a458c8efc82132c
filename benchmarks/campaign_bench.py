"""Access-review campaign at scale: how long `review start`, the decisions check and
`review evidence` take, and the peak RSS of each command, for a sandbox of N users.

    python -m benchmarks.campaign_bench            # 5,000 users
    python -m benchmarks.campaign_bench --users 20000

Each command runs as its own process (the installed ``coupa-iga``'s code), so its peak RSS
is its own. The decisions check runs in this process, timed alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coupa_plugin.refhost._campaign import CampaignStore, parse_decisions
from coupa_plugin.refhost._snapshot import SnapshotStore

# runs the command line and reports its own peak RSS (KiB on Linux) on the last stderr line
_MEASURED = (
    "import atexit, resource, sys\n"
    "atexit.register(lambda: print('maxrss_kib', resource.getrusage(resource.RUSAGE_SELF)"
    ".ru_maxrss, file=sys.stderr))\n"
    "from coupa_plugin.refhost._cli import main\n"
    "main(sys.argv[1:], prog_name='coupa-iga')\n"
)


def _command(*args: str) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, *args], capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"coupa-iga {' '.join(args)} failed: {done.stderr[-2000:]}")
    rss = int(done.stderr.strip().splitlines()[-1].split()[-1])
    return {"seconds": round(elapsed, 2), "peak_rss_mib": round(rss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=5_000)
    users = parser.parse_args().users
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        snapshot, sheet = root / "s.sqlite", root / "campaign.csv"
        _command("sync", "--sandbox", "--users", str(users), "--snapshot", str(snapshot))
        figures: dict[str, object] = {"users": users}
        figures["start"] = _command(
            "review", "start", "--snapshot", str(snapshot), "--tenant", "sandbox",
            "--output", str(sheet),
        )  # fmt: skip
        with sheet.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        figures["rows"] = len(rows)
        decided = root / "decisions.csv"
        with decided.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(r | {"decision": "keep", "reviewer": "bench"} for r in rows)
        with SnapshotStore(snapshot) as store:
            cstore = CampaignStore(store)
            campaign = cstore.get(int(rows[0]["campaign_id"]))
            started = time.perf_counter()
            parse_decisions(decided.read_text(), campaign, cstore.population(campaign.campaign_id))
            figures["decisions_check_s"] = round(time.perf_counter() - started, 2)
        figures["evidence"] = _command(
            "review", "evidence", "--snapshot", str(snapshot), "--campaign",
            rows[0]["campaign_id"], "--output", str(root / "evidence"),
        )  # fmt: skip
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
