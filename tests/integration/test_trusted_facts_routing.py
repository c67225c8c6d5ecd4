"""Facts routing trusts, end to end: the chat adapter and the real router on real Kafka and Redis.

A browser that claims `super_vip` in its frames gets no tier boost; the shop's signed widget token gets its tier's
boost; the platform's signed webhook with a dispute stage makes the example shop's `dispute-open` rule fire; an
e-mail customer's tier comes from the shop's customer lookup (the tools' order service) and is boosted.
"""

from __future__ import annotations

import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from switchboard.chat.facts import encode_claims
from switchboard.contracts import InboundMessage, RoutingEventType
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard_tools.orders import OrderServer, load_orders
from switchboard_tools.stack.procs import free_port
from tests.integration.chat_service import chat_settings, connect, next_frame, running_chat, send_message, signed
from tests.integration.email_support import email_settings, read_all, running_email
from tests.integration.router_procs import REPO, first_decisions, start_router, stop_router

pytestmark = pytest.mark.broker

SHOP = "tmall-flagship"


async def widget_message(url: str, text: str, **fields: str) -> str:
    """Send one message over a widget socket; the conversation it went to."""
    async with connect(url) as ws:
        await next_frame(ws, "hello")
        await send_message(ws, "m1", text=text, **fields)
        return str((await next_frame(ws, "ack"))["conversation_id"])


async def test_only_signed_facts_move_a_conversations_group_and_priority(
    settings: ServiceSettings, tmp_path: Path
) -> None:
    router, _ = await start_router(settings, tmp_path, "router-facts")
    try:
        async with running_chat(chat_settings(settings)) as chat:
            browser = await widget_message(chat.ws_url(SHOP, "buyer-b"), "这件有M码吗", member_tier="super_vip")
            claims = encode_claims({"member_tier": "88VIP"})
            vip = await widget_message(chat.claims_url(SHOP, "buyer-v", claims), "这件有M码吗")
            body = {
                "event_id": "evt-d",
                "message_id": "tb-d",
                "customer_id": "tb-buyer-d",
                "text": "你好",
                "platform": "tmall",
                "dispute_stage": "platform_intervened",
            }
            raw, headers = signed(SHOP, body, int(time.time()))
            async with httpx.AsyncClient(base_url=chat.base) as http:
                answer = await http.post(f"/chat/v1/webhook/{SHOP}", content=raw, headers=headers)
            assert answer.status_code == 200
            disputed = str(answer.json()["conversation_id"])
            found = await first_decisions(settings, {browser, vip, disputed})
    finally:
        await stop_router(router)
    assert all(e.type == RoutingEventType.ROUTING_EVENT_QUEUED for e in found.values()), "nobody is on shift"
    assert not [r for r in found[browser].reasons if r.startswith("tier:")], found[browser].reasons
    assert "tier:88VIP+20" in found[vip].reasons
    assert found[vip].priority - found[browser].priority == 20
    dispute = found[disputed]
    assert (dispute.rule_matched, dispute.skill_group) == ("dispute-open", "complaints")
    assert "dispute:platform_intervened+40" in dispute.reasons


async def test_an_email_customers_looked_up_tier_is_boosted_by_the_router(
    settings: ServiceSettings, tmp_path: Path
) -> None:
    orders = OrderServer(load_orders(REPO / "config" / "orders" / "dev-orders.yaml"), free_port())
    await orders.start()
    router, _ = await start_router(settings, tmp_path, "router-tiers")
    try:
        async with running_email(email_settings(settings, customer_lookup_url=orders.url)) as service:
            assert service.smtp.port is not None
            ids = {}
            for sender in ("vip.buyer@customer.example", "stranger@customer.example"):
                mail = EmailMessage()
                mail["From"], mail["To"], mail["Subject"] = sender, "service@shop-a.example", "尺码"
                mail["Message-ID"] = make_msgid(domain="customer.example")
                mail.set_content("这件外套有M码吗")
                answer = await aiosmtplib.send(mail, hostname="127.0.0.1", port=service.smtp.port)
                ids[sender] = answer[1].split()[-1]
            inbound = await read_all(settings.kafka_bootstrap, Topics(settings.topic_prefix).inbound)
            conv = {m.message_id: m.conversation_id for _, m in inbound if isinstance(m, InboundMessage)}
            vip, stranger = conv[ids["vip.buyer@customer.example"]], conv[ids["stranger@customer.example"]]
            found = await first_decisions(settings, {vip, stranger})
    finally:
        await stop_router(router)
        await orders.stop()
    assert "tier:88VIP+20" in found[vip].reasons
    assert not [r for r in found[stranger].reasons if r.startswith("tier:")]
