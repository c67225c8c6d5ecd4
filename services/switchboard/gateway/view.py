"""The desk view: what an agent's desktop shows, folded from its outbox events (pure, no I/O).

The gateway trims acked events from an agent's outbox only after folding them into the stored view, so a
snapshot is always `fold(stored view, outbox events up to the snapshot's seq)`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from switchboard.contracts import DeskEvent, DeskEventType
from switchboard.gateway.protocol import event_body

_GONE = (DeskEventType.DESK_EVENT_CLOSED, DeskEventType.DESK_EVENT_TRANSFERRED, DeskEventType.DESK_EVENT_REVOKED)


@dataclass
class OpenConversation:
    """A conversation the agent owns, with its latest messages."""

    conversation_id: str
    epoch: int
    skill_group: str = ""
    channel: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PendingOffer:
    """A conversation offered to the agent that it has not yet accepted or declined."""

    conversation_id: str
    epoch: int
    offer_deadline: str = ""
    offer_deadline_ms: int = 0
    skill_group: str = ""
    message: dict[str, Any] | None = None


@dataclass
class DeskView:
    """An agent's desk state as of `through_seq`."""

    through_seq: int = 0
    conversations: dict[str, OpenConversation] = field(default_factory=dict)
    offers: dict[str, PendingOffer] = field(default_factory=dict)
    queue_stats: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> DeskView:
        """The stored form back; an empty view for None."""
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(
            through_seq=int(data.get("through_seq", 0)),
            conversations={k: OpenConversation(**v) for k, v in data.get("conversations", {}).items()},
            offers={k: PendingOffer(**v) for k, v in data.get("offers", {}).items()},
            queue_stats=data.get("queue_stats", {}),
        )


def fold(view: DeskView, events: list[DeskEvent], keep_messages: int) -> DeskView:
    """Apply events with seq > view.through_seq in order (older ones are already in the view)."""
    for event in events:
        if event.seq <= view.through_seq:
            continue
        _apply(view, event, keep_messages)
        view.through_seq = event.seq
    return view


def _apply(view: DeskView, event: DeskEvent, keep_messages: int) -> None:
    conv = event.conversation_id
    kind = event.type
    if kind == DeskEventType.DESK_EVENT_OFFER:
        view.offers[conv] = PendingOffer(
            conversation_id=conv,
            epoch=event.epoch,
            offer_deadline=event_body(event).get("offer_deadline", ""),
            offer_deadline_ms=event.offer_deadline.ToMilliseconds() if event.HasField("offer_deadline") else 0,
            skill_group=event.skill_group,
            message=event_body(event).get("message") if event.HasField("message") else None,
        )
    elif kind == DeskEventType.DESK_EVENT_ASSIGNED:
        view.offers.pop(conv, None)
        opened = view.conversations.setdefault(conv, OpenConversation(conversation_id=conv, epoch=event.epoch))
        opened.epoch = event.epoch
        opened.skill_group = event.skill_group or opened.skill_group
        if event.HasField("message"):
            _remember(opened, event, keep_messages)
    elif kind == DeskEventType.DESK_EVENT_MESSAGE:
        opened_conv = view.conversations.get(conv)
        if opened_conv is not None:
            _remember(opened_conv, event, keep_messages)
    elif kind in _GONE:
        view.offers.pop(conv, None)
        view.conversations.pop(conv, None)
    elif kind == DeskEventType.DESK_EVENT_QUEUE_STATS and event.skill_group:
        view.queue_stats[event.skill_group] = dict(event.attributes)


def _remember(opened: OpenConversation, event: DeskEvent, keep_messages: int) -> None:
    message = event_body(event)["message"]
    # A conversation assigned again (requeue, transfer) brings its messages so far: keep each message_id once.
    mid = message.get("message_id")
    if mid and any(m.get("message_id") == mid for m in opened.messages):
        return
    opened.channel = message.get("channel", opened.channel)
    opened.messages.append(message)
    del opened.messages[:-keep_messages]
