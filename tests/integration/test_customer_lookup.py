"""Member tiers of e-mail and phone customers from the shop's customer lookup (docs/customer-lookup.md), served by
the tools' order service over real HTTP; the adapters on real SMTP, Kafka and Redis.

The lookup's answer is cached per customer; a lookup that fails or is slow costs the message its tier and at most
the timeout, never its acceptance.
"""

from __future__ import annotations

import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from switchboard.contracts import InboundMessage
from switchboard.intake.customers import CustomerContact, CustomerLookupSettings, CustomerTiers, Tier
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard_tools.orders import OrderServer, load_orders
from switchboard_tools.stack.procs import free_port
from tests.integration.email_support import email_settings, read_all, running_email
from tests.integration.phone_service import SHOP_A_KEY, running_phone, segment, started

DEV_ORDERS = Path(__file__).resolve().parents[2] / "config" / "orders" / "dev-orders.yaml"


def lookup_settings(url: str, **overrides: object) -> CustomerLookupSettings:
    return CustomerLookupSettings(customer_lookup_url=url, **overrides)  # type: ignore[arg-type]


def mail(sender: str, text: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "service@shop-a.example", "咨询"
    msg["Message-ID"] = make_msgid(domain="customer.example")
    msg.set_content(text)
    return msg


async def test_the_lookup_answers_tiers_caches_them_and_a_failure_or_a_slow_system_gives_none() -> None:
    server = OrderServer(load_orders(DEV_ORDERS), free_port())
    await server.start()
    tiers = CustomerTiers(lookup_settings(server.url, customer_lookup_cache_s=60))
    try:
        vip = CustomerContact("email", "c-vip", "VIP.Buyer@customer.example")
        assert await tiers.tier_of("shop-a", vip) == Tier("88VIP", "lookup")
        assert await tiers.tier_of("shop-b", vip) == Tier("gold", "lookup"), "each shop its own customers"
        caller = CustomerContact("phone", "c-call", "+86 139-0013-9001")
        assert await tiers.tier_of("tmall-flagship", caller) == Tier("super_vip", "lookup")
        assert await tiers.tier_of("shop-a", CustomerContact("email", "c-x", "plain.buyer@customer.example")) == Tier()
        assert await tiers.tier_of("shop-a", CustomerContact("email", "c-y", "stranger@customer.example")) == Tier()
    finally:
        await server.stop()
    try:
        # The system is gone: a cached answer still holds, a new customer gets no tier (and is not cached).
        assert await tiers.tier_of("shop-a", vip) == Tier("88VIP", "lookup")
        assert await tiers.tier_of("shop-a", CustomerContact("email", "c-new", "gold.buyer@customer.example")) == Tier()
    finally:
        await tiers.close()


async def test_a_slow_lookup_costs_at_most_its_timeout() -> None:
    server = OrderServer(load_orders(DEV_ORDERS), free_port(), latency_s=2.0)
    await server.start()
    tiers = CustomerTiers(lookup_settings(server.url, customer_lookup_timeout_s=0.3))
    try:
        started_at = time.monotonic()
        contact = CustomerContact("email", "c-vip", "vip.buyer@customer.example")
        assert await tiers.tier_of("shop-a", contact) == Tier()
        assert time.monotonic() - started_at < 1.5
    finally:
        await tiers.close()
        await server.stop()


@pytest.mark.broker
async def test_an_email_over_smtp_gets_its_senders_tier_and_is_accepted_without_one_when_the_lookup_is_down(
    settings: ServiceSettings,
) -> None:
    server = OrderServer(load_orders(DEV_ORDERS), free_port())
    await server.start()
    topics = Topics(settings.topic_prefix)
    es = email_settings(settings, customer_lookup_url=server.url, customer_lookup_timeout_s=0.5)
    try:
        async with running_email(es) as service:
            assert service.smtp.port is not None
            await aiosmtplib.send(
                mail("vip.buyer@customer.example", "衣服有点小想换大一码"), hostname="127.0.0.1", port=service.smtp.port
            )
            await server.stop()
            answer = await aiosmtplib.send(
                mail("gold.buyer@customer.example", "发票还没收到"), hostname="127.0.0.1", port=service.smtp.port
            )
            assert answer[1].startswith("2.0.0 Accepted"), answer
            records = [m for _, m in await read_all(settings.kafka_bootstrap, topics.inbound)]
    finally:
        await server.stop()
    tiers = {m.email.from_address_masked: m.customer for m in records if isinstance(m, InboundMessage)}
    assert (tiers["v***@customer.example"].member_tier, tiers["v***@customer.example"].tier_source) == (
        "88VIP",
        "lookup",
    )
    assert (tiers["g***@customer.example"].member_tier, tiers["g***@customer.example"].tier_source) == ("", "")


@pytest.mark.broker
async def test_every_record_of_a_call_carries_the_callers_tier(settings: ServiceSettings) -> None:
    server = OrderServer(load_orders(DEV_ORDERS), free_port())
    await server.start()
    topics = Topics(settings.topic_prefix)
    try:
        async with (
            running_phone(settings, customer_lookup_url=server.url) as phone,
            httpx.AsyncClient(base_url=phone.http, headers=SHOP_A_KEY) as http,
        ):
            items = [started("call-vip", caller="138 0013 8001"), segment("call-vip", 1, "我的快递到哪了")]
            answer = await http.post("/v1/phone/events", json={"id": "b1", "items": items})
            assert answer.status_code == 200, answer.text
            records = [m for _, m in await read_all(settings.kafka_bootstrap, topics.inbound)]
    finally:
        await server.stop()
    calls = [m for m in records if isinstance(m, InboundMessage)]
    assert len(calls) == 2
    assert {(m.customer.member_tier, m.customer.tier_source) for m in calls} == {("88VIP", "lookup")}
    assert all("13800138001" not in m.SerializeToString().decode("utf-8", "replace") for m in calls)


@pytest.mark.broker
async def test_a_delivery_of_many_new_calls_waits_for_their_lookups_together(settings: ServiceSettings) -> None:
    # Each lookup takes 0.5 s: one after the other, eight calls would hold the platform's answer 4 s.
    server = OrderServer(load_orders(DEV_ORDERS), free_port(), latency_s=0.5)
    await server.start()
    try:
        async with (
            running_phone(settings, customer_lookup_url=server.url, customer_lookup_timeout_s=2) as phone,
            httpx.AsyncClient(base_url=phone.http, headers=SHOP_A_KEY, timeout=30) as http,
        ):
            items = [started(f"call-{i}", caller=f"138 0013 80{i:02d}") for i in range(8)]
            began = time.monotonic()
            answer = await http.post("/v1/phone/events", json={"id": "many", "items": items})
            took = time.monotonic() - began
            assert answer.status_code == 200, answer.text
    finally:
        await server.stop()
    assert took < 3.0, f"{took:.1f}s"
