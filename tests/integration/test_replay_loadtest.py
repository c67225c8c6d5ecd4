"""Replay of a recorded load test: with the same rules the router's decisions come back; changed rules show.

A miniature of the smoke sale runs through the real services (Kafka, Redis, router, presence, gateway, channels);
its topics are kept and read back as the recording, then replayed through the router's own handlers on a scratch
Redis with a virtual clock.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

from switchboard.router.replay import (
    Agreement,
    Figures,
    Recording,
    agreement,
    figures,
    load_configs,
    outcomes,
    read_jsonl,
    read_topics,
    replay,
)
from switchboard.router.settings import RouterSettings
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard_tools.loadgen.run import Outcome, load_test
from switchboard_tools.loadgen.scenario import load_scenario
from switchboard_tools.loadgen.settings import LoadgenSettings

pytestmark = pytest.mark.broker

PARTITIONS = 2


def _scenario(path: Path) -> Path:
    """The smoke scenario cut to twenty seconds, with its spike, surge, shift change and missed offers kept."""
    data = load_scenario("smoke").model_dump(mode="json")
    data.update(name="replay", duration_s=20)
    data["arrivals"] = {"baseline_per_s": 1.5, "spike": {"at_s": 5, "peak_multiplier": 3, "ramp_s": 2, "decay_s": 5}}
    data["tenants"] = [{"id": "lg-flagship", "share": 0.6, "agents": 4}]
    data["small_shops"] = {"count": 2, "prefix": "lg-shop", "share": 0.4, "agents": 2}
    data["shift_change"] = {"at_s": 12, "leaving_fraction": 0.34, "overlap_s": 2}
    data["operator"] = {"surge_at_s": 4, "profile": "double11", "capacity_multiplier": 1.5}
    data["agents"]["handling_time"] = {"mean_s": 3, "sigma": 0.4, "max_s": 6}
    data["limits"] = {"max_conversations": 60, "drain_s": 30, "max_run_s": 70}
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


async def _drop_run(bootstrap: str, redis_url: str, topic_prefix: str, key_prefix: str) -> None:
    """Delete the run's topics and keys (the load test kept them for the replay)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([spec.name for spec in Topics(topic_prefix).specs(PARTITIONS)])
    finally:
        await admin.close()
    redis = Redis.from_url(redis_url)
    try:
        async for key in redis.scan_iter(match=f"{key_prefix}:*", count=1000):
            await redis.unlink(key)
    finally:
        await redis.aclose()


@pytest.fixture(scope="module")
def recorded_run(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, redis_url: str
) -> Iterator[tuple[Outcome, Recording, Path]]:
    """One load test whose topics are read back as the recording of all its shops."""
    folder = tmp_path_factory.mktemp("replay-run")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KAFKA_BOOTSTRAP", kafka_bootstrap)
        env.setenv("REDIS_URL", redis_url)
        # Agents beat every 10 s: a grace above it keeps them online, and still lets presence notice leavers.
        env.setenv("SB_HEARTBEAT_GRACE_S", "12")
        # The router keeps its default snapshot lifetime (SB_SNAPSHOT_TTL_S 0.2 s): it ages snapshots by its own
        # clock, and the replay runs it with the same lifetime on the recording's clock.
        settings = LoadgenSettings(
            loadgen_scenario=str(_scenario(folder / "replay.yaml")),
            loadgen_out=folder / "reports",
            loadgen_progress=False,
            loadgen_partitions=PARTITIONS,
            loadgen_keep_data=True,
        )
        outcome = load_test(settings)
    endpoints = outcome.report["run"]["endpoints"]
    try:
        configs = load_configs(outcome.folder / "stack-config" / "routing")
        recording = asyncio.run(
            read_topics(
                ServiceSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix=endpoints["topic_prefix"]),
                set(configs.tenants()),
                folder / "run.jsonl",
            )
        )
    finally:
        asyncio.run(_drop_run(kafka_bootstrap, redis_url, endpoints["topic_prefix"], endpoints["key_prefix"]))
    yield outcome, recording, folder / "run.jsonl"


def _replay(recording: Recording, rules: Path, redis_url: str) -> tuple[Agreement, Figures, Figures]:
    events = asyncio.run(
        replay(recording, load_configs(rules), redis_url=redis_url, sweep_interval_s=RouterSettings().sweep_interval_s)
    )
    arrivals = recording.arrivals()
    found = agreement(list(arrivals), outcomes(recording.events), outcomes(events))
    return found, figures(arrivals, recording.events), figures(arrivals, events)


def test_same_rules_give_the_same_group_and_agent(
    recorded_run: tuple[Outcome, Recording, Path], redis_url: str
) -> None:
    outcome, recording, _ = recorded_run
    found, before, after = _replay(recording, outcome.folder / "stack-config" / "routing", redis_url)

    assert found.conversations >= 30, outcome.summary
    assert found.same_group == found.conversations, found.differences
    print(f"replay agreement, same rules: {found.same_both}/{found.conversations} same group and agent")
    assert found.share(found.same_both) >= 0.95, (f"{found.same_both}/{found.conversations}", found.differences)
    assert after.unanswered == before.unanswered == 0
    assert sum(after.handled.values()) == sum(before.handled.values())


def test_changed_rules_show_in_assignments_and_figures(
    recorded_run: tuple[Outcome, Recording, Path], redis_url: str, tmp_path: Path
) -> None:
    outcome, topics, saved = recorded_run
    # This time the recording is the file saved while reading the topics.
    with saved.open(encoding="utf-8") as lines:
        recording = read_jsonl(lines, set(load_configs(outcome.folder / "stack-config" / "routing").tenants()))
    assert len(recording.inbound) == len(topics.inbound) and len(recording.presence) == len(topics.presence)
    rules = tmp_path / "routing"
    shutil.copytree(outcome.folder / "stack-config" / "routing", rules)
    # The flagship drops its intent rules (everything is pre-sales work) and assigns without offers.
    flagship = rules / "lg-flagship.yaml"
    data = yaml.safe_load(flagship.read_text())
    data["rules"] = []
    data["offers"]["mode"] = "auto"
    flagship.write_text(yaml.safe_dump(data, allow_unicode=True))
    found, before, after = _replay(recording, rules, redis_url)

    flagship_convs = {t.record.conversation_id for t in recording.inbound if t.record.tenant_id == "lg-flagship"}
    moved = [c for c, (g0, _), (g1, _) in found.differences if g0 != g1]
    assert moved and set(moved) <= flagship_convs
    assert all(after[0] == "presales" for c, _, after in found.differences if c in moved)
    assert found.share(found.same_both) < 0.9, found.differences
    # Without offers nobody waits for an agent to accept: the flagship's waits drop.
    assert sum(after.waits_s) < sum(before.waits_s)
    assert after.unanswered == 0
