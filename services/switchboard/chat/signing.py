"""HMAC signatures shared by platforms and the chat adapter (webhooks in, callbacks out, widget tokens).

Webhooks and callbacks: `X-SB-Timestamp: <unix seconds>` and `X-SB-Signature: sha256=<hex>` where the hex is
HMAC-SHA256(tenant secret, "<timestamp>." + body). Widget tokens: HMAC-SHA256(secret, "widget:<customer id>"), or
with an expiry HMAC-SHA256(secret, "widget:<customer id>:<expires>"), or with claims (facts the shop states about
the customer, chat/facts.py) HMAC-SHA256(secret, "widget-claims:<expires>:<claims>:<customer id>") where <claims>
is the `claims` query parameter exactly as sent. Claims need an expiry: a tier or an order's status changes.
The customer id comes last there: expires (digits) and claims (base64url) hold no ":", so no two (customer,
expires, claims) sign the same subject.
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-SB-Timestamp"
SIGNATURE_HEADER = "X-SB-Signature"


def sign_body(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header value of a body sent at `timestamp`."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(secret: bytes, timestamp: int, body: bytes) -> dict[str, str]:
    """Both headers of a signed request."""
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign_body(secret, timestamp, body)}


def verify_body(
    secret: bytes, timestamp_header: str | None, signature_header: str | None, body: bytes, now: float, tolerance_s: int
) -> str | None:
    """None when the signature is good and fresh, else the reason it is not (for the 401 and the DLQ record)."""
    if not timestamp_header or not signature_header:
        return "missing signature or timestamp header"
    try:
        timestamp = int(timestamp_header)
    except ValueError:
        return "timestamp header is not unix seconds"
    if abs(now - timestamp) > tolerance_s:
        return f"timestamp is more than {tolerance_s}s from now"
    # compare_digest: a byte-by-byte compare would leak how much of a guess was right.
    if not hmac.compare_digest(sign_body(secret, timestamp, body), signature_header.strip()):
        return "signature does not match the body"
    return None


def widget_token(secret: bytes, customer_id: str, expires: int = 0, claims: str = "") -> str:
    """The token a shop's backend gives its widget so the customer may connect as `customer_id`.

    With `expires` (unix seconds, sent along as the `expires` query parameter) the token stops working then.
    With `claims` (the `claims` query parameter, `chat.facts.encode_claims`) it also vouches for those facts;
    claims without an expiry are a ValueError.
    """
    if claims:
        if not expires:
            raise ValueError("a widget token with claims needs an expiry")
        subject = f"widget-claims:{expires}:{claims}:{customer_id}"
    else:
        subject = f"widget:{customer_id}" if not expires else f"widget:{customer_id}:{expires}"
    return hmac.new(secret, subject.encode(), hashlib.sha256).hexdigest()


def verify_widget_token(
    secret: bytes, customer_id: str, token: str, expires: int = 0, now: float = 0.0, claims: str = ""
) -> bool:
    """True when the token was signed for this customer (and these claims) with this tenant's secret and has not
    expired. Claims without an expiry are never valid."""
    if expires and expires < now:
        return False
    if claims and not expires:
        return False
    return hmac.compare_digest(widget_token(secret, customer_id, expires, claims), token)
