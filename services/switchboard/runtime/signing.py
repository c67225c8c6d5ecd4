"""Body signatures of the webhooks switchboard takes and the callbacks it sends: one scheme for every channel
(chat's platform webhook and reply callbacks, the e-mail webhook).

    X-SB-Timestamp: <unix seconds>
    X-SB-Signature: sha256=<hex of HMAC-SHA256(tenant secret, "<timestamp>." + body)>

    headers = signed_headers(secret, int(time.time()), body)              # sender
    failure = verify_body(secret, ts_header, sig_header, body, time.time(), tolerance_s)   # receiver: None = good

A request whose signature fails is unauthenticated: it is refused (401) and never dead-lettered (docs/dlq.md).
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
    """None when the signature is good and fresh, else the reason it is not (for the 401 answer)."""
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
