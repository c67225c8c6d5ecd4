"""Validation of what telephony platforms send, and the order a delivery's items become records in."""

from __future__ import annotations

import json

import pytest

from switchboard.phone.adapter import mask_callers
from switchboard.phone.records import call_language, caller_customer_id, conversation_id, ordered, provider_id
from switchboard.phone.wire import CallStarted, PhoneInputError, Segment, parse_delivery, speaker_of


def _parse(value: object) -> list[object]:
    return list(parse_delivery(json.dumps(value), max_items=10, max_text_chars=50).items)


def test_a_delivery_may_be_one_item_a_list_or_an_object_with_items() -> None:
    item = {"type": "call.started", "call_id": "c1", "caller": "13812345678", "dialled_number": "4008001001"}
    assert isinstance(_parse(item)[0], CallStarted)
    assert len(_parse([item, item])) == 2
    delivery = parse_delivery(json.dumps({"id": "x", "items": [item]}), 10, 50)
    assert delivery.id == "x"


@pytest.mark.parametrize(
    ("raw", "error_type", "status", "words"),
    [
        ("{", "bad_json", 400, "not JSON"),
        ("[" * 50_000 + "]" * 50_000, "too_deep", 400, "nested deeper"),
        (
            '{"type": "segment", "call_id": "c", "seq": 1, "text": "\\ud800", "start_ms": 0, "end_ms": 1}',
            "invalid_text",
            400,
            "lone surrogate",
        ),
        ('{"type": "call.ivr", "call_id": "c", "ivr_choice": "1\\u0000"}', "invalid_text", 400, "control"),
        ('{"items": []}', "invalid", 422, "items"),
        ('[{"type": "call.exploded", "call_id": "c"}]', "invalid", 422, "type"),
        (
            '[{"type": "segment", "call_id": "c", "seq": 1, "text": "x", "start_ms": 9, "end_ms": 3}]',
            "invalid",
            422,
            "before it starts",
        ),
        (
            '[{"type": "segment", "call_id": "c d", "seq": 1, "text": "x", "start_ms": 0, "end_ms": 3}]',
            "invalid",
            422,
            "call_id",
        ),
        (
            '[{"type": "segment", "call_id": "c", "seq": -1, "text": "x", "start_ms": 0, "end_ms": 3}]',
            "invalid",
            422,
            "seq",
        ),
        (
            '[{"type": "segment", "call_id": "c", "seq": 1, "text": "x", "start_ms": 0, "end_ms": 3, "confidence": 2}]',
            "invalid",
            422,
            "confidence",
        ),
        (
            '[{"type": "segment", "call_id": "c", "seq": 1, "text": "' + "x" * 51 + '", "start_ms": 0, "end_ms": 3}]',
            "too_large",
            413,
            "50 characters",
        ),
        ("[" + ",".join(["{}"] * 11) + "]", "too_large", 413, "at most 10"),
    ],
)
def test_invalid_deliveries_are_refused_with_a_reason(raw: str, error_type: str, status: int, words: str) -> None:
    with pytest.raises(PhoneInputError) as refused:
        parse_delivery(raw, max_items=10, max_text_chars=50)
    assert refused.value.error_type == error_type
    assert refused.value.status == status
    assert words in refused.value.reason


def test_items_become_records_in_lifecycle_order_and_finals_by_seq() -> None:
    items = _parse(
        [
            {"type": "call.ended", "call_id": "a"},
            {"type": "segment", "call_id": "a", "seq": 2, "text": "b", "start_ms": 2, "end_ms": 3},
            {"type": "segment", "call_id": "b", "seq": 1, "text": "x", "start_ms": 0, "end_ms": 3},
            {"type": "segment", "call_id": "a", "seq": 1, "text": "a", "start_ms": 0, "end_ms": 1},
            {"type": "call.started", "call_id": "a", "dialled_number": "4008001001"},
        ]
    )
    refs = [provider_id(item) for item in ordered(items)]  # type: ignore[arg-type]
    assert refs == ["a:call.started", "a:seg:1", "a:seg:2", "a:call.ended", "b:seg:1"]


def test_ids_languages_speakers_and_masking() -> None:
    assert conversation_id("shop-a", "c1") == conversation_id("shop-a", "c1") != conversation_id("shop-b", "c1")
    tags = ("zh-CN", "cmn-Hans-CN", "yue", "en-US", "ja-JP", "es_MX", "", "x-klingon")
    assert [call_language(t) for t in tags] == ["zh", "zh", "zh", "en", "ja", "es", "", ""]
    assert [speaker_of(s) for s in ("Customer", "客服", "bot")] == ["customer", "agent", "unknown"]
    partial = Segment(type="segment", call_id="c", seq=4, text="x", start_ms=0, end_ms=1, final=False)
    assert provider_id(partial) == "c:partial:4"
    raw = b'{"caller": "021-6123-4567", "text": "call me 13812345678", "other": {"caller":"13912345678"}}'
    masked = mask_callers(raw)
    assert b"6123" not in masked and b"13912345678" not in masked
    assert b'"caller": "****4567"' in masked


def test_customer_ids_follow_the_number_and_a_key_makes_them_unguessable() -> None:
    same = caller_customer_id("shop-a", "+86 138-1234-5678")
    assert same == caller_customer_id("shop-a", "13812345678") == caller_customer_id("shop-a", "１３８１２３４５６７８")
    assert same != caller_customer_id("shop-b", "13812345678")
    keyed = caller_customer_id("shop-a", "13812345678", b"secret")
    assert keyed == caller_customer_id("shop-a", "138 1234 5678", b"secret")
    assert keyed not in {same, caller_customer_id("shop-a", "13812345678", b"other")}
