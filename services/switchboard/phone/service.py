"""Wiring of the phone transcripts adapter: HTTP and websocket routes on one ServiceRuntime (SB_HTTP_PORT)."""

from __future__ import annotations

from switchboard.intake.accept import Intake
from switchboard.intake.customers import CustomerTiers
from switchboard.intake.language import warm_language_detector
from switchboard.intake.tally import InboundTally
from switchboard.phone.adapter import PhoneAdapter
from switchboard.phone.announce import Announcer
from switchboard.phone.calls import CallStore
from switchboard.phone.directory import PhoneDirectory
from switchboard.phone.http_api import install_http_routes
from switchboard.phone.sequencer import Sequencer
from switchboard.phone.settings import PhoneSettings
from switchboard.phone.ws_api import install_ws_routes
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.logs import get_logger
from switchboard.runtime.redis_client import redis_client
from switchboard.runtime.service import ServiceRuntime
from switchboard.state.keys import Keys

log = get_logger(__name__)


def load_directory(settings: PhoneSettings) -> PhoneDirectory:
    """The phone directory from SB_PHONE_DIRECTORY (a malformed one raises).

    A missing file leaves the service up but not ready (an image without the dev config, a secret not mounted
    yet), so the operator sees it in /readyz instead of a crash loop.
    """
    if not settings.phone_directory.is_file():
        log.error("phone_directory_missing", path=str(settings.phone_directory))
        return PhoneDirectory()
    return PhoneDirectory.load(settings.phone_directory)


def build_adapter(settings: PhoneSettings, producer: RecordProducer, runtime: ServiceRuntime) -> PhoneAdapter:
    """The adapter with its Redis client (closed by the runtime) and routes mounted on `runtime.app`."""
    redis = redis_client(settings)
    runtime.add_closer(redis.aclose)
    keys = Keys(settings.key_prefix)
    directory = load_directory(settings)
    runtime.add_ready_check("phone_directory", lambda: bool(directory.tenant_by_key_hash))
    tiers = CustomerTiers(settings, known_tenants=directory.tenants())
    runtime.add_closer(tiers.close)
    intake = Intake(producer, redis, keys, InboundTally("phone", directory.tenants()))
    runtime.add_closer(intake.flush)
    adapter = PhoneAdapter(
        intake=intake,
        calls=CallStore(redis, keys, settings.phone_call_ttl_s),
        directory=directory,
        sequencer=Sequencer(settings.phone_reorder_window_s),
        redis=redis,
        keys=keys,
        customer_id_key=settings.phone_customer_id_key.encode(),
        tiers=tiers,
    )
    if not settings.phone_customer_id_key:
        log.warning("phone_customer_id_key_unset", hint="set SB_PHONE_CUSTOMER_ID_KEY in production")
    announcer = Announcer(
        redis,
        keys,
        adapter.calls,
        fallback_s_per_position=settings.phone_seconds_per_queue_position,
        default_lang=settings.phone_announcement_default_language,
    )
    install_http_routes(runtime.app, adapter, announcer, settings)
    install_ws_routes(runtime.app, adapter, announcer, settings)
    return adapter


async def build(settings: PhoneSettings) -> ServiceRuntime:
    """A ready-to-serve phone adapter: producer started, routes mounted."""
    await warm_language_detector()  # before the routes serve: no transcript waits for the models
    runtime = ServiceRuntime(settings)
    producer = await runtime.start_producer()
    build_adapter(settings, producer, runtime)
    return runtime
