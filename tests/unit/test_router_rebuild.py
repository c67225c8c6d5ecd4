"""Folding a conversation's routing events into the state the router rebuilds after Redis lost it
(router/rebuild.py; docs/state.md "When Redis loses its data", router)."""

from __future__ import annotations

import json

from switchboard.contracts import Channel, InboundMessage, RoutingEvent, RoutingEventType
from switchboard.router.rebuild import fold

E = RoutingEventType


def event(
    kind: RoutingEventType.ValueType, epoch: int, *, agent: str = "", group: str = "orders", **more: object
) -> RoutingEvent:
    e = RoutingEvent(
        tenant_id="shop",
        conversation_id="c1",
        type=kind,
        epoch=epoch,
        agent_id=agent,
        skill_group=group,
        channel=Channel.CHANNEL_CHAT,
        **more,  # type: ignore[arg-type]
    )
    e.at.FromMilliseconds(1000 * epoch + 1)
    return e


def test_the_highest_epoch_decides_and_a_late_lower_one_changes_nothing() -> None:
    events = [
        event(E.ROUTING_EVENT_QUEUED, 0, message_id="m1", priority=3),
        event(E.ROUTING_EVENT_OFFERED, 1, agent="a1"),
        event(E.ROUTING_EVENT_TIMED_OUT, 2, agent="a1"),
        event(E.ROUTING_EVENT_ASSIGNED, 3, agent="a2", group="general"),
        event(E.ROUTING_EVENT_TIMED_OUT, 2, agent="a1"),  # re-sent late by a sweep
        event(E.ROUTING_EVENT_MESSAGE_DELIVERED, 3, agent="a2"),
    ]
    f = fold(events)["c1"]
    assert (f.state, f.owner, f.epoch, f.group, f.served, f.channel) == (
        "assigned",
        "a2",
        3,
        "orders",
        "general",
        "chat",
    )
    assert f.last_owner == "a1"
    assert f.opened_by == "m1"


def test_transfers_to_an_agent_and_to_a_group() -> None:
    to_agent = fold(
        [
            event(E.ROUTING_EVENT_ASSIGNED, 1, agent="a1"),
            event(E.ROUTING_EVENT_TRANSFERRED, 2, agent="a2", transfer_to_agent="a2", previous_agent_id="a1"),
        ]
    )["c1"]
    assert (to_agent.state, to_agent.owner, to_agent.epoch, to_agent.last_owner) == ("assigned", "a2", 2, "a1")
    to_group = fold(
        [
            event(E.ROUTING_EVENT_ASSIGNED, 1, agent="a1"),
            event(E.ROUTING_EVENT_TRANSFERRED, 2, group="vip", transfer_to_group="vip", previous_agent_id="a1"),
        ]
    )["c1"]
    assert (to_group.state, to_group.owner, to_group.group) == ("queued", "", "vip")


def test_a_reopened_conversation_keeps_only_the_messages_since_it_opened_again() -> None:
    f = fold(
        [
            event(E.ROUTING_EVENT_ASSIGNED, 1, agent="a1", message_id="m1"),
            event(E.ROUTING_EVENT_CLOSED, 2, agent="a1"),
            event(E.ROUTING_EVENT_QUEUED, 2, message_id="m3"),
        ]
    )["c1"]
    assert (f.state, f.epoch, f.opened_by, f.last_owner) == ("queued", 2, "m3", "a1")
    messages = [InboundMessage(message_id=m, conversation_id="c1") for m in ("m1", "m2", "m3", "m4")]
    assert [m.message_id for m in f.backlog(messages)] == ["m3", "m4"]
    request = json.loads(f.request("cust", ["m3", "m4"], 60.0))
    assert (request["state"], request["owner"], request["epoch"], request["mids"]) == ("queued", "", 2, ["m3", "m4"])


def test_an_offer_is_queued_again_and_a_closed_conversation_keeps_no_backlog() -> None:
    offered = fold([event(E.ROUTING_EVENT_QUEUED, 0, message_id="m1"), event(E.ROUTING_EVENT_OFFERED, 1, agent="a1")])[
        "c1"
    ]
    request = json.loads(offered.request("", [], 60.0))
    assert (request["state"], request["owner"], request["epoch"]) == ("queued", "", 1)
    closed = fold(
        [event(E.ROUTING_EVENT_ASSIGNED, 1, agent="a1", message_id="m1"), event(E.ROUTING_EVENT_CLOSED, 2, agent="a1")]
    )["c1"]
    assert closed.backlog([InboundMessage(message_id="m1", conversation_id="c1")]) == []
    assert (closed.state, closed.epoch, closed.owner) == ("closed", 2, "")
