"""Replay: a small hand-made recording through the router's own handlers on a scratch Redis and a virtual clock.

The recording is what the router decided for two agents and four conversations: a1 logs in and takes c1; c2 waits
for a2, who logs in 5 s later; c3 (a return) waits for a1's close and is offered to a1, who accepts after 2 s; c4
goes to a2 (idle longest), who transfers it to a1 after 3 s; a2 logs out. Replayed with the same rules, every
decision comes back at the same virtual time; with changed rules the replay synthesizes what agents it was not
recorded with would do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from switchboard.contracts import AgentPresence, AgentStatus, Channel, ChannelCapacity, RoutingEvent, RoutingEventType
from switchboard.router.reload import ConfigStore
from switchboard.router.replay import Recording, agreement, figures, main, outcomes, read_jsonl, replay
from switchboard.routing.config import parse_config
from switchboard.runtime.redis_client import connect_url
from tests.redis_cluster import on_both_redis_backends
from tests.router_support import message

T = "replay-shop"
START = 1_800_000_000_000
E = RoutingEventType

RULES = """
tenant: replay-shop
default_group: presales
skill_groups:
  - {name: presales, avg_handle_s: 60}
  - {name: aftersales, avg_handle_s: 60, offer: {mode: offer, timeout_s: 10, max_misses: 3}}
  - {name: sizing, avg_handle_s: 60}
rules:
  - {name: returns, group: aftersales, match: {keywords: [退货]}}
offline_grace_s: 5
"""
# Changed rules: returns are pre-sales work now, and size questions go to a group nobody serves.
CHANGED = RULES.replace("group: aftersales, match: {keywords: [退货]}", "group: sizing, match: {keywords: [尺码]}")


def _presence(at: int, agent: str, status: AgentStatus.ValueType) -> AgentPresence:
    record = AgentPresence(
        tenant_id=T, agent_id=agent, status=status, skill_groups=["presales", "aftersales"], languages=["zh"]
    )
    record.capacity.append(ChannelCapacity(channel=Channel.CHANNEL_CHAT, slots=1))
    record.changed_by = "agent"
    record.changed_at.FromMilliseconds(START + at)
    return record


def _event(at: int, conv: str, kind: RoutingEventType.ValueType, group: str, agent: str = "") -> RoutingEvent:
    event = RoutingEvent(tenant_id=T, conversation_id=conv, type=kind, skill_group=group, agent_id=agent)
    event.at.FromMilliseconds(START + at)
    return event


def _transfer(at: int, conv: str, owner: str, to: str) -> RoutingEvent:
    event = _event(at, conv, E.ROUTING_EVENT_TRANSFERRED, "presales", to)
    event.previous_agent_id, event.transfer_to_agent = owner, to
    return event


def _recorded() -> list[Message]:
    available, offline = AgentStatus.AGENT_STATUS_AVAILABLE, AgentStatus.AGENT_STATUS_OFFLINE
    texts = {"c1": "你好", "c2": "这件有大尺码吗", "c3": "我要退货", "c4": "你好"}
    arrivals = {"c1": 1_000, "c2": 5_000, "c3": 12_000, "c4": 55_000}
    records: list[Message] = [_presence(0, "a1", available), _presence(10_000, "a2", available)]
    records.append(_presence(70_000, "a2", offline))
    for conv, at in arrivals.items():
        m = message(T, conv, f"{conv}-m1", texts[conv])
        m.received_at.FromMilliseconds(START + at)
        records.append(m)
    records += [
        _event(1_000, "c1", E.ROUTING_EVENT_ASSIGNED, "presales", "a1"),
        _event(5_000, "c2", E.ROUTING_EVENT_QUEUED, "presales"),
        _event(10_000, "c2", E.ROUTING_EVENT_ASSIGNED, "presales", "a2"),
        _event(12_000, "c3", E.ROUTING_EVENT_QUEUED, "aftersales"),
        _event(21_000, "c1", E.ROUTING_EVENT_CLOSED, "presales", "a1"),
        _event(21_000, "c3", E.ROUTING_EVENT_OFFERED, "aftersales", "a1"),
        _event(23_000, "c3", E.ROUTING_EVENT_ACCEPTED, "aftersales", "a1"),
        _event(33_000, "c3", E.ROUTING_EVENT_CLOSED, "aftersales", "a1"),
        _event(40_000, "c2", E.ROUTING_EVENT_CLOSED, "presales", "a2"),
        _event(55_000, "c4", E.ROUTING_EVENT_ASSIGNED, "presales", "a2"),
        _transfer(58_000, "c4", "a2", "a1"),
        _event(63_000, "c4", E.ROUTING_EVENT_CLOSED, "presales", "a1"),
    ]
    return records


def _recording() -> Recording:
    recording = Recording()
    for record in _recorded():
        recording.add(record)
    return recording


def _configs(text: str) -> ConfigStore:
    store = ConfigStore(Path("."))
    store.put(parse_config(text, "test"))
    return store


def _times(events: list[RoutingEvent], conv: str) -> list[tuple[str, str, int]]:
    return [
        (E.Name(e.type).removeprefix("ROUTING_EVENT_"), e.agent_id, e.at.ToMilliseconds() - START)
        for e in events
        if e.conversation_id == conv and e.type != E.ROUTING_EVENT_MESSAGE_DELIVERED
    ]


@on_both_redis_backends
async def test_same_rules_give_the_recorded_decisions_at_the_recorded_times(redis_url_for_test: str) -> None:
    recording = _recording()
    events = await replay(recording, _configs(RULES), redis_url=redis_url_for_test, sweep_interval_s=0.5)

    # c2 waits until a2's recorded login; a1's recorded close (20 s after taking c1) lets c3's offer out, which a1
    # accepts after the recorded 2 s and closes 10 s later.
    assert _times(events, "c2")[:2] == [("QUEUED", "", 5_000), ("ASSIGNED", "a2", 10_000)]
    assert _times(events, "c3") == [
        ("QUEUED", "", 12_000),
        ("OFFERED", "a1", 21_000),
        ("ACCEPTED", "a1", 23_000),
        ("CLOSED", "a1", 33_000),
    ]
    # a2's recorded transfer of c4 goes out 3 s after a2 got it; a1, its new owner, closes it 5 s later as recorded.
    assert _times(events, "c4") == [("ASSIGNED", "a2", 55_000), ("TRANSFERRED", "a1", 58_000), ("CLOSED", "a1", 63_000)]
    found = agreement(list(recording.arrivals()), outcomes(recording.events), outcomes(events))
    assert (found.conversations, found.same_both, found.differences) == (4, 4, [])
    before, after = figures(recording.arrivals(), recording.events), figures(recording.arrivals(), events)
    assert sorted(before.waits_s) == sorted(after.waits_s) == [0.0, 0.0, 5.0, 11.0]
    # The scratch keys are gone afterwards.
    redis = connect_url(redis_url_for_test)
    try:
        assert [k async for k in redis.scan_iter(match="replay-*")] == []
    finally:
        await redis.aclose()


async def test_changed_rules_show_and_other_agents_get_synthesized_answers(redis_url: str) -> None:
    recording = _recording()
    events = await replay(recording, _configs(CHANGED), redis_url=redis_url, sweep_interval_s=0.5)

    found = agreement(list(recording.arrivals()), outcomes(recording.events), outcomes(events))
    assert found.same_both == 1
    assert [(conv, after) for conv, _, after in found.differences] == [
        ("c2", ("sizing", "")),  # nobody serves the new group: never answered
        ("c3", ("presales", "a2")),  # a2 had room now, and no offer is made in pre-sales
        ("c4", ("presales", "a1")),  # a1 is idle longest now
    ]
    # a2 was never recorded with c3: it closes when c3's recorded handle time (10 s) has passed since it was taken.
    assert _times(events, "c3") == [("ASSIGNED", "a2", 12_000), ("CLOSED", "a2", 22_000)]
    # a1 held c4 in the recording too (after the transfer): its recorded answer, a close after 5 s, is replayed.
    assert _times(events, "c4") == [("ASSIGNED", "a1", 55_000), ("CLOSED", "a1", 60_000)]
    after = figures(recording.arrivals(), events)
    assert after.unanswered == 1 and after.handled == {"a1": 2, "a2": 1}


def test_replay_command_prints_figures_and_agreement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, config = tmp_path / "day.jsonl", tmp_path / "rules.yaml"
    lines = [{"type": type(r).__name__, "record": json_format.MessageToDict(r)} for r in _recorded()]
    path.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n", encoding="utf-8")
    config.write_text(CHANGED, encoding="utf-8")
    with path.open(encoding="utf-8") as read:
        assert len(read_jsonl(read, {T}).inbound) == 4
    # No REDIS_URL: the replay starts a redis-server of its own for the run.
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main([str(path), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "service level (30s)" in out and "recorded" in out and "replayed" in out
    assert "same group and agent" in out and "25.0%" in out
    assert "c3: aftersales/a1 → presales/a2" in out


SKILLS = """
tenant: replay-shop
default_group: cross_border
skill_groups:
  - {name: cross_border, languages: [en, ja], language_relax_after_s: 30, avg_handle_s: 60}
  - name: complaints
    avg_handle_s: 60
    skill_levels: [{min_level: 3}, {min_level: 1, after_s: 20}]
rules:
  - {name: complaint, group: complaints, match: {keywords: [投诉]}}
"""


def _skilled(agent: str, languages: list[str], level: int, slots: int) -> AgentPresence:
    record = AgentPresence(
        tenant_id=T,
        agent_id=agent,
        status=AgentStatus.AGENT_STATUS_AVAILABLE,
        skill_groups=["cross_border", "complaints"],
        languages=languages,
        proficiency={"complaints": level},
        changed_by="agent",
    )
    record.capacity.append(ChannelCapacity(channel=Channel.CHANNEL_CHAT, slots=slots))
    record.changed_at.FromMilliseconds(START)
    return record


@on_both_redis_backends
async def test_levels_and_languages_replay_to_the_recorded_decisions(redis_url_for_test: str) -> None:
    """A Japanese message to the Japanese speaker; one that waits for her until its language relaxes; a complaint
    that waits for its level ring to relax (en1 has level 2 there, where an agent without one would count as 3):
    the replay's router, fed the recorded presence (languages, levels), decides the same, at the sweep after each
    relaxes."""
    records: list[Message] = [_skilled("en1", ["zh", "en"], 2, 2), _skilled("ja1", ["ja", "en"], 5, 1)]
    for conv, at, text, language in [
        ("c1", 1_000, "在庫はありますか", "ja"),
        ("c2", 2_000, "サイズを交換したい", "ja"),
        ("c3", 3_000, "我要投诉", "zh"),
    ]:
        m = message(T, conv, f"{conv}-m1", text, language=language)
        m.received_at.FromMilliseconds(START + at)
        records.append(m)
    records += [
        _event(1_000, "c1", E.ROUTING_EVENT_ASSIGNED, "cross_border", "ja1"),
        _event(2_000, "c2", E.ROUTING_EVENT_QUEUED, "cross_border"),
        _event(3_000, "c3", E.ROUTING_EVENT_QUEUED, "complaints"),
        _event(23_000, "c3", E.ROUTING_EVENT_ASSIGNED, "complaints", "en1"),
        _event(32_000, "c2", E.ROUTING_EVENT_ASSIGNED, "cross_border", "en1"),
    ]
    recording = Recording()
    for record in records:
        recording.add(record)
    events = await replay(recording, _configs(SKILLS), redis_url=redis_url_for_test, sweep_interval_s=0.5)
    found = agreement(list(recording.arrivals()), outcomes(recording.events), outcomes(events))
    assert (found.conversations, found.same_both, found.differences) == (3, 3, [])
    assigned = {e.conversation_id: e for e in events if e.type == E.ROUTING_EVENT_ASSIGNED}
    assert 23_000 <= assigned["c3"].at.ToMilliseconds() - START <= 23_500
    assert 32_000 <= assigned["c2"].at.ToMilliseconds() - START <= 32_500
    assert assigned["c2"].language_relaxed and assigned["c3"].min_level == 1
