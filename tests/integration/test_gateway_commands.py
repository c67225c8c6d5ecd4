"""Client commands: checked against tenant and ownership in Redis, then recorded on Kafka."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from switchboard.contracts import AgentCommand, AgentCommandType, Channel, OutboundMessage
from switchboard.gateway.protocol import CloseCode
from switchboard.gateway.settings import GatewaySettings
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard.state.keys import Keys
from tests.helpers import read_topic
from tests.integration.gateway_support import Desk, gateway_settings, load_agents, roster_loaded, running_gateway, token
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]


@pytest.fixture
async def gs(settings: ServiceSettings, redis: Redis) -> AsyncIterator[GatewaySettings]:
    """Gateway settings with the dev roster loaded."""
    values = gateway_settings(settings)
    producer = RecordProducer(values)
    await producer.start()
    await load_agents(values, redis, producer)
    await producer.stop()
    yield values


async def conversation(redis: Redis, keys: Keys, tenant: str, conv: str, **fields: str | int) -> None:
    """Write a conversation hash as the router does."""
    await redis.hset(keys.conversation(tenant, conv), mapping=fields)  # type: ignore[misc]


async def test_reply_only_from_the_current_owner_at_the_current_epoch(gs: GatewaySettings, redis: Redis) -> None:
    keys = Keys(gs.key_prefix)
    await conversation(
        redis, keys, "shop-a", "c-1", owner="a-lina", epoch=3, state="assigned", channel="chat", customer_id="cust-1"
    )
    async with running_gateway(gs) as gw:
        owner = await Desk.open(gw.url, token("shop-a", "a-lina"))
        other = await Desk.open(gw.url, token("shop-a", "a-wei"))

        refused = await other.command({"type": "reply", "id": "r1", "conversation_id": "c-1", "epoch": 3, "text": "hi"})
        assert refused["type"] == "error" and refused["code"] == "not_owner"
        stale = await owner.command({"type": "reply", "id": "r2", "conversation_id": "c-1", "epoch": 2, "text": "hi"})
        assert stale["type"] == "error" and stale["code"] == "stale_epoch"
        ok = await owner.command(
            {"type": "reply", "id": "r3", "conversation_id": "c-1", "epoch": 3, "text": "您好，回电 138 1234 5678"}
        )
        assert ok["type"] == "result" and ok["ok"] is True

        records = await read_topic(gs.kafka_bootstrap, Topics(gs.topic_prefix).outbound, 1)
        assert len(records) == 1
        key, message = records[0]
        assert isinstance(message, OutboundMessage)
        assert key == "c-1"
        assert (message.tenant_id, message.agent_id, message.epoch) == ("shop-a", "a-lina", 3)
        assert message.channel == Channel.CHANNEL_CHAT and message.customer_id == "cust-1"
        assert message.text == "您好，回电 138****5678", "what agents write is PII-masked like customers' text"
        assert message.message_id == ok["message_id"]
        await owner.close()
        await other.close()


async def test_accept_decline_close_transfer_become_agent_commands(gs: GatewaySettings, redis: Redis) -> None:
    keys = Keys(gs.key_prefix)
    await conversation(redis, keys, "shop-a", "c-offer", state="offered", offer_agent="a-lina", epoch=5, owner="")
    await conversation(redis, keys, "shop-a", "c-own", state="assigned", owner="a-lina", epoch=7)
    await conversation(redis, keys, "shop-a", "c-call", state="assigned", owner="a-lina", epoch=2, channel="phone")
    async with running_gateway(gs) as gw:
        desk = await Desk.open(gw.url, token("shop-a", "a-lina"))
        wei = await Desk.open(gw.url, token("shop-a", "a-wei"))
        not_offered = await wei.command({"type": "accept", "id": "x", "conversation_id": "c-offer"})
        assert not_offered["code"] == "not_offered"
        assert (await desk.command({"type": "accept", "id": "1", "conversation_id": "c-offer"}))["epoch"] == 5
        await desk.command({"type": "decline", "id": "2", "conversation_id": "c-offer", "reason": "on a call"})
        await desk.command(
            {"type": "close", "id": "3", "conversation_id": "c-own", "epoch": 7, "wrap_up_code": "solved"}
        )
        note = "客户电话 138.1234.5678，身份证 110101 19900307 1234"
        transfer = {"type": "transfer", "id": "4", "conversation_id": "c-own", "to_group": "after_sales", "note": note}
        await desk.command(transfer)
        bad = await desk.command({"type": "close", "id": "5", "conversation_id": "c-own"})
        assert bad["code"] == "bad_field", "close needs a wrap-up code"
        # shop-a's presales takes chat and e-mail only: a call cannot be transferred there.
        call = {"type": "transfer", "id": "6", "conversation_id": "c-call", "to_group": "presales"}
        wrong = await desk.command(call)
        assert (wrong["code"], wrong["detail"]) == ("wrong_channel", "presales does not take phone conversations")

        records = await read_topic(gs.kafka_bootstrap, Topics(gs.topic_prefix).commands, 4)
        commands = sorted((m for _, m in records), key=lambda m: m.type)  # type: ignore[attr-defined]
        assert all(isinstance(m, AgentCommand) for m in commands)
        by_type = {m.type: m for m in commands}  # type: ignore[attr-defined]
        accept = by_type[AgentCommandType.AGENT_COMMAND_ACCEPT]
        assert (accept.tenant_id, accept.agent_id, accept.epoch) == ("shop-a", "a-lina", 5)
        assert accept.session_epoch == desk.snapshot["session_epoch"]
        assert by_type[AgentCommandType.AGENT_COMMAND_DECLINE].reason == "on a call"
        assert by_type[AgentCommandType.AGENT_COMMAND_CLOSE].wrap_up_code == "solved"
        assert by_type[AgentCommandType.AGENT_COMMAND_TRANSFER].transfer_to_group == "after_sales"
        masked_note = "客户电话 138****5678，身份证 110101********1234"
        assert by_type[AgentCommandType.AGENT_COMMAND_TRANSFER].note == masked_note
        kept = await redis.get(keys.transfer_note("shop-a", "c-own"))
        assert kept is not None and json.loads(kept)["note"] == masked_note
        await desk.close()
        await wei.close()


async def test_agent_of_shop_a_cannot_act_on_shop_b_conversations(gs: GatewaySettings, redis: Redis) -> None:
    keys = Keys(gs.key_prefix)
    # shop B's conversation; shop A's agent knows (or guesses) its id.
    await conversation(redis, keys, "shop-b", "c-b1", owner="b-hao", epoch=1, state="assigned", channel="chat")
    await conversation(redis, keys, "shop-b", "c-b2", state="offered", offer_agent="a-lina", epoch=1)
    async with running_gateway(gs) as gw:
        lina = await Desk.open(gw.url, token("shop-a", "a-lina"))
        frames = [
            {"type": "reply", "conversation_id": "c-b1", "epoch": 1, "text": "hi"},
            {"type": "accept", "conversation_id": "c-b2"},
            {"type": "close", "conversation_id": "c-b1", "wrap_up_code": "x"},
            {"type": "transfer", "conversation_id": "c-b1", "to_agent": "a-lina"},
            {"type": "typing", "conversation_id": "c-b1"},
        ]
        for i, frame in enumerate(frames):
            answer = await lina.command({**frame, "id": f"b{i}"})
            assert answer["type"] == "error" and answer["code"] == "not_found", answer
        assert all(c["conversation_id"] not in ("c-b1", "c-b2") for c in lina.snapshot["conversations"])
        await lina.close()
    assert await redis.xlen(keys.desk_outbox("shop-b", "a-lina")) == 0


async def test_a_newer_session_fences_the_older_socket(gs: GatewaySettings, redis: Redis) -> None:
    async with running_gateway(gs) as one, running_gateway(gs) as two:
        first = await Desk.open(one.url, token("shop-a", "a-min"))
        second = await Desk.open(two.url, token("shop-a", "a-min"))
        assert second.snapshot["session_epoch"] > first.snapshot["session_epoch"]
        assert await first.close_code() == CloseCode.SUPERSEDED
        beat = await second.command({"type": "heartbeat", "id": "hb"})
        assert beat["type"] == "result"
        status = await second.command({"type": "set_status", "id": "st", "status": "busy"})
        assert status["status"] == "busy"
        await second.close()


async def test_command_rate_and_frame_size_are_limited(settings: ServiceSettings, redis: Redis) -> None:
    gs = gateway_settings(settings, command_rate=1.0, command_burst=3, max_frame_bytes=2048)
    await roster_loaded(gs, redis)
    async with running_gateway(gs) as gw:
        desk = await Desk.open(gw.url, token("shop-a", "a-lina"))
        answers = [await desk.command({"type": "heartbeat", "id": f"h{i}"}) for i in range(5)]
        assert [a["type"] for a in answers[:3]] == ["result"] * 3
        assert answers[-1]["code"] == "rate_limited"
        await desk.send({"type": "reply", "conversation_id": "c", "epoch": 1, "text": "x" * 5000})
        assert await desk.close_code() == CloseCode.MESSAGE_TOO_BIG
