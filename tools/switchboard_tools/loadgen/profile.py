"""Flame graphs of the services while a benchmark phase runs (`switchboard bench --profile DIR`).

py-spy samples each Python service process from outside (no change to the service, no restart) for the length of
the phase and writes, per service, `<name>.svg` (a flame graph to look at) and `<name>.txt` (the same samples as
collapsed stacks, one line per stack with its count, to search or diff). `hot_frames` reads a `.txt` back as the
functions that were on top of the stack most often (their own time), which is where a change pays.

    async with profiled(endpoints.processes, folder, seconds):
        ...  # the measured phase
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

# Sampling rate: enough samples over a 10 s phase to rank functions, at a cost the profiled process barely feels.
RATE_PER_S = 200
# The processes worth a flame graph: the Python services (Kafka, Redis and the load generator are left out).
SERVICES = ("chat", "gateway", "router", "presence", "email", "phone")


def py_spy() -> str:
    """The py-spy executable (installed with the tools, next to this Python)."""
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed (it comes with switchboard-tools: make prepare)")
    return found


@contextlib.asynccontextmanager
async def profiled(processes: dict[str, int], folder: Path, seconds: float) -> AsyncIterator[None]:
    """Record each service of `processes` for `seconds` while the body runs; waits for the files on exit."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    exe = py_spy()
    recorders: list[asyncio.subprocess.Process] = []
    for name, pid in processes.items():
        if name not in SERVICES or pid <= 0:
            continue
        for fmt, suffix in (("flamegraph", "svg"), ("raw", "txt")):
            recorders.append(
                await asyncio.create_subprocess_exec(
                    exe,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(RATE_PER_S),
                    "--duration",
                    str(max(1, round(seconds))),
                    "--format",
                    fmt,
                    "--nonblocking",
                    "--output",
                    str(folder / f"{name}.{suffix}"),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            )
    try:
        yield
    finally:
        await asyncio.gather(*(r.wait() for r in recorders))


def hot_frames(collapsed: Path, top: int = 15) -> list[tuple[str, float]]:
    """The functions most often on top of the stack in a py-spy `raw` file, with their share of all samples."""
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        own[stack.rsplit(";", 1)[-1]] += int(count)
    return [(frame, n / total) for frame, n in own.most_common(top)] if total else []


def main(argv: list[str] | None = None) -> int:
    """`python -m switchboard_tools.loadgen.profile FILE.txt...`: each file's hottest functions."""
    for name in argv if argv is not None else sys.argv[1:]:
        print(name)
        for frame, share in hot_frames(Path(name)):
            print(f"  {share:6.1%}  {frame}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
