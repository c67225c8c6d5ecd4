"""Kafka stops and comes back: presence keeps taking logins and status changes (Redis is the truth), and the sweep
publishes every change that was not acked once the broker is back. Runs its own broker; the shared one is never
stopped."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from switchboard.contracts import AgentPresence, AgentStatus
from switchboard.presence.audit import AuditLog
from switchboard.presence.control import SurgeControl
from switchboard.presence.sweep import Sweeper
from switchboard.runtime.kafka import RecordProducer, ensure_topics
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard.state.agent_model import Status
from switchboard.state.agents import PresenceStore
from switchboard.state.keys import Keys
from switchboard.state.roster import load_roster
from switchboard_tools.stack.kafka import LocalKafka
from tests.conftest import TEST_PARTITIONS
from tests.helpers import eventually, read_topic

pytestmark = [pytest.mark.broker, pytest.mark.slow]


async def test_changes_while_kafka_is_down_are_published_when_it_is_back(
    own_kafka: LocalKafka, settings: ServiceSettings, redis: Redis
) -> None:
    await ensure_topics(own_kafka.bootstrap, Topics(settings.topic_prefix).specs(TEST_PARTITIONS))
    ours = settings.model_copy(update={"kafka_bootstrap": own_kafka.bootstrap, "produce_timeout_s": 1.5})
    producer = RecordProducer(ours)
    await producer.start()
    try:
        store = PresenceStore(redis, Keys(ours.key_prefix), producer)
        await store.load_roster(load_roster())
        sweeper = Sweeper(store, SurgeControl(store, AuditLog(redis, store.keys)), grace_s=600, interval_s=1)
        sweeper.republish_after_ms = 200

        await asyncio.to_thread(own_kafka.stop)
        epoch = await store.login("shop-a", "a-lina")
        state = await store.set_status("shop-a", "a-lina", Status.BUSY, "agent", session_epoch=epoch)
        assert state.status is Status.BUSY  # the desktop is answered: Redis holds the truth
        assert await redis.zscore(store.keys.presence_pending("shop-a"), "a-lina") is not None

        await asyncio.to_thread(own_kafka.start)

        async def published() -> bool:
            await sweeper.sweep_once()
            return await redis.zcard(store.keys.presence_pending("shop-a")) == 0

        await eventually(published, timeout=60, what="pending presence republished")
    finally:
        await producer.stop()
    records = await read_topic(own_kafka.bootstrap, ours.topic_prefix + "sb.presence.v1", 9, timeout=30)
    lina = [m for k, m in records if k == "shop-a/a-lina" and isinstance(m, AgentPresence)]
    latest = max(lina, key=lambda m: m.presence_version)
    assert latest.status == AgentStatus.AGENT_STATUS_BUSY
    assert latest.session_epoch == epoch
