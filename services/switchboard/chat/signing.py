"""Widget tokens: the HMAC a shop's backend gives its widget (webhook and callback bodies are signed by
runtime/signing.py, the scheme every channel shares).

HMAC-SHA256(secret, "widget:<customer id>"), or with an expiry HMAC-SHA256(secret, "widget:<customer id>:<expires>"),
or with claims (facts the shop states about the customer, chat/facts.py) HMAC-SHA256(secret,
"widget-claims:<expires>:<claims>:<customer id>") where <claims> is the `claims` query parameter exactly as sent.
Claims need an expiry: a tier or an order's status changes. The customer id comes last there: expires (digits) and
claims (base64url) hold no ":", so no two (customer, expires, claims) sign the same subject.
"""

from __future__ import annotations

import hashlib
import hmac


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
