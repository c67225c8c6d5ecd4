"""scripts/venv.sh (`make venv`) tells a fresh dev venv from a stale one, and names the Python it needs.

The venvs here are made without pip and installed from nothing: `--check` only compares the interpreter and the
record of the lock, which is what decides a rebuild.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "venv.sh"


def interpreter(minor: int) -> str | None:
    """A runnable CPython 3.<minor> on this machine (PATH, then pyenv's versions), or None."""
    candidates = [
        shutil.which(f"python3.{minor}"),
        *sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/3.{minor}.*/bin/python3"))),
    ]
    for candidate in filter(None, candidates):
        ran = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[1])"], capture_output=True, text=True
        )
        if ran.returncode == 0 and ran.stdout.strip() == str(minor):
            return candidate
    return None


def run(venv: Path, *args: str, python: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VENV": str(venv)}
    env.pop("PYTHON", None)
    if python is not None:
        env["PYTHON"] = python
    return subprocess.run(["sh", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True)


def make_bare_venv(path: Path, python: str = sys.executable) -> Path:
    subprocess.run([python, "-m", "venv", "--without-pip", str(path)], check=True)
    return path


def record_lock(venv: Path, lock_text: bytes | None = None) -> None:
    text = lock_text if lock_text is not None else (ROOT / "requirements" / "dev.lock").read_bytes()
    (venv / ".switchboard-venv").write_text(f"lock {hashlib.sha256(text).hexdigest()}\n")


def test_a_missing_venv_is_stale(tmp_path: Path) -> None:
    checked = run(tmp_path / "none", "--check")
    assert (checked.returncode, checked.stdout.strip()) == (1, f"stale: there is no {tmp_path / 'none'}")


def test_a_venv_is_fresh_only_while_it_records_this_lock(tmp_path: Path) -> None:
    venv = make_bare_venv(tmp_path / "venv")
    assert "records no lock" in run(venv, "--check").stdout
    record_lock(venv)
    checked = run(venv, "--check")
    assert (checked.returncode, checked.stdout.strip()) == (0, "fresh")
    record_lock(venv, b"an older lock\n")
    checked = run(venv, "--check")
    assert (checked.returncode, checked.stdout.strip()) == (
        1,
        "stale: it was installed from another requirements/dev.lock",
    )


def test_a_venv_of_another_python_than_the_one_named_is_stale(tmp_path: Path) -> None:
    current = sys.version_info[1]
    other = interpreter(12 if current == 11 else 11)
    if other is None:
        pytest.skip("only one supported Python on this machine")
    venv = make_bare_venv(tmp_path / "venv")
    record_lock(venv)
    assert run(venv, "--check", python=sys.executable).stdout.strip() == "fresh"
    checked = run(venv, "--check", python=other)
    assert checked.returncode == 1
    assert checked.stdout.startswith(f"stale: it was made by Python 3.{current}.")
    assert f"PYTHON={other} is Python 3.{12 if current == 11 else 11}." in checked.stdout


def test_an_unsupported_python_is_refused_with_the_versions_it_needs(tmp_path: Path) -> None:
    old = interpreter(10)
    if old is None:
        pytest.skip("no Python 3.10 on this machine")
    built = run(tmp_path / "venv", python=old)
    assert built.returncode == 2
    assert "switchboard needs Python >=3.11," in built.stderr
    assert not (tmp_path / "venv").exists()
    venv = make_bare_venv(tmp_path / "old-venv", python=old)
    record_lock(venv)
    assert run(venv, "--check").stdout.startswith("stale: it was made by Python 3.10.")
