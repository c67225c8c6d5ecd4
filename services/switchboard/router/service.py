"""The router process: Kafka loops over inbound + commands and presence, the sweep, config reloads.

One consumer group shares the inbound and command partitions among router replicas; a second one shares the
presence records. Every replica sweeps every tenant: the scripts make repeated sweeps harmless.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence

from switchboard.contracts import AgentCommand, AgentPresence, InboundMessage, OutboundMessage, RoutingEvent
from switchboard.router.engine import Router
from switchboard.router.rebuild import RouterRebuild, TopicReader
from switchboard.router.reload import ConfigStore
from switchboard.router.settings import RouterSettings
from switchboard.router.upkeep import Upkeep
from switchboard.runtime.consumer import BatchConsumer, Delivery, Handler, Rejected
from switchboard.runtime.errors import TransientError
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.logs import get_logger
from switchboard.runtime.redis_client import redis_client
from switchboard.runtime.service import ServiceRuntime
from switchboard.runtime.topics import Topics
from switchboard.state.agents import PresenceStore
from switchboard.state.keys import Keys

log = get_logger(__name__)


class KafkaSink:
    """Publishes decisions to the routing topic (waits for acks), and agents set away through presence's store."""

    def __init__(self, producer: RecordProducer, presence: PresenceStore) -> None:
        self._producer = producer
        self._topics = producer.topics
        self._presence = presence

    async def routing(self, events: Sequence[RoutingEvent]) -> None:
        """Routing events keyed by conversation."""
        await self._producer.send_many(self._topics.routing, [(e.conversation_id, e) for e in events])

    async def agents_changed(self, tenant: str, agents: Sequence[str]) -> None:
        """The agents' whole presence state; if the broker does not ack, presence's sweep republishes it."""
        await self._presence.publish(tenant, agents)

    async def outbound(self, messages: Sequence[OutboundMessage]) -> None:
        """The bot's answers, keyed by conversation like agents' replies (the adapters deliver them)."""
        await self._producer.send_many(self._topics.outbound, [(m.conversation_id, m) for m in messages])


def tune_gc() -> None:
    """Fewer, later garbage collections: a decision allocates many short-lived objects (protobufs, dicts), and with
    the default thresholds the cyclic collector's pauses are what makes the p99 decision latency."""
    gc.freeze()  # what was loaded at start lives forever: never scan it again
    gc.set_threshold(50_000, 20, 20)


def conversation_handler(router: Router) -> Handler:
    """The handler of inbound and command batches: refused records go to the DLQ with the reason."""

    async def handle(batch: Sequence[Delivery]) -> Sequence[Rejected]:
        inbound = [(d, d.message) for d in batch if isinstance(d.message, InboundMessage)]
        commands = [(d, d.message) for d in batch if isinstance(d.message, AgentCommand)]
        known = {id(d) for d, _ in inbound} | {id(d) for d, _ in commands}
        rejected = [
            Rejected(d, "not an InboundMessage or AgentCommand", "wrong_type") for d in batch if id(d) not in known
        ]
        delivery_of = {id(m): d for d, m in [*inbound, *commands]}
        for message, reason in await router.handle_inbound([m for _, m in inbound]):
            rejected.append(Rejected(delivery_of[id(message)], reason))
        for command, reason in await router.handle_commands([m for _, m in commands]):
            rejected.append(Rejected(delivery_of[id(command)], reason))
        return rejected

    return handle


def presence_handler(upkeep: Upkeep) -> Handler:
    """The handler of presence batches."""

    async def handle(batch: Sequence[Delivery]) -> Sequence[Rejected]:
        records = [d.message for d in batch if isinstance(d.message, AgentPresence)]
        await upkeep.handle_presence(records)
        return []

    return handle


async def sweep_loop(upkeep: Upkeep, interval_s: float, stopping: asyncio.Event) -> None:
    """Run the sweep every interval until stopping; Redis or Kafka outages are logged and retried next time."""
    while not stopping.is_set():
        try:
            await upkeep.sweep()
        except TransientError as exc:
            log.warning("sweep_paused", error=repr(exc))
        try:
            await asyncio.wait_for(stopping.wait(), interval_s)
        except TimeoutError:
            continue


async def build(settings: RouterSettings) -> ServiceRuntime:
    """A ready-to-serve router: both consumer groups joined, sweep and config watch registered."""
    runtime = ServiceRuntime(settings)
    redis = redis_client(settings)
    runtime.add_closer(redis.aclose)
    configs = ConfigStore(settings.config_dir())
    configs.poll()
    producer = await runtime.start_producer()
    keys = Keys(settings.key_prefix)
    router = Router(
        redis,
        keys,
        configs,
        KafkaSink(producer, PresenceStore(redis, keys, producer)),
        instance=settings.instance_id,
        marker_ttl_s=settings.marker_ttl_s,
        snapshot_ttl_s=settings.snapshot_ttl_s,
        bot=settings.bot(),
        rebuild=RouterRebuild(
            redis,
            keys,
            configs,
            TopicReader(settings),
            instance=settings.instance_id,
            marker_ttl_s=settings.marker_ttl_s,
        ),
    )
    runtime.add_closer(router.bot.close)
    upkeep = router.upkeep
    topics = Topics(settings.topic_prefix)
    conversations = BatchConsumer(
        settings,
        topics=[topics.inbound, topics.commands],
        group_id=f"{settings.topic_prefix}router",
        handler=conversation_handler(router),
        producer=producer,
        # After every poll, whatever SB_CONSUMER_COMMIT_INTERVAL_MS says: the rebuild after Redis lost its data
        # reads the inbound topic up to these offsets (router/rebuild.py).
        commit_interval_ms=0,
    )
    presence = BatchConsumer(
        settings,
        topics=[topics.presence],
        group_id=f"{settings.topic_prefix}router-presence",
        handler=presence_handler(upkeep),
        producer=producer,
    )
    await runtime.add_consumer("conversations", conversations)
    await runtime.add_consumer("presence", presence)
    runtime.add_ready_check("routing_config", lambda: bool(configs.tenants()))
    stopping = asyncio.Event()
    runtime.add_worker("sweep", lambda: sweep_loop(upkeep, settings.sweep_interval_s, stopping), stop=stopping.set)
    runtime.add_worker("config", lambda: configs.watch(settings.config_poll_s), stop=configs.stop)
    tune_gc()
    return runtime
