"""The service section of a run's report and the A/B comparison of a profile-off and a profile-on run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from switchboard_tools.loadgen.accounting import Delivery, Sent
from switchboard_tools.loadgen.compare import comparison, comparison_text, write_comparison
from switchboard_tools.loadgen.observations import ConversationTrack, Observations
from switchboard_tools.loadgen.report import build_report, finite, terminal_summary
from switchboard_tools.loadgen.run import compare_folders
from switchboard_tools.loadgen.scenario import load_scenario
from switchboard_tools.loadgen.service import EventRecord

T0 = 1_000.0


def _run(profile: str, bot: bool) -> Observations:
    """Ten chat conversations; with the bot, four are answered by it (one of them then asks for a human)."""
    obs = Observations(run_name=f"unit-{profile}", scenario="double11", seed=1111, started_at=T0, ended_at=T0 + 60)
    obs.profile = profile
    for i in range(10):
        cid, tag, start = f"c{i}", f"tag{i:07d}", T0 + i
        obs.ledger.record_sent(Sent(tag, "lg-flagship", f"k{i}", "chat", start))
        obs.conversations[cid] = ConversationTrack("lg-flagship", "chat", start)
        deflected = bot and i < 3
        if bot and i < 4:
            obs.events.append(EventRecord(cid, "answered_by_bot", start + 0.3, "chat", bot_template="order_status"))
            obs.behaviour["asked_human"] += i == 3
        if deflected:
            continue
        obs.events.append(EventRecord(cid, "queued", start + 0.1, "chat", group="orders", enqueued_at=start))
        if i == 9:  # the customer closed the widget
            obs.events.append(EventRecord(cid, "abandoned", start + 30, "chat", enqueued_at=start, wait_ms=30_000))
            obs.behaviour["gave_up:chat"] += 1
            continue
        wait = 5.0 if bot else 15.0
        obs.events.append(EventRecord(cid, "assigned", start + wait, "chat", group="orders", agent_id="a1"))
        response_ms, target = (2_000, 18) if bot else (25_000, 180)
        obs.events.append(
            EventRecord(cid, "responded", start + wait + 2, "chat", group="orders", response_ms=response_ms,
                        first_response=True, response_target_s=target)
        )  # fmt: skip
        obs.conversations[cid].answered_at = start + wait
        obs.ledger.record_delivery(Delivery(tag, "lg-flagship", "a1", cid, 1, "assigned", start + wait))
    return obs


def _not_for_agents(obs: Observations) -> None:
    """What the driver finds out from the probe: undelivered tags of conversations left or answered by the bot."""
    last = {e.conversation_id: e.type for e in obs.events}
    for tag in obs.ledger.undelivered():
        cid = f"c{int(tag[3:])}"
        obs.whereabouts[tag] = {"tag": tag, "on_inbound_topic": True, "not_for_agents": last[cid]}


def _reports() -> tuple[dict[str, object], dict[str, object]]:
    scenario = load_scenario("double11")
    off, on = _run("off", bot=False), _run("on", bot=True)
    for obs in (off, on):
        _not_for_agents(obs)
    return build_report(off, scenario), build_report(on, scenario)


def test_a_runs_report_has_the_service_figures_and_balances_without_agents_for_left_or_deflected() -> None:
    _, on = _reports()
    accounting = on["accounting"]
    assert isinstance(accounting, dict)
    assert (accounting["answered_by_bot"], accounting["abandoned_by_customer"], accounting["lost"]) == (3, 1, 0)
    assert accounting["balanced"] is True
    service = on["service"]
    assert isinstance(service, dict)
    assert service["deflection"]["deflected"] == 3
    assert service["service_level"]["needed_agent"] == 7
    # The customers' own view of waits leaves the deflected conversations out too.
    assert on["answer"]["conversations"] == 7  # type: ignore[index]
    text = terminal_summary(on)
    assert "deflection  3 deflected of 10 conversations (30.0%)" in text
    assert "abandoned   1 (14.3%" in text
    assert "customers   gave up: chat 1; asked for a human after the bot: 1" in text


def test_the_comparison_puts_both_runs_side_by_side(tmp_path: Path) -> None:
    off, on = _reports()
    cmp = comparison(off, on)
    assert cmp["same_seed"] is True
    figures = {f["figure"]: f for f in cmp["figures"]}
    assert (
        figures["deflected (bot, never routed to an agent)"]["off"],
        figures["deflected (bot, never routed to an agent)"]["on"],
    ) == (0, 3)
    sl = figures["service level within 18s (abandoned included)"]
    assert (sl["off"], sl["on"]) == (0.9, 6 / 7)
    assert sl["delta"] == "-4.3 pt"
    first = figures["first response within 18s"]
    assert (first["off"], first["on"]) == (0.0, 1.0)
    assert figures["first response within target in force"]["off"] == 1.0  # 25 s is within the off run's 180 s
    assert figures["abandonment rate, chat"]["on"] == 1 / 7
    text = comparison_text(cmp)
    assert "deflection rate" in text and "30.0%" in text and "+30.0 pt" in text
    page = write_comparison(cmp, tmp_path / "ab")
    assert "profile on" in page.read_text(encoding="utf-8")
    assert json.loads((tmp_path / "ab" / "compare.json").read_text())["runs"] == {"off": "unit-off", "on": "unit-on"}


def test_two_report_folders_already_written_can_be_compared(tmp_path: Path) -> None:
    off, on = _reports()
    for name, report in (("off", off), ("on", on)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(finite(report), default=str))
    folder, text = compare_folders(tmp_path / "off", tmp_path / "on", tmp_path / "out")
    assert folder.parent == tmp_path / "out" and folder.name.startswith("double11-s1111-ab-")
    assert "deflection rate" in text
    assert json.loads((folder / "compare.json").read_text())["runs"] == {"off": "unit-off", "on": "unit-on"}
    with pytest.raises(ValueError, match="not profile off"):
        compare_folders(tmp_path / "on", tmp_path / "off", tmp_path / "out")
