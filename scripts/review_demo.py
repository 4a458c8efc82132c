"""Build a demo access review from the Coupa sandbox: two full runs with access changed in
between, the HTML report, and optionally a screenshot of it (for the README).

    .venv/bin/python scripts/review_demo.py --users 2000 --output review.html \
        --screenshot docs/review-report.png

Prints the report's size; ``--users 20000`` measures the size at 20,000 users.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coupa_plugin.host.model import Tenant
from coupa_plugin.refhost._jobs import sync_tenant
from coupa_plugin.refhost._manager import Host
from coupa_plugin.refhost._review import gather_review
from coupa_plugin.refhost._review_html import render_review
from coupa_plugin.refhost._snapshot import SnapshotStore
from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    CoupaSandbox,
    SandboxServer,
    generate_tenant,
)
from tests.access_changes import change_access
from tests.browser import chromium, run_headless


@click.command()
@click.option("--users", default=2_000, show_default=True)
@click.option("--seed", default=1, show_default=True)
@click.option("--output", type=click.Path(path_type=Path), default=Path("review.html"))
@click.option("--screenshot", type=click.Path(path_type=Path), help="Also write a PNG here.")
@click.option("--width", default=1100, show_default=True)
@click.option("--height", default=2000, show_default=True)
def main(
    users: int, seed: int, output: Path, screenshot: Path | None, width: int, height: int
) -> None:
    sandbox = CoupaSandbox(generate_tenant(users=users, seed=seed))
    host = Host()
    host.load_entry_points()
    with tempfile.TemporaryDirectory() as scratch, SandboxServer(sandbox) as server:
        tenant = Tenant(
            id="sandbox",
            plugins={
                "coupa": {
                    "base_url": server.url,
                    "allow_insecure_base_url": True,
                    "client_id": SANDBOX_CLIENT_ID,
                    "client_secret": SANDBOX_CLIENT_SECRET,
                }
            },
        )
        with SnapshotStore(Path(scratch) / "snapshot.sqlite") as store:
            sync_tenant(host, tenant, "coupa", store)
            change_access(sandbox.state, promote=2, leave=6)
            sync_tenant(host, tenant, "coupa", store)
            review = gather_review(store, "sandbox", "coupa", now=datetime.now(UTC))
    output.write_text(render_review(review), encoding="utf-8")
    click.echo(f"{output}: {output.stat().st_size:,} bytes for {len(review.users):,} accounts")
    if screenshot is not None:
        browser, why = chromium()
        if browser is None:
            raise click.ClickException(why)
        run_headless(
            browser,
            f"--window-size={width},{height}",
            f"--screenshot={screenshot.resolve()}",
            output.resolve().as_uri(),
        )
        click.echo(f"{screenshot}: {screenshot.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
