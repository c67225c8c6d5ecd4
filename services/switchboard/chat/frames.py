"""The chat adapter's messages as plain data: what a widget frame or a webhook body may say, and what we send back.

Pure functions: parsing raises InvalidRecord (reason + error_type) and never touches I/O, so every rule here is
tested without a broker. The protocol is documented in docs/chat-widget.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from switchboard.chat.facts import TrustedFacts
from switchboard.contracts import (
    Attachment,
    Channel,
    ChatDetail,
    CommerceContext,
    Customer,
    InboundMessage,
    MessageKind,
    OutboundMessage,
)
from switchboard.runtime.errors import InvalidRecord
from switchboard.runtime.input_limits import parse_json
from switchboard.runtime.pii import mask_pii

KINDS: dict[str, MessageKind.ValueType] = {
    "text": MessageKind.MESSAGE_KIND_TEXT,
    "image": MessageKind.MESSAGE_KIND_IMAGE,
    "product_card": MessageKind.MESSAGE_KIND_PRODUCT_CARD,
    "order_card": MessageKind.MESSAGE_KIND_ORDER_CARD,
    "emoji": MessageKind.MESSAGE_KIND_EMOJI,
}
KIND_NAMES = {v: k for k, v in KINDS.items()}
_REQUIRED = {
    "text": ("text",),
    "image": ("image_url",),
    "product_card": ("sku",),
    "order_card": ("order_id",),
    "emoji": ("emoji",),
}
# What a message says. Facts about the customer or the order (member tier, order status, dispute stage, category,
# platform) are not among them: they come from signed sources only (facts.py). A widget frame's `member_tier`,
# `platform`, `dispute_stage` or `category` is ignored; an order card's `order_status` is kept for display only.
_OPTIONAL = ("text", "image_url", "sku", "order_id", "order_status", "emoji", "display_name")
# The attribute an order card's own (unverified) status is kept under, for the agent's eyes only.
CARD_ORDER_STATUS = "card_order_status"
_MAX_ID_CHARS = 128
_MAX_SHORT_CHARS = 64


@dataclass(frozen=True)
class Limits:
    """Size limits a message must stay within."""

    max_text_chars: int = 2000
    max_url_chars: int = 2048


@dataclass(frozen=True)
class ChatInput:
    """One customer message, validated, before it has a conversation."""

    kind: str
    text: str = ""
    image_url: str = ""
    sku: str = ""
    order_id: str = ""
    order_status: str = ""
    emoji: str = ""
    display_name: str = ""
    sent_at_ms: int = 0


def decode_json(raw: bytes | str, max_bytes: int) -> dict[str, Any]:
    """A JSON object; InputRefused (too_large, too_deep, invalid_json, invalid_text: runtime/input_limits.py) for
    what is not JSON text at all, a plain InvalidRecord("invalid_json") for JSON that is not an object."""
    value = parse_json(raw, max_bytes=max_bytes)
    if not isinstance(value, dict):
        raise InvalidRecord("body must be a JSON object", "invalid_json")
    return value


def required_id(fields: dict[str, Any], name: str) -> str:
    """A non-empty id field of at most 128 characters without braces (ids end up inside Redis keys)."""
    value = fields.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRecord(f"`{name}` is required (a non-empty string)", "invalid_field")
    if len(value) > _MAX_ID_CHARS or "{" in value or "}" in value:
        raise InvalidRecord(f"`{name}` must be at most {_MAX_ID_CHARS} characters without braces", "invalid_field")
    return value


def parse_message(fields: dict[str, Any], limits: Limits) -> ChatInput:
    """Validate a message's fields (widget frame or webhook body) into a ChatInput."""
    kind = fields.get("kind", "text")
    if kind not in KINDS:
        raise InvalidRecord(f"`kind` must be one of {', '.join(KINDS)}", "invalid_field")
    values: dict[str, str] = {}
    for name in _OPTIONAL:
        value = fields.get(name, "")
        if not isinstance(value, str):
            raise InvalidRecord(f"`{name}` must be a string", "invalid_field")
        values[name] = value.strip() if name != "text" else value
    for name in _REQUIRED[kind]:
        if not values[name].strip():
            raise InvalidRecord(f"a {kind} message needs `{name}`", "invalid_field")
    _check_sizes(values, limits)
    sent_at = fields.get("sent_at", 0)
    if not isinstance(sent_at, int) or isinstance(sent_at, bool) or sent_at < 0:
        raise InvalidRecord("`sent_at` must be unix milliseconds", "invalid_field")
    return ChatInput(kind=kind, sent_at_ms=sent_at, **values)


def _check_sizes(values: dict[str, str], limits: Limits) -> None:
    if len(values["text"]) > limits.max_text_chars:
        raise InvalidRecord(f"text is longer than {limits.max_text_chars} characters", "too_large")
    url = values["image_url"]
    if url and (len(url) > limits.max_url_chars or not url.startswith(("https://", "http://"))):
        raise InvalidRecord(f"`image_url` must be an http(s) URL of at most {limits.max_url_chars} characters")
    for name in ("sku", "order_id", "order_status", "emoji", "display_name"):
        if len(values[name]) > _MAX_SHORT_CHARS:
            raise InvalidRecord(f"`{name}` is longer than {_MAX_SHORT_CHARS} characters", "too_large")


def to_inbound(
    msg: ChatInput,
    *,
    tenant_id: str,
    customer_id: str,
    conversation_id: str,
    contact_masked: str = "",
    connection_id: str = "",
    event_id: str = "",
    facts: TrustedFacts | None = None,
) -> InboundMessage:
    """The InboundMessage of a chat message (Intake.prepare fills ids, language and masks the text).

    `customer_id` is the customer's ref (runtime.pii.customer_ref, made once per socket or request, with the
    masked contact when the id is one). Tier, order status, dispute stage, category and platform come from `facts`
    (a signed source) only.
    """
    text = msg.text or msg.emoji
    record = InboundMessage(
        tenant_id=tenant_id,
        conversation_id=conversation_id,
        channel=Channel.CHANNEL_CHAT,
        customer=Customer(
            customer_id=customer_id,
            display_name=mask_pii(msg.display_name) if msg.display_name else "",
            contact_masked=contact_masked,
        ),
        kind=KINDS[msg.kind],
        text=text,
        commerce=CommerceContext(order_id=msg.order_id, sku=msg.sku, platform="web"),
        chat=ChatDetail(connection_id=connection_id, platform_event_id=event_id),
    )
    if facts is not None:
        _apply_facts(record, facts)
    if msg.order_status and msg.order_status != record.commerce.order_status:
        record.attributes[CARD_ORDER_STATUS] = msg.order_status
    if msg.image_url:
        record.attachments.append(Attachment(url=msg.image_url, content_type="image/*"))
    if msg.emoji:
        record.attributes["emoji"] = msg.emoji
    if msg.sent_at_ms:
        record.sent_at.FromMilliseconds(msg.sent_at_ms)
    return record


def _apply_facts(record: InboundMessage, facts: TrustedFacts) -> None:
    """Signed facts onto the record; the order's status and dispute stage only if they speak of its order."""
    if facts.member_tier:
        record.customer.member_tier = facts.member_tier
        record.customer.tier_source = facts.source
    commerce = record.commerce
    if facts.platform:
        commerce.platform = facts.platform
    if not commerce.order_id:
        commerce.order_id = facts.order_id
    if facts.order_facts_apply_to(commerce.order_id):
        commerce.order_status = facts.order_status
        commerce.dispute_stage = facts.dispute_stage
    commerce.category = facts.category
    if commerce.order_status or commerce.dispute_stage or commerce.category:
        commerce.facts_source = facts.source


def reply_frame(reply: OutboundMessage) -> dict[str, Any]:
    """What the widget (or the platform callback) gets for an agent's reply."""
    return {
        "type": "reply",
        "message_id": reply.message_id,
        "conversation_id": reply.conversation_id,
        "kind": KIND_NAMES.get(reply.kind, "text"),
        "text": reply.text,
        "attachments": [
            {"url": a.url, "name": a.name, "content_type": a.content_type} for a in reply.attachments if a.url
        ],
        "sent_at": reply.sent_at.ToMilliseconds() if reply.HasField("sent_at") else 0,
    }


def queue_frame(conversation_id: str, position: int, estimated_wait_s: int) -> dict[str, Any]:
    """The waiting customer's place in the queue (1 = next) and the estimated wait in seconds."""
    return {
        "type": "queue",
        "conversation_id": conversation_id,
        "position": position,
        "estimated_wait_s": max(0, estimated_wait_s),
    }


def error_frame(code: str, message: str, client_msg_id: str = "", retry_after_s: float = 0) -> dict[str, Any]:
    """An error for one frame (`retry_later`, `rate_limited`, `too_large`, `invalid`)."""
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message, "client_msg_id": client_msg_id}
    if retry_after_s:
        frame["retry_after_s"] = retry_after_s
    return frame
