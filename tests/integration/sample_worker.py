"""A small service on the shared runtime, used by the shutdown tests: it applies each inbound record's effect once.

The effect (RPUSH of the message id) is guarded by a processed-marker in the same Lua script, which is how a
switchboard handler makes a redelivered record change nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from switchboard.contracts import InboundMessage
from switchboard.runtime.consumer import BatchConsumer, Delivery, Rejected
from switchboard.runtime.redis_client import redis_client
from switchboard.runtime.service import ServiceRuntime, run_service
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics

APPLY_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX') then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
redis.call('INCR', KEYS[3])
return 0
"""


class WorkerSettings(ServiceSettings):
    """Settings of the sample worker."""

    work_ms: int = 10


async def build(settings: WorkerSettings) -> ServiceRuntime:
    """A worker consuming the inbound topic, built the way every service is."""
    runtime = ServiceRuntime(settings)
    redis = redis_client(settings)
    runtime.add_closer(redis.aclose)
    producer = await runtime.start_producer()
    apply_once = redis.register_script(APPLY_ONCE)
    effects, duplicates = f"{settings.key_prefix}:effects", f"{settings.key_prefix}:duplicates"

    async def handle(batch: Sequence[Delivery]) -> Sequence[Rejected]:
        for delivery in batch:
            assert isinstance(delivery.message, InboundMessage)
            await asyncio.sleep(settings.work_ms / 1000)
            mid = delivery.message.message_id
            await apply_once(keys=[f"{settings.key_prefix}:done:{mid}", effects, duplicates], args=[mid])
        return []

    consumer = BatchConsumer(
        settings,
        topics=[Topics(settings.topic_prefix).inbound],
        group_id=f"{settings.topic_prefix}worker",
        handler=handle,
        producer=producer,
    )
    await runtime.add_consumer("consume", consumer)
    return runtime


if __name__ == "__main__":
    run_service(build, WorkerSettings())
