"""PII masking every service shares (runtime/pii.py): every written form of a mobile or ID card number, e-mail
addresses, and the hash that stands for a customer id that is one of them."""

from __future__ import annotations

import pytest

from switchboard.contracts import InboundMessage
from switchboard.router.bot import bot_reply, thread_entry_of
from switchboard.routing.bot import Answer
from switchboard.runtime.pii import (
    ContactSeal,
    CustomerRef,
    contains_pii,
    customer_ref,
    keyed_id,
    mask_bytes,
    mask_email,
    mask_phone_number,
    mask_pii,
    stable_id,
)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("我的电话13812341234", "我的电话138****1234"),
        ("电话 138 1234 5678 谢谢", "电话 138****5678 谢谢"),
        ("call +86 138-1234-5678", "call 138****5678"),
        ("手机：１３８１２３４５６７８", "手机：138****5678"),
        ("0086 13912345678", "139****5678"),
        ("8613912345678", "139****5678"),
        ("tel 138.1234.1234.", "tel 138****1234."),
        ("1381234 1234", "138****1234"),
        ("1 3 8 1 2 3 4 1 2 3 4", "138****1234"),
        ("手机一三八一二三四五六七八", "手机138****5678"),
        ("幺三八 一二三四 五六七八", "138****5678"),
        ("壹叁捌壹贰叁肆伍陆柒捌", "138****5678"),
        ("138一二三四5678", "138****5678"),
        ("身份证110101199003071234", "身份证110101********1234"),
        ("ID 11010119900307123X.", "ID 110101********123X."),
        ("110101 19900307 1234", "110101********1234"),
        ("110101-1990-0307-123x", "110101********123x"),
        ("1101 0119 9003 0712 34", "110101********1234"),
        ("１１０１０１１９９００３０７１２３４", "110101********1234"),
        ("一一〇一〇一一九九〇〇三〇七一二三四", "110101********1234"),
        ("旧证 110101900307123", "旧证 110101******123"),
        ("mail a.bc+x@example.com.cn please", "mail a***@example.com.cn please"),
        ("li.na＠example.com", "l***@example.com"),
        ("x 1 110101199003071234", "x 1 110101********1234"),
        ("2023.11.11 13812341234", "2023.11.11 138****1234"),
    ],
)
def test_pii_is_masked_in_every_way_people_write_it(text: str, masked: str) -> None:
    assert mask_pii(text) == masked
    assert mask_pii(masked) == masked  # a masked value stays as it is


def test_order_numbers_prices_dates_and_ordinary_numerals_are_not_mistaken_for_pii() -> None:
    for text in (
        "订单号 202311110000123456789，金额 1299 元，SKU 10086",
        "一个二个三个，第一二三件",
        "2023-11-11 00:00:01 满300减50",
        "快递单号 SF1234567890123",
        "时间戳 1765075210123",
        "",
    ):
        assert mask_pii(text) == text
        assert not contains_pii(text)
    assert b"13812341234" not in mask_bytes(b"tel:13812341234")
    assert mask_phone_number("+86 138-1234-5678") == "138****5678"
    assert mask_phone_number("一三八一二三四五六七八") == "138****5678"
    assert mask_email("li.na@example.com") == "l***@example.com"


def test_a_customer_id_that_holds_pii_is_named_by_a_stable_hash_of_tenant_and_id() -> None:
    assert customer_ref("shop-a", "c-42") == CustomerRef("c-42", "")
    for raw in ("13812341234", "138 1234 1234", "110101199003071234", "li.na@example.com", "tel13812341234"):
        customer = customer_ref("shop-a", raw)
        assert customer.ref == "h-" + stable_id("shop-a", raw) != customer_ref("shop-b", raw).ref
        assert customer.contact_masked == mask_pii(raw) != raw
        keyed = customer_ref("shop-a", raw, b"shop-a-secret")
        assert keyed.ref.startswith("h-") and keyed.ref != customer.ref and len(keyed.ref) == len(customer.ref)
        assert keyed == customer_ref("shop-a", raw, b"shop-a-secret") != customer_ref("shop-a", raw, b"other")
        assert keyed.contact_masked == customer.contact_masked
    assert customer_ref("shop-a", "c-42", b"shop-a-secret").ref == "c-42"


def test_the_bots_reply_and_the_thread_entry_it_leaves_are_masked() -> None:
    message = InboundMessage(message_id="m-1", tenant_id="shop-a", conversation_id="c-1", text="where is it")
    answer = Answer("您的包裹由快递员 139 0000 1234 派送，收件人证件 110101199003071234", "order_status.zh")
    reply = bot_reply(message, answer)
    assert reply.text == "您的包裹由快递员 139****1234 派送，收件人证件 110101********1234"
    assert thread_entry_of(reply, message, answer).text == reply.text


def test_a_sealed_contact_holds_no_trace_of_the_address_and_opens_only_with_its_key() -> None:
    seal = ContactSeal(b"k1")
    address = "15867243190@163.com"
    sealed = seal.seal(address)
    assert sealed.startswith("s2.") and "@" not in sealed and not contains_pii(sealed)
    assert seal.open(sealed) == address
    assert seal.seal(address) != sealed, "a new nonce each time: equal addresses do not look equal"
    assert ContactSeal(b"k2").open(sealed) == "", "another key opens nothing"
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    assert seal.open(flipped) == "" and seal.open("s2.!!") == "" and seal.open("s2.") == ""
    # A contact written before addresses were sealed is read as it is.
    assert seal.open("li.na@example.com") == "li.na@example.com"
    assert seal.open(seal.seal("张三 <zhang@例子.中国>")) == "张三 <zhang@例子.中国>"
    with pytest.raises(ValueError):
        ContactSeal(b"")


def test_an_id_made_from_a_contact_is_keyed_when_there_is_a_key() -> None:
    parts = ("shop-a", "email", "15867243190@163.com")
    assert keyed_id(b"", *parts) == stable_id(*parts)
    assert keyed_id(b"k1", *parts) == keyed_id(b"k1", *parts) != stable_id(*parts)
    assert keyed_id(b"k1", *parts) != keyed_id(b"k2", *parts)
    assert len(keyed_id(b"k1", *parts)) == 24
