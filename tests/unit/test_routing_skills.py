"""Skills (routing/skills.py): proficiency levels, bullseye rings, languages strict then relaxed, channels."""

from __future__ import annotations

import pytest

from switchboard.routing.chain import AgentIndex, AgentView, GroupStats, plan, rings_due
from switchboard.routing.commands import transfer_group_refusal
from switchboard.routing.config import ConfigError, OverflowRing, TenantRouting, parse_config
from switchboard.routing.drain import QueuedConversation, drain_order, need_of
from switchboard.routing.skills import (
    DEFAULT_LEVEL,
    language_relax_after_s,
    level_in,
    min_level,
    parse_proficiency,
    requirement,
    skill_refusal,
)
from switchboard.routing.surge import SurgeProfile, effective_config

CONFIG = """
tenant: skills
default_group: presales
default_groups: {phone: complaints}
skills:
  proficiency_weight: 0.25
  language_relax_after_s: 120
skill_groups:
  - name: presales
    channels: [chat, email]
  - name: complaints
    languages: [zh, en]
    skill_levels:
      - {min_level: 4}
      - {min_level: 2, after_s: 30}
      - {min_level: 1, after_s: 90}
  - name: cross_border
    languages: [en, ja, es]
    language_relax_after_s: 60
  - name: strict
    languages: [ja]
    language_relax_after_s: null
"""


@pytest.fixture(scope="module")
def config() -> TenantRouting:
    return parse_config(CONFIG, "skills.yaml")


def test_proficiency_field_round_trips_and_broken_entries_are_left_out() -> None:
    assert parse_proficiency("presales:5,orders:3") == {"presales": 5, "orders": 3}
    assert parse_proficiency("presales:9,orders:x,:2,nolevel,after_sales: 2") == {"after_sales": 2}
    assert parse_proficiency("") == {}
    assert level_in({"presales": 5}, "presales") == 5
    assert level_in({"presales": 5}, "orders") == DEFAULT_LEVEL == 3


def test_agent_view_reads_proficiency_and_languages_from_the_hash() -> None:
    view = AgentView.from_hash(
        "mei", {b"status": b"available", b"proficiency": b"complaints:5,presales:2", b"languages": b"zh, JA"}
    )
    assert view.proficiency == {"complaints": 5, "presales": 2}
    assert view.languages == frozenset({"zh", "ja"})
    assert AgentView.from_hash("old", {b"status": b"available"}).proficiency == {}


@pytest.mark.parametrize(("waited_s", "level"), [(0, 4), (29.9, 4), (30, 2), (89, 2), (90, 1), (10_000, 1)])
def test_bullseye_rings_relax_with_waiting(config: TenantRouting, waited_s: float, level: int) -> None:
    assert min_level(config.group("complaints"), waited_s) == level


def test_a_group_without_rings_takes_any_level(config: TenantRouting) -> None:
    assert min_level(config.group("presales"), 0) == 1


def test_language_is_strict_then_relaxed_by_the_group_or_the_tenant(config: TenantRouting) -> None:
    cross = config.group("cross_border")
    assert language_relax_after_s(config, cross) == 60
    assert language_relax_after_s(config, config.group("complaints")) == 120  # the tenant's
    assert language_relax_after_s(config, config.group("strict")) is None  # null: never, over the tenant's
    early = requirement(config, cross, "chat", "ja", 10)
    assert (early.language, early.relaxed) == ("ja", False)
    late = requirement(config, cross, "chat", "ja", 60)
    assert (late.language, late.relaxed) == ("", True)
    assert late.reasons() == ["language_relaxed:cross_border"]
    assert requirement(config, config.group("strict"), "chat", "ja", 86_400).language == "ja"


def test_a_language_the_group_does_not_list_asks_nothing(config: TenantRouting) -> None:
    cross = config.group("cross_border")
    assert requirement(config, cross, "chat", "ru", 0).language == ""
    assert requirement(config, cross, "chat", "", 0).language == ""
    assert requirement(config, cross, "chat", "EN", 0).language == "en"


def test_refusals_name_level_language_and_channel(config: TenantRouting) -> None:
    complaints, cross, presales = config.group("complaints"), config.group("cross_border"), config.group("presales")
    fresh = requirement(config, complaints, "chat", "zh", 0)
    assert fresh.reasons() == ["min_level:complaints:4"]
    assert skill_refusal(fresh, complaints, {"complaints": 3}, {"zh"}) == "below_level:4"
    assert skill_refusal(fresh, complaints, {"complaints": 5}, {"zh"}) is None
    assert skill_refusal(fresh, complaints, {}, {"zh"}) == "below_level:4"  # DEFAULT_LEVEL 3
    later = requirement(config, complaints, "chat", "zh", 45)
    assert skill_refusal(later, complaints, {}, {"zh"}) is None
    ja = requirement(config, cross, "chat", "ja", 0)
    assert skill_refusal(ja, cross, {}, {"en"}) == "language:ja"
    assert skill_refusal(ja, cross, {}, {"en", "ja"}) is None
    # An agent without languages speaks the group's.
    assert skill_refusal(ja, cross, {}, set()) is None
    assert skill_refusal(requirement(config, complaints, "chat", "en", 100), complaints, {}, set()) is None
    phone = requirement(config, presales, "phone", "zh", 0)
    assert skill_refusal(phone, presales, {"presales": 5}, {"zh"}) == "channel:phone"


@pytest.mark.parametrize(
    ("rings", "error"),
    [
        ("[{min_level: 3, after_s: 10}]", "applies from the start"),
        ("[{min_level: 3}, {min_level: 4, after_s: 10}]", "only relax"),
        ("[{min_level: 3}, {min_level: 2, after_s: 0}]", "in order of after_s"),
        ("[{min_level: 6}]", "less than or equal to 5"),
    ],
)
def test_rings_that_do_not_relax_are_rejected_with_their_line(rings: str, error: str) -> None:
    text = f"tenant: t\ndefault_group: g\nskill_groups:\n  - name: g\n    skill_levels: {rings}\n"
    with pytest.raises(ConfigError, match=rf"t\.yaml:5: skill_groups\.0\.skill_levels.*{error}"):
        parse_config(text, "t.yaml")


def test_language_codes_of_groups_are_checked() -> None:
    text = "tenant: t\ndefault_group: g\nskill_groups:\n  - name: g\n    languages: [zh, other]\n"
    with pytest.raises(ConfigError, match=r"t\.yaml:5: skill_groups\.0\.languages.*'other'"):
        parse_config(text, "t.yaml")


def test_proficiency_weight_is_bounded() -> None:
    text = "tenant: t\ndefault_group: g\nskills: {proficiency_weight: 2}\nskill_groups:\n  - name: g\n"
    with pytest.raises(ConfigError, match=r"t\.yaml:3: skills\.proficiency_weight"):
        parse_config(text, "t.yaml")


def view(
    aid: str,
    groups: str,
    *,
    used: int = 0,
    cap: int = 4,
    levels: dict[str, int] | None = None,
    languages: str = "",
    idle: int = 0,
) -> AgentView:
    return AgentView(
        aid,
        "available",
        frozenset(groups.split(",")),
        {"chat": cap, "email": 5, "phone": 1},
        1.0,
        {"chat": used, "email": 0, "phone": 0},
        idle,
        proficiency=levels or {},
        languages=frozenset(languages.split(",")) if languages else frozenset(),
    )


def weighted(config: TenantRouting, weight: float) -> TenantRouting:
    return config.model_copy(update={"skills": config.skills.model_copy(update={"proficiency_weight": weight})})


def test_weight_zero_is_pure_least_loaded_and_a_weight_prefers_the_proficient(config: TenantRouting) -> None:
    agents = [
        view("novice", "presales", used=1, levels={"presales": 1}),
        view("expert", "presales", used=2, levels={"presales": 5}),
        view("middle", "presales", used=2),  # DEFAULT_LEVEL
    ]
    pure = plan(weighted(config, 0), "presales", "chat", agents, limit=3)
    assert [c.agent_id for c in pure.candidates] == ["novice", "expert", "middle"]  # equal load, idle: by id
    # 0.25 → load − 0.25·(level−1)/4: novice 0.25, expert 0.5 − 0.25 = 0.25 (earlier idle tie: id), middle 0.375
    prefer = plan(weighted(config, 0.25), "presales", "chat", agents, limit=3)
    assert [c.agent_id for c in prefer.candidates] == ["expert", "novice", "middle"]
    strong = plan(weighted(config, 1.0), "presales", "chat", agents, limit=3)
    assert [c.agent_id for c in strong.candidates] == ["expert", "middle", "novice"]
    # Comparable load only: a full expert never gets more than its slots.
    full = [view("expert", "presales", used=4, levels={"presales": 5}), view("novice", "presales", used=3)]
    assert [c.agent_id for c in plan(weighted(config, 1.0), "presales", "chat", full).candidates] == ["novice"]


def test_a_batch_with_a_weight_still_spreads_planned_work(config: TenantRouting) -> None:
    index = AgentIndex.of([view("expert", "presales", levels={"presales": 5}), view("novice", "presales")])
    chosen = []
    for _ in range(9):
        found = plan(weighted(config, 1.0), "presales", "chat", index).candidates
        if not found:
            break
        chosen.append(found[0].agent_id)
        index.take(found[0].agent_id, "chat", 1)
    # Weight 1: the expert's lead over a level-3 agent is 1·(5−3)/4 = half the load, two of its four slots; then
    # they alternate (ties to the one idle longer) and neither gets more than its slots.
    assert chosen == ["expert", "expert", "novice", "expert", "expert", "novice", "novice", "novice"]


def test_level_rings_refuse_below_the_level_in_force_and_relax_with_the_wait(config: TenantRouting) -> None:
    agents = [view("junior", "complaints", levels={"complaints": 2}), view("senior", "complaints", used=3, cap=4)]
    senior_full = [agents[0], view("senior", "complaints", used=4, cap=4, levels={"complaints": 5})]
    fresh = plan(config, "complaints", "chat", senior_full, waited_s=0)
    assert fresh.candidates == []
    assert ("junior", "below_level:4") in {(v.agent_id, v.reason) for v in fresh.verdicts}
    assert fresh.needs["complaints"].min_level == 4
    later = plan(config, "complaints", "chat", senior_full, waited_s=31)
    assert [c.agent_id for c in later.candidates] == ["junior"]
    assert later.needs["complaints"].reasons() == ["min_level:complaints:2"]
    # The senior (DEFAULT_LEVEL 3 without a level here) is below 4 too.
    assert plan(config, "complaints", "chat", agents, waited_s=0).candidates == []


def test_a_japanese_message_waits_for_a_japanese_speaker_until_the_wait_relaxes_it(config: TenantRouting) -> None:
    agents = [view("anna", "cross_border", languages="en"), view("kenji", "cross_border", used=3, languages="en,ja")]
    strict = plan(config, "cross_border", "chat", agents, language="ja", waited_s=5)
    assert [c.agent_id for c in strict.candidates] == ["kenji"]  # more loaded, but speaks it
    busy = [agents[0], view("kenji", "cross_border", used=4, languages="en,ja")]
    waiting = plan(config, "cross_border", "chat", busy, language="ja", waited_s=5)
    assert waiting.candidates == []
    assert {(v.agent_id, v.reason) for v in waiting.verdicts} == {("anna", "language:ja"), ("kenji", "at_capacity")}
    relaxed = plan(config, "cross_border", "chat", busy, language="ja", waited_s=60)
    assert [c.agent_id for c in relaxed.candidates] == ["anna"]
    assert relaxed.needs["cross_border"].relaxed
    assert [c.agent_id for c in plan(config, "cross_border", "chat", agents, language="en").candidates] == [
        "anna",
        "kenji",
    ]


def test_sticky_and_returning_agents_must_meet_the_requirement_too(config: TenantRouting) -> None:
    agents = [view("anna", "cross_border", languages="en"), view("kenji", "cross_border", used=2, languages="ja")]
    found = plan(config, "cross_border", "chat", agents, sticky="anna", language="ja")
    assert [(c.agent_id, c.step) for c in found.candidates] == [("kenji", "least_loaded")]
    assert ("anna", "sticky", "language:ja") in {(v.agent_id, v.step, v.reason) for v in found.verdicts}


CHANNELS_CONFIG = """
tenant: channels
default_group: orders
skill_groups:
  - name: orders
    overflow:
      - {group: chat_desk, after_s: 0, estimated_wait_over_s: 0}
      - {group: general, after_s: 0, estimated_wait_over_s: 0}
  - name: chat_desk
    channels: [chat]
  - name: general
"""


def test_a_phone_call_never_enters_a_chat_only_group(config: TenantRouting) -> None:
    phone_agents = [
        view("olga", "orders", used=0, cap=4),
        view("chen", "chat_desk"),
        view("gina", "general"),
    ]
    phone_agents[0].used["phone"] = 1  # on a call
    shop = parse_config(CHANNELS_CONFIG, "channels.yaml")
    found = plan(shop, "orders", "phone", phone_agents, stats={"orders": GroupStats(queue_length=9)})
    assert found.groups == ["orders", "general"]  # the ring to the chat-only desk is skipped for a call
    assert [c.agent_id for c in found.candidates] == ["gina"]
    chat = plan(shop, "orders", "chat", [view("chen", "chat_desk")], stats={"orders": GroupStats(queue_length=9)})
    assert [c.agent_id for c in chat.candidates] == ["chen"]
    due = rings_due(shop, shop.group("orders"), {}, AgentIndex.of([]), "phone", waited_s=500, ahead=0)
    assert [ring.group for ring, _ in due] == ["general"]
    # Planned into a group that does not take the channel (a rule to it, a stale queue): nobody of it is a candidate.
    direct = plan(shop, "chat_desk", "phone", [view("chen", "chat_desk")])
    assert direct.candidates == []
    assert [(v.agent_id, v.reason) for v in direct.verdicts] == [("chen", "channel:phone")]
    assert transfer_group_refusal(shop.group("chat_desk"), "phone") == "target_group_channel:phone"
    assert transfer_group_refusal(shop.group("general"), "phone") is None


def queued(
    conv: str, group: str, score: float, *, enq: int = 0, lang: str = "", channel: str = "chat"
) -> QueuedConversation:
    return QueuedConversation(conv, group, channel, score, 1, "", enq, lang)


def test_the_drain_takes_only_what_the_agent_is_eligible_for_at_the_time(config: TenantRouting) -> None:
    now = 100_000
    junior = view("junior", "complaints,cross_border", levels={"complaints": 2}, languages="en")
    heads = [
        queued("fresh-complaint", "complaints", 1.0, enq=now - 5_000),  # needs 4
        queued("old-complaint", "complaints", 2.0, enq=now - 40_000),  # relaxed to 2
        queued("ja-new", "cross_border", 3.0, enq=now - 10_000, lang="ja"),  # strict for 60 s
        queued("ja-old", "cross_border", 4.0, enq=now - 61_000, lang="ja"),  # relaxed
        queued("en", "cross_border", 5.0, enq=now, lang="en"),
    ]
    picks = drain_order(junior, heads, config, now)
    assert [p.conversation_id for p in picks] == ["old-complaint", "ja-old", "en"]
    assert need_of(config, heads[0], now).min_level == 4
    assert need_of(config, heads[3], now).relaxed
    senior = view("senior", "complaints", levels={"complaints": 5}, cap=1)
    assert [p.conversation_id for p in drain_order(senior, heads, config, now)] == ["fresh-complaint"]


def test_the_drain_never_takes_a_call_into_a_group_without_phone(config: TenantRouting) -> None:
    agent = view("p", "presales")
    call = queued("call", "presales", 1.0, channel="phone")
    assert drain_order(agent, [call], config, 0) == []


def test_one_snapshot_plans_conversations_of_different_rings_and_languages(config: TenantRouting) -> None:
    index = AgentIndex.of(
        [
            view("senior", "complaints", levels={"complaints": 5}, cap=2),
            view("junior", "complaints", levels={"complaints": 1}, cap=2, languages="zh"),
        ]
    )
    firsts = []
    for waited_s, language in [(0, "zh"), (0, "zh"), (0, "zh"), (100, "zh"), (100, "en"), (100, "zh")]:
        found = plan(config, "complaints", "chat", index, waited_s=waited_s, language=language).candidates
        firsts.append(found[0].agent_id if found else "")
        if found:
            index.take(found[0].agent_id, "chat", 1)
    # Fresh ones need level 4: the senior's two slots, then nobody; after 90 s anyone, but English not the junior
    # (zh only, and complaints lists en) unless the tenant's relax time (120 s) passed.
    assert firsts == ["senior", "senior", "", "junior", "", "junior"]


def test_a_surge_profile_keeps_a_groups_own_language_setting(config: TenantRouting) -> None:
    profile = SurgeProfile(overflow={"strict": [OverflowRing(group="presales", after_s=10)]})
    surged = effective_config(config, profile)
    assert surged.group("strict").overflow[0].group == "presales"
    assert language_relax_after_s(surged, surged.group("strict")) is None  # still "never", not the tenant's 120
    assert language_relax_after_s(surged, surged.group("complaints")) == 120
