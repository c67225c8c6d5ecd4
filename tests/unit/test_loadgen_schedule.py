"""Scenario files and the seeded schedule: the same seed gives the same run, bounded in count and time."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from pydantic import ValidationError

from switchboard_tools.loadgen.scenario import INTENTS, Scenario, load_scenario
from switchboard_tools.loadgen.schedule import build_schedule


def test_shipped_scenarios_load() -> None:
    for name in ("smoke", "double11"):
        scenario = load_scenario(name)
        assert set(scenario.intents) == set(INTENTS)
        for intent in scenario.intents.values():
            assert {"zh", "en"} <= set(intent.texts)


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    scenario = load_scenario("smoke")
    first, again, other = build_schedule(scenario, 42), build_schedule(scenario, 42), build_schedule(scenario, 43)
    assert first == again
    assert first.conversations != other.conversations


def test_schedule_is_bounded_in_count_and_time() -> None:
    scenario = load_scenario("double11")
    capped = scenario.model_copy(update={"limits": scenario.limits.model_copy(update={"max_conversations": 50})})
    schedule = build_schedule(capped)
    assert len(schedule.conversations) == 50
    assert schedule.truncated
    full = build_schedule(scenario)
    assert all(c.start_s < scenario.duration_s for c in full.conversations)
    assert len(full.conversations) <= scenario.limits.max_conversations


def test_spike_raises_arrivals_twentyfold_and_decays() -> None:
    arrivals = load_scenario("double11").arrivals
    spike = arrivals.spike
    assert spike is not None
    base = arrivals.rate(0.0)
    assert arrivals.rate(spike.at_s + spike.ramp_s) == pytest.approx(base * 20)
    assert arrivals.rate(spike.at_s + spike.ramp_s + 5 * spike.decay_s) < base * 1.2


def test_mixes_follow_the_scenario() -> None:
    scenario = load_scenario("double11")
    schedule = build_schedule(scenario)
    n = len(schedule.conversations)
    chat = sum(1 for c in schedule.conversations if c.channel == "chat") / n
    flagship = sum(1 for c in schedule.conversations if c.tenant_id == "lg-flagship") / n
    assert chat == pytest.approx(0.75, abs=0.04)
    assert flagship == pytest.approx(0.5, abs=0.04)
    tags = [m.tag for c in schedule.conversations for m in c.messages]
    assert len(tags) == len(set(tags))


def test_shift_change_replaces_leavers_with_newcomers() -> None:
    scenario = load_scenario("smoke")
    schedule = build_schedule(scenario)
    flagship = [a for a in schedule.agents if a.tenant_id == "lg-flagship"]
    leaving = [a for a in flagship if a.off_s is not None]
    joining = [a for a in flagship if a.on_s > 0]
    assert len(leaving) == len(joining) == 2
    assert all(a.on_s < leaving[0].off_s for a in joining if leaving[0].off_s is not None)


def test_unknown_intent_is_refused() -> None:
    data = load_scenario("smoke").model_dump()
    data["intents"]["gossip"] = {"weight": 1, "texts": {"zh": ["?"], "en": ["?"]}}
    with pytest.raises(ValidationError, match="unknown intents"):
        Scenario.model_validate(data)


def test_order_questions_carry_an_order_id_and_some_ask_for_a_human() -> None:
    scenario = load_scenario("double11")
    schedule = build_schedule(scenario)
    orders = [c for c in schedule.conversations if c.intent == "order_status"]
    assert orders and all(len(c.order_id) == 19 and c.order_id.isdigit() for c in orders)
    assert all(c.order_id in c.messages[0].text for c in orders)
    assert all(len(c.messages) == 1 for c in orders if c.channel == "chat")  # the intent's own message count
    assert all(not c.order_id for c in schedule.conversations if c.intent != "order_status")
    asking = [c for c in orders if c.ask_human is not None]
    # Only chat customers ask, about a quarter of those with an order question.
    assert all(c.channel == "chat" for c in asking)
    chats = [c for c in orders if c.channel == "chat"]
    assert len(asking) / len(chats) == pytest.approx(scenario.conversation.ask_human_share, abs=0.08)
    texts = {t for lines in scenario.conversation.ask_human_texts.values() for t in lines}
    assert {c.ask_human.text for c in asking if c.ask_human is not None} <= texts
    tags = [t for c in schedule.conversations for t in c.tags]
    assert len(tags) == len(set(tags))


def test_only_callers_and_widget_customers_leave_a_queue() -> None:
    scenario = load_scenario("double11")
    patience = scenario.conversation.leave_after_s
    assert patience is not None
    for conv in build_schedule(scenario).conversations:
        leaves = conv.channel == "phone" or (conv.channel == "chat" and conv.entry == "widget")
        assert (conv.leave_after_s is not None) == leaves, conv
        if conv.leave_after_s is not None:
            assert patience.min <= conv.leave_after_s <= patience.max


def test_teams_deal_the_flagships_agents_and_newcomers_join_a_leavers_team() -> None:
    scenario = load_scenario("double11")
    schedule = build_schedule(scenario)
    teams = [tuple(t) for t in scenario.tenants[0].teams]
    flagship = [a for a in schedule.agents if a.tenant_id == "lg-flagship"]
    assert {a.groups for a in flagship} == set(teams)
    assert all(a.groups == () for a in schedule.agents if a.tenant_id != "lg-flagship")
    newcomers = [a for a in flagship if a.on_s > 0]
    leavers = [a for a in flagship if a.off_s is not None]
    assert sorted(a.groups for a in newcomers) == sorted(a.groups for a in leavers)


def test_the_profile_off_run_has_the_same_schedule_without_the_operator() -> None:
    schedule = build_schedule(load_scenario("double11"))
    assert len(schedule.surges) == 21
    assert all(s.switch == "schedule" and s.body["pools"] for s in schedule.surges)
    off = schedule.without_surge()
    assert off.surges == ()
    assert off.conversations == schedule.conversations and off.agents == schedule.agents


def test_a_profile_gives_its_capacity_factor_once() -> None:
    data = load_scenario("smoke").model_dump()
    data["operator"]["definition"] = {"tenant_factor": 2.0}
    with pytest.raises(ValidationError, match="give the capacity factor once"):
        Scenario.model_validate(data)
    del data["operator"]["capacity_multiplier"]
    assert Scenario.model_validate(data).operator.tenant_factor == 2.0  # type: ignore[union-attr]


def test_member_tiers_follow_their_shares_and_leave_the_rest_of_the_schedule_as_it_was() -> None:
    scenario = load_scenario("double11")
    plain = build_schedule(scenario.model_copy(update={"member_tiers": {}}))
    tiered = build_schedule(scenario.model_copy(update={"member_tiers": {"88VIP": 0.1, "gold": 0.2}}))
    n = len(tiered.conversations)
    share = Counter(c.member_tier for c in tiered.conversations)
    assert share["88VIP"] / n == pytest.approx(0.1, abs=0.03) and share["gold"] / n == pytest.approx(0.2, abs=0.03)
    assert [dataclasses.replace(c, member_tier="") for c in tiered.conversations] == list(plain.conversations)
    assert all(c.member_tier == "" for c in plain.conversations)
    with pytest.raises(ValidationError):
        scenario.model_validate({**scenario.model_dump(), "member_tiers": {"a": 0.7, "b": 0.6}})
