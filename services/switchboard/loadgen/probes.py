"""What the load generator reads from the stack besides desktops: routing decisions and queue depths.

Both only read: the routing topic with a group-less consumer from the end (it commits nothing and joins no group),
and queue sizes with ZCARD in one pipelined round trip per sample.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer
from redis.asyncio import Redis

from switchboard.contracts import TYPE_HEADER, ContractError, RoutingEvent, RoutingEventType, decode
from switchboard.loadgen.fixtures import GROUPS
from switchboard.loadgen.scenario import CHANNELS
from switchboard.runtime.keys import Keys
from switchboard.runtime.topics import Topics


class RoutingProbe:
    """Follows sb.routing.v1 from the run's start: when each message got its first decision, and how many."""

    def __init__(self, bootstrap: str, topic_prefix: str, tenants: Sequence[str]) -> None:
        self.tenants = set(tenants)
        self.first_decision: dict[str, float] = {}
        self.times: list[float] = []
        self.types: dict[str, int] = {}
        self._consumer = AIOKafkaConsumer(
            Topics(topic_prefix).routing,
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and begin following from the end of the topic."""
        await self._consumer.start()
        # Position on every partition now, so events from the first second of the run are not skipped.
        await self._consumer.getmany(timeout_ms=200)
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=2000)
            for records in batches.values():
                for record in records:
                    self._take(record.headers, record.value)

    def _take(self, headers: Sequence[tuple[str, bytes]], value: bytes | None) -> None:
        type_header = dict(headers or ()).get(TYPE_HEADER, b"").decode()
        try:
            event = decode(type_header, value or b"")
        except ContractError:
            return
        if not isinstance(event, RoutingEvent) or event.tenant_id not in self.tenants:
            return
        at = event.at.ToMilliseconds() / 1000
        self.times.append(at)
        name = RoutingEventType.Name(event.type).removeprefix("ROUTING_EVENT_").lower()
        self.types[name] = self.types.get(name, 0) + 1
        if event.message_id and event.message_id not in self.first_decision:
            self.first_decision[event.message_id] = at

    async def stop(self) -> None:
        """Stop following and disconnect."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._consumer.stop()


class QueueSampler:
    """Samples the queue depth of every skill group of the run's tenants (all channels together)."""

    def __init__(self, redis: Redis, key_prefix: str, tenants: Sequence[str]) -> None:
        self.redis = redis
        self.keys = Keys(key_prefix)
        self.targets: list[tuple[str, list[str]]] = []
        for tenant in tenants:
            for group in sorted(GROUPS.values()):
                names = [self.keys.queue(tenant, group)]
                names += [self.keys.queue_channel(tenant, group, channel) for channel in CHANNELS]
                self.targets.append((f"{tenant}/{group}", names))

    async def sample(self) -> dict[str, int]:
        """Conversations waiting per `tenant/group` right now."""
        pipe = self.redis.pipeline(transaction=False)
        for _, names in self.targets:
            for name in names:
                pipe.zcard(name)
        counts = await pipe.execute()
        result: dict[str, int] = {}
        i = 0
        for label, names in self.targets:
            result[label] = sum(int(c) for c in counts[i : i + len(names)])
            i += len(names)
        return result

    async def run(self, every_s: float, report: Callable[[dict[str, int]], None]) -> None:
        """Sample every `every_s` seconds until cancelled; a Redis hiccup skips one sample."""
        while True:
            with contextlib.suppress(Exception):
                report(await self.sample())
            await asyncio.sleep(every_s)
