"""Desk events from agents' outboxes reach the right socket, in order, numbered; a dropped socket resumes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from switchboard.contracts import Channel, DeskEvent, DeskEventType, InboundMessage
from switchboard.gateway.settings import GatewaySettings
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.keys import Keys
from switchboard.state.outbox import append_desk_event
from tests.helpers import eventually
from tests.integration.gateway_support import Desk, gateway_settings, load_agents, running_gateway, token
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]


def message_event(
    tenant: str, agent: str, conversation: str, text: str, kind: int = DeskEventType.DESK_EVENT_MESSAGE
) -> DeskEvent:
    """A customer message for an agent's desk, as the router appends it."""
    return DeskEvent(
        tenant_id=tenant,
        agent_id=agent,
        type=kind,
        conversation_id=conversation,
        epoch=1,
        skill_group="presales",
        message=InboundMessage(
            message_id=f"{conversation}-{text}",
            tenant_id=tenant,
            conversation_id=conversation,
            channel=Channel.CHANNEL_CHAT,
            text=text,
        ),
    )


@pytest.fixture
async def gs(settings: ServiceSettings, redis: Redis) -> AsyncIterator[GatewaySettings]:
    """Gateway settings with the dev roster loaded; small trim steps so trimming shows in a short test."""
    values = gateway_settings(settings, trim_every=5, trim_margin=2)
    producer = RecordProducer(values)
    await producer.start()
    await load_agents(values, redis, producer)
    await producer.stop()
    yield values


def messages(events: list[dict[str, object]]) -> list[str]:
    return [e["message"]["text"] for e in events if e["event"] in ("message", "assigned")]  # type: ignore[index]


async def test_events_reach_the_right_agent_in_order(gs: GatewaySettings, redis: Redis) -> None:
    keys = Keys(gs.key_prefix)
    async with running_gateway(gs) as gw:
        lina = await Desk.open(gw.url, token("shop-a", "a-lina"))
        wei = await Desk.open(gw.url, token("shop-a", "a-wei"))
        hao = await Desk.open(gw.url, token("shop-b", "b-hao"))
        texts = [f"m{i}" for i in range(30)]
        for text in texts:
            await append_desk_event(redis, keys, message_event("shop-a", "a-lina", "c-1", text))
        await append_desk_event(redis, keys, message_event("shop-a", "a-wei", "c-2", "for wei"))
        await append_desk_event(redis, keys, message_event("shop-b", "b-hao", "c-1", "for hao"))

        got = await lina.events(30)
        assert messages(got) == texts
        seqs = [e["seq"] for e in got]
        assert seqs == list(range(seqs[0], seqs[0] + 30)), "seq numbers are gapless and increasing"
        assert seqs[0] == lina.snapshot["as_of_seq"] + 1
        assert messages(await wei.events(1)) == ["for wei"]
        hao_events = await hao.events(1)
        assert messages(hao_events) == ["for hao"]
        assert hao_events[0]["message"]["tenant_id"] == "shop-b"
        for desk in (lina, wei, hao):
            await desk.close()


async def _resume_case(gs: GatewaySettings, redis: Redis, first_url: str, second_url: str) -> None:
    keys = Keys(gs.key_prefix)
    desk = await Desk.open(first_url, token("shop-a", "a-emma"))
    for i in range(10):
        await append_desk_event(redis, keys, message_event("shop-a", "a-emma", "c-9", f"m{i}"))
    got = await desk.events(10, ack=False)
    assert messages(got) == [f"m{i}" for i in range(10)]
    acked = got[3]["seq"]
    await desk.send({"type": "ack", "seq": acked})
    await desk.close()  # dropped after acking m3: m4..m9 were sent but not acked

    for i in range(10, 15):
        await append_desk_event(redis, keys, message_event("shop-a", "a-emma", "c-9", f"m{i}"))
    again = await Desk.open(second_url, token("shop-a", "a-emma"), resume_after=acked)
    assert again.snapshot["resumed"] is True
    assert again.snapshot["as_of_seq"] == acked
    current = int(await redis.get(keys.desk_seq("shop-a", "a-emma")) or 0)
    resumed = await again.events(current - acked)
    seqs = [e["seq"] for e in resumed]
    assert seqs == list(range(acked + 1, current + 1)), "nothing lost, nothing twice"
    assert messages(resumed) == [f"m{i}" for i in range(4, 15)]
    await again.close()


async def test_dropped_socket_resumes_after_last_ack_without_loss_or_duplicates(
    gs: GatewaySettings, redis: Redis
) -> None:
    async with running_gateway(gs) as gw:
        await _resume_case(gs, redis, gw.url, gw.url)


async def test_resume_on_another_replica(gs: GatewaySettings, redis: Redis) -> None:
    async with running_gateway(gs) as one, running_gateway(gs) as two:
        await _resume_case(gs, redis, one.url, two.url)


async def test_acked_events_are_trimmed_and_the_snapshot_keeps_open_conversations(
    gs: GatewaySettings, redis: Redis
) -> None:
    keys = Keys(gs.key_prefix)
    outbox = keys.desk_outbox("shop-a", "a-jun")
    async with running_gateway(gs) as gw:
        desk = await Desk.open(gw.url, token("shop-a", "a-jun"))
        await append_desk_event(
            redis, keys, message_event("shop-a", "a-jun", "c-7", "hello", DeskEventType.DESK_EVENT_ASSIGNED)
        )
        for i in range(20):
            await append_desk_event(redis, keys, message_event("shop-a", "a-jun", "c-7", f"m{i}"))
        await desk.events(21)  # acks the last one

        async def trimmed() -> bool:
            return int(await redis.xlen(outbox)) <= gs.trim_margin + 1

        await eventually(trimmed, 10, "acked events trimmed from the outbox")
        await desk.close()

        fresh = await Desk.open(gw.url, token("shop-a", "a-jun"))
        conversations = {c["conversation_id"]: c for c in fresh.snapshot["conversations"]}
        assert "c-7" in conversations
        texts = [m["text"] for m in conversations["c-7"]["messages"]]
        assert texts[-3:] == ["m17", "m18", "m19"]
        assert fresh.snapshot["resumed"] is False
        await fresh.close()


async def test_an_event_whose_notification_was_lost_still_arrives(gs: GatewaySettings, redis: Redis) -> None:
    keys = Keys(gs.key_prefix)
    async with running_gateway(gs) as gw:
        desk = await Desk.open(gw.url, token("shop-a", "a-wei"))
        # Append as the script does, but without the PUBLISH: pub/sub is at-most-once.
        seq = int(await redis.incr(keys.desk_seq("shop-a", "a-wei")))
        event = message_event("shop-a", "a-wei", "c-3", "quiet")
        await redis.xadd(keys.desk_outbox("shop-a", "a-wei"), {"e": event.SerializeToString()}, id=f"{seq}-1")
        [got] = await desk.events(1, timeout=gs.reconcile_interval_s * 5)
        assert (got["seq"], got["message"]["text"]) == (seq, "quiet")
        await desk.close()


async def test_a_silent_subscription_is_replaced(gs: GatewaySettings, redis: Redis) -> None:
    keys = Keys(gs.key_prefix)
    async with running_gateway(gs) as gw:
        hub = gw.gateway.hub
        desk = await Desk.open(gw.url, token("shop-a", "a-min"))
        await hub.check_subscription()

        async def ponged() -> bool:
            return not hub.awaiting_pong

        await eventually(ponged, 10, "PONG on the subscription")
        hub.awaiting_pong = True  # as if the last PING had gone unanswered
        await hub.check_subscription()

        async def resubscribed() -> bool:
            return hub.listening and not hub.awaiting_pong

        await eventually(resubscribed, 10, "subscribed again")
        await append_desk_event(redis, keys, message_event("shop-a", "a-min", "c-5", "after"))
        assert messages(await desk.events(1)) == ["after"]
        await desk.close()
