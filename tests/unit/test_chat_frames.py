"""What a chat message may say, and what the widget gets back: pure rules, no I/O."""

from __future__ import annotations

import pytest

import switchboard.chat.frames
import switchboard.intake.accept
import switchboard.runtime.pii
from switchboard.chat.facts import TrustedFacts
from switchboard.chat.frames import (
    ChatInput,
    Limits,
    decode_json,
    error_frame,
    parse_message,
    queue_frame,
    reply_frame,
    required_id,
    to_inbound,
)
from switchboard.contracts import Attachment, Channel, InboundMessage, MessageKind, OutboundMessage
from switchboard.intake.accept import Intake
from switchboard.intake.tally import InboundTally
from switchboard.runtime.errors import InvalidRecord
from switchboard.runtime.pii import customer_ref, mask_pii
from switchboard.state.keys import Keys

LIMITS = Limits(max_text_chars=20, max_url_chars=40)


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"text": "hi"}, "text"),
        ({"kind": "image", "image_url": "https://i.example/a.png"}, "image"),
        ({"kind": "product_card", "sku": "SKU-1"}, "product_card"),
        ({"kind": "order_card", "order_id": "1", "order_status": "paid"}, "order_card"),
        ({"kind": "emoji", "emoji": "😀"}, "emoji"),
    ],
)
def test_every_kind_with_its_fields_is_taken(fields: dict[str, object], kind: str) -> None:
    assert parse_message(fields, LIMITS).kind == kind


@pytest.mark.parametrize(
    ("fields", "error_type", "says"),
    [
        ({"kind": "voice"}, "invalid_field", "kind"),
        ({"kind": "text", "text": "  "}, "invalid_field", "text"),
        ({"kind": "image", "image_url": "javascript:alert(1)"}, "invalid", "image_url"),
        ({"kind": "image", "image_url": "https://i.example/" + "a" * 40}, "invalid", "image_url"),
        ({"kind": "order_card", "order_status": "paid"}, "invalid_field", "order_id"),
        ({"text": "x" * 21}, "too_large", "20"),
        ({"text": 5}, "invalid_field", "text"),
        ({"text": "hi", "sent_at": "yesterday"}, "invalid_field", "sent_at"),
        ({"text": "hi", "order_status": "v" * 65}, "too_large", "order_status"),
    ],
)
def test_bad_messages_are_refused_with_a_reason(fields: dict[str, object], error_type: str, says: str) -> None:
    with pytest.raises(InvalidRecord) as refused:
        parse_message(fields, LIMITS)
    assert refused.value.error_type == error_type and says in refused.value.reason


def test_ids_and_json_are_checked() -> None:
    assert required_id({"event_id": "e-1"}, "event_id") == "e-1"
    for fields in ({}, {"event_id": ""}, {"event_id": "a{b}"}, {"event_id": "x" * 129}, {"event_id": 3}):
        with pytest.raises(InvalidRecord):
            required_id(fields, "event_id")
    for raw, error_type in (
        (b"[1]", "invalid_json"),
        (b"{", "invalid_json"),
        (b"\xff", "invalid_text"),
        (b'{"t": "\\ud800"}', "invalid_text"),
        (b"[" * 40 + b"]" * 40, "too_deep"),
        (b'{"t": "' + b"x" * 100 + b'"}', "too_large"),
    ):
        with pytest.raises(InvalidRecord) as refused:
            decode_json(raw, max_bytes=100)
        assert refused.value.error_type == error_type, raw[:20]


def test_the_record_carries_tenant_customer_commerce_and_masks_the_display_name() -> None:
    msg = ChatInput(
        kind="order_card",
        text="where is it",
        order_id="O-1",
        order_status="shipped",
        display_name="Li 13812341234",
        image_url="https://i.example/a.png",
        sent_at_ms=1_700_000_000_123,
    )
    facts = TrustedFacts("webhook", member_tier="gold", order_status="shipped", platform="tmall", category="shoes")
    record = to_inbound(
        msg, tenant_id="shop-a", customer_id="c-1", conversation_id="chat-1", connection_id="k", facts=facts
    )
    assert (record.tenant_id, record.conversation_id, record.channel) == ("shop-a", "chat-1", Channel.CHANNEL_CHAT)
    assert record.kind == MessageKind.MESSAGE_KIND_ORDER_CARD
    commerce = record.commerce
    assert (commerce.order_id, commerce.order_status, commerce.platform, commerce.category) == (
        "O-1",
        "shipped",
        "tmall",
        "shoes",
    )
    assert commerce.facts_source == "webhook" and "card_order_status" not in record.attributes
    assert record.customer.display_name == "Li 138****1234" and record.customer.member_tier == "gold"
    assert record.customer.tier_source == "webhook"
    assert record.attachments[0].url == "https://i.example/a.png"
    assert record.sent_at.ToMilliseconds() == 1_700_000_000_123 and record.chat.connection_id == "k"
    emoji = to_inbound(ChatInput(kind="emoji", emoji="👍"), tenant_id="s", customer_id="c", conversation_id="v")
    assert emoji.text == "👍" and emoji.attributes["emoji"] == "👍" and emoji.commerce.platform == "web"


def test_frames_sent_back_to_the_widget() -> None:
    reply = OutboundMessage(message_id="r", conversation_id="v", kind=MessageKind.MESSAGE_KIND_IMAGE, text="看图")
    reply.attachments.append(Attachment(url="https://i.example/b.png", content_type="image/png"))
    frame = reply_frame(reply)
    assert frame["kind"] == "image" and frame["attachments"][0]["url"].endswith("b.png") and frame["sent_at"] == 0
    assert queue_frame("v", 4, 120) == {"type": "queue", "conversation_id": "v", "position": 4, "estimated_wait_s": 120}
    assert error_frame("retry_later", "later", "m1", 2)["retry_after_s"] == 2
    assert "retry_after_s" not in error_frame("invalid", "bad")


def _record_of(tenant_id: str, raw_customer_id: str, text: str = "hi") -> InboundMessage:
    customer = customer_ref(tenant_id, raw_customer_id)
    return to_inbound(
        ChatInput(kind="text", text=text),
        tenant_id=tenant_id,
        customer_id=customer.ref,
        contact_masked=customer.contact_masked,
        conversation_id="chat-1",
    )


def test_a_customer_id_that_is_pii_is_replaced_by_a_stable_hash_on_the_record() -> None:
    plain = _record_of("shop-a", "tb-buyer-1").customer
    assert (plain.customer_id, plain.contact_masked) == ("tb-buyer-1", "")
    phone = _record_of("shop-a", "13812341234").customer
    assert phone.customer_id.startswith("h-") and phone.contact_masked == "138****1234"
    assert phone.customer_id == _record_of("shop-a", "13812341234").customer.customer_id
    assert phone.customer_id != _record_of("shop-b", "13812341234").customer.customer_id
    mail = _record_of("shop-a", "li.na@example.com").customer
    assert "li.na" not in mail.customer_id and mail.contact_masked == "l***@example.com"


def test_each_chat_message_is_masked_once_and_the_customer_id_once_per_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The text is masked by Intake.prepare, shared by every adapter; the customer id once where it comes in (the
    # socket's handshake, the webhook request), not again for every message.
    seen: list[str] = []

    def counting(text: str) -> str:
        seen.append(text)
        return mask_pii(text)

    for module in (switchboard.chat.frames, switchboard.intake.accept, switchboard.runtime.pii):
        monkeypatch.setattr(module, "mask_pii", counting)
    customer = switchboard.runtime.pii.customer_ref("shop-a", "13812341234")
    text = "我的手机 13812341234，邮箱 li.na@example.com"
    intake = Intake(None, None, Keys("t"), InboundTally("chat", ()))  # type: ignore[arg-type]
    for n in range(3):
        record = to_inbound(
            ChatInput(kind="text", text=text),
            tenant_id="shop-a",
            customer_id=customer.ref,
            contact_masked=customer.contact_masked,
            conversation_id="chat-1",
        )
        assert record.text == text
        # prepare touches neither the producer nor Redis.
        intake.prepare(record, f"ws:c-1:{n}")
        assert record.text == "我的手机 138****1234，邮箱 l***@example.com"
    assert seen == ["13812341234", text, text, text]


def test_a_browser_frame_states_no_facts_and_an_order_cards_status_is_for_display_only() -> None:
    fields = {
        "kind": "order_card",
        "order_id": "O-9",
        "order_status": "refunding",
        "member_tier": "super_vip",
        "platform": "tmall",
        "dispute_stage": "platform_intervened",
        "category": "luxury",
    }
    record = to_inbound(parse_message(fields, LIMITS), tenant_id="s", customer_id="c", conversation_id="v")
    assert (record.customer.member_tier, record.customer.tier_source) == ("", "")
    commerce = record.commerce
    assert (commerce.order_status, commerce.dispute_stage, commerce.category, commerce.facts_source) == ("",) * 4
    assert commerce.platform == "web" and commerce.order_id == "O-9"
    assert record.attributes["card_order_status"] == "refunding"


def test_signed_order_facts_apply_only_to_the_order_they_name() -> None:
    claims = TrustedFacts("widget_token", member_tier="88VIP", order_id="O-1", order_status="refunding")
    about_it = to_inbound(
        ChatInput(kind="order_card", order_id="O-1"), tenant_id="s", customer_id="c", conversation_id="v", facts=claims
    )
    assert (about_it.commerce.order_status, about_it.commerce.facts_source) == ("refunding", "widget_token")
    other = to_inbound(
        ChatInput(kind="order_card", order_id="O-2", order_status="paid"),
        tenant_id="s",
        customer_id="c",
        conversation_id="v",
        facts=claims,
    )
    assert (other.commerce.order_id, other.commerce.order_status) == ("O-2", "")
    assert other.attributes["card_order_status"] == "paid" and other.customer.member_tier == "88VIP"
    text = to_inbound(
        ChatInput(kind="text", text="在吗"), tenant_id="s", customer_id="c", conversation_id="v", facts=claims
    )
    assert (text.commerce.order_id, text.commerce.order_status) == ("O-1", "refunding")
    assert text.customer.tier_source == "widget_token"
