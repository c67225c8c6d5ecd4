"""Parsing mail into what an agent sees, the limits, the loop filter, tenants and reply composition, without I/O."""

from __future__ import annotations

import hashlib
from email import message_from_bytes
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.contracts import Channel, OutboundMessage
from switchboard.email.loops import loop_reason
from switchboard.email.outbound import compose_reply, reply_subject
from switchboard.email.parse import Limits, parse_email
from switchboard.email.settings import EmailSettings
from switchboard.email.tenants import TenantDirectory
from switchboard.email.threads import Contact, thread_root
from switchboard.runtime.errors import InvalidRecord

LIMITS = Limits(max_attachment_bytes=1000, max_parts=10, max_depth=3)


def _mail(**headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "Buyer <buyer@customer.example>")
    msg["To"] = "service@shop-a.example"
    msg["Subject"] = headers.pop("Subject", "订单问题")
    msg["Message-ID"] = headers.pop("Message_ID", "<m1@customer.example>")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    return msg


def test_multipart_alternative_prefers_the_plain_text() -> None:
    msg = _mail()
    msg.set_content("纯文本：我要换尺码")
    msg.add_alternative("<p>HTML：我要换尺码</p>", subtype="html")
    parsed = parse_email(msg.as_bytes(), LIMITS)
    assert parsed.text == "纯文本：我要换尺码"
    assert parsed.attachments == []


def test_html_only_mail_becomes_text() -> None:
    msg = _mail()
    msg.set_content("<div>请问<b>什么时候</b>发货？</div><div>谢谢</div>", subtype="html")
    assert parse_email(msg.as_bytes(), LIMITS).text == "请问 什么时候 发货？\n谢谢"


def test_headers_threading_ids_and_sender_are_read() -> None:
    raw = (
        b"From: =?gb2312?b?1cXI/Q==?= <Zhang.San@Customer.example>\r\n"
        b"To: service@shop-a.example\r\nSubject: =?utf-8?b?6YCA5qy+?=\r\n"
        b"Message-ID: <m1@customer.example>\r\nIn-Reply-To: <a2@shop>\r\n"
        b"References: <root@c> <a1@shop>\r\n <a2@shop>\r\n\r\nhi\r\n"
    )
    parsed = parse_email(raw, LIMITS)
    assert (parsed.message_id, parsed.in_reply_to) == ("m1@customer.example", "a2@shop")
    assert parsed.references == ["root@c", "a1@shop", "a2@shop"]
    assert (parsed.from_name, parsed.from_address, parsed.subject) == ("张三", "zhang.san@customer.example", "退款")
    assert thread_root(parsed.message_id, parsed.in_reply_to, parsed.references) == "root@c"


def test_attachments_are_metadata_with_a_content_hash() -> None:
    msg = _mail()
    msg.set_content("see the photo")
    data = b"\x89PNG" + bytes(200)
    msg.add_attachment(data, maintype="image", subtype="png", filename="破损照片.png")
    [info] = parse_email(msg.as_bytes(), LIMITS).attachments
    assert (info.name, info.content_type, info.size_bytes) == ("破损照片.png", "image/png", len(data))
    assert info.sha256 == hashlib.sha256(data).hexdigest()


def test_attachments_over_the_total_size_are_refused() -> None:
    msg = _mail()
    msg.set_content("big")
    msg.add_attachment(bytes(1500), maintype="application", subtype="octet-stream", filename="big.bin")
    with pytest.raises(InvalidRecord) as refused:
        parse_email(msg.as_bytes(), LIMITS)
    assert refused.value.error_type == "too_large"


def test_too_many_parts_are_refused() -> None:
    msg = _mail()
    msg.set_content("many")
    for i in range(12):
        msg.add_attachment(b"x", maintype="application", subtype="octet-stream", filename=f"{i}.bin")
    with pytest.raises(InvalidRecord) as refused:
        parse_email(msg.as_bytes(), LIMITS)
    assert refused.value.error_type == "too_many_parts"


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    boundary = [f"b{i}" for i in range(6)]
    lines = ["From: a@b.example", "Subject: deep", "MIME-Version: 1.0"]
    for b in boundary:
        lines += [f'Content-Type: multipart/mixed; boundary="{b}"', "", f"--{b}"]
    lines += ["Content-Type: text/plain", "", "deep text", ""] + [f"--{b}--" for b in reversed(boundary)]
    with pytest.raises(InvalidRecord) as refused:
        parse_email("\r\n".join(lines).encode(), LIMITS)
    assert refused.value.error_type == "too_deep"


@pytest.mark.parametrize(
    ("headers", "sender", "reason"),
    [
        ({"Auto_Submitted": "auto-replied"}, "buyer@c.example", "auto_submitted"),
        ({"X_Autoreply": "yes"}, "buyer@c.example", "auto_reply"),
        ({"Precedence": "bulk"}, "buyer@c.example", "precedence_bulk"),
        ({"Precedence": "junk"}, "buyer@c.example", "precedence_junk"),
        ({}, "", "bounce"),
        ({"From": "Mail Delivery Subsystem <MAILER-DAEMON@mx.example>"}, "x@mx.example", "bounce"),
        ({"From": "postmaster@mx.example"}, None, "bounce"),
        ({"List_Id": "<sale.lists.example>"}, "buyer@c.example", "mailing_list"),
        ({"Message_ID": "<abc@switchboard.local>"}, "buyer@c.example", "own_reply"),
        ({"Auto_Submitted": "no"}, "buyer@c.example", None),
        ({}, "buyer@c.example", None),
    ],
)
def test_loops_and_automatic_mail_are_recognised(headers: dict[str, str], sender: str | None, reason: str) -> None:
    msg = message_from_bytes(_mail(**headers).as_bytes())
    assert loop_reason(msg, sender, "switchboard.local") == reason


def test_tenant_by_address_domain_and_subdomain() -> None:
    directory = TenantDirectory(
        addresses={"vip@shop-a.example": "shop-vip"},
        domains={"Shop-A.example": "shop-a"},
        subdomain_of="inbound.switchboard.local",
        subdomain_tenants=frozenset({"shop-b"}),
    )
    assert directory.tenant_for("<VIP@shop-a.example>") == "shop-vip"
    assert directory.tenant_for('"客服" <service@shop-a.example>') == "shop-a"
    assert directory.tenant_for("help@shop-b.inbound.switchboard.local") == "shop-b"
    assert directory.tenant_for("help@x.y.inbound.switchboard.local") is None
    # A subdomain no shop of the adapter's has: a made-up shop, refused at RCPT rather than taken and lost later.
    assert directory.tenant_for("help@shop-zzz.inbound.switchboard.local") is None
    assert directory.tenant_for("someone@elsewhere.example") is None
    assert directory.tenant_for("not an address") is None


def test_reply_subject_adds_re_once() -> None:
    assert reply_subject("订单问题") == "Re: 订单问题"
    assert reply_subject("RE: order") == "RE: order"
    assert reply_subject("回复：订单") == "回复：订单"
    assert reply_subject("") == "Re: (no subject)"


def test_agent_reply_carries_threading_headers() -> None:
    reply = OutboundMessage(
        message_id="out1", tenant_id="shop-a", conversation_id="c1", channel=Channel.CHANNEL_EMAIL, text="已为您退款"
    )
    contact = Contact("buyer@customer.example", "service@shop-a.example", "退款", "m2@c", ["m1@c", "m2@c"])
    msg = compose_reply(reply, contact, EmailSettings(smtp_hostname="mail.switchboard.test"))
    assert msg["Message-ID"] == "<out1@mail.switchboard.test>"
    assert msg["In-Reply-To"] == "<m2@c>"
    assert msg["References"] == "<m1@c> <m2@c>"
    assert msg["Subject"] == "Re: 退款"
    assert (msg["From"], msg["To"]) == ("service@shop-a.example", "buyer@customer.example")
    assert msg.get_content().strip() == "已为您退款"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"From: a@b.example\r\n",
                b"Content-Type: multipart/mixed; boundary=x\r\n",
                b'Content-Type: multipart/alternative; boundary="y"\r\n',
                b"Content-Type: text/html; charset=gb2312\r\n",
                b"Content-Type: message/rfc822\r\n",
                b"Content-Transfer-Encoding: base64\r\n",
                b"Content-Transfer-Encoding: quoted-printable\r\n",
                b"Content-Disposition: attachment; filename*=utf-8''%E5%9B%BE.png\r\n",
                b"Subject: =?gbk?B?broken\r\n",
                b"\r\n",
                b"--x\r\n",
                b"--y--\r\n",
                b"=E4=BD=A0=\r\n",
                b"<p>\xc4\xe3\xba\xc3</p>\r\n",
            ]
        )
        | st.binary(max_size=40),
        max_size=40,
    )
)
def test_any_mail_shaped_bytes_parse_or_are_refused_with_a_reason(chunks: list[bytes]) -> None:
    try:
        parsed = parse_email(b"".join(chunks), LIMITS)
    except InvalidRecord as refused:
        assert refused.reason and refused.error_type
        return
    assert isinstance(parsed.text, str)


def test_raw_gbk_subject_decodes_like_a_raw_gbk_body() -> None:
    # Undeclared 8-bit GBK in the Subject (no RFC 2047 word): the stdlib hands it over as a Header object.
    raw = (
        b"From: buyer@customer.example\r\nTo: service@shop-a.example\r\nSubject: "
        + "退货申请".encode("gbk")
        + b"\r\nMessage-ID: <gbk@customer.example>\r\nContent-Type: text/plain\r\n\r\n"
        + "我要退货，谢谢".encode("gbk")
        + b"\r\n"
    )
    parsed = parse_email(raw, LIMITS)
    assert parsed.subject == "退货申请"
    assert parsed.text == "我要退货，谢谢"
