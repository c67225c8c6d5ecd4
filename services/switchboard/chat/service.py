"""Wires the chat adapter onto the shared runtime: widget socket, webhook route, outbound/routing consumer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request, WebSocket
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from switchboard.chat.accepting import ChatAccept
from switchboard.chat.callbacks import PlatformCallbacks
from switchboard.chat.conversations import Conversations
from switchboard.chat.limits import CustomerRate
from switchboard.chat.outbound import ChatOutbound
from switchboard.chat.pending import PendingReplies
from switchboard.chat.queue_watch import QueueFrames, QueueWatch
from switchboard.chat.replies import ReplyRoute
from switchboard.chat.settings import ChatSettings, Tenant
from switchboard.chat.sockets import SocketHub, Undelivered
from switchboard.chat.webhook import PATH as WEBHOOK_PATH
from switchboard.chat.webhook import WebhookEndpoint
from switchboard.chat.widget import PATH as WIDGET_PATH
from switchboard.chat.widget import WidgetEndpoint
from switchboard.contracts import Channel
from switchboard.intake.accept import Intake
from switchboard.intake.language import warm_language_detector
from switchboard.intake.tally import InboundTally
from switchboard.runtime.consumer import BatchConsumer
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.logs import get_logger
from switchboard.runtime.redis_client import redis_client
from switchboard.runtime.service import ServiceRuntime
from switchboard.runtime.topics import Topics
from switchboard.state.departures import Departures
from switchboard.state.keys import Keys

log = get_logger(__name__)


@dataclass(frozen=True)
class _Parts:
    """The clients and stores one chat replica is built from."""

    settings: ChatSettings
    redis: Redis
    keys: Keys
    accept: ChatAccept
    hub: SocketHub
    route: ReplyRoute
    queue_frames: QueueFrames


async def build(settings: ChatSettings) -> ServiceRuntime:
    """A ready-to-serve chat adapter (producer and consumer started); `run_service` or `runtime.serving()` runs it."""
    await warm_language_detector()  # before the sockets open: no message waits for the models
    runtime = ServiceRuntime(settings)
    tenants = settings.tenants()
    if not tenants:
        log.warning("chat_no_tenants", hint="set SB_CHAT_TENANT_SECRETS or SB_CHAT_TENANTS_FILE")
    keys = Keys(settings.key_prefix)
    redis = redis_client(settings)
    runtime.add_closer(redis.aclose)
    producer = await runtime.start_producer()
    callbacks = PlatformCallbacks(tenants, settings.chat_callback_timeout_s, settings.chat_callback_attempts)
    runtime.add_closer(callbacks.close)
    conversations = Conversations(redis, keys, settings.chat_conversation_ttl_s)
    intake = Intake(producer, redis, keys, InboundTally("chat", tenants))
    runtime.add_closer(intake.flush)
    accept = ChatAccept(intake, conversations)
    pending = PendingReplies(redis, keys, settings.chat_conversation_ttl_s)
    route = ReplyRoute(callbacks, pending)
    hub = SocketHub(redis, keys, pending, _undelivered(route, accept))
    route.hub = hub
    runtime.add_closer(hub.close)
    runtime.add_worker("chat-sockets", hub.listen, stop=hub.stop_intake)
    frames = QueueFrames(
        redis,
        keys,
        always=settings.chat_queue_frames_always,
        fallback_s_per_position=settings.chat_seconds_per_queue_position,
    )
    if settings.chat_queue_refresh_s > 0:
        watch = QueueWatch(
            hub, frames, interval_s=settings.chat_queue_refresh_s, wait_change_s=settings.chat_queue_wait_change_s
        )
        runtime.add_worker("chat-queue-watch", watch.run, stop=watch.stop_intake)
    parts = _Parts(settings, redis, keys, accept, hub, route, frames)
    _mount(runtime, parts, tenants)
    await _consume(runtime, parts, producer)
    return runtime


def _undelivered(route: ReplyRoute, accept: ChatAccept) -> Undelivered:
    async def undelivered(tenant_id: str, customer_id: str, frame: dict[str, Any]) -> None:
        # A socket closed between PUBLISH and delivery: replies still reach the customer, queue updates may go.
        if frame.get("type") != "reply":
            return
        try:
            await route.without_socket(tenant_id, customer_id, frame)
        except Exception as exc:
            reason = f"reply {frame.get('message_id')} lost its socket and could not be sent on: {exc!r}"
            raw = json.dumps(frame, ensure_ascii=False).encode()
            await accept.refuse(
                source="chat:socket",
                reason=reason,
                error_type="undeliverable",
                raw=raw,
                tenant_id=tenant_id,
                offered=False,
            )

    return undelivered


def _mount(runtime: ServiceRuntime, parts: _Parts, tenants: dict[str, Tenant]) -> None:
    s = parts.settings
    rate = CustomerRate(parts.redis, parts.keys, s.chat_customer_rate_per_window, s.chat_customer_rate_window_s)
    widget = WidgetEndpoint(s, tenants, parts.accept, parts.hub, rate, Departures(parts.redis, parts.keys))
    webhook = WebhookEndpoint(s, tenants, parts.accept, parts.redis, parts.keys)

    @runtime.app.websocket(WIDGET_PATH)
    async def chat_widget(ws: WebSocket) -> None:
        await widget.serve(ws)

    @runtime.app.post(WEBHOOK_PATH)
    async def chat_webhook(tenant_id: str, request: Request) -> JSONResponse:
        return await webhook.receive(tenant_id, request)


async def _consume(runtime: ServiceRuntime, parts: _Parts, producer: RecordProducer) -> None:
    handler = ChatOutbound(
        redis=parts.redis,
        keys=parts.keys,
        conversations=parts.accept.conversations,
        hub=parts.hub,
        route=parts.route,
        queue_frames=parts.queue_frames,
    )
    topics = Topics(parts.settings.topic_prefix)
    consumer = BatchConsumer(
        parts.settings,
        topics=[topics.outbound, topics.routing],
        group_id=f"{parts.settings.topic_prefix}chat",
        handler=handler.handle,
        producer=producer,
        # Replies, typing and routing events of chat conversations (and routing events that name no channel).
        channels={Channel.Name(Channel.CHANNEL_CHAT), Channel.Name(Channel.CHANNEL_UNSPECIFIED)},
    )
    await runtime.add_consumer("chat-outbound", consumer)
