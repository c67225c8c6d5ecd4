"""Facts about a chat customer and their order that routing may trust: member tier, order status, dispute stage,
category, platform. Pure functions, no I/O.

They come only from what the shop or its platform signed: the body of the signed platform webhook, or the claims
inside a widget token the shop's backend signed (chat/signing.py). A browser's own frame fields never become
facts (frames.py keeps an order card's status as a display-only attribute and drops the rest): a buyer who types
`"member_tier": "super_vip"` into a frame gets no boost (docs/chat-widget.md, "Facts routing trusts").
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from switchboard.runtime.errors import InvalidRecord
from switchboard.runtime.input_limits import parse_json

Source = Literal["webhook", "widget_token"]
# What a signed source may state, by the field names of the webhook body and of the token's claims.
FACT_NAMES = ("member_tier", "order_id", "order_status", "dispute_stage", "category", "platform")
MAX_FACT_CHARS = 64
# A claims parameter bigger than this is not a handful of short facts.
MAX_CLAIMS_CHARS = 1024

# Taobao / Tmall open-platform codes (trade `status`, refund `status`) as switchboard's order statuses
# (docs/order-lookup.md), so a shop's bridge may forward the platform's own codes unchanged.
TAOBAO_TRADE_STATUS = {
    "TRADE_NO_CREATE_PAY": "unpaid",
    "WAIT_BUYER_PAY": "unpaid",
    "WAIT_SELLER_SEND_GOODS": "paid",
    "WAIT_BUYER_CONFIRM_GOODS": "shipped",
    "TRADE_BUYER_SIGNED": "delivered",
    "TRADE_FINISHED": "delivered",
    "TRADE_CLOSED": "cancelled",
    "TRADE_CLOSED_BY_TAOBAO": "cancelled",
}
# A refund in progress makes the order `refunding` whatever the trade status says; a finished one `refunded`.
TAOBAO_REFUND_STATUS = {
    "WAIT_SELLER_AGREE": "refunding",
    "WAIT_BUYER_RETURN_GOODS": "refunding",
    "WAIT_SELLER_CONFIRM_GOODS": "refunding",
    "SELLER_REFUSE_BUYER": "refunding",
    "SUCCESS": "refunded",
}


@dataclass(frozen=True)
class TrustedFacts:
    """What a signed source said about the customer and their order; empty strings where it said nothing."""

    source: Source
    member_tier: str = ""
    order_id: str = ""
    order_status: str = ""
    dispute_stage: str = ""
    category: str = ""
    platform: str = ""

    def order_facts_apply_to(self, order_id: str) -> bool:
        """Do the order status and dispute stage speak of this order? (A card naming another order: no.)"""
        return not self.order_id or not order_id or self.order_id == order_id


def _text(values: Mapping[str, Any], name: str) -> str:
    value = values.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRecord(f"`{name}` must be a string", "invalid_field")
    value = value.strip()
    if len(value) > MAX_FACT_CHARS:
        raise InvalidRecord(f"`{name}` is longer than {MAX_FACT_CHARS} characters", "too_large")
    return value


def facts_from_fields(values: Mapping[str, Any], source: Source) -> TrustedFacts:
    """The facts a signed body or claims object states (InvalidRecord for a value that is not a short string).

    Taobao/Tmall codes are normalised: `order_status: WAIT_SELLER_SEND_GOODS` is `paid`, and a `refund_status`
    of a refund in progress makes the order `refunding`.
    """
    found = {name: _text(values, name) for name in FACT_NAMES}
    status = TAOBAO_TRADE_STATUS.get(found["order_status"], found["order_status"])
    refund = TAOBAO_REFUND_STATUS.get(_text(values, "refund_status"), "")
    found["order_status"] = refund or status
    return TrustedFacts(source=source, **found)


def encode_claims(claims: Mapping[str, str]) -> str:
    """The `claims` query parameter of a widget token: base64url (no padding) of the claims as compact JSON."""
    unknown = sorted(set(claims) - set(FACT_NAMES))
    if unknown:
        raise ValueError(f"unknown widget claims {unknown}; known: {', '.join(FACT_NAMES)}")
    body = json.dumps(dict(claims), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_claims(encoded: str) -> TrustedFacts:
    """The facts of a widget token's (already verified) claims parameter; InvalidRecord when it is malformed."""
    if len(encoded) > MAX_CLAIMS_CHARS:
        raise InvalidRecord(f"claims are longer than {MAX_CLAIMS_CHARS} characters", "too_large")
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        value = parse_json(raw, max_bytes=MAX_CLAIMS_CHARS)
    except (binascii.Error, ValueError) as exc:  # InputRefused is a ValueError too
        raise InvalidRecord("claims are not base64url JSON", "invalid_claims") from exc
    if not isinstance(value, dict):
        raise InvalidRecord("claims must be a JSON object", "invalid_claims")
    unknown = sorted(set(value) - set(FACT_NAMES))
    if unknown:
        raise InvalidRecord(f"unknown claims {unknown}; known: {', '.join(FACT_NAMES)}", "invalid_claims")
    return facts_from_fields(value, "widget_token")
