"""Service figures of a load-test run from routing events: deflection, abandonment, service level, responses."""

from __future__ import annotations

import math

import pytest

from switchboard_tools.loadgen.service import (
    EventRecord,
    abandonment,
    deflection,
    histories,
    is_deflected,
    needing_agents,
    response_times,
    service_figures,
    service_level,
)

T0 = 1_000.0


def ev(cid: str, kind: str, at: float, channel: str = "chat", **fields: object) -> EventRecord:
    return EventRecord(conversation_id=cid, type=kind, at=T0 + at, channel=channel, enqueued_at=T0, **fields)  # type: ignore[arg-type]


def run_events() -> list[EventRecord]:
    """Seven conversations, one of each fate."""
    return [
        # c1: answered by the bot, nothing after: deflected.
        ev("c1", "answered_by_bot", 0.4, bot_template="order_status_zh"),
        # c2: answered by the bot, then 转人工: queued and assigned after 12 s, not deflected.
        ev("c2", "answered_by_bot", 0.5, bot_template="order_status_zh"),
        ev("c2", "queued", 6.0, group="orders"),
        ev("c2", "assigned", 12.0, group="orders", agent_id="a1"),
        # c3: queued, offered, accepted after 3 s.
        ev("c3", "queued", 0.1, group="presales"),
        ev("c3", "offered", 2.0, group="presales", agent_id="a2"),
        ev("c3", "accepted", 3.0, group="presales", agent_id="a2"),
        # c4: a caller who hung up after 40 s.
        ev("c4", "queued", 0.1, channel="phone", group="orders"),
        ev("c4", "abandoned", 40.0, channel="phone", wait_ms=40_000),
        # c5: a chat customer who left after 25 s and never came back.
        ev("c5", "queued", 0.1, group="orders"),
        ev("c5", "abandoned", 25.0, wait_ms=25_000),
        # c6: left after 10 s, came back and wrote: routed with its original arrival, assigned at 30 s.
        ev("c6", "queued", 0.1, group="orders"),
        ev("c6", "abandoned", 10.0, wait_ms=10_000),
        ev("c6", "queued", 20.0, group="orders"),
        ev("c6", "assigned", 30.0, group="orders", agent_id="a1"),
        # c7: still waiting when the run ended.
        ev("c7", "queued", 0.1, channel="email", group="aftersales"),
    ]


def test_deflected_means_answered_by_the_bot_and_never_routed_after() -> None:
    convs = histories(run_events())
    assert is_deflected(convs["c1"])
    assert not is_deflected(convs["c2"])
    assert not is_deflected(convs["c3"])
    # A bot answer after the conversation was already routed (e.g. a second answer) does not undo the routing.
    assert not is_deflected([ev("x", "answered_by_bot", 0), ev("x", "offered", 1), ev("x", "answered_by_bot", 2)])
    figures = deflection(convs)
    assert figures["conversations"] == 7
    assert figures["answered_by_bot"] == 2
    assert figures["deflected"] == 1
    assert figures["escalated_after_bot"] == 1
    assert figures["deflection_rate"] == pytest.approx(1 / 7)
    assert figures["by_template"] == {"order_status_zh": 2}


def test_service_level_counts_abandoned_and_waiting_in_the_denominator() -> None:
    outcomes = needing_agents(histories(run_events()))
    # The deflected conversation never needed an agent.
    assert [o.conversation_id for o in outcomes] == ["c2", "c3", "c4", "c5", "c6", "c7"]
    sl = service_level(outcomes, (5.0, 20.0))
    assert sl["needed_agent"] == 6
    assert sl["answered"] == 3  # c2 (12 s, from its original arrival), c3 (3 s), c6 (30 s)
    assert sl["abandoned"] == 2  # c4, c5; c6 came back and was answered
    assert sl["unanswered_at_end"] == 1  # c7
    assert sl["service_level_5s"] == pytest.approx(1 / 6)
    assert sl["service_level_20s"] == pytest.approx(2 / 6)
    assert sl["asa_s"] == pytest.approx((12 + 3 + 30) / 3)


def test_abandonment_by_channel_with_waits() -> None:
    figures = abandonment(needing_agents(histories(run_events())))
    assert figures["all"]["abandoned"] == 2
    assert figures["all"]["abandonment_rate"] == pytest.approx(2 / 6)
    assert figures["phone"]["abandoned"] == 1
    assert figures["phone"]["abandonment_rate"] == 1.0
    assert figures["phone"]["wait_p50_s"] == 40.0
    assert figures["chat"]["abandoned"] == 1
    assert figures["chat"]["abandonment_rate"] == pytest.approx(1 / 4)  # c2, c3, c5, c6
    assert figures["chat"]["wait_mean_s"] == 25.0
    assert figures["email"]["abandoned"] == 0
    assert math.isnan(figures["email"]["wait_p50_s"])


def test_an_abandoned_event_without_wait_ms_falls_back_to_the_time_since_arrival() -> None:
    outcomes = needing_agents(histories([ev("z", "queued", 0), ev("z", "abandoned", 7.5)]))
    assert outcomes[0].abandoned_wait_s == 7.5


def test_response_times_first_and_all_with_targets() -> None:
    events = [
        ev("c3", "responded", 5, group="presales", response_ms=2_000, first_response=True, response_target_s=18),
        ev("c3", "responded", 9, group="presales", response_ms=30_000, response_target_s=18),
        ev("c6", "responded", 31, group="orders", response_ms=20_000, first_response=True, response_target_s=180),
        ev("c2", "responded", 13, group="orders", response_ms=1_000, first_response=True),  # no target given
    ]
    figures = response_times(events, reference_s=18)
    first = figures["first"]
    assert isinstance(first, dict)
    assert first["count"] == 3
    assert first["p50_s"] == 2.0
    assert first["mean_s"] == pytest.approx(23 / 3)
    # Within the target in force: 2 s ≤ 18 s, 20 s ≤ 180 s; the event without a target is left out.
    assert first["within_target_in_force"] == 1.0
    # On the reference yardstick 20 s is late.
    assert first["within_18s"] == pytest.approx(2 / 3)
    everything = figures["all"]
    assert isinstance(everything, dict)
    assert everything["count"] == 4
    assert everything["within_target_in_force"] == pytest.approx(2 / 3)
    assert figures["targets_in_force_s"] == [18, 180]
    assert set(figures["first_by_group"]) == {"presales", "orders"}  # type: ignore[arg-type]


def test_service_figures_say_which_event_types_a_run_never_saw() -> None:
    figures = service_figures(run_events(), (20.0,), 18.0)
    assert figures["no_events_of"] == ["responded"]
    assert service_figures([], (20.0,), 18.0)["no_events_of"] == ["answered_by_bot", "abandoned", "responded"]
