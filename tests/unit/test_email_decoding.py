"""E-mail text decoding without I/O: Chinese charsets declared, undeclared and wrong; headers; HTML; quoted replies."""

from __future__ import annotations

from email.header import Header

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.email.charsets import decode_bytes, header_text
from switchboard.email.html_text import html_to_text
from switchboard.email.parse import Limits, parse_email
from switchboard.email.quotes import strip_quotes
from switchboard.email.render import dead_letter_view

SIMPLIFIED = "您好，我的订单还没有发货，请问什么时候可以发出？谢谢！"
TRADITIONAL = "您好，我的訂單還沒有發貨，請問什麼時候可以發出？謝謝！"
SHORT = ["退款", "訂單", "发货了吗", "謝謝", "客服您好"]


def _encodings(text: str) -> list[tuple[str, bytes]]:
    out = []
    for charset in ("gb2312", "gbk", "gb18030", "big5", "utf-8"):
        try:
            out.append((charset, text.encode(charset)))
        except UnicodeEncodeError:
            continue
    return out


@pytest.mark.parametrize("text", [SIMPLIFIED, TRADITIONAL, *SHORT])
@pytest.mark.parametrize("declared", ["right", None, "iso-8859-1", "utf-8", "big5", "gb2312", "x-unknown-charset"])
def test_chinese_text_decodes_whatever_the_declared_charset_says(text: str, declared: str | None) -> None:
    for charset, raw in _encodings(text):
        said = charset if declared == "right" else declared
        assert decode_bytes(raw, said) == text, (charset, said)


def test_gb2312_declared_mail_with_gbk_only_characters_decodes() -> None:
    # 镕 and 喆 are in GBK but not GB2312: clients label such mail GB2312 all the same.
    text = "朱镕基和张喆的订单"
    assert decode_bytes(text.encode("gbk"), "gb2312") == text


def test_western_mail_mislabelled_or_unlabelled_decodes() -> None:
    assert decode_bytes("Café déjà vu".encode("latin-1"), None) == "Café déjà vu"
    assert decode_bytes("Café déjà vu".encode(), "iso-8859-1") == "Café déjà vu"
    assert decode_bytes("Café déjà vu".encode("latin-1"), "utf-8") == "Café déjà vu"


def test_rfc2047_headers_in_chinese_charsets() -> None:
    assert header_text(Header(SIMPLIFIED, "gb2312").encode()) == SIMPLIFIED
    assert header_text("Re: " + Header(TRADITIONAL, "big5").encode()) == "Re: " + TRADITIONAL
    assert header_text("=?GBK?Q?=CD=CB=BF=EE?=") == "退款"
    assert header_text("=?utf-8?b?5Lqn5ZOB6LSo6YeP?= problem") == "产品质量 problem"


def test_raw_8bit_header_without_declared_charset() -> None:
    # The parser keeps undeclared 8-bit header bytes as surrogates.
    raw = ("回复: " + SIMPLIFIED).encode("gbk").decode("ascii", "surrogateescape")
    assert header_text(raw) == "回复: " + SIMPLIFIED


def test_malformed_encoded_word_shows_as_it_came() -> None:
    assert header_text("=?utf-8?b?!!!notbase64?=") == "=?utf-8?b?!!!notbase64?="


def test_html_to_text_drops_scripts_and_keeps_blocks() -> None:
    html = (
        "<html><head><style>p{}</style><title>t</title></head><body><p>您好 &amp; hello</p>"
        "<div>订单号 <b>12345</b></div><script>alert(1)</script><br>谢谢</body></html>"
    )
    assert html_to_text(html) == "您好 & hello\n订单号 12345\n谢谢"


def test_html_blockquote_is_marked_as_quoted() -> None:
    text = html_to_text("<p>New answer</p><blockquote><p>old text</p></blockquote>")
    assert strip_quotes(text) == "New answer"


@pytest.mark.parametrize(
    "history",
    [
        "On Mon, 3 Nov 2025 at 10:00, Shop Service <service@shop.example> wrote:\n> old",
        "On Mon, 3 Nov 2025 at 10:00, Shop Service <service@shop.example>\nwrote:\n> old",
        "在 2025年11月3日 10:00，客服 <service@shop.example> 写道：\n> 旧的内容",
        "-----原始邮件-----\n发件人: 客服\n主题: 订单",
        "-----Original Message-----\nFrom: Service\nSubject: order",
        "________________________________\nFrom: Service <service@shop.example>\nSent: Monday\nTo: me",
        "发件人: 客服 <service@shop.example>\n发送时间: 2025年11月3日\n收件人: 我",
        "-- \nZhang San\nBeijing",
    ],
)
def test_quoted_history_and_signatures_are_stripped(history: str) -> None:
    assert strip_quotes(f"我要退货，谢谢\n\n{history}\nmore old text") == "我要退货，谢谢"


def test_inline_reply_keeps_answers_and_drops_quoted_lines() -> None:
    text = "> What size?\nXL please\n> Which colour?\nBlue\n\nSent from my iPhone"
    assert strip_quotes(text) == "XL please\nBlue"


def test_all_quote_text_is_kept_rather_than_emptied() -> None:
    assert strip_quotes("> only a quote") == "> only a quote"


def test_a_broken_byte_costs_one_character_not_the_whole_text() -> None:
    raw = SIMPLIFIED.encode("gbk")
    broken = raw[:10] + b"\xff" + raw[10:]
    text = decode_bytes(broken, None)
    assert "订单" in text and "发货" in text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([None, "gb2312", "big5", "utf-8", "x-unknown", "iso-8859-1"]))
def test_any_bytes_decode_without_raising(raw: bytes, declared: str | None) -> None:
    assert isinstance(decode_bytes(raw, declared), str)
    assert isinstance(header_text(raw.decode("ascii", "surrogateescape")), str)


@pytest.mark.parametrize(
    "headers",
    [
        b'Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="%s"',
        b'Content-Type: application/pdf; name="%s"',
    ],
)
def test_raw_8bit_gbk_attachment_name_is_decoded_not_replaced(headers: bytes) -> None:
    raw = (
        b"From: buyer@example.com\r\nSubject: " + "退货申请".encode("gbk") + b"\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=gbk\r\n\r\n"
        + "发票在附件里".encode("gbk")
        + b"\r\n--b\r\n"
        + headers.replace(b"%s", "增值税发票.pdf".encode("gbk"))
        + b"\r\n\r\n%PDF\r\n--b--\r\n"
    )
    parsed = parse_email(raw, Limits(10**6, 100, 8))
    assert parsed.subject == "退货申请"
    assert [a.name for a in parsed.attachments] == ["增值税发票.pdf"]
    assert "'增值税发票.pdf'" in dead_letter_view(raw).decode()


def test_hostile_headers_and_bodies_decode_to_storable_text() -> None:
    # Text between encoded words is decoded as raw-unicode-escape by the stdlib: "\ud800" there became a lone
    # surrogate, which no protobuf string, Redis key or UTF-8 encoder takes.
    raw = (
        b"From: =?utf-8?b?5L2g?= \\udfff <buyer@example.com>\r\nTo: service@shop-a.example\r\n"
        b"Subject: =?utf-8?b?5L2g?= \\ud800 =?utf-8?b?5L2g?=\r\n\r\nhello \x00\x1b[2J\r\n"
    )
    parsed = parse_email(raw, Limits(10**6, 100, 8))
    for text in (parsed.subject, parsed.from_name, parsed.text):
        text.encode("utf-8")  # raises on a lone surrogate
        assert not any(ord(c) < 0x20 and c not in "\t\r\n" for c in text)
    assert parsed.subject == "你 \ufffd 你" and parsed.text == "hello [2J"
