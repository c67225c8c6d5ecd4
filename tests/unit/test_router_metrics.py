"""The router's domain metrics from published decisions (pure: decisions in, samples out)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from switchboard.router.contract import Decision
from switchboard.router.metrics import Published, observe
from switchboard.routing.config import load_config_file

CONFIG = load_config_file(Path(__file__).resolve().parents[2] / "config" / "routing" / "shop-b.yaml")
T = CONFIG.tenant
NOW = 1_000_000


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _delta(name: str, labels: dict[str, str], published: list[Published]) -> float:
    before = _value(name, **labels)
    observe(CONFIG, published, NOW)
    return _value(name, **labels) - before


def test_a_first_offer_and_a_first_assignment_are_timed_from_the_arrival_re_offers_are_not() -> None:
    group = CONFIG.skill_groups[0].name
    where = {"tenant": T, "group": group, "channel": "email"}
    first = Decision("offered", conv="c", group=group, channel="email", enq=NOW - 12_000, first=True)
    again = Decision("offered", conv="c", group=group, channel="email", enq=NOW - 40_000)
    assert _delta("sb_time_to_offer_seconds_sum", where, [Published(first), Published(again)]) == 12
    accepted = Decision("accepted", conv="c", group=group, channel="email", enq=NOW - 45_000, first=True)
    assert _delta("sb_time_to_assign_seconds_bucket", {**where, "le": "45.0"}, [Published(accepted)]) == 1
    # Taken by an overflow ring's agent: timed for the conversation's own group.
    overflowed = Decision("assigned", conv="d", group="ring", home=group, channel="email", enq=NOW - 1_000, first=True)
    assert _delta("sb_time_to_assign_seconds_count", where, [Published(overflowed)]) == 1


def test_misses_abandonments_and_the_bots_outcomes_are_counted_with_bounded_groups() -> None:
    group = CONFIG.skill_groups[0].name
    missed = [Published(Decision("timed_out", conv="c", group=group)), Published(Decision("declined", group=group))]
    assert _delta("sb_offers_missed_total", {"tenant": T, "group": group}, missed) == 2
    gone = Decision("abandoned", conv="c", group="made-up", channel="phone", enq=NOW - 5_000)
    assert _delta("sb_abandoned_total", {"tenant": T, "group": "none", "channel": "phone"}, [Published(gone)]) == 1
    answered = [Published(Decision("answered_by_bot", conv="b", group=group, channel="chat"))]
    assert _delta("sb_bot_answered_total", {"tenant": T, "outcome": "answered"}, answered) == 1
    escalated = [
        Published(Decision("queued", conv="b", group=group, channel="chat"), ("bot:timeout",)),
        Published(Decision("queued", conv="e", group=group, channel="chat"), ("returned_after_abandoning",)),
        Published(Decision("queued", conv="b", group="ring", overflow="ring"), ("bot:timeout",)),
    ]
    assert _delta("sb_bot_answered_total", {"tenant": T, "outcome": "escalated"}, escalated) == 1
    assert _delta("sb_router_decisions_total", {"type": "queued", "tenant": T, "group": "none"}, escalated) == 1, (
        "a group the config does not name is counted as none"
    )
