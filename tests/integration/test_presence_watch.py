"""Roster reloads without restart, and the agent-count gauge, on real Redis and Kafka."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from switchboard.presence.audit import AuditLog
from switchboard.presence.watch import RosterWatcher
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.agent_model import Status
from switchboard.state.agents import PresenceStore
from switchboard.state.keys import Keys
from switchboard.state.roster import default_roster_path, load_roster
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]


@pytest.fixture
def store(redis: Redis, settings: ServiceSettings, producer: RecordProducer) -> PresenceStore:
    return PresenceStore(redis, Keys(settings.key_prefix), producer)


def _touch(path: Path, text: str, bump: int) -> None:
    path.write_text(text, encoding="utf-8")
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + bump))  # mtime resolution of some filesystems is coarse


async def test_roster_file_change_is_loaded_and_a_broken_one_ignored(store: PresenceStore, tmp_path: Path) -> None:
    roster = tmp_path / "agents.yaml"
    original = default_roster_path().read_text(encoding="utf-8")
    audit = AuditLog(store.redis, store.keys)
    watcher = RosterWatcher(store, roster, interval_s=1, audit=audit)  # no file yet
    _touch(roster, original, 0)
    assert await watcher.poll()
    assert not await watcher.poll()  # unchanged file: nothing to do
    lina = await store.get_agent("shop-a", "a-lina")
    assert lina is not None
    assert lina.capacity["chat"] == 5

    _touch(roster, original.replace("capacity: {chat: 5, email: 10, phone: 1}", "capacity: {chat: 2}", 1), 10)
    assert await watcher.poll()
    lina = await store.get_agent("shop-a", "a-lina")
    assert lina is not None
    assert lina.capacity == {"chat": 2, "email": 0, "phone": 0}
    assert [e.action for e in await audit.read("shop-b")] == ["reload_roster", "reload_roster"]

    _touch(roster, original + "\n  - tenant_id: {broken\n", 20)
    assert not await watcher.poll()
    lina = await store.get_agent("shop-a", "a-lina")
    assert lina is not None
    assert lina.capacity["chat"] == 2  # kept as it was


async def test_agent_count_gauge(store: PresenceStore) -> None:
    roster = load_roster()
    await store.load_roster(roster)
    watcher = RosterWatcher(store, None, interval_s=1, roster_tenants=[t.tenant_id for t in roster.tenants])
    await store.login("shop-b", "b-hao")
    await store.set_status("shop-b", "b-hao", Status.BUSY, "agent")
    await watcher.count_agents()

    def gauge(status: str) -> float | None:
        return REGISTRY.get_sample_value("sb_presence_agents", {"tenant": "shop-b", "status": status})

    assert gauge("busy") == 1
    assert gauge("offline") == 2
    assert gauge("available") == 0

    # A tenant neither the roster nor a routing config names is counted, but not by its own id.
    await RosterWatcher(store, None, interval_s=1, configured=lambda: {"shop-a"}).count_agents()
    assert REGISTRY.get_sample_value("sb_presence_agents", {"tenant": "unknown", "status": "busy"}) == 1
