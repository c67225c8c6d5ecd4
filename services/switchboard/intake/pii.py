"""Masking of personal data in customer text before it is written anywhere (topics, logs, DLQ).

Mainland mobile numbers in the ways people write them (13812341234, 138 1234 1234, 138-1234-1234,
+86 138..., full-width digits), resident ID card numbers (18 digits, last may be X; old 15-digit form) and
e-mail addresses. Masks keep enough to recognise the value on a call: 138****1234.
"""

from __future__ import annotations

import re

# Full-width digits and letters (０-９, Ｘ) are normalised first so one pattern matches every form.
_FULLWIDTH = str.maketrans({chr(0xFF10 + i): str(i) for i in range(10)} | {"Ｘ": "X", "ｘ": "x", "＋": "+", "－": "-"})

_SEP = r"[ \-\u00a0]?"
_MOBILE = re.compile(
    r"(?<![0-9])(?:(?:\+|00)?86" + _SEP + r")?(1[3-9][0-9])" + _SEP + r"([0-9]{4})" + _SEP + r"([0-9]{4})(?![0-9])"
)
_ID18 = re.compile(
    r"(?<![0-9A-Za-z])([1-9][0-9]{5})((?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]))"
    r"([0-9]{3})([0-9Xx])(?![0-9A-Za-z])"
)
_ID15 = re.compile(
    r"(?<![0-9A-Za-z])([1-9][0-9]{5})([0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]))([0-9]{3})"
    r"(?![0-9A-Za-z])"
)
_EMAIL = re.compile(r"(?<![\w.+-])([\w.+-])[\w.+-]*@([\w-]+(?:\.[\w-]+)+)", re.UNICODE)


def _normalise(text: str) -> str:
    return text.translate(_FULLWIDTH)


def mask_mobile(match: re.Match[str]) -> str:
    """138****1234."""
    return f"{match.group(1)}****{match.group(3)}"


def mask_pii(text: str) -> str:
    """Text with mobile numbers, ID card numbers and e-mail addresses masked."""
    if not text:
        return text
    text = _normalise(text)
    text = _ID18.sub(lambda m: f"{m.group(1)}********{m.group(3)}{m.group(4)}", text)
    text = _ID15.sub(lambda m: f"{m.group(1)}******{m.group(3)}", text)
    text = _MOBILE.sub(mask_mobile, text)
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)


def mask_bytes(raw: bytes) -> bytes:
    """The same masking over raw bytes (decoded as UTF-8 with replacement), for DLQ records."""
    return mask_pii(raw.decode("utf-8", "replace")).encode("utf-8")


def mask_phone_number(number: str) -> str:
    """A caller's number for display: 138****1234, or the last four digits for other numbers."""
    digits = re.sub(r"[^0-9]", "", _normalise(number))
    if len(digits) >= 11 and digits[-11] == "1":
        d = digits[-11:]
        return f"{d[:3]}****{d[-4:]}"
    return f"****{digits[-4:]}" if digits else ""


def mask_email(address: str) -> str:
    """a***@example.com."""
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", address)
