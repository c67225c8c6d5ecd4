"""The desk view folded from outbox events (what the snapshot shows)."""

from __future__ import annotations

from switchboard.contracts import Channel, DeskEvent, DeskEventType, InboundMessage
from switchboard.gateway.view import DeskView, fold


def _event(seq: int, kind: int, conv: str = "c1", text: str = "", **extra: object) -> DeskEvent:
    event = DeskEvent(seq=seq, type=kind, conversation_id=conv, epoch=2, **extra)  # type: ignore[arg-type]
    if text:
        event.message.CopyFrom(InboundMessage(message_id=f"m{seq}", channel=Channel.CHANNEL_CHAT, text=text))
    return event


def test_offer_then_assigned_then_messages_then_closed() -> None:
    view = fold(DeskView(), [_event(1, DeskEventType.DESK_EVENT_OFFER, text="hi")], keep_messages=3)
    assert list(view.offers) == ["c1"] and not view.conversations
    fold(view, [_event(2, DeskEventType.DESK_EVENT_ASSIGNED, text="hi")], keep_messages=3)
    assert not view.offers and view.conversations["c1"].epoch == 2
    fold(view, [_event(s, DeskEventType.DESK_EVENT_MESSAGE, text=f"m{s}") for s in range(3, 8)], keep_messages=3)
    assert [m["text"] for m in view.conversations["c1"].messages] == ["m5", "m6", "m7"]
    assert view.through_seq == 7
    fold(view, [_event(8, DeskEventType.DESK_EVENT_CLOSED)], keep_messages=3)
    assert not view.conversations


def test_events_already_folded_are_skipped_and_json_round_trips() -> None:
    view = fold(DeskView(), [_event(1, DeskEventType.DESK_EVENT_ASSIGNED, text="a")], keep_messages=5)
    fold(view, [_event(1, DeskEventType.DESK_EVENT_MESSAGE, text="again")], keep_messages=5)
    assert [m["text"] for m in view.conversations["c1"].messages] == ["a"]
    stats = _event(2, DeskEventType.DESK_EVENT_QUEUE_STATS, conv="", skill_group="presales")
    stats.attributes["waiting"] = "12"
    fold(view, [stats, _event(3, DeskEventType.DESK_EVENT_REVOKED, conv="other")], keep_messages=5)
    again = DeskView.from_json(view.to_json())
    assert again == view
    assert again.queue_stats == {"presales": {"waiting": "12"}}


def test_a_conversation_assigned_again_keeps_each_message_once() -> None:
    view = fold(DeskView(), [_event(1, DeskEventType.DESK_EVENT_ASSIGNED, text="hi")], keep_messages=5)
    again = _event(2, DeskEventType.DESK_EVENT_ASSIGNED, text="hi")
    again.message.message_id = "m1"  # the router delivers the conversation so far with a new assignment
    fold(view, [again, _event(3, DeskEventType.DESK_EVENT_MESSAGE, text="more")], keep_messages=5)
    assert [m["message_id"] for m in view.conversations["c1"].messages] == ["m1", "m3"]
