"""The A/B report: one scenario and seed run with the surge profile off and on, the service figures side by side.

Built from the two runs' reports (pure), written as terminal text (`summary.txt`), JSON (`compare.json`) and an
HTML page (`index.html`) linking each run's own report.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from switchboard_tools.loadgen.report import Report, finite

# (label, how to read it from a report, kind): kind "n" a count, "%" a share, "s" seconds.
Row = tuple[str, Callable[[Report], Any], str]


def _get(*path: str) -> Callable[[Report], Any]:
    def read(report: Report) -> Any:
        value: Any = report
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return math.nan
            value = value[key]
        return value

    return read


def rows(off: Report, on: Report) -> list[Row]:
    """The compared figures, in the order a reader wants them (channels and targets as either run has them)."""
    targets = on["run"]["service_level_targets_s"]
    reference = on["service"]["response"]["reference_target_s"]
    channels = sorted((set(off["service"]["abandonment"]) | set(on["service"]["abandonment"])) - {"all"})
    result: list[Row] = [
        ("conversations", _get("service", "deflection", "conversations"), "n"),
        ("answered by the bot", _get("service", "deflection", "answered_by_bot"), "n"),
        ("deflected (bot, never routed to an agent)", _get("service", "deflection", "deflected"), "n"),
        ("deflection rate", _get("service", "deflection", "deflection_rate"), "%"),
        ("escalated after a bot answer", _get("service", "deflection", "escalated_after_bot"), "n"),
        ("needed an agent", _get("service", "service_level", "needed_agent"), "n"),
    ]
    result += [
        (
            f"service level within {t:g}s (abandoned included)",
            _get("service", "service_level", f"service_level_{t:g}s"),
            "%",
        )
        for t in targets
    ]
    result += [
        ("ASA (answered)", _get("service", "service_level", "asa_s"), "s"),
        ("answer wait p90", _get("service", "service_level", "answer_wait_p90_s"), "s"),
        ("unanswered at the end", _get("service", "service_level", "unanswered_at_end"), "n"),
        ("abandoned", _get("service", "abandonment", "all", "abandoned"), "n"),
        ("abandonment rate", _get("service", "abandonment", "all", "abandonment_rate"), "%"),
        ("abandoned after (p50)", _get("service", "abandonment", "all", "wait_p50_s"), "s"),
        ("abandoned after (p90)", _get("service", "abandonment", "all", "wait_p90_s"), "s"),
    ]
    for channel in channels:
        result += [
            (f"abandoned, {channel}", _get("service", "abandonment", channel, "abandoned"), "n"),
            (f"abandonment rate, {channel}", _get("service", "abandonment", channel, "abandonment_rate"), "%"),
            (f"abandoned after (p50), {channel}", _get("service", "abandonment", channel, "wait_p50_s"), "s"),
        ]
    result += [
        ("first responses", _get("service", "response", "first", "count"), "n"),
        ("first response p50", _get("service", "response", "first", "p50_s"), "s"),
        ("first response p90", _get("service", "response", "first", "p90_s"), "s"),
        ("first response mean", _get("service", "response", "first", "mean_s"), "s"),
        ("first response within target in force", _get("service", "response", "first", "within_target_in_force"), "%"),
        (f"first response within {reference:g}s", _get("service", "response", "first", f"within_{reference:g}s"), "%"),
        ("all responses mean (平均响应时间)", _get("service", "response", "all", "mean_s"), "s"),
        (f"all responses within {reference:g}s", _get("service", "response", "all", f"within_{reference:g}s"), "%"),
        ("customers who gave up (sim side)", lambda r: sum(r.get("customers", {}).get("gave_up", {}).values()), "n"),
        ("asked for a human after the bot", _get("customers", "asked_human"), "n"),
        ("messages lost", _get("accounting", "lost"), "n"),
        ("end-to-end p50", _get("latency_s", "end_to_end", "p50"), "s"),
    ]
    return result


def _number(value: Any) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def _show(value: float, kind: str) -> str:
    if math.isnan(value):
        return "—"
    if kind == "%":
        return f"{value * 100:.1f}%"
    if kind == "s":
        return f"{value:.2f}s"
    return f"{value:.0f}"


def _delta(off: float, on: float, kind: str) -> str:
    if math.isnan(off) or math.isnan(on):
        return ""
    diff = on - off
    if kind == "%":
        return f"{diff * 100:+.1f} pt"
    if kind == "s":
        return f"{diff:+.2f}s"
    return f"{diff:+.0f}"


def comparison(off: Report, on: Report) -> Report:
    """The figures of both runs side by side (JSON-able), with where each run's report is."""
    figures = []
    for label, read, kind in rows(off, on):
        a, b = _number(read(off)), _number(read(on))
        figures.append({"figure": label, "kind": kind, "off": a, "on": b, "delta": _delta(a, b, kind)})
    return {
        "scenario": on["run"]["scenario"],
        "seed": on["run"]["seed"],
        "same_seed": off["run"]["seed"] == on["run"]["seed"],
        "runs": {"off": off["run"]["name"], "on": on["run"]["name"]},
        "surge_profile": on["run"].get("surge_profile", {}),
        "no_events_of": {"off": off["service"]["no_events_of"], "on": on["service"]["no_events_of"]},
        "figures": figures,
    }


def comparison_text(cmp: Report) -> str:
    """The side-by-side table as terminal text."""
    width = max(len(f["figure"]) for f in cmp["figures"])
    lines = [
        f"A/B  scenario {cmp['scenario']}  seed {cmp['seed']}  profile off: {cmp['runs']['off']}  "
        f"on: {cmp['runs']['on']}",
        f"{'':<{width}}  {'off':>10}  {'on':>10}  {'on − off':>10}",
    ]
    for f in cmp["figures"]:
        lines.append(
            f"{f['figure']:<{width}}  {_show(f['off'], f['kind']):>10}  {_show(f['on'], f['kind']):>10}  "
            f"{f['delta']:>10}"
        )
    for run, missing in cmp["no_events_of"].items():
        if missing:
            lines.append(f"profile {run}: no routing events of type {', '.join(missing)}")
    return "\n".join(lines)


def comparison_html(cmp: Report) -> str:
    """A page with the table and links to both runs' reports."""
    body = "".join(
        f"<tr><th>{html.escape(f['figure'])}</th><td>{_show(f['off'], f['kind'])}</td>"
        f"<td>{_show(f['on'], f['kind'])}</td><td>{html.escape(f['delta'])}</td></tr>"
        for f in cmp["figures"]
    )
    off, on = cmp["runs"]["off"], cmp["runs"]["on"]
    profile = json.dumps(cmp["surge_profile"].get("definition", {}), indent=1, ensure_ascii=False)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>switchboard A/B {html.escape(cmp["scenario"])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}th{{text-align:left}}
pre{{background:#f5f5f5;padding:1em}}
</style></head><body>
<h1>{html.escape(cmp["scenario"])}, seed {cmp["seed"]}: surge profile off vs on</h1>
<table><thead><tr><th></th><th>profile off</th><th>profile on</th><th>on − off</th></tr></thead>
<tbody>{body}</tbody></table>
<p>Runs: <a href="../{html.escape(off)}/index.html">{html.escape(off)}</a> (off),
<a href="../{html.escape(on)}/index.html">{html.escape(on)}</a> (on). Raw: <a href="compare.json">compare.json</a></p>
<h2>The profile switched on</h2><pre>{html.escape(profile)}</pre>
</body></html>
"""


def write_comparison(cmp: Report, out_dir: Path) -> Path:
    """Write compare.json, summary.txt and index.html into `out_dir`; return the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "compare.json").write_text(json.dumps(finite(cmp), indent=1, ensure_ascii=False))
    (out_dir / "summary.txt").write_text(comparison_text(cmp) + "\n")
    page = out_dir / "index.html"
    page.write_text(comparison_html(cmp), encoding="utf-8")
    return page
