"""PII never stored raw: numbers and ID cards planted in every channel, in every written form, reach no sink.

A small sale through the real services (the load generator's local stack: chat widget and webhook, SMTP and the
signed e-mail webhook, phone stream and HTTP, agents' desks) where every customer text, chat customer id and agents'
replies carry mobile and ID card numbers in each form people write them; two buyers whose e-mail addresses are
mobile numbers (one over SMTP, one through the webhook) write threads whose subjects carry every form; and refused
input (widget frame, webhook body, phone segment, SMTP recipient, e-mail webhook post) goes to the DLQ with them.
Then every sink is read whole: each topic of the run (inbound, routing, outbound, commands, presence, DLQ), each
Redis key of the run with its value, each service's log (at INFO, so uvicorn's websocket lines are in), and the
load-test report. None holds a planted number, in any form; the e-mail reply contacts, sealed, still open to the
buyers' addresses with the stack's key.
"""

from __future__ import annotations

import asyncio
import json
import re
import smtplib
import time
from dataclasses import replace
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from websockets.asyncio.client import connect

from switchboard.chat.signing import widget_token
from switchboard.contracts import Channel, InboundMessage
from switchboard.runtime.kafka import kafka_options_for
from switchboard.runtime.pii import ContactSeal, mask_email
from switchboard.runtime.redis_client import redis_for
from switchboard.runtime.signing import signed_headers
from switchboard.runtime.topics import Topics
from switchboard_tools.loadgen.customers import Endpoints
from switchboard_tools.loadgen.driver import Run
from switchboard_tools.loadgen.fixtures import Credentials, email_address, hotline, write_stack_config
from switchboard_tools.loadgen.localstack import local_stack
from switchboard_tools.loadgen.report import build_report, write_report
from switchboard_tools.loadgen.scenario import Scenario, load_scenario
from switchboard_tools.loadgen.schedule import Schedule, build_schedule, caller_number
from tests.integration.email_support import read_all

pytestmark = pytest.mark.broker

PARTITIONS = 2

# Each written form carries a number of its own, so a leak names the form that leaked.
MOBILES = {
    "15867243190": "15867243190",
    "158 6724 3191": "15867243191",
    "158-6724-3192": "15867243192",
    "158.6724.3193": "15867243193",
    "+86 158 6724 3194": "15867243194",
    "１５８６７２４３１９５": "15867243195",
    "一五八六七二四三一九六": "15867243196",
    "幺五八 六七二四 三一九七": "15867243197",
    "0086-158-6724-3198": "15867243198",
}
ID_CARDS = {
    "330106198807154512": "330106198807154512",
    "330106 19880715 4523": "330106198807154523",
    "33010619880715453X": "33010619880715453X",
    "3301-0619-8807-1545-46": "330106198807154546",
    "三三〇一〇六一九八八〇七一五四五五七": "330106198807154557",
    "３３０１０６１９８８０７１５４５６８": "330106198807154568",
    "330106880715457": "330106880715457",
}
MOBILE_FORMS, ID_FORMS = tuple(MOBILES), tuple(ID_CARDS)
FORMS = {**MOBILES, **ID_CARDS}
# Labelled with Chinese characters: a subject's encoded words may lose the space before a number, and a digit or
# letter run together with a number makes it part of a longer one (an order number), which is not masked.
LABELS = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳"
EVERY_FORM = "，".join(f"号码{label} {form} 。" for label, form in zip(LABELS, FORMS, strict=True))
# Buyers whose mailbox is their mobile number (163.com, qq.com), one writing over SMTP, one through the webhook.
SMTP_SENDER, WEBHOOK_SENDER = "15867243201@163.com", "15867243202@qq.com"
SENDER_NUMBERS = {"15867243201", "15867243202"}
EMAIL_WEBHOOK_SECRET = "pii-email-webhook-secret"
EMAIL_CUSTOMER_KEY = "pii-email-customer-key"
# Forms the agents write back (a reply while handling, the last before closing).
AGENT_REPLY = f"已记下您的电话 {'、'.join(MOBILE_FORMS[:5])} 与证件 {ID_FORMS[1]}"
AGENT_CLOSING = f"已处理，回访电话 {'、'.join(MOBILE_FORMS[5:])}，证件 {ID_FORMS[3]}"

_SEPARATORS = re.compile(r"[\s\-.+\u00a0\u3000]")
_TO_DIGITS = str.maketrans(
    {chr(0xFF10 + i): str(i) for i in range(10)}
    | {c: str(i) for i, c in enumerate("〇一二三四五六七八九")}
    | {"幺": "1", "Ｘ": "X"}
)


def _scenario(path: Path) -> Path:
    """The smoke scenario cut short, every customer text carrying every form, agents writing some back."""
    data = load_scenario("smoke").model_dump(mode="json")
    data.update(name="pii", duration_s=8, chat_webhook_share=0.4, member_tiers={})
    data["channels"] = {"chat": 0.5, "email": 0.25, "phone": 0.25}
    data["arrivals"] = {"baseline_per_s": 1.5, "spike": {"at_s": 3, "peak_multiplier": 2, "ramp_s": 1, "decay_s": 2}}
    data["languages"] = {"zh": 1.0}
    for intent in data["intents"].values():
        intent["texts"] = {"zh": [f"您好，{EVERY_FORM}"], "en": [f"Hello, {EVERY_FORM}"]}
    data["tenants"] = [{"id": "pii-shop", "share": 1.0, "agents": 3}]
    data["small_shops"] = None
    data["shift_change"] = None
    data["operator"] = None
    data["agents"].update(
        reply_text=AGENT_REPLY,
        closing_text=AGENT_CLOSING,
        handling_time={"mean_s": 2, "sigma": 0.3, "max_s": 4},
        missed_offer_probability=0.0,
        first_reply_s={"min": 0.2, "max": 0.5},
    )
    data["conversation"]["think_time_s"] = {"min": 0.5, "max": 1.0}
    data["limits"] = {"max_conversations": 14, "drain_s": 12, "max_run_s": 30}
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _chat_customers_in_every_form(schedule: Schedule) -> Schedule:
    """Chat customers whose ids are the planted numbers, each form once (widget and webhook alike)."""
    forms = iter(FORMS)
    conversations = []
    for conv in schedule.conversations:
        form = next(forms, None) if conv.channel == "chat" else None
        conversations.append(replace(conv, customer_id=form) if form else conv)
    return replace(schedule, conversations=tuple(conversations))


async def _refused_inputs(endpoints: Endpoints, creds: Credentials, tenant: str) -> None:
    """Input the adapters refuse, each with the numbers in it: its DLQ record must carry them masked."""
    secret = creds.chat_secret(tenant).encode()
    customer = MOBILE_FORMS[4]
    query = urlencode({"tenant": tenant, "customer": customer, "token": widget_token(secret, customer)})
    ws_url = endpoints.chat_http.replace("http://", "ws://") + f"/chat/v1/ws?{query}"
    async with connect(ws_url, open_timeout=20) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        name = f"张三 {ID_FORMS[1]} {MOBILE_FORMS[7]}"  # display names are short (64 characters)
        message = {"type": "message", "client_msg_id": "pii-1", "text": EVERY_FORM, "display_name": name}
        await ws.send(json.dumps(message, ensure_ascii=False))
        await ws.send(json.dumps({**message, "client_msg_id": "pii-2", "kind": "hologram"}, ensure_ascii=False))
        answers = [json.loads(await asyncio.wait_for(ws.recv(), 20)) for _ in range(2)]
    assert sorted(a["type"] for a in answers) == ["ack", "error"], answers
    body = json.dumps(
        {"event_id": "pii-e1", "customer_id": ID_FORMS[0], "message_id": "pii-m1", "text": EVERY_FORM},
        ensure_ascii=False,
    ).encode()
    bad = body.replace(b'"text"', b'"kind": "hologram", "text"')
    async with httpx.AsyncClient(base_url=endpoints.chat_http, timeout=20) as http:
        for content, status in ((body, 200), (bad, 422)):
            headers = {"Content-Type": "application/json", **signed_headers(secret, int(time.time()), content)}
            answer = await http.post(f"/chat/v1/webhook/{tenant}", content=content, headers=headers)
            assert answer.status_code == status, answer.text


async def _phone_over_http(endpoints: Endpoints, creds: Credentials, tenant: str) -> None:
    """A call over the HTTP API from a number written with dashes, a transcript segment with every form, and an
    invalid segment (refused, dead-lettered) with them too."""
    call = {"call_id": "pii-call-1", "at_ms": int(time.time() * 1000)}
    started = {**call, "type": "call.started", "caller": MOBILE_FORMS[8], "dialled_number": hotline(1)}
    segment = {**call, "type": "segment", "seq": 0, "speaker": "customer", "text": EVERY_FORM, "final": True}
    segment |= {"start_ms": 0, "end_ms": 900, "confidence": 0.9}
    invalid = {**segment, "seq": 1, "confidence": 7}
    headers = {"X-Api-Key": creds.phone_key(tenant)}
    async with httpx.AsyncClient(base_url=endpoints.phone_http, timeout=20, headers=headers) as http:
        for items, status in (([started, segment], 200), ([invalid], 422)):
            answer = await http.post("/v1/phone/events", json={"id": f"pii-{status}", "items": items})
            assert answer.status_code == status, answer.text


def _thread_of_subjects(sender: str, tenant: str) -> list[EmailMessage]:
    """One buyer's thread: a first mail whose subject is every form at once (long, so folded into several encoded
    words), then a reply per written form with that form alone in its subject; the display name is the number."""
    subjects = [EVERY_FORM] + [f"Re: 号码{label} {form} 。" for label, form in zip(LABELS, FORMS, strict=True)]
    number = sender.split("@", maxsplit=1)[0]
    mails = []
    for subject in subjects:
        mail = EmailMessage()
        mail["From"] = f"{number[:3]} {number[3:7]} {number[7:]} <{sender}>"
        mail["To"] = email_address(tenant)
        mail["Subject"] = subject
        mail["Message-ID"] = make_msgid(domain=sender.split("@")[1])
        if mails:
            mail["In-Reply-To"] = mails[0]["Message-ID"]
            mail["References"] = mails[0]["Message-ID"]
        mail.set_content("请尽快回复，谢谢")
        mails.append(mail)
    return mails


def _smtp_mail(endpoints: Endpoints, tenant: str) -> None:
    """A buyer whose address is a mobile number writes a thread with every form in its subjects (the envelope
    sender is that address too), and once also to an unknown address that is an ID card number (refused at RCPT,
    dead-lettered with the envelope)."""
    thread = _thread_of_subjects(SMTP_SENDER, tenant)
    with smtplib.SMTP(endpoints.smtp_host, endpoints.smtp_port, timeout=20) as smtp:
        for mail in thread:
            assert smtp.send_message(mail, from_addr=SMTP_SENDER) == {}
        also = [email_address(tenant), f"{ID_FORMS[0]}@nowhere.example"]
        refused = smtp.send_message(_thread_of_subjects(SMTP_SENDER, tenant)[0], SMTP_SENDER, also)
    assert list(refused) == [f"{ID_FORMS[0]}@nowhere.example"], refused


async def _webhook_mail(endpoints: Endpoints, tenant: str) -> None:
    """The same thread from another mobile-number address through the signed e-mail webhook (envelope sender
    given as `sender`), and one post naming no address of the shop (refused, dead-lettered with the message)."""
    url = f"{endpoints.email_http}/v1/email/inbound/{tenant}"
    secret = EMAIL_WEBHOOK_SECRET.encode()
    async with httpx.AsyncClient(timeout=20) as http:
        for mail in _thread_of_subjects(WEBHOOK_SENDER, tenant):
            raw = mail.as_bytes()
            headers = {"Content-Type": "message/rfc822", **signed_headers(secret, int(time.time()), raw)}
            answer = await http.post(url, params={"sender": WEBHOOK_SENDER}, content=raw, headers=headers)
            assert answer.status_code == 202, answer.text
        stray = _thread_of_subjects(WEBHOOK_SENDER, tenant)[0]
        stray.replace_header("To", f"{ID_FORMS[2]}@elsewhere.example")
        raw = stray.as_bytes()
        headers = {"Content-Type": "message/rfc822", **signed_headers(secret, int(time.time()), raw)}
        answer = await http.post(url, params={"sender": WEBHOOK_SENDER}, content=raw, headers=headers)
        assert answer.status_code == 422, answer.text


async def _topic_contents(endpoints: Endpoints) -> dict[str, bytes]:
    """Every record of the run's topics (key, headers, value), one blob per topic."""
    consumer = AIOKafkaConsumer(**kafka_options_for(endpoints.kafka_bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        layout = {spec.name: spec.partitions for spec in Topics(endpoints.topic_prefix).specs(PARTITIONS)}
        # Any topic of the run a service made beside the usual ones is read too.
        found = {t for t in await consumer.topics() if t.startswith(endpoints.topic_prefix)}
        layout |= {t: len(consumer.partitions_for_topic(t) or ()) for t in found - set(layout)}
        topics = sorted(layout)
        parts = [TopicPartition(t, p) for t in topics for p in range(layout[t])]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        blobs = {t: bytearray() for t in topics}
        while [p for p in parts if await consumer.position(p) < ends[p]]:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                for record in records:
                    headers = b"".join(k.encode() + v for k, v in record.headers)
                    blobs[tp.topic] += b"|".join((record.key or b"", headers, record.value or b"", b""))
        return {t: bytes(b) for t, b in blobs.items()}
    finally:
        await consumer.stop()


def _flat(value: object) -> bytes:
    """A Redis reply as bytes, its parts joined by `|` (no separator a number is written with)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, dict):
        return b"|".join(_flat(k) + b"=" + _flat(v) for k, v in value.items())
    if isinstance(value, list | tuple | set):
        return b"|".join(_flat(v) for v in value)
    return str(value).encode()


async def _reply_addresses(endpoints: Endpoints) -> set[str]:
    """The customer addresses of the run's e-mail reply contacts, opened with the stack's key."""
    redis = redis_for(endpoints.redis_url)
    seal = ContactSeal(EMAIL_CUSTOMER_KEY.encode())
    try:
        keys = [k async for k in redis.scan_iter(match=f"{endpoints.key_prefix}:*email:contact:*", count=1000)]
        return {seal.open(_flat(await redis.hget(k, "customer_address")).decode()) for k in keys}
    finally:
        await redis.aclose()


async def _redis_contents(endpoints: Endpoints) -> dict[str, bytes]:
    """Every key of the run with its value, whatever its type, and the pub/sub channels in use."""
    redis = redis_for(endpoints.redis_url)
    found: dict[str, bytes] = {}
    try:
        async for key in redis.scan_iter(match=f"{endpoints.key_prefix}:*", count=1000):
            name = key.decode() if isinstance(key, bytes) else str(key)
            kind = _flat(await redis.type(key)).decode()
            value: object
            if kind == "string":
                value = await redis.get(key)
            elif kind == "hash":
                value = await redis.hgetall(key)
            elif kind == "list":
                value = await redis.lrange(key, 0, -1)
            elif kind == "set":
                value = await redis.smembers(key)
            elif kind == "zset":
                value = await redis.zrange(key, 0, -1, withscores=True)
            elif kind == "stream":
                value = await redis.xrange(key)
            else:
                value = kind
            found[name] = name.encode() + b"=" + _flat(value)
        found["pubsub channels"] = _flat(await redis.pubsub_channels())
        found["pubsub shard channels"] = _flat(await redis.pubsub_shardchannels())
    finally:
        await redis.aclose()
    return found


def _leaks(sinks: dict[str, bytes], numbers: set[str]) -> list[str]:
    """`sink: number` for each planted number a sink holds, in any written form."""
    found = []
    for sink, blob in sinks.items():
        flat = _SEPARATORS.sub("", blob.decode("utf-8", "replace").translate(_TO_DIGITS))
        found += [f"{sink}: {n}" for n in numbers if n in flat]
    return sorted(set(found))


def test_planted_numbers_and_id_cards_reach_no_topic_key_log_or_report(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("REDIS_URL", redis_url)
    scenario: Scenario = load_scenario(str(_scenario(tmp_path / "pii.yaml")))
    schedule = _chat_customers_in_every_form(build_schedule(scenario, 11))
    creds = Credentials("pii-run")
    tenant = scenario.tenants[0].id
    numbers = (
        set(FORMS.values())
        | SENDER_NUMBERS
        | {
            re.sub(r"\D", "", caller_number(c.messages[0]))[-11:]
            for c in schedule.conversations
            if c.channel == "phone"
        }
    )
    assert {c.channel for c in schedule.conversations} == {"chat", "email", "phone"}
    assert {c.entry for c in schedule.conversations if c.channel == "chat"} == {"widget", "webhook"}
    run_dir, reports = tmp_path / "stack", tmp_path / "reports"
    config_env = write_stack_config(scenario, schedule, creds, tmp_path / "stack-config")
    config_env["SB_EMAIL_WEBHOOK_SECRETS"] = json.dumps({tenant: EMAIL_WEBHOOK_SECRET})
    config_env["SB_EMAIL_CUSTOMER_KEY"] = EMAIL_CUSTOMER_KEY
    run_id = f"pii{int(time.time()) % 10**7:07d}"
    with local_stack(run_dir, config_env, run_id, PARTITIONS, log_level="INFO") as endpoints:
        asyncio.run(_refused_inputs(endpoints, creds, tenant))
        asyncio.run(_phone_over_http(endpoints, creds, tenant))
        _smtp_mail(endpoints, tenant)
        asyncio.run(_webhook_mail(endpoints, tenant))
        observations = asyncio.run(Run(scenario, schedule, endpoints, creds, "pii", progress=False).execute())
        report = build_report(observations, scenario)
        inbound = asyncio.run(read_all(endpoints.kafka_bootstrap, Topics(endpoints.topic_prefix).inbound, PARTITIONS))
        emails = [m for _, m in inbound if isinstance(m, InboundMessage) and m.channel == Channel.CHANNEL_EMAIL]
        sinks = {f"topic {t}": blob for t, blob in asyncio.run(_topic_contents(endpoints)).items()}
        sinks |= {f"redis {k}": blob for k, blob in asyncio.run(_redis_contents(endpoints)).items()}
        reply_addresses = asyncio.run(_reply_addresses(endpoints))
    write_report(report, reports)
    sinks |= {f"log {p.name}": p.read_bytes() for p in (run_dir / "logs").glob("*.log")}
    sinks |= {f"report {p.name}": p.read_bytes() for p in reports.rglob("*") if p.is_file()}

    # The run did what it plants through: records on every topic, agents replied, refusals dead-lettered.
    accounting = report["accounting"]
    assert accounting["accepted"] >= 8 and accounting["delivered"] > 0, accounting
    by_topic = {name.split(".")[-2]: blob for name, blob in sinks.items() if name.startswith("topic ")}
    assert {"inbound", "routing", "outbound", "dlq"} <= {n for n, b in by_topic.items() if b}, sorted(by_topic)
    assert b"158****3190" in by_topic["inbound"]
    assert b"158****" in by_topic["outbound"], "agents' replies reached the outbound topic masked"
    # Every subject reached the inbound topic (masked), from both mobile-number senders.
    subjects = [m.email.subject for m in emails]
    # (SMTP: the thread and the mail that also had an unknown recipient; the webhook: the thread.)
    for sender, mails in ((SMTP_SENDER, len(FORMS) + 2), (WEBHOOK_SENDER, len(FORMS) + 1)):
        assert sum(m.customer.contact_masked == mask_email(sender) for m in emails) == mails, sender
    # The reply contacts still lead to the senders (sealed in Redis, opened with the key).
    assert {SMTP_SENDER, WEBHOOK_SENDER} <= reply_addresses, reply_addresses
    for label in LABELS[: len(FORMS)]:
        assert sum(s.startswith(f"Re: 号码{label} ") for s in subjects) == 2, (label, subjects)
    logs = [blob for name, blob in sinks.items() if name.startswith("log ")]
    # uvicorn's line of each widget socket is there, without its query (the token and the customer id).
    assert any(b'WebSocket /chat/v1/ws\\" [accepted]' in blob for blob in logs)
    assert not any(b"token=" in blob or b"/chat/v1/ws?" in blob for blob in logs)
    assert any(k.startswith("redis ") for k in sinks) and any(k.startswith("report ") for k in sinks)
    leaks = _leaks(sinks, numbers)
    assert leaks == [], "\n".join(leaks)
