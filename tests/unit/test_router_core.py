"""The pure routing core: classification, candidate chain, capacity rules, queue scoring."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.router.reload import load_routing_file
from switchboard.routing.chain import AgentView, GroupStats, plan, refusal, take
from switchboard.routing.classify import Facts, classify
from switchboard.routing.config import Capacity, TenantRouting
from switchboard.routing.scoring import effective_priority, estimated_wait_s, service_level, stored_score


@pytest.fixture(scope="module")
def tmall(repo_root: Path) -> TenantRouting:
    return load_routing_file(repo_root / "config" / "routing" / "tmall-flagship.yaml")


@pytest.mark.parametrize(
    ("facts", "group", "rule"),
    [
        (Facts(text="我要退货，衣服破了"), "after_sales", "refund-return"),
        (Facts(text="I want a refund please", language="en"), "cross_border", "cross-border"),
        (Facts(text="返品したいです", language="ja"), "cross_border", "cross-border"),
        (Facts(text="快递到哪了？三天没动"), "logistics", "parcel"),
        (Facts(text="你好", dispute_stage="claim_open"), "complaints", "dispute-open"),
        (Facts(text="再不处理我就投诉你们"), "complaints", "complaint-words"),
        (Facts(text="帮我改地址"), "orders", "classifier"),
        (Facts(text="定金什么时候付尾款"), "promotions", "classifier"),
        (Facts(text="这件M码适合170吗 size"), "presales", "classifier"),
        (Facts(text="在吗"), "presales", "no_intent"),
        (Facts(text="我的订单", order_status="refunding"), "after_sales", "refunding-order"),
    ],
)
def test_classification_names_group_and_rule(tmall: TenantRouting, facts: Facts, group: str, rule: str) -> None:
    found = classify(tmall, facts)
    assert (found.group, found.rule) == (group, rule)


def test_boosts_add_channel_tier_urgency_and_dispute(tmall: TenantRouting) -> None:
    calm = classify(tmall, Facts(text="我要退款", channel="email"))
    angry = classify(
        tmall, Facts(text="我要退款 急！", channel="phone", member_tier="88VIP", dispute_stage="claim_open")
    )
    assert calm.priority == 10
    # dispute-open rule (40) + phone 50 + 88VIP 20 + urgency 15 + dispute stage 20
    assert angry.priority == 40 + 50 + 20 + 15 + 20
    assert {"channel:phone+50", "tier:88VIP+20", "urgency+15", "dispute:claim_open+20"} == set(angry.boosts)


def agent(aid: str, groups: str, used: int = 0, cap: int = 3, status: str = "available", idle: int = 0) -> AgentView:
    return AgentView(
        aid,
        status,
        frozenset(groups.split(",")),
        {"chat": cap, "email": 5, "phone": 1},
        1.0,
        {"chat": used, "email": 0, "phone": 0},
        idle,
    )


def test_chain_order_sticky_returning_least_loaded_with_longest_idle_tie(tmall: TenantRouting) -> None:
    agents = [
        agent("busy", "presales", used=2),
        agent("recent", "presales", used=1, idle=2000),
        agent("idle", "presales", used=1, idle=1000),
        agent("away", "presales", status="away"),
        agent("other", "logistics"),
    ]
    result = plan(tmall, "presales", "chat", agents, sticky="busy", returning="recent")
    assert [(c.agent_id, c.step) for c in result.candidates] == [
        ("busy", "sticky"),
        ("recent", "returning"),
        ("idle", "least_loaded"),
    ]
    assert {(v.agent_id, v.reason) for v in result.verdicts} == {("away", "away")}


def test_returning_agent_outside_the_skill_is_passed_over(tmall: TenantRouting) -> None:
    result = plan(tmall, "presales", "chat", [agent("a", "presales"), agent("b", "logistics")], returning="b")
    assert [c.agent_id for c in result.candidates] == ["a"]
    assert ("b", "not_in_skill") in {(v.agent_id, v.reason) for v in result.verdicts}


def test_planned_assignments_spread_a_batch(tmall: TenantRouting) -> None:
    agents = [agent("a", "presales"), agent("b", "presales")]
    chosen = []
    for _ in range(4):
        first = plan(tmall, "presales", "chat", agents).candidates[0]
        chosen.append(first.agent_id)
        take(next(a for a in agents if a.agent_id == first.agent_id), "chat", 1)
    assert sorted(chosen) == ["a", "a", "b", "b"]


def test_overflow_ring_fires_on_estimated_wait(tmall: TenantRouting) -> None:
    agents = [agent("p", "presales", used=3), agent("g", "general")]
    quiet = plan(tmall, "presales", "chat", agents, stats={"presales": GroupStats(queue_length=0)})
    assert quiet.candidates == []
    busy = plan(tmall, "presales", "chat", agents, stats={"presales": GroupStats(queue_length=10)})
    assert [(c.agent_id, c.step) for c in busy.candidates] == [("g", "overflow:general")]
    assert busy.groups == ["presales", "general"]


def test_capacity_rules_phone_blocks_units_and_multiplier() -> None:
    caps = Capacity(mode="units", units_per_agent=6, unit_weights={"chat": 2, "email": 1, "phone": 6})
    on_call = AgentView(
        "a",
        "available",
        frozenset({"g"}),
        {"chat": 5, "email": 5, "phone": 1},
        1.0,
        {"chat": 0, "email": 0, "phone": 1},
    )
    assert refusal(on_call, "chat", Capacity()) == "phone_call_blocks"
    chatty = AgentView(
        "b",
        "available",
        frozenset({"g"}),
        {"chat": 5, "email": 5, "phone": 1},
        1.0,
        {"chat": 3, "email": 0, "phone": 0},
    )
    assert refusal(chatty, "chat", caps) == "units_exhausted"
    assert refusal(chatty, "chat", Capacity()) is None
    surge = AgentView("c", "available", frozenset({"g"}), {"chat": 2}, 1.5, {"chat": 2})
    assert surge.capacity("chat") == 3
    assert refusal(surge, "chat", Capacity()) is None


def test_aging_lets_a_long_waiter_overtake_higher_priority() -> None:
    old_low = stored_score(enqueued_ms=0, priority=0, aging_s_per_point=30)
    new_high = stored_score(enqueued_ms=10 * 60_000, priority=10, aging_s_per_point=30)
    assert old_low < new_high  # waited 10 min = 20 points > 10 points of priority
    assert effective_priority(0, 5, 30, 60_000) == pytest.approx(7.0)
    assert estimated_wait_s(9, 5, 60) == pytest.approx(120)
    assert service_level([10, 20, 40, 50], 30) == 0.5
    assert service_level([], 30) is None


def test_conversations_enqueued_in_the_same_ms_are_ordered_by_arrival() -> None:
    now = 1_765_000_000_000
    first, second = (stored_score(now, 0, 30, arrived_ms=now - late) for late in (40, 3))
    assert first < second < stored_score(now + 1, 0, 30, arrived_ms=now + 1)
    # Under a ms in all: it orders nothing else. A priority point and a ms of enqueue time still weigh as before.
    assert stored_score(now, 0, 30) <= first < second < stored_score(now, 0, 30) + 1
    assert stored_score(now, 1, 30, arrived_ms=now) < stored_score(now, 0, 30, arrived_ms=now - 5000)
    # An adapter's clock ahead of the router's, or an arrival long before: the fraction's ends, never beyond.
    assert stored_score(now, 0, 30, arrived_ms=now + 60_000) == pytest.approx(now + 0.999)
    assert stored_score(now, 0, 30, arrived_ms=now - 60_000) == now
