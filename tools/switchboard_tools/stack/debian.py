"""Commands from Debian's packages that the local stack and the tests need, installed when missing and we are root."""

from __future__ import annotations

import os
import shutil
import subprocess


def apt_install(*packages: str) -> bool:
    """Install Debian's `packages` when we are root on a system with apt-get; False when we cannot try."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)
    return True


def ensure_debian_command(command: str, package: str, hint: str) -> str:
    """The path of `command`, installing Debian's `package` first when it is missing and we are root; else raise
    RuntimeError with `hint` (how to install it by hand)."""
    found = shutil.which(command)
    if found is None and apt_install(package):
        found = shutil.which(command)
    if found is None:
        raise RuntimeError(hint)
    return found


PROMTOOL_HINT = (
    "promtool is not on PATH. Install it (Debian/Ubuntu: `sudo apt-get install -y prometheus`, macOS: "
    "`brew install prometheus`): the metrics and alert-rule checks run it."
)


def ensure_promtool() -> str:
    """The path of promtool (Debian's `prometheus` package), which checks scrapes, alert rules and their tests."""
    return ensure_debian_command("promtool", "prometheus", PROMTOOL_HINT)
