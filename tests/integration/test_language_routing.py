"""Languages end to end: the adapters detect them, and the example shop's router sends foreign buyers cross-border.

The chat adapter and the real router (its own process, the repository's routing configs) on real Kafka and Redis:
Japanese and Spanish buyers reach `cross_border` by the `cross-border` rule, a Chinese one does not. An e-mail's
language comes from its subject and body.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import aiosmtplib
import pytest

from switchboard.contracts import InboundMessage
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from tests.integration.chat_service import chat_settings, connect, next_frame, running_chat, send_message
from tests.integration.email_support import email_settings, read_all, running_email
from tests.integration.router_procs import first_decisions, start_router, stop_router

pytestmark = pytest.mark.broker

SHOP = "tmall-flagship"
BUYERS = {
    "buyer-ja": ("注文番号 2408151234567890 の配送状況を教えてください", "ja"),
    "buyer-es": ("¿Hacen envíos a México? Quiero la talla M", "es"),
    "buyer-ko": ("한국으로 배송되나요?", "ko"),
    "buyer-zh": ("亲 这件还有M码吗", "zh"),
}


async def test_japanese_and_spanish_buyers_reach_cross_border_and_chinese_ones_do_not(
    settings: ServiceSettings, tmp_path: Path
) -> None:
    router, _ = await start_router(settings, tmp_path, "router-lang")
    conversations: dict[str, str] = {}
    try:
        async with running_chat(chat_settings(settings)) as chat:
            for customer, (text, _) in BUYERS.items():
                async with connect(chat.ws_url(SHOP, customer)) as ws:
                    await next_frame(ws, "hello")
                    await send_message(ws, "m1", text=text)
                    conversations[customer] = str((await next_frame(ws, "ack"))["conversation_id"])
            decided = await first_decisions(settings, set(conversations.values()))
    finally:
        await stop_router(router)
    records = {
        m.conversation_id: m
        for _, m in await read_all(settings.kafka_bootstrap, Topics(settings.topic_prefix).inbound)
        if isinstance(m, InboundMessage)
    }
    for customer, (_, code) in BUYERS.items():
        assert records[conversations[customer]].language == code, customer
    for customer in ("buyer-ja", "buyer-es", "buyer-ko"):
        event = decided[conversations[customer]]
        assert (event.skill_group, event.rule_matched) == ("cross_border", "cross-border"), customer
    chinese = decided[conversations["buyer-zh"]]
    assert chinese.skill_group != "cross_border" and chinese.rule_matched != "cross-border"


async def test_an_emails_language_is_told_from_its_subject_and_body(settings: ServiceSettings) -> None:
    mails = {
        "ja": ("ご注文について", "先週注文した商品がまだ届きません。確認していただけますか。"),
        "es": ("Pedido", "Hola, mi pedido todavía no ha llegado. ¿Me pueden ayudar?"),
        "en": ("订单 2408151234567890", "Hello, my parcel has not arrived yet, could you check the tracking please?"),
        "zh": ("Re: order", "您好，我买的外套还没有发货，请问什么时候发？"),
    }
    sent: dict[str, str] = {}
    async with running_email(email_settings(settings)) as service:
        assert service.smtp.port is not None
        for code, (subject, body) in mails.items():
            msg = EmailMessage()
            msg["From"] = f"buyer-{code}@customer.example"
            msg["To"] = "service@shop-a.example"
            msg["Subject"] = subject
            msg["Message-ID"] = make_msgid(domain="customer.example")
            msg.set_content(body)
            _, reply = await aiosmtplib.send(msg, hostname="127.0.0.1", port=service.smtp.port, timeout=30)
            sent[reply.split()[-1]] = code
    records = [m for _, m in await read_all(settings.kafka_bootstrap, Topics(settings.topic_prefix).inbound)]
    found = {m.message_id: m.language for m in records if isinstance(m, InboundMessage) and m.message_id in sent}
    assert found == sent
