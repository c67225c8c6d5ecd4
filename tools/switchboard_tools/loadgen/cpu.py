"""CPU time of the processes a benchmark runs, read from /proc: the services, Kafka and Redis when started for the
run, and the load generator itself. Divided by the messages delivered meanwhile, it gives CPU-µs per message per
process, a figure that stays steady on a noisy machine where rates and latencies do not.

    meter = CpuMeter({"router": pid, ...})        # the load generator is added as "load generator"
    before = meter.sample()
    ...                                            # the measured phase
    used = meter.since(before)                     # CPU seconds per process over the phase
    per_message_us(used, delivered)                # CPU-µs per delivered message, per process and "total"
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
LOADGEN = "load generator"
TOTAL = "total"


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads) so far; None when it is gone or not readable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces, inside parentheses): state is the first, utime the
    # 12th and stime the 13th (proc(5): fields 14 and 15 of the whole line).
    after = stat.rsplit(")", 1)[1].split()
    return (int(after[11]) + int(after[12])) / TICKS_PER_S


def resident_kib(pid: int) -> float:
    """A process's resident set size in KiB (VmRSS; nan when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1])
    return float("nan")


@dataclass
class CpuMeter:
    """Samples the CPU time of named processes."""

    processes: dict[str, int]
    _with_self: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self._with_self = {**{n: p for n, p in self.processes.items() if p > 0}, LOADGEN: os.getpid()}

    def sample(self) -> dict[str, float]:
        """CPU seconds of each process so far (a process that is gone is left out)."""
        found = {name: cpu_seconds(pid) for name, pid in self._with_self.items()}
        return {name: s for name, s in found.items() if s is not None}

    def since(self, before: dict[str, float]) -> dict[str, float]:
        """CPU seconds each process used since `before`."""
        now = self.sample()
        return {name: now[name] - before[name] for name in now if name in before}


def per_message_us(used: dict[str, float], messages: int) -> dict[str, float]:
    """CPU-µs per message of each process and of them all (`total`), largest first; empty without messages."""
    if messages <= 0:
        return {}
    each = {name: seconds * 1e6 / messages for name, seconds in used.items()}
    ordered = dict(sorted(each.items(), key=lambda item: -item[1]))
    return {**ordered, TOTAL: sum(each.values())}
