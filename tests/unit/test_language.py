"""Language detection of the adapters: ISO 639-1 codes for short and long messages, "" when nothing can be told."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from switchboard.intake import language
from switchboard.intake.language import detect_language
from switchboard.phone.records import new_call, segment_message
from switchboard.phone.wire import CallStarted, Segment
from switchboard.routing.config import load_config_file

MESSAGES: dict[str, list[str]] = {
    "zh": [
        "在吗",
        "在",
        "发货了吗",
        "亲 这件还有M码吗 今天拍能发不",
        "這件有白色嗎 運費多少",
        "ok 谢谢",
        "tk什么时候到账",
        "order里面的颜色帮我改成grey",
        "这个 size 标准吗 我平时穿 S",
        "亲 这个の颜色好看吗",
        "订单号2408151234567890 收件人名字写错了 😭",
        "您好\n我上周收到的台灯用了两次就不亮了，换了插座也一样，请问怎么处理？",
    ],
    "ja": [
        "注文番号 123456",
        "配送状況",
        "発送",
        "サイズ",
        "在庫ありますか",
        "この商品は日本に発送できますか？",
        "届いた商品が壊れていました。交換をお願いします。",
    ],
    "ko": ["감사합니다", "한국으로 배송되나요?", "주문한 물건이 아직 안 왔어요. 언제 도착하나요?"],
    "en": [
        "ok",
        "thx",
        "Hi",
        "refund pls",
        "color?",
        "size M?",
        "is it in stock",
        "Where is my order?",
        "This is a scam",
        "Can I pick it up in 上海?",
        "my package says delivered but i didnt get it, can you check with the courier please",
    ],
    "es": [
        "¿talla M?",
        "hola",
        "gracias",
        "talla grande",
        "Mi pedido no ha llegado",
        "Quiero devolver este producto porque llegó dañado y la caja estaba rota",
    ],
    "fr": ["merci", "où est mon colis", "Bonjour, livrez-vous en France ?"],
    "de": ["danke", "Größe L?", "wo ist mein Paket", "Hallo, wann kommt meine Bestellung an?"],
    "pt": ["obrigado", "cadê meu pedido", "Bom dia, meu pedido ainda não chegou"],
    "it": ["grazie", "taglia M?", "Ciao, spedite in Italia?"],
    "vi": ["cảm ơn", "Xin chào, có giao hàng đến Việt Nam không?"],
    "ru": ["спасибо", "Где мой заказ?", "Здравствуйте, товар пришёл сломанный, можно вернуть деньги?"],
    "uk": ["Де моє замовлення?"],
    "th": ["ส่งไปไทยได้ไหม"],
    "ar": ["مرحبا، هل تشحنون إلى السعودية؟"],
    "": ["", "   ", "😀😀", "👍", "123456", "2408151234567890", "?!", "M", "👍 2408151234567890 !!"],
}


@pytest.mark.parametrize(
    ("text", "code"), [(text, code) for code, texts in MESSAGES.items() for text in texts], ids=repr
)
def test_language_is_told_for_short_and_long_messages(text: str, code: str) -> None:
    assert detect_language(text) == code


def test_full_width_letters_count_as_their_ascii_forms() -> None:
    assert detect_language("Ｗｈｅｒｅ ｉｓ ｍｙ ｏｒｄｅｒ？") == "en"
    assert detect_language("ｻｲｽﾞ") == "ja"  # half-width katakana


def test_a_few_kana_in_chinese_or_a_chinese_word_in_english_do_not_flip_the_language() -> None:
    assert detect_language("小清新の衣服 有没有S码") == "zh"
    assert detect_language("Do you ship to 香港?") == "en"
    assert detect_language("ポケモン的那个有货吗") == "zh"
    assert detect_language("ユニクロ的衣服") == "zh"


def test_links_and_addresses_do_not_count_as_words() -> None:
    assert detect_language("看这个链接 https://detail.tmall.com/item.htm?id=123456789&spm=a1z10.1-b") == "zh"
    assert detect_language("请回复 zhangsan.service@company-example.com") == "zh"
    assert detect_language("Hi, see https://detail.tmall.com/item.htm?id=1 please") == "en"
    assert detect_language("www.tmall.com") == ""


def test_the_detector_is_one_per_process_and_warms_off_the_event_loop() -> None:
    asyncio.run(language.warm_language_detector())
    assert language.detector() is language.detector()


def test_the_example_shops_cross_border_rule_takes_every_language_but_chinese(repo_root: Path) -> None:
    config = load_config_file(repo_root / "config" / "routing" / "tmall-flagship.yaml")
    rule = next(r for r in config.rules if r.name == "cross-border")
    assert rule.group == "cross_border"
    assert set(rule.match.language) == language.LANGUAGE_CODES - {"zh"}
    assert {detect_language(text) for texts in MESSAGES.values() for text in texts} <= language.LANGUAGE_CODES | {""}


def test_a_phone_segment_is_detected_from_its_text_else_it_keeps_the_calls_language() -> None:
    started = CallStarted(type="call.started", call_id="c1", dialled_number="400-800-1009", language="ja-JP")
    call = new_call("shop-a", started)
    assert call.language == "ja"

    def segment(text: str) -> str:
        item = Segment(type="segment", call_id="c1", seq=1, text=text, start_ms=0, end_ms=900)
        return segment_message("shop-a", call, item).language

    assert (segment("¿Dónde está mi pedido?"), segment("我想改一下地址"), segment("嗯 123")) == ("es", "zh", "zh")
    assert segment("…") == "ja", "nothing to tell from: the call's language"


def test_a_long_hostile_text_is_told_quickly() -> None:
    # A mail body of 100 KB of JSON-looking words blocked the e-mail adapter for 46 s before the sample was capped.
    started = time.perf_counter()
    assert detect_language('{"a":' * 20_000) in language.LANGUAGE_CODES | {""}
    assert detect_language("Where is my order? It has not arrived yet. " * 5_000) == "en"
    assert time.perf_counter() - started < 2.0
