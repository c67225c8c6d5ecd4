"""The routing probe's bookkeeping, fed records as they come off the topics (no broker)."""

from __future__ import annotations

from switchboard.contracts import TYPE_HEADER, InboundMessage, RoutingEvent, RoutingEventType, type_name
from switchboard_tools.loadgen.probes import RoutingProbe


def _record(message: InboundMessage | RoutingEvent) -> tuple[list[tuple[str, bytes]], bytes]:
    return [(TYPE_HEADER, type_name(message).encode())], message.SerializeToString()


def _probe() -> RoutingProbe:
    """A probe that is never started: its consumer connects to nothing, records are handed to it directly."""
    return RoutingProbe("127.0.0.1:1", "", ["shop-a"])


async def test_a_lost_message_is_traced_to_its_conversations_last_decision() -> None:
    probe = _probe()
    inbound = InboundMessage(message_id="m1", tenant_id="shop-a", conversation_id="c1", text="在吗 [lg:abcdefghij]")
    inbound.received_at.FromMilliseconds(101_500)
    probe._take(*_record(inbound))
    for kind, at_ms in (
        (RoutingEventType.ROUTING_EVENT_OFFERED, 101_510),
        (RoutingEventType.ROUTING_EVENT_QUEUED, 107_000),
    ):
        event = RoutingEvent(tenant_id="shop-a", conversation_id="c1", type=kind, skill_group="orders", message_id="m1")
        event.at.FromMilliseconds(at_ms)
        probe._take(*_record(event))

    assert probe.first_decision["m1"] == 101.51
    where = probe.whereabouts("abcdefghij", started_at=100.0)
    assert where["conversation_id"] == "c1"
    assert where["received_at"] == "+1.5s"
    assert where["last_decision"] == "queued group=orders agent=- at +7.0s"
    assert where["queued_at_cut_off"] is True
    assert probe.whereabouts("zzzzzzzzzz", 100.0) == {"tag": "zzzzzzzzzz", "on_inbound_topic": False}
    await probe.stop()


async def test_other_tenants_and_undecodable_records_are_ignored() -> None:
    probe = _probe()
    probe._take(*_record(InboundMessage(tenant_id="shop-b", text="[lg:abcdefghij]")))
    probe._take([(TYPE_HEADER, b"switchboard.v1.Nope")], b"\x00")
    assert probe.inbound == {}
    assert probe.times == []
    await probe.stop()


async def test_a_message_of_an_assigned_or_undecided_conversation_is_not_queued_at_cut_off() -> None:
    probe = _probe()
    for conversation, tag in (("c1", "aaaaaaaaaa"), ("c2", "bbbbbbbbbb")):
        inbound = InboundMessage(message_id=conversation, tenant_id="shop-a", conversation_id=conversation)
        inbound.text = f"hi [lg:{tag}]"
        inbound.received_at.FromMilliseconds(101_000)
        probe._take(*_record(inbound))
    event = RoutingEvent(tenant_id="shop-a", conversation_id="c1", type=RoutingEventType.ROUTING_EVENT_ASSIGNED)
    event.agent_id = "a1"
    event.at.FromMilliseconds(102_000)
    probe._take(*_record(event))
    assert probe.whereabouts("aaaaaaaaaa", 100.0)["queued_at_cut_off"] is False
    assert probe.whereabouts("bbbbbbbbbb", 100.0)["queued_at_cut_off"] is False  # on the topic, no decision yet
    await probe.stop()


async def test_bot_answers_and_abandonment_settle_a_conversation_without_an_agent() -> None:
    probe = _probe()
    answered: list[str] = []
    seen: list[tuple[str, str]] = []
    probe.on_bot_answer = answered.append
    probe.on_inbound = lambda tag, cid: seen.append((tag, cid))
    for conversation, tag in (("c1", "aaaaaaaaaa"), ("c2", "bbbbbbbbbb"), ("c3", "cccccccccc")):
        inbound = InboundMessage(message_id=conversation, tenant_id="shop-a", conversation_id=conversation)
        inbound.text = f"订单3123456789012345678到哪了 [lg:{tag}]"
        inbound.received_at.FromMilliseconds(101_000)
        probe._take(*_record(inbound))
    bot = RoutingEvent(tenant_id="shop-a", conversation_id="c1", type=RoutingEventType.ROUTING_EVENT_ANSWERED_BY_BOT)
    bot.bot_template = "order_status"
    bot.lookup["status"] = "shipped"
    bot.surge_profile = "double11"
    left = RoutingEvent(tenant_id="shop-a", conversation_id="c2", type=RoutingEventType.ROUTING_EVENT_ABANDONED)
    left.wait_ms = 42_000
    left.channel = 3  # phone
    left.enqueued_at.FromMilliseconds(60_000)
    for event in (bot, left):
        event.at.FromMilliseconds(102_000)
        probe._take(*_record(event))

    assert answered == ["c1"]
    assert seen == [("aaaaaaaaaa", "c1"), ("bbbbbbbbbb", "c2"), ("cccccccccc", "c3")]
    assert probe.settled_without_agent("aaaaaaaaaa") and probe.settled_without_agent("bbbbbbbbbb")
    assert not probe.settled_without_agent("cccccccccc")
    assert probe.whereabouts("aaaaaaaaaa", 100.0)["not_for_agents"] == "answered_by_bot"
    assert probe.whereabouts("bbbbbbbbbb", 100.0)["not_for_agents"] == "abandoned"
    first, second = probe.events
    assert (first.type, first.bot_template, first.surge_profile) == ("answered_by_bot", "order_status", "double11")
    assert (second.type, second.channel, second.wait_ms, second.enqueued_at) == ("abandoned", "phone", 42_000, 60.0)
    await probe.stop()


async def test_a_response_is_kept_for_the_figures_but_is_no_routing_decision() -> None:
    probe = _probe()
    inbound = InboundMessage(message_id="m1", tenant_id="shop-a", conversation_id="c1", text="在吗 [lg:abcdefghij]")
    inbound.received_at.FromMilliseconds(101_000)
    probe._take(*_record(inbound))
    queued = RoutingEvent(tenant_id="shop-a", conversation_id="c1", type=RoutingEventType.ROUTING_EVENT_QUEUED)
    queued.at.FromMilliseconds(101_100)
    responded = RoutingEvent(tenant_id="shop-a", conversation_id="c1", type=RoutingEventType.ROUTING_EVENT_RESPONDED)
    responded.message_id = "m1"
    responded.response_ms = 4_000
    responded.first_response = True
    responded.response_target_s = 18.0
    responded.at.FromMilliseconds(105_000)
    for event in (queued, responded):
        probe._take(*_record(event))
    assert probe.times == [101.1]
    assert probe.whereabouts("abcdefghij", 100.0)["last_decision"] == "queued group=- agent=- at +1.1s"
    assert [(e.type, e.response_ms, e.first_response) for e in probe.events][1] == ("responded", 4_000, True)
    assert probe.types == {"queued": 1, "responded": 1}
    await probe.stop()
