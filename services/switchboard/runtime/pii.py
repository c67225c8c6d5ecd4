"""Masking of personal data before it is written anywhere (topics, Redis, logs, DLQ), for every service.

Mainland mobile numbers and resident ID card numbers (18 digits, the last may be X; the old 15-digit form) in the
ways people write them: run together, grouped with spaces, dashes or dots (138 1234 1234, 138-1234-1234,
138.1234.1234, 110101 19900307 1234), with +86 / 0086, in full-width digits (１３８…) and in Chinese numerals
(一三八…, 幺三八…, 壹叁捌…); and e-mail addresses. Masks keep enough to recognise the value on a call:
138****1234, 110101********1234, l***@example.com. Text around a match is kept as it was written.

Customer ids that are such values (shops often use the buyer's phone number or e-mail as the id) never go into a
record or a Redis key: `customer_ref` is what stands for them (a stable hash, `h-…`). A contact switchboard must
read back (the address an agent's e-mail reply goes to) is kept sealed with a deployment secret (`ContactSeal`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# One character for one character, so a match in the normalised text has the same span in the original.
_DIGITS = "0123456789"
_NORMALISE = str.maketrans(
    {chr(0xFF10 + i): _DIGITS[i] for i in range(10)}
    | {c: _DIGITS[i] for i, c in enumerate("〇一二三四五六七八九")}
    | {c: _DIGITS[i] for i, c in enumerate("零壹贰叁肆伍陆柒捌玖")}
    | {"幺": "1", "洞": "0", "Ｘ": "X", "ｘ": "x", "＋": "+", "－": "-", "．": ".", "＠": "@"}
)

# One optional separator between any two digits: space, no-break space, ideographic space, dash, dot.
_S = r"[ \-.\u00a0\u3000]?"
_D = r"[0-9]"
_MOBILE = re.compile(r"(?<![0-9])(?=((?:(?:\+|00)?86" + _S + r")?1" + _S + r"[3-9](?:" + _S + _D + r"){9})(?![0-9]))")
_ID18 = re.compile(r"(?<![0-9A-Za-z])(?=([1-9](?:" + _S + _D + r"){16}" + _S + r"[0-9Xx])(?![0-9A-Za-z]))")
_ID15 = re.compile(r"(?<![0-9A-Za-z])(?=([1-9](?:" + _S + _D + r"){14})(?![0-9A-Za-z]))")
_EMAIL = re.compile(r"(?<![\w.+-])([\w.+-])[\w.+-]*@([\w-]+(?:\.[\w-]+)+)", re.UNICODE)
_NOT_DIGIT = re.compile(r"[^0-9Xx]")
# Text without a digit or an @ holds nothing to mask (most of what logs and replies carry).
_CANDIDATE = re.compile(r"[0-9@]")
_BIRTH_DATE = re.compile(r"(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])")


def _digits(value: str) -> str:
    return _NOT_DIGIT.sub("", value)


def _id18(value: str) -> str | None:
    digits = _digits(value)
    if digits[6:8] not in ("19", "20") or not _BIRTH_DATE.fullmatch(digits[10:14]):
        return None
    return f"{digits[:6]}********{digits[14:]}"


def _id15(value: str) -> str | None:
    digits = _digits(value)
    if "X" in digits or "x" in digits or not _BIRTH_DATE.fullmatch(digits[8:12]):
        return None
    return f"{digits[:6]}******{digits[12:]}"


def _mobile(value: str) -> str | None:
    digits = _digits(value)[-11:]
    return f"{digits[:3]}****{digits[-4:]}"


# Longest forms first: an ID card number holds digit runs that look like a mobile number.
_RULES: tuple[tuple[re.Pattern[str], Callable[[str], str | None]], ...] = (
    (_ID18, _id18),
    (_ID15, _id15),
    (_MOBILE, _mobile),
)


def _number_spans(normalised: str) -> list[tuple[int, int, str]]:
    """(start, end, mask) of every ID card and mobile number, not overlapping, leftmost and longest first."""
    spans: list[tuple[int, int, str]] = []
    for pattern, masker in _RULES:
        for match in pattern.finditer(normalised):
            start, end = match.start(1), match.end(1)
            if any(start < e and s < end for s, e, _ in spans):
                continue
            masked = masker(match.group(1))
            if masked is not None:
                spans.append((start, end, masked))
    return sorted(spans)


def mask_pii(text: str) -> str:
    """Text with mobile numbers, ID card numbers and e-mail addresses masked (anything else as written)."""
    if not text:
        return text
    normalised = text.translate(_NORMALISE)
    if not _CANDIDATE.search(normalised):
        return text
    out: list[str] = []
    at = 0
    for start, end, masked in _number_spans(normalised):
        out += (text[at:start], masked)
        at = end
    out.append(text[at:])
    return mask_email("".join(out).replace("＠", "@"))


def contains_pii(text: str) -> bool:
    """True when `mask_pii` would change the text."""
    return mask_pii(text) != text


def mask_bytes(raw: bytes) -> bytes:
    """The same masking over raw bytes (decoded as UTF-8 with replacement), for DLQ records."""
    return mask_pii(raw.decode("utf-8", "replace")).encode("utf-8")


def mask_phone_number(number: str) -> str:
    """A caller's number for display: 138****1234, or the last four digits for other numbers."""
    digits = re.sub(r"[^0-9]", "", number.translate(_NORMALISE))
    if len(digits) >= 11 and digits[-11] == "1":
        d = digits[-11:]
        return f"{d[:3]}****{d[-4:]}"
    return f"****{digits[-4:]}" if digits else ""


def mask_email(address: str) -> str:
    """a***@example.com."""
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", address)


def stable_id(*parts: str) -> str:
    """A short stable id from parts (customer ids from e-mail addresses or phone numbers)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def keyed_id(key: bytes, *parts: str) -> str:
    """`stable_id` of the parts, keyed with `key` (HMAC-SHA256) when one is given: an id made from a contact that
    nobody without the key can find by hashing every mobile number or address."""
    if not key:
        return stable_id(*parts)
    return hmac.new(key, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()[:24]


class ContactSeal:
    """A contact kept where it must be read back (an e-mail reply address in Redis), sealed with a secret key.

    `seal` gives `s2.` and the URL-safe base64 of a random 12-byte nonce and the AES-256-GCM ciphertext with its
    tag (the AES key is HKDF-SHA256 of the secret). `open` gives the text back, "" when the value does not
    authenticate (another key, a changed value); a value without a known prefix is one written before contacts
    were sealed, and is given back as it is.
    """

    PREFIX = "s2."

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("a contact seal needs a key")
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"switchboard contact seal").derive(key)
        self._aead = AESGCM(derived)

    def seal(self, text: str) -> str:
        """The sealed form of `text` (a new nonce each time, so equal texts do not look equal)."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, text.encode("utf-8"), self.PREFIX.encode())
        return self.PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, value: str) -> str:
        """The text a `seal` gave `value` for; "" when it was sealed with another key or changed; a value that was
        never sealed as it is."""
        if not value.startswith(self.PREFIX):
            return value
        body = value[len(self.PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return self._aead.decrypt(raw[:12], raw[12:], self.PREFIX.encode()).decode("utf-8", "replace")
        except (ValueError, InvalidTag):
            return ""


@dataclass(frozen=True)
class CustomerRef:
    """How switchboard names a customer whose id came from outside: `ref` in records and Redis keys and values,
    `contact_masked` the id masked when it is a contact ("" for other ids)."""

    ref: str
    contact_masked: str = ""


def customer_ref(tenant_id: str, customer_id: str, key: bytes = b"") -> CustomerRef:
    """The id as given, or `h-` and a stable hash of tenant and id when the id is a phone number, an ID card number
    or an e-mail address (or holds one), so it is stored nowhere in the clear. Made once where the id comes in
    (a socket's handshake, a request), not per message.

    With `key` (a secret) the hash is keyed: nobody holding the records can find the number by trying every mobile
    number, as they could with the plain hash."""
    masked = mask_pii(customer_id)
    if masked == customer_id:
        return CustomerRef(customer_id)
    if not key:
        return CustomerRef("h-" + stable_id(tenant_id, customer_id), masked)
    digest = hmac.new(key, f"customer\x1f{tenant_id}\x1f{customer_id}".encode(), hashlib.sha256).hexdigest()
    return CustomerRef("h-" + digest[:24], masked)
