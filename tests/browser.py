"""A headless Chromium for tests and the README screenshot (Debian's ``chromium`` package).

`chromium()` finds the browser or, on a machine where we are root and apt-get exists, installs
it; when neither works it returns None together with the reason, for a clear skip message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
INSTALL_TIMEOUT_S = 1_200
RUN_TIMEOUT_S = 120


def _installed() -> str | None:
    return shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )


def chromium() -> tuple[str | None, str]:
    """(path to chromium, "") or (None, why it is not available)."""
    if found := _installed():
        return found, ""
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return None, "chromium is not installed and cannot be installed (needs root and apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([apt, "update", "-q"], [apt, "install", "-y", "-q", "chromium"]):
        try:
            done = subprocess.run(  # noqa: S603 - fixed argument list
                command,
                check=False,
                env=env,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            return None, f"{' '.join(command)} did not finish in {INSTALL_TIMEOUT_S} s"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            return None, f"{' '.join(command)} failed: {' '.join(tail)}"
    found = _installed()
    return (found, "") if found else (None, "apt-get installed chromium but it is not on PATH")


def run_headless(browser: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the browser headless with a fresh profile directory; raises on a non-zero exit."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run(  # noqa: S603 - the browser and our own arguments
            [browser, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=True,
        )
