"""The report of a run: built from the observations (pure), written as terminal text, JSON and HTML with charts."""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from collections.abc import Collection
from pathlib import Path
from typing import Any

from switchboard_tools.loadgen.erlang import predict
from switchboard_tools.loadgen.observations import Observations
from switchboard_tools.loadgen.scenario import Scenario
from switchboard_tools.loadgen.service import histories, is_deflected, service_figures
from switchboard_tools.loadgen.stats import (
    ConversationOutcome,
    answer_stats,
    busiest_window_rate,
    effective_slots,
    latency_summary,
    occupancy_and_fairness,
    per_tenant,
    throughput,
)

Report = dict[str, Any]

ERLANG_MODEL = (
    "Erlang C per shop: arrivals = the shop's measured conversations per second (whole arrival window, and its "
    "busiest minute); AHT = measured assignment-to-close time; servers = mean agents online × traffic-weighted "
    "slots per agent × the surge multiplier averaged over its time on. Outside the model: a phone call blocking "
    "an agent's other work, offers that time out, routing and delivery delays, and arrivals that are anything but "
    "steady during a spike; a measured service level below the prediction points at those."
)
# How many undelivered messages the report traces (of each kind: lost, pending at cut-off).
WHEREABOUTS_SHOWN = 50


def outcomes(obs: Observations, leave_out: Collection[str] = ()) -> list[ConversationOutcome]:
    """Each conversation's start, answer and handling time (but those in `leave_out`: the deflected ones)."""
    result = []
    for conversation_id, track in obs.conversations.items():
        if conversation_id in leave_out:
            continue
        handling = None
        if track.answered_at is not None and track.closed_at is not None:
            handling = track.closed_at - track.answered_at
        result.append(
            ConversationOutcome(
                tenant_id=track.tenant_id,
                channel=track.channel,
                started_at=track.started_at,
                answered_at=track.answered_at,
                agent_id=track.agent_id,
                handling_s=handling,
            )
        )
    return result


def _mean_agents_online(samples: list[tuple[float, int]], start: float, end: float) -> float:
    """Time-weighted mean of a step function of (time, agents online) samples over [start, end]."""
    if not samples or end <= start:
        return 0.0
    total = 0.0
    ordered = sorted(samples)
    for (t, n), (t_next, _) in zip(ordered, [*ordered[1:], (end, 0)], strict=True):
        lo, hi = max(t, start), min(t_next, end)
        if hi > lo:
            total += n * (hi - lo)
    return total / (end - start)


def erlang_comparison(obs: Observations, scenario: Scenario, convs: list[ConversationOutcome]) -> Report:
    """Erlang C for each shop's measured arrival rate, handling time and staffing, beside what was measured.

    Erlang C assumes steady arrivals; a sale is anything but, so the prediction is made twice: for the whole
    arrival window (average load) and for the busiest minute (peak load). Each shop has its own agents and queue.
    """
    start, end = obs.started_at, obs.started_at + scenario.duration_s
    targets = scenario.service_level_targets_s
    by_tenant: dict[str, list[ConversationOutcome]] = defaultdict(list)
    for c in convs:
        by_tenant[c.tenant_id].append(c)
    handled = [c.handling_s for c in convs if c.handling_s is not None]
    fallback_aht = sum(handled) / len(handled) if handled else scenario.agents.handling_time.mean_s
    rows = {}
    for tenant, group in sorted(by_tenant.items()):
        times = [c.started_at for c in group]
        own = [c.handling_s for c in group if c.handling_s is not None]
        aht = sum(own) / len(own) if own else fallback_aht
        agents = _mean_agents_online(obs.agents_online.get(tenant, []), start, end)
        surge_at = obs.surge_on_at.get(tenant)
        multiplier = 1.0
        if surge_at is not None and scenario.operator is not None:
            on_share = max(0.0, min(1.0, (end - surge_at) / (end - start)))
            multiplier = 1.0 + (scenario.operator.tenant_factor - 1.0) * on_share
        capacity = {ch: int(slots * multiplier) for ch, slots in scenario.agents.capacity.items()}
        servers = effective_slots(agents, capacity, scenario.channels)
        average = predict(len(group) / scenario.duration_s, aht, servers, targets)
        peak = predict(busiest_window_rate(times, 60.0), aht, servers, targets)
        measured = answer_stats(group, scenario.conversation.patience_s, targets)
        rows[tenant] = {
            "arrival_rate_per_s": average.arrival_rate_per_s,
            "peak_minute_rate_per_s": peak.arrival_rate_per_s,
            "aht_s": aht,
            "agents_online_mean": agents,
            "servers": servers,
            "traffic_erlangs": average.traffic_erlangs,
            "predicted": {
                "probability_of_wait": average.probability_of_wait,
                "asa_s": average.asa_s,
                **{f"service_level_{t:g}s": v for t, v in average.service_level.items()},
            },
            "predicted_at_peak_minute": {
                "probability_of_wait": peak.probability_of_wait,
                "asa_s": peak.asa_s,
                **{f"service_level_{t:g}s": v for t, v in peak.service_level.items()},
            },
            "measured": {k: v for k, v in measured.items() if k.startswith("service_level") or k == "asa_s"},
        }
    return rows


def isolation(per_tenant_stats: dict[str, dict[str, float]], scenario: Scenario) -> Report:
    """The named shops (the flagship) beside the small shops: do the small ones suffer from the big one's surge?"""
    key = f"service_level_{scenario.service_level_targets_s[0]:g}s"
    named = {t.id for t in scenario.tenants}
    small = {t: s for t, s in per_tenant_stats.items() if t not in named}
    result: Report = {
        "service_level_key": key,
        "named": {t: {key: s[key], "wait_p95_s": s["wait_p95_s"]} for t, s in per_tenant_stats.items() if t in named},
    }
    if small:
        levels = sorted(s[key] for s in small.values())
        p95s = sorted(s["wait_p95_s"] for s in small.values() if not math.isnan(s["wait_p95_s"]))
        worst = max(small, key=lambda t: small[t]["wait_p95_s"] if not math.isnan(small[t]["wait_p95_s"]) else -1)
        result["small_shops"] = {
            "count": len(small),
            f"{key}_min": levels[0],
            f"{key}_median": levels[len(levels) // 2],
            "wait_p95_s_median": p95s[len(p95s) // 2] if p95s else math.nan,
            "worst_shop": worst,
            "worst_wait_p95_s": small[worst]["wait_p95_s"],
        }
    return result


def build_report(obs: Observations, scenario: Scenario) -> Report:
    """Every figure of the run as one JSON-able mapping."""
    accounting = obs.ledger.settle(waiting=obs.queued_at_cut_off(), not_for_agents=obs.not_for_agents())
    convs_by_id = histories(obs.events)
    # The customers' view of waits covers conversations that needed an agent; the bot's are counted apart.
    convs = outcomes(obs, leave_out={cid for cid, h in convs_by_id.items() if is_deflected(h)})
    targets = scenario.service_level_targets_s
    patience = scenario.conversation.patience_s
    e2e = [d.received_at - obs.ledger.sent[tag].sent_at for tag, d in accounting.first_delivery.items()]
    tenants = per_tenant(convs, patience, targets)
    # A conversation's first message waits for an offer to be accepted (or in the queue); later messages go to
    # the owner, straight through the pipeline once the conversation is assigned (held while an offer is pending).
    first = [
        d.received_at - obs.ledger.sent[t].sent_at
        for t, d in accounting.first_delivery.items()
        if d.event == "assigned"
    ]
    owned = [
        d.received_at - obs.ledger.sent[t].sent_at
        for t, d in accounting.first_delivery.items()
        if d.event != "assigned"
    ]
    sent_times = [s.sent_at for s in obs.ledger.sent.values() if s.accepted]
    delivered_times = [d.received_at for d in accounting.first_delivery.values()]
    return {
        "run": {
            "name": obs.run_name,
            "scenario": scenario.name,
            "seed": obs.seed,
            "started_at": obs.started_at,
            "duration_s": obs.ended_at - obs.started_at,
            "service_level_targets_s": list(targets),
            "profile": obs.profile,
            "surge_profile": _surge_description(obs, scenario),
            "notes": obs.notes,
        },
        "accounting": {
            **accounting.summary(),
            "lost_whereabouts": _traced(obs, accounting.lost),
            "pending_whereabouts": _traced(obs, accounting.pending_at_cut_off),
        },
        "throughput": {
            "channel_accepted": throughput(sent_times, obs.started_at),
            "inbound_topic": throughput(obs.inbound_times, obs.started_at),
            "routing_decisions": throughput(obs.routing_event_times, obs.started_at),
            "desktop_delivered": throughput(delivered_times, obs.started_at),
        },
        "routing_event_types": dict(sorted(obs.routing_event_types.items())),
        "latency_s": {
            "end_to_end": latency_summary(e2e),
            "end_to_end_first_message": latency_summary(first),
            "end_to_end_to_owner": latency_summary(owned),
            "first_offer": latency_summary(obs.offer_latencies_s),
            "routing_decision": latency_summary(obs.decision_latencies_s),
        },
        "answer": answer_stats(convs, patience, targets),
        "service": service_figures(obs.events, targets, scenario.response_reference_s),
        "customers": _customers(obs),
        "per_tenant": tenants,
        "isolation": isolation(tenants, scenario),
        "agents": occupancy_and_fairness(obs.sessions),
        "erlang_c": erlang_comparison(obs, scenario, convs),
        "erlang_c_model": ERLANG_MODEL,
        "series": obs.series.as_lists(),
        "errors": dict(obs.errors),
        "e2e_samples_s": sorted(e2e),
    }


def _surge_description(obs: Observations, scenario: Scenario) -> dict[str, object]:
    """Which profile the operator switched on, when, and what it holds (nothing in a profile-off run)."""
    op = scenario.operator
    if op is None or not obs.surge_on_at:
        return {"name": None}
    on_at = sorted(at - obs.started_at for at in obs.surge_on_at.values())
    return {
        "name": op.profile,
        "switch": op.switch,
        "tenants": len(obs.surge_on_at),
        "on_at_s": {"first": on_at[0], "last": on_at[-1]},
        "definition": op.profile_body(),
    }


def _customers(obs: Observations) -> dict[str, object]:
    """What simulated customers did besides writing."""
    gave_up = {k.removeprefix("gave_up:"): v for k, v in sorted(obs.behaviour.items()) if k.startswith("gave_up:")}
    return {
        "gave_up": gave_up,
        "asked_human": obs.behaviour["asked_human"],
        "skipped_messages": obs.behaviour["skipped"],
    }


def _traced(obs: Observations, tags: list[str]) -> list[dict[str, object]]:
    return [obs.whereabouts[t] for t in tags[:WHEREABOUTS_SHOWN] if t in obs.whereabouts]


def _fmt(value: Any, unit: str = "") -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if math.isinf(value):
            return "∞"
        return f"{value:.3f}{unit}" if unit == "s" else f"{value:.3g}{unit}"
    return f"{value}{unit}"


def _pct(value: float) -> str:
    return "—" if math.isnan(value) else f"{value * 100:.1f}%"


def terminal_summary(report: Report) -> str:
    """A few lines a load tester reads first."""
    run, acc, ans = report["run"], report["accounting"], report["answer"]
    e2e, dec = report["latency_s"]["end_to_end"], report["latency_s"]["routing_decision"]
    owned = report["latency_s"]["end_to_end_to_owner"]
    thr = report["throughput"]
    sl = [f"service_level_{t:g}s" for t in run["service_level_targets_s"]]
    lines = [
        f"run {run['name']}  scenario {run['scenario']}  seed {run['seed']}  {run['duration_s']:.0f}s",
        f"accounting  sent {acc['sent']}  accepted {acc['accepted']}  delivered {acc['delivered']}  "
        f"lost {acc['lost']}  pending at cut-off {acc['pending_at_cut_off']}  "
        f"answered by bot {acc.get('answered_by_bot', 0)}  abandoned {acc.get('abandoned_by_customer', 0)}  "
        f"duplicated {acc['duplicated']}  unexpected {acc['unexpected']}  "
        f"refused {acc['refused_by_channel']}  → {'BALANCED' if acc['balanced'] else 'NOT BALANCED'}",
        "throughput  "
        + "  ".join(f"{k} {v['mean_per_s']:.1f}/s (peak {v['peak_per_s']:.0f}/s)" for k, v in thr.items()),
        f"end-to-end  p50 {_fmt(e2e['p50'], 's')}  p95 {_fmt(e2e['p95'], 's')}  p99 {_fmt(e2e['p99'], 's')}  "
        f"max {_fmt(e2e['max'], 's')}   (later messages: p50 {_fmt(owned['p50'], 's')}  p99 {_fmt(owned['p99'], 's')})",
        f"routing     p50 {_fmt(dec['p50'], 's')}  p99 {_fmt(dec['p99'], 's')}",
        f"answer      {int(ans['conversations'])} conversations  "
        + "  ".join(f"SL {k.removeprefix('service_level_')} {_pct(ans[k])}" for k in sl)
        + f"  ASA {_fmt(ans['asa_s'], 's')}  abandoned {_pct(ans['abandonment_rate'])}",
    ]
    lines += service_lines(report)
    iso = report.get("isolation", {})
    if iso.get("small_shops"):
        key, small = iso["service_level_key"], iso["small_shops"]
        named = "  ".join(
            f"{t} {_pct(v[key])} (p95 wait {_fmt(v['wait_p95_s'], 's')})" for t, v in iso["named"].items()
        )
        lines.append(
            f"isolation   {named}  vs {small['count']} small shops: {key.removeprefix('service_level_')} "
            f"min {_pct(small[key + '_min'])} median {_pct(small[key + '_median'])}, p95 wait median "
            f"{_fmt(small['wait_p95_s_median'], 's')}, worst {small['worst_shop']} "
            f"{_fmt(small['worst_wait_p95_s'], 's')}"
        )
    if report["accounting"].get("lost_whereabouts") or report["accounting"].get("pending_whereabouts"):
        lines.append(_whereabouts(report, limit=5))
    erlang = report["erlang_c"]
    if erlang:
        first = sl[0] if sl else None
        lines.append("Erlang C    tenant: measured SL vs predicted (average load / busiest minute)")
        for tenant, row in list(erlang.items())[:8]:
            if first is None:
                break
            lines.append(
                f"  {tenant:<14} {_pct(row['measured'].get(first, math.nan))} vs "
                f"{_pct(row['predicted'][first])} / {_pct(row['predicted_at_peak_minute'][first])}  "
                f"({row['servers']} slots, {row['traffic_erlangs']:.1f} E)"
            )
    return "\n".join(lines)


def service_lines(report: Report) -> list[str]:
    """The service figures from the routing events: profile, deflection, abandonment, service level, responses."""
    svc = report.get("service")
    if not svc:
        return []
    run, surge = report["run"], report["run"].get("surge_profile", {})
    defl, sl, ab, resp = svc["deflection"], svc["service_level"], svc["abandonment"], svc["response"]
    profile = f"profile     {run.get('profile', '?')}"
    if surge.get("name"):
        profile += (
            f" ({surge['name']} {surge['switch']}d, in force for {surge['tenants']} tenants from "
            f"+{surge['on_at_s']['first']:.1f}s)"
        )
    everyone = ab.get("all", {})
    by_channel = "  ".join(
        f"{ch} {int(row['abandoned'])} ({_pct(row['abandonment_rate'])}, wait p50 {_fmt(row['wait_p50_s'], 's')})"
        for ch, row in ab.items()
        if ch != "all"
    )
    keys = [k for k in sl if k.startswith("service_level_")]
    first, reference = resp["first"], resp["reference_target_s"]
    lines = [
        profile,
        f"deflection  {defl['deflected']} deflected of {defl['conversations']} conversations "
        f"({_pct(defl['deflection_rate'])}); bot answered {defl['answered_by_bot']}, "
        f"escalated after it {defl['escalated_after_bot']}",
        f"service     {int(sl['needed_agent'])} needed an agent: "
        + "  ".join(f"SL {k.removeprefix('service_level_')} {_pct(sl[k])}" for k in keys)
        + f"  ASA {_fmt(sl['asa_s'], 's')}  (abandoned {int(sl['abandoned'])}, "
        f"unanswered at end {int(sl['unanswered_at_end'])} included)",
        f"abandoned   {int(everyone.get('abandoned', 0))} ({_pct(everyone.get('abandonment_rate', math.nan))}, "
        f"wait p50 {_fmt(everyone.get('wait_p50_s', math.nan), 's')} p90 "
        f"{_fmt(everyone.get('wait_p90_s', math.nan), 's')})  {by_channel}",
        f"response    first: {int(first['count'])}  p50 {_fmt(first['p50_s'], 's')}  p90 {_fmt(first['p90_s'], 's')}  "
        f"mean {_fmt(first['mean_s'], 's')}  within target in force {_pct(first['within_target_in_force'])}  "
        f"within {reference:g}s {_pct(first[f'within_{reference:g}s'])}",
    ]
    customers = report.get("customers", {})
    if customers:
        gave_up = ", ".join(f"{ch} {n}" for ch, n in customers["gave_up"].items()) or "none"
        lines.append(f"customers   gave up: {gave_up}; asked for a human after the bot: {customers['asked_human']}")
    if svc.get("no_events_of"):
        lines.append(f"no routing events of type {', '.join(svc['no_events_of'])} in this run")
    return lines


def _table(rows: dict[str, dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["", *columns])
    body = []
    for name, row in rows.items():
        cells = "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in columns)
        body.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cell(value: Any) -> str:
    if isinstance(value, float) and not math.isnan(value) and 0 <= value <= 1:
        return f"{value:.3f}"
    return _fmt(value)


def html_page(report: Report, charts: list[str]) -> str:
    """A self-contained page: the summary, tables, and the PNG charts next to it."""
    images = "".join(f'<figure><img src="{html.escape(c)}" alt="{html.escape(c)}"></figure>' for c in charts)
    lat = {k: v for k, v in report["latency_s"].items()}
    key = f"service_level_{report['run']['service_level_targets_s'][0]:g}s"
    erlang_rows = {
        t: {
            f"measured {key}": r["measured"].get(key, math.nan),
            f"predicted {key} (average load)": r["predicted"].get(key, math.nan),
            f"predicted {key} (busiest minute)": r["predicted_at_peak_minute"].get(key, math.nan),
            "servers": r["servers"],
            "Erlangs": r["traffic_erlangs"],
            "AHT s": r["aht_s"],
        }
        for t, r in report["erlang_c"].items()
    }
    # The columns are the rows' own keys, so a renamed figure cannot leave a column of empty cells.
    erlang_columns = list(next(iter(erlang_rows.values()), {}))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>switchboard load test {html.escape(report["run"]["name"])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}img{{max-width:100%}}
pre{{background:#f5f5f5;padding:1em}}
</style></head><body>
<h1>switchboard load test — {html.escape(report["run"]["name"])}</h1>
<pre>{html.escape(terminal_summary(report))}</pre>
<h2>Accounting</h2>{_table({"messages": report["accounting"]}, _scalar_keys(report["accounting"]))}
<pre>{html.escape(_whereabouts(report))}</pre>
<h2>Latency (seconds)</h2>{_table(lat, ["count", "mean", "p50", "p95", "p99", "max"])}
{_service_html(report)}
<h2>Per-tenant waits</h2>{_table(report["per_tenant"], list(next(iter(report["per_tenant"].values()), {}).keys()))}
<h2>Measured service level vs Erlang C</h2>{_table(erlang_rows, erlang_columns)}
<h2>Fairness per tenant</h2>{_table(report["agents"]["per_tenant"], ["agents", "mean_occupancy", "cv", "jain"])}
<h2>Charts</h2>{images}
<p>Raw figures: <a href="report.json">report.json</a></p>
</body></html>
"""


def _service_html(report: Report) -> str:
    """The service figures' tables (deflection, service level, abandonment by channel, response times)."""
    svc = report.get("service")
    if not svc:
        return ""
    resp = svc["response"]
    responses = {"first responses": resp["first"], "all responses": resp["all"]}
    responses.update({f"first, group {g}": row for g, row in resp["first_by_group"].items()})
    defl = {k: v for k, v in svc["deflection"].items() if k != "by_template"}
    return (
        "<h2>Service (switchboard's routing events)</h2>"
        f"<h3>Deflection</h3>{_table({'conversations': defl}, list(defl))}"
        f"{_table({'bot answers': svc['deflection']['by_template']}, list(svc['deflection']['by_template']))}"
        f"<h3>Service level</h3>{_table({'needed an agent': svc['service_level']}, list(svc['service_level']))}"
        f"<h3>Abandonment by channel</h3>{_table(svc['abandonment'], _first_keys(svc['abandonment']))}"
        f"<h3>Response time</h3>{_table(responses, _first_keys(responses))}"
    )


def _first_keys(rows: dict[str, dict[str, Any]]) -> list[str]:
    return list(next(iter(rows.values()), {}).keys())


def _scalar_keys(row: dict[str, Any]) -> list[str]:
    return [k for k, v in row.items() if not isinstance(v, dict | list)]


def _whereabouts(report: Report, limit: int = 20) -> str:
    """Where undelivered messages are: an operator's first lead (lost ones, then those pending at cut-off)."""
    lines = []
    for label, key in (("lost", "lost_whereabouts"), ("pending at cut-off", "pending_whereabouts")):
        for where in report["accounting"].get(key, [])[:limit]:
            if not where.get("on_inbound_topic"):
                lines.append(f"{label} {where['tag']}: acknowledged by its channel but never on the inbound topic")
            else:
                last = where.get("last_decision", "no routing decision")
                lines.append(
                    f"{label} {where['tag']}: received {where.get('received_at', '?')} in conversation "
                    f"{where['conversation_id']}, its last decision {last}"
                )
    return "\n".join(lines)


def write_report(report: Report, out_dir: Path) -> Path:
    """Write report.json, the charts and index.html into `out_dir`; return the HTML path."""
    from switchboard_tools.loadgen.charts import draw_charts

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(finite(report), indent=1, default=str, ensure_ascii=False))
    charts = draw_charts(report, out_dir)
    (out_dir / "summary.txt").write_text(terminal_summary(report) + "\n")
    page = out_dir / "index.html"
    page.write_text(html_page(report, charts), encoding="utf-8")
    return page


def finite(value: Any) -> Any:
    """NaN and infinity become null: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value
