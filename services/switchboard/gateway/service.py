"""Building a gateway replica from its settings: clients, the hub, the routes and the workers."""

from __future__ import annotations

import gc
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio import Redis

from switchboard.gateway.app import Gateway
from switchboard.gateway.board import Board, install_board, install_pages
from switchboard.gateway.board_stats import BoardFigures, RoutingTally, routing_facts
from switchboard.gateway.commands import DeskCommands
from switchboard.gateway.desk_config import load_desk_configs
from switchboard.gateway.hub import DeskHub
from switchboard.gateway.limits import raise_open_files
from switchboard.gateway.queue_stats import QueueStatsBroadcaster
from switchboard.gateway.responses import ResponseRecorder, ResponseTargets
from switchboard.gateway.settings import GatewaySettings
from switchboard.runtime.consumer import BatchConsumer
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.logs import get_logger
from switchboard.runtime.redis_client import redis_client
from switchboard.runtime.service import ServiceRuntime
from switchboard.runtime.topics import Topics
from switchboard.state.agents import PresenceStore
from switchboard.state.keys import Keys
from switchboard.state.roster import load_roster

log = get_logger(__name__)

Worker = tuple[str, Callable[[], Coroutine[Any, Any, None]]]


def jwt_secret(settings: GatewaySettings) -> str:
    """The configured token secret, or a random one for a single dev replica (logged as a warning)."""
    if settings.jwt_secret is not None and settings.jwt_secret.get_secret_value():
        return settings.jwt_secret.get_secret_value()
    log.warning("jwt_secret_generated", detail="SB_JWT_SECRET unset: tokens are valid on this replica only")
    return secrets.token_urlsafe(32)


def assemble(settings: GatewaySettings, redis: Redis, producer: RecordProducer) -> Gateway:
    """A gateway replica over started clients (routes not installed, workers not running)."""
    keys = Keys(settings.key_prefix)
    gateway = Gateway(
        settings,
        jwt_secret(settings),
        redis,
        load_roster(settings.agents_file),
        PresenceStore(redis, keys, producer),
        DeskCommands(redis, keys, producer, Topics(settings.topic_prefix)),
        DeskHub(redis, keys, settings),
    )
    gateway.desk_configs = load_desk_configs(settings.desk_config_dir)
    gateway.response_targets = ResponseTargets(redis, keys, settings.routing_config_dir)
    gateway.commands.routing = gateway.response_targets
    gateway.commands.responses = ResponseRecorder(
        redis,
        keys,
        producer,
        Topics(settings.topic_prefix).routing,
        gateway.response_targets,
        settings.response_day_utc_offset_min,
    )
    return gateway


def board_figures(settings: GatewaySettings, gateway: Gateway) -> BoardFigures:
    """The board's figures over the gateway's Redis, watching the roster's groups with the routing targets."""
    figures = BoardFigures(
        gateway.redis,
        gateway.keys,
        RoutingTally(settings.board_history_s),
        sample_s=settings.board_sample_s,
        history_s=settings.board_history_s,
        head=settings.queue_stats_head,
        sl_window_s=settings.board_sl_window_s,
    )
    figures.know_routing(routing_facts(settings.routing_config_dir))
    figures.know_roster(gateway.roster)
    return figures


def workers(gateway: Gateway) -> list[Worker]:
    """The replica's long-running loops."""
    hub = gateway.hub
    return [
        ("desk-notify", hub.run_listener),
        ("desk-pump", hub.run_pump),
        ("desk-reconcile", hub.run_reconcile),
        ("desk-trim", hub.trimmer.run),
        (
            "desk-queue-stats",
            QueueStatsBroadcaster(gateway.redis, gateway.keys, hub, gateway.settings, gateway.response_targets).run,
        ),
    ]


async def build_gateway(runtime: ServiceRuntime, settings: GatewaySettings) -> Gateway:
    """Clients, hub and routes of one replica on `runtime`; its workers and closers are registered there."""
    redis = redis_client(settings, max_connections=settings.redis_connections)
    runtime.add_closer(redis.aclose)
    producer = await runtime.start_producer()
    gateway = assemble(settings, redis, producer)
    gateway.install(runtime.app)
    runtime.set_front(gateway.asgi)
    await _install_board(runtime, settings, gateway, producer)
    runtime.add_ready_check("desk_notify", lambda: gateway.hub.listening)
    for name, run in workers(gateway):
        runtime.add_worker(name, run)
    # First on SIGTERM, while /readyz already says 503 and everything else still works.
    runtime.add_drain(gateway.drain.run)
    runtime.add_stopper(gateway.hub.stop)
    runtime.add_stopper(gateway.stop_sessions)
    return gateway


async def _install_board(
    runtime: ServiceRuntime, settings: GatewaySettings, gateway: Gateway, producer: RecordProducer
) -> None:
    """The supervisor board: its figures (sampler and routing consumer), its API and the static pages."""
    figures = board_figures(settings, gateway)
    # A group of its own per replica: every replica counts every routing decision.
    consumer = BatchConsumer(
        settings,
        topics=[Topics(settings.topic_prefix).routing],
        group_id=f"{settings.topic_prefix}gateway-board-{settings.instance_id}",
        handler=figures.tally.handle,
        producer=producer,
    )
    # The board's figures are a view: a lagging tally must not take the replica out of rotation.
    await runtime.add_consumer("board-routing", consumer, gates_readiness=False)
    runtime.add_worker("board-sample", figures.run)
    runtime.add_stopper(figures.stop)
    board = Board(
        settings.operator_tokens,
        figures,
        gateway.presence,
        gateway.commands,
        gateway.redis,
        gateway.keys,
        settings.presence_url,
        gateway.response_targets,
        settings.response_day_utc_offset_min,
    )
    install_board(runtime.app, board)
    install_pages(runtime.app, settings.pages_dir)


async def build(settings: GatewaySettings) -> ServiceRuntime:
    """A ready-to-serve gateway replica, with the process tuned for tens of thousands of sockets."""
    # Every desktop is a file descriptor; the default soft limit (often 1024) would cap a replica at ~1,000 agents.
    raise_open_files(settings.max_open_files)
    runtime = ServiceRuntime(settings)
    await build_gateway(runtime, settings)
    # Tens of thousands of long-lived socket objects make every full garbage collection walk all of them; the
    # roster and start-up objects never die, so freeze them, and collect the young generation less often.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    return runtime
