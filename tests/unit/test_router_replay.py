"""Replay: a recorded day against a config and a roster, offline, with the figures an operator compares."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format

from switchboard.contracts import RoutingEvent, RoutingEventType
from switchboard.router.replay import baseline, main, read_jsonl, simulate
from switchboard.routing.chain import AgentView
from switchboard.routing.config import load_config_file
from tests.router_support import message

T = "tmall-flagship"
START = 1_800_000_000_000


def _recording(path: Path, conversations: int = 40) -> None:
    """A burst of pre-sales chats, each handled by one agent for 120 s after waiting in line."""
    lines = []
    for i in range(conversations):
        at = START + i * 5_000
        m = message(T, f"c{i}", f"m{i}", "这个尺码合适吗")
        m.received_at.FromMilliseconds(at)
        lines.append({"type": "InboundMessage", "record": json_format.MessageToDict(m)})
        start = at + 60_000
        for kind, when in (
            (RoutingEventType.ROUTING_EVENT_ASSIGNED, start),
            (RoutingEventType.ROUTING_EVENT_CLOSED, start + 120_000),
        ):
            event = RoutingEvent(
                tenant_id=T, conversation_id=f"c{i}", type=kind, agent_id="a-lina", skill_group="presales"
            )
            event.at.FromMilliseconds(when)
            lines.append({"type": "RoutingEvent", "record": json_format.MessageToDict(event)})
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")


def test_more_agents_shorten_the_replayed_waits(tmp_path: Path, repo_root: Path) -> None:
    path = tmp_path / "day.jsonl"
    _recording(path)
    config = load_config_file(repo_root / "config" / "routing" / "tmall-flagship.yaml")
    with path.open(encoding="utf-8") as lines:
        recording = read_jsonl(lines, T)
    before, handle = baseline(recording, 30)
    assert before.waits_s == [60.0] * 40 and handle["c0"] == 120.0

    def agents(n: int) -> list[AgentView]:
        return [AgentView(f"a{i}", "available", frozenset({"presales"}), {"chat": 2}, 1.0, {}) for i in range(n)]

    few = simulate(config, recording, agents(1), handle)
    many = simulate(config, recording, agents(12), handle)
    assert len(few.waits_s) == len(many.waits_s) == 40
    assert max(many.waits_s) == 0.0
    assert sum(few.waits_s) > sum(many.waits_s)
    assert sum(many.handled.values()) == 40


def test_replay_command_prints_the_comparison(
    tmp_path: Path, repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "day.jsonl"
    _recording(path, 10)
    config = repo_root / "config" / "routing" / "tmall-flagship.yaml"
    assert main([str(path), "--config", str(config), "--capacity-multiplier", "2"]) == 0
    out = capsys.readouterr().out
    assert "service level (30s)" in out and "recorded" in out and "replayed" in out
    assert "a-lina" in out
