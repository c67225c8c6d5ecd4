"""A desktop that stops reading gets backpressure: its events wait in the Redis outbox, not in gateway memory."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from switchboard.contracts import DeskEventType
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.keys import Keys
from switchboard.state.outbox import append_desk_event
from tests.helpers import eventually
from tests.integration.gateway_support import Desk, gateway_settings, roster_loaded, running_gateway, token
from tests.integration.test_gateway_delivery import message_event
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]

EVENTS = 3000
TEXT = "x" * 4000  # 3000 events of ~4 KB: far more than socket buffers hold


async def test_slow_desktop_is_held_back_by_the_outbox_and_later_gets_everything(
    settings: ServiceSettings, redis: Redis
) -> None:
    gs = gateway_settings(settings, send_queue_max=32)
    keys = Keys(gs.key_prefix)
    await roster_loaded(gs, redis)
    async with running_gateway(gs) as gw:
        slow = await Desk.open(
            gw.url, token("shop-a", "a-lina"), max_queue=1, rcvbuf=32 * 1024, compression=None
        )  # reads nothing for now
        session = gw.gateway.hub.sessions[("shop-a", "a-lina")]
        largest_queue = 0
        for i in range(EVENTS):
            await append_desk_event(
                redis, keys, message_event("shop-a", "a-lina", "c-1", f"{i} {TEXT}", DeskEventType.DESK_EVENT_MESSAGE)
            )
            largest_queue = max(largest_queue, len(session.queue))

        async def stalled() -> bool:
            return session.full_since is not None

        await eventually(stalled, 10, "the slow socket's queue filled and outbox reads paused")
        assert largest_queue <= gs.send_queue_max
        unsent = int(await redis.get(keys.desk_seq("shop-a", "a-lina")) or 0) - session.last_sent
        assert unsent > EVENTS // 3, f"only {unsent} events wait in the outbox: the gateway buffered the rest"

        got = await slow.events(EVENTS, timeout=60)
        assert [int(e["message"]["text"].split(" ", 1)[0]) for e in got] == list(range(EVENTS))
        assert session.full_since is None
        await slow.close()
