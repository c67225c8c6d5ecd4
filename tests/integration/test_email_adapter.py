"""The e-mail adapter end to end: real SMTP clients and HTTP against the service, real Kafka and Redis, a real relay.

One service instance serves the whole module (its own topics and keys); each test uses its own Message-IDs.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.header import Header, decode_header, make_header
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib
import httpx
import pytest
import pytest_asyncio

from switchboard.contracts import Channel, DeadLetter, InboundMessage, OutboundMessage
from switchboard.email.service import EmailService
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.topics import Topics
from tests.conftest import topic_settings
from tests.helpers import eventually
from tests.integration.email_support import (
    CapturingRelay,
    email_settings,
    read_all,
    running_email,
    signed_mail_headers,
)

pytestmark = pytest.mark.broker

CUSTOMER = "zhang.san@customer.example"
PHONE, ID_CARD = "13812345678", "110101199003071234"


@dataclass
class Env:
    service: EmailService
    relay: CapturingRelay
    topics: Topics
    bootstrap: str
    smtp_port: int
    http: httpx.AsyncClient


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env(kafka_bootstrap: str, redis_url: str) -> AsyncIterator[Env]:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    topics = Topics(prefix)
    base = await topic_settings(kafka_bootstrap, redis_url, prefix, shutdown_grace_s=5.0, retry_backoff_s=0.05)
    relay = CapturingRelay()
    await relay.start()
    settings = email_settings(
        base, relay.port, max_message_bytes=300_000, max_attachment_bytes=100_000, max_parts=20, max_depth=5
    )
    try:
        async with running_email(settings) as service, httpx.AsyncClient(timeout=30) as http:
            assert service.smtp.port is not None
            yield Env(service, relay, topics, kafka_bootstrap, service.smtp.port, http)
    finally:
        await relay.stop()


@dataclass
class SmtpExchange:
    """What the server answered in one SMTP transaction: each RCPT's reply, and DATA's (None: never sent)."""

    rcpt: dict[str, str]
    data: str | None


async def smtp_exchange(
    port: int, raw: bytes, rcpts: list[str], sender: str = CUSTOMER, *, data_anyway: bool = False
) -> SmtpExchange:
    """MAIL, then one RCPT per recipient, each reply kept as "code text"; then DATA when a recipient was taken (or
    `data_anyway`, as a client that ignores the refusals would)."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
    await client.connect()
    try:
        await client.ehlo()
        await client.mail(sender)
        answers: dict[str, str] = {}
        for rcpt in rcpts:
            try:
                reply = await client.rcpt(rcpt)
            except aiosmtplib.SMTPResponseException as exc:
                answers[rcpt] = f"{exc.code} {exc.message}"
            else:
                answers[rcpt] = f"{reply.code} {reply.message}"
        if not (data_anyway or any(a.startswith("250") for a in answers.values())):
            return SmtpExchange(answers, None)
        try:
            response = await client.data(raw)
        except aiosmtplib.SMTPResponseException as exc:
            return SmtpExchange(answers, f"{exc.code} {exc.message}")
        return SmtpExchange(answers, f"{response.code} {response.message}")
    finally:
        await client.quit()


async def smtp_send(port: int, raw: bytes, rcpt: str = "service@shop-a.example", sender: str = CUSTOMER) -> str:
    """Send over SMTP; returns the final reply as "code text" (refusals included: RCPT's when it refused)."""
    exchange = await smtp_exchange(port, raw, [rcpt], sender)
    return exchange.rcpt[rcpt] if exchange.data is None else exchange.data


def mail(text: str, *, charset: str = "utf-8", subject: str = "订单咨询", **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", f"{Header('张三', 'gb2312').encode()} <{CUSTOMER}>")
    msg["To"] = headers.pop("To", "service@shop-a.example")
    msg["Subject"] = subject
    msg["Message-ID"] = headers.pop("Message_ID", make_msgid(domain="customer.example"))
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(text, charset=charset)
    return msg


async def inbound(env: Env) -> list[InboundMessage]:
    return [m for _, m in await read_all(env.bootstrap, env.topics.inbound) if isinstance(m, InboundMessage)]


async def dead_letters(env: Env) -> list[DeadLetter]:
    return [m for _, m in await read_all(env.bootstrap, env.topics.dlq) if isinstance(m, DeadLetter)]


async def asked(env: Env, question: EmailMessage) -> InboundMessage:
    """Send a customer's mail over SMTP and return the record it became."""
    answer = await smtp_send(env.smtp_port, question.as_bytes())
    return next(m for m in await inbound(env) if m.message_id == answer.split()[-1])


def agent_reply(record: InboundMessage, text: str, **fields: str) -> OutboundMessage:
    """An agent's e-mail reply into the record's conversation, as the gateway writes it."""
    return OutboundMessage(
        message_id=uuid.uuid4().hex,
        tenant_id="shop-a",
        conversation_id=record.conversation_id,
        channel=Channel.CHANNEL_EMAIL,
        text=text,
        **fields,
    )


async def publish_outbound(env: Env, *keyed: tuple[str, OutboundMessage]) -> None:
    """Put replies on the outbound topic as the gateway does."""
    producer = RecordProducer(env.service.runtime.settings)
    await producer.start()
    try:
        await producer.send_many(env.topics.outbound, list(keyed))
    finally:
        await producer.stop()


def _raw_with_charset(text: str, charset: str | None, declared: str | None) -> bytes:
    ctype = f"text/plain; charset={declared}" if declared else "text/plain"
    head = (
        f"From: {CUSTOMER}\r\nTo: service@shop-a.example\r\nSubject: =?utf-8?b?6K6i5Y2V?=\r\n"
        f"Message-ID: {make_msgid(domain='customer.example')}\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    return head.encode() + text.encode(charset or "utf-8") + b"\r\n"


async def test_chinese_charsets_arrive_as_readable_text_over_smtp(env: Env) -> None:
    simplified = "您好，我买的外套还没有发货，请问什么时候发？"
    traditional = "您好，我買的外套還沒有發貨，請問什麼時候發？"
    cases = [
        (simplified, "gb2312", "gb2312"),
        (simplified, "gbk", "gbk"),
        (simplified, "gb18030", "gb18030"),
        (traditional, "big5", "big5"),
        (simplified, "utf-8", "utf-8"),
        (simplified, "gbk", None),  # undeclared
        (traditional, "big5", "gb2312"),  # declared wrong
        (simplified, "utf-8", "iso-8859-1"),  # declared wrong
    ]
    sent = []
    for text, charset, declared in cases:
        raw = _raw_with_charset(text, charset, declared)
        reply = await smtp_send(env.smtp_port, raw)
        assert reply.startswith("250"), reply
        sent.append((reply.split()[-1], text))
    by_id = {m.message_id: m for m in await inbound(env)}
    for message_id, text in sent:
        record = by_id[message_id]
        assert record.text == text
        assert record.language == "zh"
        assert record.email.subject == "订单"
        assert (record.tenant_id, record.channel) == ("shop-a", Channel.CHANNEL_EMAIL)


async def test_a_raw_8bit_gbk_subject_arrives_readable_over_smtp_and_the_webhook(env: Env) -> None:
    """Old Chinese mail clients write the Subject as raw GBK bytes, no encoded word: read like the body, never
    stored as U+FFFD, whether the body declares the charset or not, and however long (folded) the Subject is."""
    subjects = ["退货申请 订单123", "发票", "退货申请" * 12]
    sent: list[tuple[str, str]] = []
    for i, subject in enumerate(subjects):
        for declared in (b"Content-Type: text/plain; charset=gbk\r\n", b""):
            raw = (
                f"From: {CUSTOMER}\r\nTo: service@shop-a.example\r\n".encode()
                + b"Subject: "
                + subject.encode("gbk")
                + f"\r\nMessage-ID: {make_msgid(domain='customer.example')}\r\nMIME-Version: 1.0\r\n".encode()
                + declared
                + b"Content-Transfer-Encoding: 8bit\r\n\r\n"
                + "你好，我要退货".encode("gbk")
                + b"\r\n"
            )
            if (i + len(declared)) % 2:
                reply = await smtp_send(env.smtp_port, raw)
                assert reply.startswith("250"), reply
                sent.append((reply.split()[-1], subject))
            else:
                url = f"http://127.0.0.1:{env.service.runtime.port}/v1/email/inbound/shop-a"
                answer = await env.http.post(url, content=raw, headers=signed_mail_headers("shop-a", raw))
                assert answer.status_code == 202, answer.text
                sent.append((answer.json()["message_ids"][0], subject))
    by_id = {m.message_id: m for m in await inbound(env)}
    for message_id, subject in sent:
        record = by_id[message_id]
        assert record.email.subject == subject and "\ufffd" not in record.email.subject
        assert record.text == "你好，我要退货"


async def test_multipart_html_only_quotes_and_attachments(env: Env) -> None:
    msg = mail("纯文本版本：请帮我把尺码换成XL\n\n在 2025年11月3日 10:00，客服 写道：\n> 您好，请问需要什么帮助？")
    msg.add_alternative("<p>HTML版本</p>", subtype="html")
    msg.add_attachment(b"\x89PNG" + bytes(1000), maintype="image", subtype="png", filename="尺码表.png")
    html_only = mail("<p>只有<b>HTML</b>的邮件</p><blockquote>旧内容</blockquote>")
    html_only.set_content("<p>只有<b>HTML</b>的邮件</p><blockquote>旧内容</blockquote>", subtype="html")
    first = (await smtp_send(env.smtp_port, msg.as_bytes())).split()[-1]
    second = (await smtp_send(env.smtp_port, html_only.as_bytes())).split()[-1]
    by_id = {m.message_id: m for m in await inbound(env)}
    assert by_id[first].text == "纯文本版本：请帮我把尺码换成XL"
    [attachment] = by_id[first].attachments
    assert (attachment.name, attachment.content_type, attachment.size_bytes) == ("尺码表.png", "image/png", 1004)
    assert len(attachment.sha256) == 64
    assert by_id[second].text == "只有 HTML 的邮件"


async def test_pii_is_masked_in_records_and_dead_letters(env: Env) -> None:
    body = f"我的手机 {PHONE}，也可以打 １３９ ８７６５ ４３２１，身份证 {ID_CARD}，邮箱 lisi.backup@qq.com"
    record = await asked(env, mail(body, subject=f"回电 {PHONE}"))
    assert "138****5678" in record.text and "139****4321" in record.text
    assert "110101********1234" in record.text and "l***@qq.com" in record.text
    assert record.email.subject == "回电 138****5678"
    assert record.customer.contact_masked == "z***@customer.example"
    assert record.email.from_address_masked == "z***@customer.example"
    assert record.customer.display_name == "张三"
    too_many = mail(body)
    for i in range(25):
        too_many.add_attachment(b"x", maintype="application", subtype="octet-stream", filename=f"{i}.bin")
    refused = await smtp_send(env.smtp_port, too_many.as_bytes())
    assert refused.startswith("554 ") and "MIME parts" in refused
    letter = next(d for d in await dead_letters(env) if d.error_type == "too_many_parts")
    for raw_value in (PHONE, ID_CARD, "lisi.backup@qq.com", CUSTOMER):
        assert raw_value.encode() not in record.SerializeToString()
        assert raw_value.encode() not in letter.SerializeToString()


async def test_replies_join_their_conversation_and_a_new_thread_opens_a_new_one(env: Env) -> None:
    first = mail("第一封：订单 A 没收到")
    root = first["Message-ID"]
    reply_a = await smtp_send(env.smtp_port, first.as_bytes())
    second = mail("补充：快递单号 SF123", subject="Re: 订单咨询", In_Reply_To=root, References=root)
    reply_b = await smtp_send(env.smtp_port, second.as_bytes())
    # A client that keeps only References, and a reply that arrives before the message it answers.
    third = mail("还在吗？", References=f"{root} {second['Message-ID']}")
    reply_c = await smtp_send(env.smtp_port, third.as_bytes())
    orphan_parent = make_msgid(domain="customer.example")
    orphan = mail("先到的回复", References=f"{root} {orphan_parent}", In_Reply_To=orphan_parent)
    reply_d = await smtp_send(env.smtp_port, orphan.as_bytes())
    other = await smtp_send(env.smtp_port, mail("另一个问题：发票").as_bytes())
    # Someone else copying the thread's ids does not get into the conversation (agents' replies would go to them).
    stranger = mail("我也要退款", From="intruder@elsewhere.example", In_Reply_To=root, References=root)
    intruder = await smtp_send(env.smtp_port, stranger.as_bytes(), sender="intruder@elsewhere.example")
    by_id = {m.message_id: m for m in await inbound(env)}
    assert by_id[intruder.split()[-1]].conversation_id != by_id[reply_a.split()[-1]].conversation_id
    conv = by_id[reply_a.split()[-1]].conversation_id
    assert [by_id[r.split()[-1]].conversation_id for r in (reply_b, reply_c, reply_d)] == [conv] * 3
    assert by_id[other.split()[-1]].conversation_id != conv
    assert by_id[reply_b.split()[-1]].email.in_reply_to == root.strip("<>")


async def test_the_same_message_id_delivered_twice_yields_one_record(env: Env) -> None:
    msg = mail("请问可以开发票吗？")
    first = await smtp_send(env.smtp_port, msg.as_bytes())
    again = await smtp_send(env.smtp_port, msg.as_bytes())
    via_http = await env.http.post(
        f"http://127.0.0.1:{env.service.runtime.port}/v1/email/inbound/shop-a",
        content=msg.as_bytes(),
        headers=signed_mail_headers("shop-a", msg.as_bytes()),
    )
    assert first.startswith("250 2.0.0 Accepted") and again.startswith("250 2.0.0 Already accepted")
    assert via_http.status_code == 200 and via_http.json()["result"] == "duplicate"
    records = [m for m in await inbound(env) if m.provider_message_id == msg["Message-ID"].strip("<>")]
    assert len(records) == 1


@pytest.mark.parametrize(
    ("headers", "sender", "reason"),
    [
        ({"Auto_Submitted": "auto-replied"}, CUSTOMER, "auto_submitted"),
        ({"Precedence": "bulk"}, CUSTOMER, "precedence_bulk"),
        ({"X_Autoreply": "yes"}, CUSTOMER, "auto_reply"),
        ({"From": "MAILER-DAEMON@mx.customer.example"}, "", "bounce"),
        ({"List_Id": "<deals.lists.example>"}, CUSTOMER, "mailing_list"),
    ],
)
async def test_auto_replies_bounces_and_list_mail_are_counted_not_routed(
    env: Env, headers: dict[str, str], sender: str, reason: str
) -> None:
    msg = mail("I am out of the office", **headers)
    before = await _metric(env, f'sb_email_not_routed_total{{reason="{reason}"}}')
    reply = await smtp_send(env.smtp_port, msg.as_bytes(), sender=sender)
    assert reply.startswith("250") and reason in reply
    assert await _metric(env, f'sb_email_not_routed_total{{reason="{reason}"}}') == before + 1
    assert not [m for m in await inbound(env) if m.provider_message_id == msg["Message-ID"].strip("<>")]


async def _metric(env: Env, series: str) -> float:
    text = (await env.http.get(f"http://127.0.0.1:{env.service.runtime.port}/metrics")).text
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


async def test_refused_input_gets_a_clear_smtp_error_and_a_dead_letter(env: Env) -> None:
    tag = uuid.uuid4().hex[:8]
    elsewhere = f"someone@elsewhere-{tag}.example"
    # A shop a sender made up under the subdomain: refused at RCPT too, not taken and dead-lettered later.
    made_up = f"service@no-such-shop-{tag}.inbound.switchboard.local"
    for rcpt in (elsewhere, made_up):
        alone = await smtp_exchange(env.smtp_port, mail("hi").as_bytes(), [rcpt])
        assert alone.rcpt[rcpt].startswith("550 5.1.1 no shop receives mail"), alone
        assert alone.data is None, alone
    # Beside a shop's address only the unknown one is refused, and the message is taken for the shop alone.
    shop = "service@shop-a.example"
    both = await smtp_exchange(env.smtp_port, mail("hi").as_bytes(), [made_up, shop])
    assert both.rcpt[made_up].startswith("550 5.1.1") and both.rcpt[shop].startswith("250 "), both
    assert both.data is not None and both.data.startswith("250 2.0.0 Accepted as "), both
    record = next(m for m in await inbound(env) if m.message_id == both.data.split()[-1])
    assert list(record.email.to_addresses) == [shop]
    # A client that sends DATA anyway after its only recipient was refused has nothing taken either.
    pushy = await smtp_exchange(env.smtp_port, mail("hi").as_bytes(), [elsewhere], data_anyway=True)
    assert pushy.rcpt[elsewhere].startswith("550 5.1.1") and (pushy.data or "").startswith("503 "), pushy
    # Each refused RCPT has its DLQ record: the envelope, masked, with no shop (docs/email.md, "Which shop").
    envelopes = [d for d in await dead_letters(env) if tag.encode() in d.original]
    assert sorted(d.original for d in envelopes) == [
        f"MAIL FROM:<z***@customer.example> RCPT TO:<s***@elsewhere-{tag}.example>".encode(),
        f"MAIL FROM:<z***@customer.example> RCPT TO:<s***@elsewhere-{tag}.example>".encode(),
        f"MAIL FROM:<z***@customer.example> RCPT TO:<s***@no-such-shop-{tag}.inbound.switchboard.local>".encode(),
        f"MAIL FROM:<z***@customer.example> RCPT TO:<s***@no-such-shop-{tag}.inbound.switchboard.local>".encode(),
    ]
    for letter in envelopes:
        assert (letter.error_type, letter.source, letter.service, letter.tenant_id) == (
            "unknown_recipient",
            "smtp",
            "email",
            "",
        )
        assert letter.reason == "no shop receives mail at this address"
    big = mail("附件太大")
    big.add_attachment(bytes(150_000), maintype="application", subtype="pdf", filename="invoice.pdf")
    assert (await smtp_send(env.smtp_port, big.as_bytes())).startswith("552 5.3.4 attachments exceed")
    huge = mail("x" * 400_000)
    assert (await smtp_send(env.smtp_port, huge.as_bytes())).startswith("552 5.3.4 message is larger")
    deep = "\r\n".join(
        [f"From: {CUSTOMER}", "Subject: deep", "MIME-Version: 1.0"]
        + [line for i in range(8) for line in (f'Content-Type: multipart/mixed; boundary="b{i}"', "", f"--b{i}")]
        + ["Content-Type: text/plain", "", "deep", ""]
        + [f"--b{i}--" for i in reversed(range(8))]
    )
    assert (await smtp_send(env.smtp_port, deep.encode())).startswith("554 5.6.0 MIME parts nested deeper")
    letters = {d.error_type: d for d in await dead_letters(env)}
    for error_type in ("too_large", "too_deep", "unknown_recipient"):
        assert letters[error_type].source == "smtp"
        assert letters[error_type].reason
        assert letters[error_type].service == "email"


async def test_http_webhook_answers_like_the_smtp_server(env: Env) -> None:
    base = f"http://127.0.0.1:{env.service.runtime.port}/v1/email/inbound"

    async def post(tenant: str, raw: bytes, content_type: str = "message/rfc822", **params: str) -> httpx.Response:
        headers = signed_mail_headers(tenant, raw, content_type)
        return await env.http.post(f"{base}/{tenant}", params=params, content=raw, headers=headers)

    msg = mail("通过 webhook 发来的邮件", To="service@shop-b.example")
    accepted = await post("shop-b", msg.as_bytes())
    assert accepted.status_code == 202, accepted.text
    [message_id] = accepted.json()["message_ids"]
    record = next(m for m in await inbound(env) if m.message_id == message_id)
    assert record.tenant_id == "shop-b"
    explicit = await post("shop-a", mail("指定收件人").as_bytes(), recipient="help@shop-a.example")
    assert explicit.status_code == 202
    assert (await post("shop-a", b"{}", "application/json")).status_code == 415
    assert (await post("shop-a", b"x" * 400_000)).status_code == 413
    stranger = await post("shop-a", mail("hi", To="a@elsewhere.example").as_bytes())
    assert stranger.status_code == 422 and "no recipient" in stranger.json()["detail"]
    # shop-a's secret does not speak for shop-b's addresses.
    other = await post("shop-a", mail("not yours", To="service@shop-b.example").as_bytes())
    assert other.status_code == 422 and "no recipient" in other.json()["detail"]
    no_sender = b"To: service@shop-a.example\r\nSubject: who am I\r\nMessage-ID: <nosender@x>\r\n\r\nhello\r\n"
    nameless = await post("shop-a", no_sender)
    assert nameless.status_code == 422 and "no sender" in nameless.json()["detail"]
    auto = await post("shop-a", mail("away", Auto_Submitted="auto-replied").as_bytes())
    assert auto.status_code == 200 and auto.json()["result"] == "not_routed"
    letters = [d for d in await dead_letters(env) if d.source.startswith("http:")]
    assert {d.error_type for d in letters} == {"unsupported_media_type", "unknown_recipient", "no_sender"}
    assert {d.tenant_id for d in letters} == {"shop-a"}


async def test_unsigned_and_forged_webhook_posts_are_refused_without_a_dead_letter(env: Env) -> None:
    base = f"http://127.0.0.1:{env.service.runtime.port}/v1/email/inbound"
    marker = uuid.uuid4().hex
    raw = mail(f"伪造的邮件 {marker}").as_bytes()
    good = signed_mail_headers("shop-a", raw)
    cases = [
        ("", {"content-type": "message/rfc822"}),  # the path of old, which names no shop
        ("/shop-a", {"content-type": "message/rfc822"}),
        ("/shop-a", {**good, "X-SB-Signature": "sha256=" + "0" * 64}),
        ("/shop-a", {**good, "X-SB-Timestamp": "1"}),
        ("/shop-b", good),  # shop-a's signature at shop-b
        ("/no-such-shop", good),
    ]
    for path, headers in cases:
        answer = await env.http.post(base + path, content=raw, headers=headers)
        assert answer.status_code == 401, (path, answer.text)
        assert answer.json()["error"] == "unauthorized"
    assert (await env.http.post(f"{base}/shop-a", content=raw, headers=good)).status_code == 202
    # The signed post was taken; none of the others left a DLQ record (the env's DLQ holds other tests' records).
    assert not [d for d in await dead_letters(env) if marker.encode() in d.original]


async def test_one_message_to_two_shops_is_one_record_per_shop(env: Env) -> None:
    msg = mail("两家店都问一下：有现货吗？", To="service@shop-a.example, service@shop-b.example")
    # Each shop's webhook posts it with the shop's signature; each takes its own addresses.
    for shop in ("shop-a", "shop-b"):
        answer = await env.http.post(
            f"http://127.0.0.1:{env.service.runtime.port}/v1/email/inbound/{shop}",
            content=msg.as_bytes(),
            headers=signed_mail_headers(shop, msg.as_bytes()),
        )
        assert answer.status_code == 202
    records = [m for m in await inbound(env) if m.provider_message_id == msg["Message-ID"].strip("<>")]
    assert sorted(r.tenant_id for r in records) == ["shop-a", "shop-b"]
    assert records[0].conversation_id != records[1].conversation_id


async def test_agent_reply_leaves_through_the_relay_threaded_and_the_answer_joins(env: Env) -> None:
    question = mail("你好，我想退货", subject="退货申请")
    record = await asked(env, question)
    outbound = agent_reply(record, "您好，已为您登记退货，请寄回商品。", agent_id="agent-7")
    chat_reply = OutboundMessage(message_id="c1", tenant_id="shop-a", conversation_id="x", channel=Channel.CHANNEL_CHAT)
    await publish_outbound(env, ("x", chat_reply), (record.conversation_id, outbound))

    async def delivered() -> bool:
        return any(m["Message-ID"] == f"<{outbound.message_id}@mail.switchboard.test>" for m in env.relay.messages)

    await eventually(delivered, 30, "agent reply at the relay")
    sent = next(m for m in env.relay.messages if m["Message-ID"] == f"<{outbound.message_id}@mail.switchboard.test>")
    assert sent["In-Reply-To"] == question["Message-ID"]
    assert question["Message-ID"] in sent["References"]
    assert str(make_header(decode_header(sent["Subject"]))) == "Re: 退货申请"
    assert sent["To"] == CUSTOMER and sent["From"] == "service@shop-a.example"
    assert sent.get_payload(decode=True).decode(sent.get_content_charset()).strip() == outbound.text
    assert len(env.relay.messages) == len({m["Message-ID"] for m in env.relay.messages}), "chat reply not mailed"
    answer = mail(
        "好的，已寄出",
        subject="Re: 退货申请",
        In_Reply_To=sent["Message-ID"],
        References=f"{question['Message-ID']} {sent['Message-ID']}",
    )
    joined = await asked(env, answer)
    assert joined.conversation_id == record.conversation_id


async def test_replies_the_relay_refuses_or_that_have_no_address_go_to_the_dlq(env: Env) -> None:
    record = await asked(env, mail("请问有优惠券吗？"))
    refused = agent_reply(record, "有的")
    nowhere = OutboundMessage(
        message_id=uuid.uuid4().hex, tenant_id="shop-a", conversation_id="email-unknown", channel=Channel.CHANNEL_EMAIL
    )
    env.relay.refuse_with = "550 5.1.1 mailbox unavailable"
    try:
        await publish_outbound(env, (record.conversation_id, refused), ("email-unknown", nowhere))

        async def dead_lettered() -> bool:
            letters = [d for d in await dead_letters(env) if d.error_type == "undeliverable"]
            return len(letters) >= 2

        await eventually(dead_lettered, 30, "both replies dead-lettered")
    finally:
        env.relay.refuse_with = None
    reasons = sorted(d.reason for d in await dead_letters(env) if d.error_type == "undeliverable")
    assert any("relay refused" in r for r in reasons) and any("no e-mail was received" in r for r in reasons)


async def test_a_reply_waits_while_the_relay_is_down_and_leaves_when_it_is_back(env: Env) -> None:
    record = await asked(env, mail("什么时候补货？"))
    reply = agent_reply(record, "下周一补货")
    retries_before = await _metric(env, 'sb_transient_retries_total{service="email"}')
    await env.relay.stop()
    await publish_outbound(env, (record.conversation_id, reply))

    async def retrying() -> bool:
        return await _metric(env, 'sb_transient_retries_total{service="email"}') > retries_before

    await eventually(retrying, 30, "the reply sender retrying while the relay is down")
    await env.relay.start()

    async def delivered() -> bool:
        return any(m["Message-ID"] == f"<{reply.message_id}@mail.switchboard.test>" for m in env.relay.messages)

    await eventually(delivered, 30, "the reply at the relay once it is back")
