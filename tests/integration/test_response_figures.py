"""The response script on a real Redis (one server and a cluster): a reply counts once however many replicas or
retries send it, two replies racing answer a customer message once, a conversation that opens again counts anew,
and the figures are the group's and the agent's, per minute and per day."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from switchboard.runtime.redis_client import connect_url
from switchboard.state.keys import Keys
from switchboard.state.responses import (
    Reply,
    agent_scope,
    day_bucket,
    group_scope,
    minute_bucket,
    read_figures,
    record_response,
)
from tests.redis_cluster import on_both_redis_backends

pytestmark = [on_both_redis_backends]

T = "shop-r"
NOW = 1_796_576_400_000


def reply(keys_reply: str, at_ms: int, messages: list[tuple[int, str]], *, opened: int = 1, agent: str = "a1") -> Reply:
    return Reply(T, "c1", agent, "presales", keys_reply, at_ms, opened, 180.0, messages)


async def test_a_reply_sent_by_several_replicas_at_once_counts_once(
    redis: Redis, redis_url_for_test: str, prefix: str
) -> None:
    keys = Keys(prefix.rstrip("."))
    messages = [(NOW - 200_000, "m1"), (NOW - 100_000, "m2")]
    replicas = [connect_url(redis_url_for_test) for _ in range(6)]  # each gateway replica has its own client
    try:
        results = await asyncio.gather(
            *(record_response(client, keys, reply("r1", NOW, messages)) for client in replicas)
        )
    finally:
        for client in replicas:
            await client.aclose()
    assert sum(r.new for r in results) == 1
    assert {r.response.response_ms for r in results if r.response} == {200_000}, "from the first unanswered"
    assert all(r.response and r.response.first and not r.response.within for r in results)
    # Another reply at the same time answers nothing more: both messages were answered by r1.
    other = await record_response(redis, keys, reply("r2", NOW + 1, messages))
    assert other.response is None and other.new

    figures = await read_figures(redis, keys, T, [group_scope("presales"), agent_scope("a1")], [day_bucket(NOW)])
    for got in figures.values():
        assert (got.responses, got.within, got.sum_ms, got.first_responses) == (1, 0, 200_000, 1)
    minute = await read_figures(redis, keys, T, [group_scope("presales")], [minute_bucket(NOW)])
    assert minute[group_scope("presales")].responses == 1


async def test_two_replies_racing_answer_a_message_once(redis: Redis, prefix: str) -> None:
    keys = Keys(prefix.rstrip("."))
    messages = [(NOW - 30_000, "m1")]
    first, second = await asyncio.gather(
        record_response(redis, keys, reply("r1", NOW, messages)),
        record_response(redis, keys, reply("r2", NOW + 500, messages)),
    )
    answered = [r.response for r in (first, second) if r.response is not None]
    assert len(answered) == 1 and answered[0].within, "30 s is within 180 s"


async def test_later_responses_and_a_conversation_that_opens_again(redis: Redis, prefix: str) -> None:
    keys = Keys(prefix.rstrip("."))
    thread = [(NOW - 60_000, "m1")]
    await record_response(redis, keys, reply("r1", NOW - 50_000, thread))
    thread += [(NOW - 20_000, "m2"), (NOW - 10_000, "m3")]
    later = await record_response(redis, keys, reply("r2", NOW, thread))
    assert later.response is not None and not later.response.first
    assert (later.response.response_ms, later.response.message_id) == (20_000, "m2")
    # Closed, then the customer writes to the same thread again: a new opening, a first response again.
    reopened = await record_response(redis, keys, reply("r3", NOW + 90_000, [(NOW + 60_000, "m4")], opened=2))
    assert reopened.response is not None and reopened.response.first and reopened.response.response_ms == 30_000
    got = (await read_figures(redis, keys, T, [agent_scope("a1")], [day_bucket(NOW)]))[agent_scope("a1")]
    assert (got.responses, got.first_responses, got.within) == (3, 2, 3)


async def test_figures_of_another_tenant_are_apart(redis: Redis, prefix: str) -> None:
    keys = Keys(prefix.rstrip("."))
    await record_response(redis, keys, reply("r1", NOW, [(NOW - 1_000, "m1")]))
    other = await read_figures(redis, keys, "shop-other", [group_scope("presales")], [day_bucket(NOW)])
    assert other[group_scope("presales")].responses == 0
