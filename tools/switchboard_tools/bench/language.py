"""The language detector of the adapters (switchboard.intake.language): its memory and its time per message.

Usage: python -m switchboard_tools.bench.language [--rounds N]
Prints the process's resident memory before and after the detector loaded its models, how long loading took, and
p50/p99 microseconds per message over the example shop's labelled messages (config/routing/*.examples.txt and the
held-out file), for all of them and apart for those lingua decides (Latin script) and those the script decides.
No Kafka or Redis needed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from switchboard.intake.language import detect_language, detector

ROOT = Path(__file__).resolve().parents[3]
FILES = (
    ROOT / "config" / "routing" / "tmall-flagship.examples.txt",
    ROOT / "config" / "routing" / "eval" / "tmall-flagship.heldout.txt",
)
# Codes only the writing system decides; the rest of the messages went through lingua.
BY_SCRIPT = frozenset({"zh", "ja", "ko", "ru", "uk", "be", "kk", "sr", "mk", "th", "ar", "he", "el", "hi", "ka", "hy"})


def resident_mb() -> float:
    """This process's resident set size in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def messages() -> list[str]:
    """The labelled messages of the example shop, without headers and comments."""
    out = []
    for path in FILES:
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if line and not line.startswith("#") and not (line.startswith("[") and line.endswith("]")):
                out.append(line.replace("\\n", "\n"))
    return out


def percentiles(samples: list[float]) -> str:
    """p50 and p99 of microsecond samples."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return f"p50 {cuts[49]:7.1f} µs   p99 {cuts[98]:7.1f} µs   ({len(samples)} detections)"


def main() -> int:
    """Measure and print; the exit code is 0."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="passes over the messages")
    args = parser.parse_args()
    texts = messages()
    before = resident_mb()
    started = time.perf_counter()
    detector().warm()
    loaded = time.perf_counter() - started
    after = resident_mb()
    print(f"resident memory: {before:.0f} MB before the detector, {after:.0f} MB after (+{after - before:.0f} MB)")
    print(f"loading the models: {loaded:.2f} s")
    # Wall time is what a message waits; CPU time of the thread leaves out what other processes took meanwhile.
    wall: dict[str, list[float]] = {"all": [], "script": [], "lingua": []}
    cpu: dict[str, list[float]] = {"all": [], "script": [], "lingua": []}
    for _ in range(args.rounds):
        for text in texts:
            start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
            code = detect_language(text)
            took_cpu, took = (time.thread_time_ns() - start_cpu) / 1000, (time.perf_counter_ns() - start) / 1000
            for name in ("all", "script" if code in BY_SCRIPT or not code else "lingua"):
                wall[name].append(took)
                cpu[name].append(took_cpu)
    for name, label in (("all", "every message"), ("script", "by script"), ("lingua", "by lingua")):
        print(f"{label:>14}: wall {percentiles(wall[name])}")
        print(f"{'':>14}  CPU  {percentiles(cpu[name])}")
    print(f"resident memory at the end: {resident_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
