"""PII masking and message ids shared by every channel adapter (language detection: test_language.py)."""

from __future__ import annotations

import pytest

from switchboard.intake.ids import message_id
from switchboard.intake.pii import mask_bytes, mask_phone_number, mask_pii


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("我的电话13812341234", "我的电话138****1234"),
        ("电话 138 1234 5678 谢谢", "电话 138****5678 谢谢"),
        ("call +86 138-1234-5678", "call 138****5678"),
        ("手机：１３８１２３４５６７８", "手机：138****5678"),
        ("0086 13912345678", "139****5678"),
        ("身份证110101199003071234", "身份证110101********1234"),
        ("ID 11010119900307123X.", "ID 110101********123X."),
        ("mail a.bc+x@example.com.cn please", "mail a***@example.com.cn please"),
    ],
)
def test_pii_is_masked_in_every_way_people_write_it(text: str, masked: str) -> None:
    assert mask_pii(text) == masked


def test_order_numbers_and_prices_are_not_mistaken_for_pii() -> None:
    text = "订单号 202311110000123456789，金额 1299 元，SKU 10086"
    assert mask_pii(text) == text
    assert b"13812341234" not in mask_bytes(b"tel:13812341234")
    assert mask_phone_number("+86 138-1234-5678") == "138****5678"


def test_message_ids_are_stable_per_provider_message_and_tenant() -> None:
    assert message_id("shop-a", "CHANNEL_CHAT", "p1") == message_id("shop-a", "CHANNEL_CHAT", "p1")
    assert message_id("shop-a", "CHANNEL_CHAT", "p1") != message_id("shop-b", "CHANNEL_CHAT", "p1")
