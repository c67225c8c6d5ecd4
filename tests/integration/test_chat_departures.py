"""The chat widget marks a waiting customer gone when their last socket closes, on real websockets and Redis.

The router's sweep abandons conversations gone past the tenant's patience (tests/integration/test_router_abandon.py);
here: the chat adapter's side of it, across two sockets of one customer, a reconnect, and a shop with a callback.
"""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from switchboard.runtime.settings import ServiceSettings
from switchboard.state.departures import gone_since
from switchboard.state.keys import Keys
from tests.helpers import eventually
from tests.integration.chat_service import chat_settings, connect, next_frame, running_chat
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]


async def test_the_last_socket_closing_marks_the_conversation_gone_and_a_new_socket_clears_it(
    settings: ServiceSettings, redis: Redis
) -> None:
    keys = Keys(settings.key_prefix)
    async with running_chat(chat_settings(settings)) as chat:
        async with connect(chat.ws_url("shop-a", "buyer-1")) as first:
            conv = (await next_frame(first, "hello"))["conversation_id"]
            async with connect(chat.ws_url("shop-a", "buyer-1")) as second:
                await next_frame(second, "hello")
                assert await redis.scard(keys.chat_customer_sockets("shop-a", "buyer-1")) == 2

            async def one_left() -> bool:
                return int(await redis.scard(keys.chat_customer_sockets("shop-a", "buyer-1"))) == 1

            await eventually(one_left, timeout=10, what="the second socket's close seen")
            # Another tab is still open: the customer can still be reached.
            assert await gone_since(redis, keys, "shop-a", conv) is None

        async def gone() -> bool:
            return await gone_since(redis, keys, "shop-a", conv) is not None

        await eventually(gone, timeout=10, what="conversation marked gone")
        async with connect(chat.ws_url("shop-a", "buyer-1")) as back:
            assert (await next_frame(back, "hello"))["conversation_id"] == conv

            async def back_again() -> bool:
                return await gone_since(redis, keys, "shop-a", conv) is None

            await eventually(back_again, timeout=10, what="the mark cleared by the new socket")


async def test_a_shop_whose_platform_takes_callbacks_never_marks_its_customers_gone(
    settings: ServiceSettings, redis: Redis
) -> None:
    keys = Keys(settings.key_prefix)
    cs = chat_settings(settings, chat_tenant_callbacks={"shop-b": "http://127.0.0.1:9/callback"})
    async with running_chat(cs) as chat:
        async with connect(chat.ws_url("shop-b", "buyer-2")) as ws:
            conv = (await next_frame(ws, "hello"))["conversation_id"]
        # The server has seen the close once the customer's socket set is empty (it is not kept for this shop).
        async with connect(chat.ws_url("shop-a", "buyer-3")) as other:
            other_conv = (await next_frame(other, "hello"))["conversation_id"]

        async def other_gone() -> bool:
            return await gone_since(redis, keys, "shop-a", other_conv) is not None

        await eventually(other_gone, timeout=10, what="shop-a's customer marked gone")
        assert await gone_since(redis, keys, "shop-b", conv) is None
