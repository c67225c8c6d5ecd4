"""Turning mail bytes into text when the declared charset is missing or wrong, as Chinese mail often is.

Candidates are tried in order: the declared charset (widened to its superset: GB2312 and GBK mail is decoded as
GB18030, Big5 also as CP950), then UTF-8, GB18030, Big5, and CP1252 for Western mail. Each candidate's reading
is scored by how plausible its text looks: common Chinese characters and ASCII score most, rare Han
characters (what the wrong double-byte table produces) and accented Latin letters less, control and private-use
characters cost. Valid multi-byte UTF-8 gets a bonus, as it almost never happens by accident. The declared charset
wins unless another candidate is clearly more plausible. The choice is made on the first 64 KiB, and bytes the
chosen charset cannot read become replacement characters, so a message never fails to decode.
"""

from __future__ import annotations

import codecs
from email.header import Header, decode_header
from email.message import Message
from email.utils import collapse_rfc2231_value

from switchboard.runtime.input_limits import clean_text

# The most frequent characters of customer-service Chinese, simplified and traditional. Text decoded with the
# right table is full of them; text decoded with the wrong double-byte table almost never is.
_COMMON_HAN = frozenset(
    "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过发后作里用道行"
    "所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心她本前开但因只从想实日已工使情明"
    "性知全又关点正业外将两高间由问很最重并物手应头文体相见被利什等产或新己制身果加月话合回特代内信表化老给位次"
    "度门常先通儿原东声提立及比员解水名真论处走义各入几口认条平系气题活更别打女变四总何电数安少报才结反受目太量"
    "再感建务做接必场件计管期市直资命金指许区保至形便空决展马司五基眼书非则听白却界达光放强即像难且权思完设式"
    "色路记品住告类求据程边张该交规万取格望觉术领确传清今切让识候带导争运改收根干言联持组每车亲极服快办议往元证"
    "近失转准布始怎呢存未远叫单影具字爱流备连调深商算质团集百需价花华级整离况请技际约示复病息线似官断满支视消越"
    "器容照须九增写称八功吗包片查轻易早除找装广显吧标谈吃图念六引首局专费号尽另周较注语仅考随选列红响虽推势参"
    "订货退款换递售客户购买码尺寸颜衣鞋包裹签收破损补偿优惠券活动预定金保修维票税地址邮箱谢您亲麻烦急等待"
    "這個們來為國說時會對與後裡麼經學現當沒動還進樣實開從應問題點業將兩間長機當體見關話發過內總從電數報結"
    "種從訂貨單退換遞費質顏運擇優惠動預維購買碼尺寸簽損補償請謝麻煩臺灣門東聲區號話圖樣這"
)

# Wider tables that decode everything the narrower ones do, plus what Chinese mail clients really send.
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "cp936": "gb18030",
    "euc-cn": "gb18030",
    "x-gbk": "gb18030",
    "big5": "cp950",
    "big5-hkscs": "big5hkscs",
    "ascii": "utf-8",
    "us-ascii": "utf-8",
}
# cp1252 last: it decodes almost any bytes, so it only wins when nothing double-byte reads plausibly.
_FALLBACKS = ("utf-8", "gb18030", "big5", "cp950", "cp1252")
# Valid UTF-8 with multi-byte sequences almost never happens by accident; mail mislabelled as Latin-1 often is.
_UTF8_BONUS_PER_BYTE = 0.75
SAMPLE_BYTES = 64 * 1024


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    name = name.strip().strip('"').lower()
    name = _SUPERSETS.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def plausibility(text: str) -> float:
    """How much a decoded text looks like what people write (higher is more plausible)."""
    score = 0.0
    for ch in text:
        code = ord(ch)
        if code < 0x80:
            score += 1.0 if (ch.isprintable() or ch in "\r\n\t") else -5.0
        elif ch in _COMMON_HAN:
            score += 3.0
        elif 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF:
            score += 1.0
        elif code == 0xFFFD or 0x80 <= code <= 0x9F or 0xE000 <= code <= 0xF8FF:
            score -= 5.0
        elif 0x3000 <= code <= 0x303F or 0xFF00 <= code <= 0xFFEF or 0x2000 <= code <= 0x206F:
            score += 1.5
        elif ch.isalpha():
            # Accented Latin letters are a minority even in Western text; many in a row mean a misread table.
            score += 0.4
    return score


def _best_codec(sample: bytes, first: str | None) -> str:
    """The codec whose reading of the sample is most plausible (the declared one when it is close)."""
    candidates: list[str] = [first] if first else []
    candidates += [c for c in (codecs.lookup(f).name for f in _FALLBACKS) if c not in candidates]
    best, best_score = candidates[0], float("-inf")
    for name in candidates:
        # Replacing, not strict: one broken byte must cost its reading a little, not disqualify it (each
        # replacement character scores -5). Not final: a sample may end inside a multi-byte character.
        text = codecs.getincrementaldecoder(name)("replace").decode(sample, final=False)
        score = plausibility(text)
        if name == "utf-8":
            score += _UTF8_BONUS_PER_BYTE * sum(1 for b in sample if b >= 0x80)
        if name == first:
            # A declared charset is the sender's word: keep it unless another reading is clearly better.
            score += 0.05 * len(sample)
        if score > best_score:
            best, best_score = name, score
    return best


def decode_bytes(raw: bytes, declared: str | None = None) -> str:
    """The most plausible text of `raw`, trying the declared charset first; never raises. Control characters
    other than tab/CR/LF are dropped (runtime/input_limits.clean_text)."""
    return clean_text(_decode_bytes(raw, declared))


def _decode_bytes(raw: bytes, declared: str | None) -> str:
    if not raw:
        return ""
    if raw.isascii():
        return raw.decode("ascii")
    first = _codec(declared)
    if first in (None, "utf-8"):
        # Valid multi-byte UTF-8 (declared or not) wins the scoring anyway; most mail is, so skip the scoring.
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    # The charset is chosen on a sample, so a 10 MB body costs one scoring pass of 64 KiB per candidate.
    return raw.decode(_best_codec(raw[:SAMPLE_BYTES], first), "replace")


def header_text(value: object) -> str:
    """A header as text: RFC 2047 encoded words decoded, raw 8-bit bytes (undeclared charsets) guessed; never a
    lone surrogate (a `\\ud800` between encoded words decodes to one) or a control character."""
    return clean_text(_header_text(value))


def _header_text(value: object) -> str:
    if value is None:
        return ""
    text = _raw_text(value) if isinstance(value, Header) else str(value)
    try:
        raw = text.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        raw = None
    if raw is not None and not raw.isascii():
        # The parser keeps undeclared 8-bit header bytes as surrogates; guess their charset like a body's.
        text = decode_bytes(raw)
    if "=?" not in text:
        return _unfold(text)
    try:
        parts = decode_header(text)
    except Exception:  # a malformed encoded word: show the header as it came
        return _unfold(text)
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(chunk)
        elif charset is None:
            # Text between encoded words comes back as raw-unicode-escape bytes.
            out.append(chunk.decode("raw-unicode-escape", "replace"))
        else:
            out.append(decode_bytes(chunk, charset))
    return _unfold("".join(out))


def attachment_name(part: Message) -> str:
    """A part's file name (Content-Disposition `filename`, else Content-Type `name`) as text.

    `get_filename()` reads a header holding raw 8-bit bytes (a GBK file name, no encoded word) as charset
    unknown-8bit and hands back U+FFFD for every byte; here the raw header is decoded like a body's first.
    """
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        for name, value in part.raw_items():
            if name.lower() != header:
                continue
            probe = Message()
            probe[header] = header_text(value)
            found = probe.get_param(param, header=header)
            if found:
                return _unfold(collapse_rfc2231_value(found))
    return ""


def _raw_text(header: Header) -> str:
    """A parsed header's text with undeclared 8-bit bytes kept as surrogates (str() of a Header makes them U+FFFD).

    The stdlib parser wraps a header holding raw 8-bit bytes in a Header of charset unknown-8bit; its bytes go
    back to surrogates here so that `header_text` guesses their charset with `decode_bytes`, as a body's are.
    """
    return "".join(
        chunk.decode("ascii", "surrogateescape") if isinstance(chunk, bytes) else chunk
        for chunk, _ in decode_header(header)
    )


def _unfold(text: str) -> str:
    return " ".join(text.split())
