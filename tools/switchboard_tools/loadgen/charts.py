"""PNG charts of a report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
# The backend is chosen before pyplot is imported: no display on servers and CI.
import matplotlib.pyplot as plt

Report = dict[str, Any]


def _save(fig: Any, out_dir: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=90)
    plt.close(fig)
    return name


def latency_chart(report: Report, out_dir: Path) -> str | None:
    """Histogram and CDF of end-to-end latency (customer send → agent desktop)."""
    samples = [s * 1000 for s in report.get("e2e_samples_s", [])]
    if not samples:
        return None
    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 3.8))
    hist.hist(samples, bins=50, color="#4472c4")
    hist.set_xlabel("end-to-end latency (ms)")
    hist.set_ylabel("messages")
    hist.set_title("Latency histogram")
    ys = [(i + 1) / len(samples) for i in range(len(samples))]
    cdf.plot(samples, ys, color="#c0504d")
    cdf.set_xscale("log")
    cdf.set_xlabel("end-to-end latency (ms, log)")
    cdf.set_ylabel("share of messages")
    cdf.set_title("Latency CDF")
    cdf.grid(True, alpha=0.3)
    return _save(fig, out_dir, "latency.png")


def arrivals_queue_chart(report: Report, out_dir: Path) -> str | None:
    """Arrivals and deliveries per second, and queue depth per skill group, over the run."""
    series: dict[str, list[list[float]]] = report.get("series", {})
    if not series:
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    for name in ("conversations_started", "messages_sent", "messages_delivered"):
        if name in series:
            xs, ys = zip(*series[name], strict=True)
            top.plot(xs, ys, label=name.replace("_", " "))
    top.set_ylabel("per second")
    top.set_title("Arrivals and deliveries")
    top.legend(loc="upper right")
    queues = sorted(
        ((n, pts) for n, pts in series.items() if n.startswith("queue:")), key=lambda item: -max(v for _, v in item[1])
    )
    for name, points in queues[:8]:
        xs, ys = zip(*points, strict=True)
        bottom.plot(xs, ys, label=name.removeprefix("queue:"))
    bottom.set_xlabel("seconds into the run")
    bottom.set_ylabel("conversations waiting")
    bottom.set_title("Queue depth per skill group (8 deepest)")
    if queues:
        bottom.legend(loc="upper right", fontsize=7)
    return _save(fig, out_dir, "arrivals_queues.png")


def tenant_wait_chart(report: Report, out_dir: Path) -> str | None:
    """Median and p95 wait per tenant: the small shops against the flagship."""
    tenants: dict[str, dict[str, float]] = report.get("per_tenant", {})
    if not tenants:
        return None
    names = list(tenants)
    p50 = [_num(tenants[n].get("wait_p50_s")) for n in names]
    p95 = [_num(tenants[n].get("wait_p95_s")) for n in names]
    fig, ax = plt.subplots(figsize=(11, 4))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], p50, width=0.4, label="p50 wait")
    ax.bar([x + 0.2 for x in xs], p95, width=0.4, label="p95 wait")
    ax.set_xticks(list(xs), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("seconds to answer")
    ax.set_title("Waits per tenant")
    ax.legend()
    return _save(fig, out_dir, "tenant_waits.png")


def occupancy_chart(report: Report, out_dir: Path) -> str | None:
    """Occupancy of every agent, grouped by tenant."""
    agents: dict[str, dict[str, Any]] = report.get("agents", {}).get("per_agent", {})
    if not agents:
        return None
    names = sorted(agents, key=lambda a: (agents[a]["tenant_id"], a))
    fig, ax = plt.subplots(figsize=(11, 3.8))
    ax.bar(range(len(names)), [agents[n]["occupancy"] for n in names], color="#9bbb59")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=5)
    ax.set_ylim(0, 1)
    ax.set_ylabel("occupancy")
    ax.set_title("Agent occupancy (share of logged-on time holding work)")
    return _save(fig, out_dir, "occupancy.png")


def erlang_chart(report: Report, out_dir: Path) -> str | None:
    """Measured service level per tenant beside Erlang C's prediction (average load and busiest minute)."""
    rows: dict[str, dict[str, Any]] = report.get("erlang_c", {})
    if not rows:
        return None
    names = list(rows)
    key = f"service_level_{report['run']['service_level_targets_s'][0]:g}s"
    measured = [_num(rows[n]["measured"].get(key)) for n in names]
    average = [_num(rows[n]["predicted"][key]) for n in names]
    peak = [_num(rows[n]["predicted_at_peak_minute"][key]) for n in names]
    fig, ax = plt.subplots(figsize=(11, 4))
    xs = range(len(names))
    ax.bar([x - 0.27 for x in xs], measured, width=0.27, label="measured")
    ax.bar(list(xs), average, width=0.27, label="Erlang C, average load")
    ax.bar([x + 0.27 for x in xs], peak, width=0.27, label="Erlang C, busiest minute")
    ax.set_xticks(list(xs), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(key.replace("_", " "))
    ax.set_title("Service level: measured vs Erlang C")
    ax.legend(fontsize=8)
    return _save(fig, out_dir, "erlang_c.png")


CHARTS: tuple[Callable[[Report, Path], str | None], ...] = (
    latency_chart,
    arrivals_queue_chart,
    tenant_wait_chart,
    occupancy_chart,
    erlang_chart,
)


def draw_charts(report: Report, out_dir: Path) -> list[str]:
    """Draw every chart that has data; return the file names."""
    return [name for chart in CHARTS if (name := chart(report, out_dir)) is not None]


def _num(value: Any) -> float:
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
