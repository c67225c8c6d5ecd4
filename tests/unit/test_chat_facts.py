"""Facts a signed source states (webhook body, widget token claims): parsing, Taobao codes, claim encoding."""

from __future__ import annotations

import base64

import pytest

from switchboard.chat.facts import TrustedFacts, decode_claims, encode_claims, facts_from_fields
from switchboard.chat.signing import verify_widget_token, widget_token
from switchboard.runtime.errors import InvalidRecord

SECRET = b"shop-secret"


def test_a_webhook_body_states_tier_order_status_dispute_stage_category_and_platform() -> None:
    body = {
        "member_tier": " 88VIP ",
        "order_id": "2408151234567890",
        "order_status": "shipped",
        "dispute_stage": "claim_open",
        "category": "apparel",
        "platform": "tmall",
        "text": "ignored here",
    }
    assert facts_from_fields(body, "webhook") == TrustedFacts(
        "webhook", "88VIP", "2408151234567890", "shipped", "claim_open", "apparel", "tmall"
    )


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"order_status": "WAIT_BUYER_PAY"}, "unpaid"),
        ({"order_status": "WAIT_SELLER_SEND_GOODS"}, "paid"),
        ({"order_status": "WAIT_BUYER_CONFIRM_GOODS"}, "shipped"),
        ({"order_status": "TRADE_FINISHED"}, "delivered"),
        ({"order_status": "TRADE_CLOSED_BY_TAOBAO"}, "cancelled"),
        ({"order_status": "WAIT_BUYER_CONFIRM_GOODS", "refund_status": "WAIT_SELLER_AGREE"}, "refunding"),
        ({"order_status": "TRADE_CLOSED", "refund_status": "SUCCESS"}, "refunded"),
        ({"order_status": "WAIT_BUYER_CONFIRM_GOODS", "refund_status": "CLOSED"}, "shipped"),
        ({"order_status": "out_for_delivery"}, "out_for_delivery"),
    ],
)
def test_taobao_trade_and_refund_codes_become_switchboards_order_statuses(fields: dict[str, str], status: str) -> None:
    assert facts_from_fields(fields, "webhook").order_status == status


@pytest.mark.parametrize(
    ("fields", "error_type"), [({"member_tier": 5}, "invalid_field"), ({"category": "x" * 65}, "too_large")]
)
def test_a_fact_that_is_not_a_short_string_is_refused(fields: dict[str, object], error_type: str) -> None:
    with pytest.raises(InvalidRecord) as refused:
        facts_from_fields(fields, "webhook")
    assert refused.value.error_type == error_type


def test_claims_round_trip_and_unknown_or_malformed_claims_are_refused() -> None:
    encoded = encode_claims({"member_tier": "88VIP", "dispute_stage": "claim_open"})
    assert "=" not in encoded and ":" not in encoded
    assert decode_claims(encoded) == TrustedFacts("widget_token", member_tier="88VIP", dispute_stage="claim_open")
    with pytest.raises(ValueError, match="vip_level"):
        encode_claims({"vip_level": "9"})
    unknown = base64.urlsafe_b64encode(b'{"vip_level": "9"}').decode()
    for bad in ("%%%", base64.urlsafe_b64encode(b"[1]").decode(), unknown, "e30" * 400):
        with pytest.raises(InvalidRecord):
            decode_claims(bad)


def test_a_token_with_claims_vouches_for_exactly_those_claims_until_it_expires() -> None:
    claims = encode_claims({"member_tier": "88VIP"})
    token = widget_token(SECRET, "c-1", expires=2_000, claims=claims)
    assert verify_widget_token(SECRET, "c-1", token, 2_000, now=1_999, claims=claims)
    forged = encode_claims({"member_tier": "super_vip"})
    assert not verify_widget_token(SECRET, "c-1", token, 2_000, now=1_999, claims=forged), "claims are signed"
    assert not verify_widget_token(SECRET, "c-1", token, 2_000, now=1_999), "claims cannot be dropped either"
    assert not verify_widget_token(SECRET, "c-2", token, 2_000, now=1_999, claims=claims)
    assert not verify_widget_token(SECRET, "c-1", token, 2_000, now=2_001, claims=claims)
    # A claim-less token of the same customer does not become a token with claims.
    plain = widget_token(SECRET, "c-1", expires=2_000)
    assert not verify_widget_token(SECRET, "c-1", plain, 2_000, now=1_999, claims=claims)
    with pytest.raises(ValueError, match="expiry"):
        widget_token(SECRET, "c-1", claims=claims)
    assert not verify_widget_token(SECRET, "c-1", token, 0, now=1_999, claims=claims)
