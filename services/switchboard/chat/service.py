"""Wires the chat adapter onto the shared runtime: widget socket, webhook route, outbound/routing consumer."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request, WebSocket
from fastapi.responses import JSONResponse

from switchboard.chat.accepting import ChatAccept
from switchboard.chat.callbacks import PlatformCallbacks
from switchboard.chat.conversations import Conversations
from switchboard.chat.limits import CustomerRate
from switchboard.chat.outbound import ChatOutbound
from switchboard.chat.pending import PendingReplies
from switchboard.chat.replies import ReplyRoute
from switchboard.chat.settings import ChatSettings
from switchboard.chat.sockets import SocketHub
from switchboard.chat.webhook import WebhookEndpoint
from switchboard.chat.widget import PATH as WIDGET_PATH
from switchboard.chat.widget import WidgetEndpoint
from switchboard.intake.accept import Intake
from switchboard.runtime.consumer import BatchConsumer
from switchboard.runtime.keys import Keys
from switchboard.runtime.logs import get_logger
from switchboard.runtime.redis_client import redis_client
from switchboard.runtime.service import ServiceRuntime
from switchboard.runtime.topics import Topics

log = get_logger(__name__)


async def build(settings: ChatSettings) -> ServiceRuntime:
    """A ready-to-serve chat adapter (producer and consumer started); `await runtime.serve()` runs it."""
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
    intake = Intake(producer, redis, keys)
    conversations = Conversations(redis, keys, settings.chat_conversation_ttl_s)
    accept = ChatAccept(intake, conversations)

    pending = PendingReplies(redis, keys, settings.chat_conversation_ttl_s)
    route = ReplyRoute(callbacks, pending)

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
                source="chat:socket", reason=reason, error_type="undeliverable", raw=raw, tenant_id=tenant_id
            )

    hub = SocketHub(redis, keys, pending, undelivered)
    route.hub = hub
    runtime.add_closer(hub.close)
    runtime.add_worker("chat-sockets", hub.listen, stop=hub.stop_intake)
    rate = CustomerRate(redis, keys, settings.chat_customer_rate_per_window, settings.chat_customer_rate_window_s)
    widget = WidgetEndpoint(settings, tenants, accept, hub, rate)
    webhook = WebhookEndpoint(settings, tenants, accept, redis, keys)

    @runtime.app.websocket(WIDGET_PATH)
    async def chat_widget(ws: WebSocket) -> None:
        await widget.serve(ws)

    @runtime.app.post("/chat/v1/webhook/{tenant_id}")
    async def chat_webhook(tenant_id: str, request: Request) -> JSONResponse:
        return await webhook.receive(tenant_id, request)

    handler = ChatOutbound(
        redis=redis,
        keys=keys,
        conversations=conversations,
        hub=hub,
        route=route,
        seconds_per_position=settings.chat_seconds_per_queue_position,
    )
    topics = Topics(settings.topic_prefix)
    consumer = BatchConsumer(
        settings,
        topics=[topics.outbound, topics.routing],
        group_id=f"{settings.topic_prefix}chat",
        handler=handler.handle,
        producer=producer,
    )
    await consumer.start()
    runtime.add_closer(consumer.stop)
    runtime.add_ready_check("kafka_consumer", lambda: consumer.ready)
    runtime.add_worker("chat-outbound", consumer.run, stop=consumer.stop_intake)
    return runtime
