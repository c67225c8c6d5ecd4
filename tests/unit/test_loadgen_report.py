"""The report writer: terminal summary, JSON and an HTML page with PNG charts, from a synthetic run."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from switchboard_tools.loadgen.accounting import Delivery, Sent
from switchboard_tools.loadgen.observations import ConversationTrack, Observations
from switchboard_tools.loadgen.report import build_report, html_page, terminal_summary, write_report
from switchboard_tools.loadgen.scenario import load_scenario
from switchboard_tools.loadgen.stats import AgentSession


def _synthetic_run(drop: str | None = None) -> Observations:
    rng = random.Random(1)
    obs = Observations(run_name="unit", scenario="smoke", seed=1, started_at=1000.0, ended_at=1060.0)
    for i in range(40):
        tenant = "lg-flagship" if i % 2 else "lg-shop-01"
        tag = f"tag{i:03d}"
        start = 1000.0 + i
        obs.ledger.record_sent(Sent(tag, tenant, f"k{i}", "chat", start))
        obs.conversations[f"k{i}"] = ConversationTrack(
            tenant,
            "chat",
            start,
            offered_at=start + 0.05,
            answered_at=start + rng.uniform(0.1, 30),
            closed_at=start + 40,
        )
        obs.series.add("messages_sent", i)
        obs.series.set(f"queue:{tenant}/presales", i, float(i % 5))
        if tag != drop:
            obs.ledger.record_delivery(Delivery(tag, tenant, "a1", f"c{i}", 1, "ASSIGNED", start + 0.02))
            obs.series.add("messages_delivered", i)
    for tenant in ("lg-flagship", "lg-shop-01"):
        obs.agents_online[tenant] = [(1000.0, 2)]
        obs.sessions.append(AgentSession(tenant, f"{tenant}-a1", 60.0, 30.0, 10, 3))
        obs.sessions.append(AgentSession(tenant, f"{tenant}-a2", 60.0, 20.0, 8, 3))
    obs.decision_latencies_s = [0.005, 0.007, 0.01]
    return obs


def test_report_files_are_written(tmp_path: Path) -> None:
    scenario = load_scenario("smoke")
    report = build_report(_synthetic_run(), scenario)
    page = write_report(report, tmp_path / "unit")
    assert page.read_text(encoding="utf-8").count("<img") == 5
    for png in ("latency.png", "arrivals_queues.png", "tenant_waits.png", "occupancy.png", "erlang_c.png"):
        assert (tmp_path / "unit" / png).stat().st_size > 1000
    data = json.loads((tmp_path / "unit" / "report.json").read_text())
    assert data["accounting"]["balanced"] is True
    assert data["latency_s"]["end_to_end"]["p50"] > 0
    assert set(data["erlang_c"]) == {"lg-flagship", "lg-shop-01"}
    assert data["isolation"]["small_shops"]["count"] == 1
    assert set(data["isolation"]["named"]) == {"lg-flagship"}


def test_summary_says_when_a_message_was_lost() -> None:
    report = build_report(_synthetic_run(drop="tag007"), load_scenario("smoke"))
    assert report["accounting"]["lost"] == 1
    assert report["accounting"]["examples"]["lost"] == ["tag007"]
    assert "NOT BALANCED" in terminal_summary(report)


def test_the_erlang_c_table_shows_every_figure() -> None:
    report = build_report(_synthetic_run(), load_scenario("smoke"))
    page = html_page(report, [])
    table = page.split("<h2>Measured service level vs Erlang C</h2>", 1)[1].split("<h2>", 1)[0]
    cells = re.findall(r"<td>(.*?)</td>", table)
    assert len(cells) == 2 * 6  # two shops, six figures each
    assert "None" not in cells
    key = f"service_level_{report['run']['service_level_targets_s'][0]:g}s"
    flagship = report["erlang_c"]["lg-flagship"]
    assert f"{flagship['predicted'][key]:.3f}" in cells[:6]
    assert f"{flagship['predicted_at_peak_minute'][key]:.3f}" in cells[:6]


def test_a_message_still_queued_at_cut_off_is_pending_not_lost(tmp_path: Path) -> None:
    obs = _synthetic_run(drop="tag007")
    obs.whereabouts["tag007"] = {
        "tag": "tag007",
        "on_inbound_topic": True,
        "conversation_id": "c7",
        "message_id": "m7",
        "received_at": "+7.0s",
        "last_decision": "queued group=presales agent=- at +7.1s",
        "queued_at_cut_off": True,
    }
    report = build_report(obs, load_scenario("smoke"))
    acc = report["accounting"]
    assert (acc["lost"], acc["pending_at_cut_off"]) == (0, 1)
    assert acc["examples"]["pending_at_cut_off"] == ["tag007"]
    assert acc["lost_whereabouts"] == [] and acc["pending_whereabouts"][0]["tag"] == "tag007"
    summary = terminal_summary(report)
    assert "lost 0  pending at cut-off 1" in summary and "NOT BALANCED" not in summary
    assert "pending at cut-off tag007: received +7.0s in conversation c7" in summary
    write_report(report, tmp_path)
    assert json.loads((tmp_path / "report.json").read_text())["accounting"]["pending_at_cut_off"] == 1
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "<th>pending_at_cut_off</th>" in page and "pending at cut-off tag007" in page


def test_a_message_whose_conversation_was_assigned_is_still_lost() -> None:
    obs = _synthetic_run(drop="tag007")
    obs.whereabouts["tag007"] = {
        "tag": "tag007",
        "on_inbound_topic": True,
        "conversation_id": "c7",
        "last_decision": "assigned group=presales agent=a1 at +7.1s",
        "queued_at_cut_off": False,
    }
    acc = build_report(obs, load_scenario("smoke"))["accounting"]
    assert (acc["lost"], acc["pending_at_cut_off"]) == (1, 0)
    assert acc["lost_whereabouts"][0]["tag"] == "tag007"
