"""`python -m switchboard.phone`: the phone transcripts adapter (HTTP and websocket on SB_HTTP_PORT)."""

from __future__ import annotations

import asyncio

from switchboard.intake.accept import Intake
from switchboard.phone.adapter import PhoneAdapter
from switchboard.phone.calls import CallStore
from switchboard.phone.directory import PhoneDirectory
from switchboard.phone.http_api import install_http_routes
from switchboard.phone.sequencer import Sequencer
from switchboard.phone.settings import PhoneSettings
from switchboard.phone.ws_api import install_ws_routes
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.keys import Keys
from switchboard.runtime.redis_client import redis_client
from switchboard.runtime.service import ServiceRuntime


def build_adapter(settings: PhoneSettings, producer: RecordProducer, runtime: ServiceRuntime) -> PhoneAdapter:
    """The adapter with its Redis client (closed by the runtime) and routes mounted on `runtime.app`."""
    redis = redis_client(settings)
    runtime.add_closer(redis.aclose)
    keys = Keys(settings.key_prefix)
    adapter = PhoneAdapter(
        intake=Intake(producer, redis, keys),
        calls=CallStore(redis, keys, settings.phone_call_ttl_s),
        directory=PhoneDirectory.load(settings.phone_directory),
        sequencer=Sequencer(settings.phone_reorder_window_s),
        redis=redis,
        keys=keys,
    )
    install_http_routes(runtime.app, adapter, settings)
    install_ws_routes(runtime.app, adapter, settings)
    return adapter


async def main() -> None:
    """Serve until SIGTERM."""
    settings = PhoneSettings()
    runtime = ServiceRuntime(settings)
    producer = await runtime.start_producer()
    build_adapter(settings, producer, runtime)
    await runtime.serve()


if __name__ == "__main__":
    asyncio.run(main())
