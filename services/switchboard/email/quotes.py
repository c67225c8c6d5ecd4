"""Strip quoted replies and signatures from the text agents see: they read what the customer wrote this time.

Cuts at the first reply attribution ("On … wrote:", "在 … 写道:", "-----原始邮件-----", "-----Original Message-----",
an Outlook "From:/Sent:" or "发件人:/发送时间:" block) and at a "-- " signature line; drops "> " quoted lines
(which keeps the customer's answers in an inline reply) and "Sent from my iPhone" style footers.
"""

from __future__ import annotations

import re

_CUT_LINE = re.compile(
    r"""^\s*(?:
        -{2,}\s*(?:原始邮件|原始郵件|Original\s+Message|Forwarded\s+by\s+.*)\s*-{2,}
      | 在.{1,200}(?:写道|寫道)\s*[:：]?
      | On\s.{1,300}\swrote\s*:
      | Le\s.{1,300}\sa\sécrit\s*:
      | Am\s.{1,300}\sschrieb\s.{0,100}:
      | _{20,}
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
# An attribution a client wrapped over two lines: "On Mon, 1 Jan 2024, Some One <x@y>" / "wrote:".
_WROTE_START = re.compile(r"^\s*(?:On\s|在).{1,300}$", re.IGNORECASE)
_WROTE_END = re.compile(r"^\s*.{0,120}(?:wrote|写道|寫道)\s*[:：]\s*$", re.IGNORECASE)
_HEADER_BLOCK = re.compile(r"^\s*(?:From|发件人|寄件者)\s*[:：]", re.IGNORECASE)
_HEADER_FOLLOW = re.compile(r"^\s*(?:Sent|Date|To|Subject|发送时间|日期|收件人|主题|寄件日期)\s*[:：]", re.IGNORECASE)
_SIGNATURE = re.compile(r"^--\s?$")
_FOOTER = re.compile(
    r"^\s*(?:Sent from my \S.*|Get Outlook for \S.*|发自我的\S.*|发送自我的\S.*|从我的\S+发送)\s*$", re.I
)


def _cut_index(lines: list[str]) -> int:
    for i, line in enumerate(lines):
        if _CUT_LINE.match(line) or _SIGNATURE.match(line):
            return i
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if _WROTE_START.match(line) and _WROTE_END.match(nxt) and not _CUT_LINE.match(nxt):
            return i
        following = lines[i + 1 : i + 4]
        if _HEADER_BLOCK.match(line) and any(_HEADER_FOLLOW.match(f) for f in following):
            return i
    return len(lines)


def strip_quotes(text: str) -> str:
    """The new part of a reply: no quoted history, no signature; the whole text if nothing new would remain."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept = [ln.rstrip() for ln in lines[: _cut_index(lines)] if not ln.lstrip().startswith(">")]
    kept = [ln for ln in kept if not _FOOTER.match(ln)]
    result = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
    return result or text.strip()
