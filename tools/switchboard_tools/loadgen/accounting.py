"""The accounting that proves nothing was lost or duplicated: every message sent matched to one delivery.

A message is *delivered* when it reaches the desktop of the agent who owns its conversation (an ASSIGNED,
MESSAGE or TRANSCRIPT desk event). Offers are not deliveries: an offer that times out is re-offered elsewhere.
When ownership changes (a new epoch, e.g. an agent left at a shift change and the conversation was requeued),
the new owner legitimately sees the conversation's messages again: that is a *redelivery*, counted apart.
The same message twice to one owner under one epoch is a *duplicate*; a tag nobody sent is *unexpected*; a
message acknowledged by its channel but never delivered is *lost*, unless the run was cut off while it waited in a
queue (its conversation's last routing decision said queued or offered): that one is *pending at cut-off*, counted
apart, as it went missing nowhere. One whose conversation the customer left (ABANDONED) or the bot answered
(ANSWERED_BY_BOT) with nothing routing it to an agent after is *not for agents*: no desktop should get it. One the
channel refused is *refused*.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sent:
    """A customer message the channel acknowledged (or refused: `accepted` False)."""

    tag: str
    tenant_id: str
    conversation_key: str
    channel: str
    sent_at: float
    accepted: bool = True


@dataclass(frozen=True)
class Delivery:
    """A message as the agent desktop received it."""

    tag: str
    tenant_id: str
    agent_id: str
    conversation_id: str
    epoch: int
    event: str
    received_at: float
    message_id: str = ""


@dataclass
class Ledger:
    """Messages sent and deliveries seen during a run; `settle()` says what matched."""

    sent: dict[str, Sent] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)

    def record_sent(self, sent: Sent) -> None:
        """Note a message a channel acknowledged or refused."""
        self.sent[sent.tag] = sent

    def record_delivery(self, delivery: Delivery) -> None:
        """Note a message a desktop received."""
        self.deliveries.append(delivery)

    def delivered_tags(self) -> set[str]:
        """Tags seen at a desktop so far (for waiting until everything arrived)."""
        return {d.tag for d in self.deliveries}

    def undelivered(self) -> list[str]:
        """Accepted messages no desktop received (lost or still waiting), sorted."""
        return sorted({t for t, s in self.sent.items() if s.accepted} - self.delivered_tags())

    def settle(self, waiting: Collection[str] = (), not_for_agents: Mapping[str, str] | None = None) -> Accounting:
        """Match every accepted message to its deliveries.

        `waiting`: tags known to be still queued in switchboard when the run was cut off; undelivered, they are
        pending at cut-off rather than lost. `not_for_agents`: tags of conversations abandoned or answered by the
        bot (tag → "abandoned" / "answered_by_bot"); undelivered, they are counted by that reason. Every other
        undelivered message is lost.
        """
        settled = dict(not_for_agents or {})
        by_tag: dict[str, list[Delivery]] = defaultdict(list)
        for d in self.deliveries:
            by_tag[d.tag].append(d)
        accepted = {t for t, s in self.sent.items() if s.accepted}
        refused = sorted(t for t, s in self.sent.items() if not s.accepted)
        undelivered = accepted - by_tag.keys()
        pending = sorted(undelivered.intersection(waiting))
        left = sorted(t for t in undelivered if settled.get(t) == "abandoned")
        bot = sorted(t for t in undelivered if settled.get(t) == "answered_by_bot")
        lost = sorted(undelivered.difference(waiting, left, bot))
        unexpected = sorted(t for t in by_tag if t not in accepted)
        duplicated: list[str] = []
        redelivered: list[str] = []
        first: dict[str, Delivery] = {}
        for tag in sorted(accepted & by_tag.keys()):
            copies = sorted(by_tag[tag], key=lambda d: d.received_at)
            first[tag] = copies[0]
            owners = [(d.agent_id, d.epoch) for d in copies]
            if len(owners) != len(set(owners)):
                duplicated.append(tag)
            elif len(copies) > 1:
                redelivered.append(tag)
        return Accounting(
            sent=len(self.sent),
            accepted=len(accepted),
            delivered=len(first),
            lost=lost,
            pending_at_cut_off=pending,
            abandoned=left,
            answered_by_bot=bot,
            duplicated=duplicated,
            redelivered=redelivered,
            unexpected=unexpected,
            refused=refused,
            first_delivery=first,
        )


@dataclass(frozen=True)
class Accounting:
    """The outcome of matching sent messages to desktop deliveries."""

    sent: int
    accepted: int
    delivered: int
    lost: list[str]
    pending_at_cut_off: list[str]
    abandoned: list[str]
    answered_by_bot: list[str]
    duplicated: list[str]
    redelivered: list[str]
    unexpected: list[str]
    refused: list[str]
    first_delivery: dict[str, Delivery]

    @property
    def balanced(self) -> bool:
        """True when nothing was lost or duplicated and nothing unexpected arrived.

        Messages pending at cut-off do not unbalance it: they are a run too short for its load, not a message
        gone missing (the report shows them apart; the smoke test requires none).
        """
        return not (self.lost or self.duplicated or self.unexpected)

    def summary(self) -> dict[str, object]:
        """Counts plus up to 20 example tags of each problem, for the report."""
        return {
            "sent": self.sent,
            "accepted": self.accepted,
            "delivered": self.delivered,
            "lost": len(self.lost),
            "pending_at_cut_off": len(self.pending_at_cut_off),
            "abandoned_by_customer": len(self.abandoned),
            "answered_by_bot": len(self.answered_by_bot),
            "duplicated": len(self.duplicated),
            "redelivered_after_owner_change": len(self.redelivered),
            "unexpected": len(self.unexpected),
            "refused_by_channel": len(self.refused),
            "balanced": self.balanced,
            "examples": {
                "lost": self.lost[:20],
                "pending_at_cut_off": self.pending_at_cut_off[:20],
                "duplicated": self.duplicated[:20],
                "unexpected": self.unexpected[:20],
                "refused": self.refused[:20],
            },
        }
