"""`switchboard dlq`'s pure parts: filters, what can be re-driven and how, the re-drive plan, masked rendering."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from switchboard.contracts import (
    REDRIVEN_FROM_HEADER,
    TYPE_HEADER,
    AgentCommand,
    AgentCommandType,
    Channel,
    Customer,
    DeadLetter,
    DeadLetterRedrive,
    InboundMessage,
)
from switchboard.dlq import render
from switchboard.dlq.entries import (
    DlqRecord,
    Filter,
    attach_redrives,
    newest,
    original_key,
    parse_since,
    plan_redrive,
    redrive_headers,
    refusal,
)
from switchboard.runtime.topics import Topics

TOPICS = Topics("p.")
NOW = datetime(2026, 11, 11, 0, 30, tzinfo=UTC)
PII = "手机 138 1234 5678, mail li.lei@example.com, 身份证 11010119900307451X"


def _at(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


def letter(dead_letter_id: str = "d1", *, source: str = TOPICS.inbound, **fields: object) -> DeadLetter:
    defaults: dict[str, object] = {
        "service": "router",
        "partition": 2,
        "offset": 7,
        "error_type": "invalid",
        "reason": "no routing config",
        "tenant_id": "shop-a",
        "at": _at(NOW),
    }
    return DeadLetter(dead_letter_id=dead_letter_id, source=source, **{**defaults, **fields})  # type: ignore[arg-type]


def record(dl: DeadLetter, dlq_key: str = "", redrive: DeadLetterRedrive | None = None) -> DlqRecord:
    return DlqRecord(dl, 0, 1, dlq_key, redrive)


def no_pii(text: str) -> bool:
    digits = re.sub(r"[ \-]", "", text)
    return "13812345678" not in digits and "li.lei@" not in text and "11010119900307451X" not in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - timedelta(seconds=90)),
        ("30m", NOW - timedelta(minutes=30)),
        ("1h", NOW - timedelta(hours=1)),
        ("2d", NOW - timedelta(days=2)),
        ("2026-11-10T23:00", datetime(2026, 11, 10, 23, 0, tzinfo=UTC)),
        ("2026-11-11T08:00+08:00", datetime(2026, 11, 11, 0, 0, tzinfo=UTC)),
    ],
)
def test_since_takes_durations_and_times(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


def test_since_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_since("yesterday", NOW)


def test_a_filter_keeps_records_matching_every_field_set() -> None:
    r = record(letter(service="chat", tenant_id="shop-b", error_type="too_large", at=_at(NOW)))
    assert Filter().keeps(r)
    assert Filter(reason="too_large", service="chat", tenant="shop-b", since=NOW).keeps(r)
    assert not Filter(reason="invalid").keeps(r)
    assert not Filter(service="router").keeps(r)
    assert not Filter(tenant="shop-a").keeps(r)
    assert not Filter(since=NOW + timedelta(seconds=1)).keeps(r)


def test_only_records_from_this_deployments_topics_can_go_back() -> None:
    assert refusal(record(letter()), TOPICS) is None
    assert refusal(record(letter(source=TOPICS.commands)), TOPICS) is None
    for source in ("http:/chat/v1/messages", "smtp", "ws:/chat/v1/ws"):
        why = refusal(record(letter(source=source, partition=-1, offset=-1)), TOPICS)
        assert why is not None and "never came from a topic" in why and source in why
    assert "never came from a topic" in str(refusal(record(letter(partition=-1, offset=-1)), TOPICS))
    assert "not a topic of this deployment" in str(refusal(record(letter(source="other.sb.inbound.v1")), TOPICS))
    assert "not a topic of this deployment" in str(refusal(record(letter(source=TOPICS.dlq)), TOPICS))


def test_a_record_with_a_redrive_mark_is_not_redriven_again() -> None:
    mark = DeadLetterRedrive(dead_letter_id="d1", topic=TOPICS.inbound, partition=1, offset=9, at=_at(NOW))
    [marked, other] = attach_redrives([record(letter("d1")), record(letter("d2"))], [mark])
    assert marked.redrive == mark and other.redrive is None
    assert "already re-driven to p.sb.inbound.v1 (partition 1, offset 9)" in str(refusal(marked, TOPICS))


def test_redriven_records_keep_their_headers_and_name_their_dead_letter() -> None:
    dl = letter(original_headers={TYPE_HEADER: "switchboard.v1.InboundMessage", "x-trace": "t1"})
    assert redrive_headers(dl) == [
        (TYPE_HEADER, b"switchboard.v1.InboundMessage"),
        ("x-trace", b"t1"),
        (REDRIVEN_FROM_HEADER, b"d1"),
    ]
    # A record re-driven, refused again and re-driven once more names the newest DeadLetter only.
    again = letter("d2", original_headers={REDRIVEN_FROM_HEADER: "d1"})
    assert redrive_headers(again) == [(REDRIVEN_FROM_HEADER, b"d2")]


def test_the_original_key_comes_from_the_letter_else_from_the_dlq_record() -> None:
    assert original_key(record(letter(key="conv-1"), dlq_key="conv-1")) == "conv-1"
    # Written before DeadLetter carried the key: the DLQ record's key is the original one...
    assert original_key(record(letter(), dlq_key="conv-2")) == "conv-2"
    # ...unless the original had none, and the DLQ record was keyed by the error type.
    assert original_key(record(letter(error_type="decode_error"), dlq_key="decode_error")) == ""


def test_a_plan_by_id_keeps_the_order_given_and_says_why_it_holds_records_back() -> None:
    mark = DeadLetterRedrive(dead_letter_id="done", topic=TOPICS.inbound, at=_at(NOW))
    records = attach_redrives(
        [
            record(letter("a")),
            record(letter("edge", source="smtp", partition=-1, offset=-1)),
            record(letter("done")),
            record(letter("b")),
        ],
        [mark],
    )
    plan = plan_redrive(records, TOPICS, ids=["b", "missing", "edge", "done", "a", "b"])
    assert [r.id for r in plan.send] == ["b", "a"]
    assert [(o.dead_letter_id, o.verdict) for o in plan.kept_back] == [
        ("missing", "not_found"),
        ("edge", "refused"),
        ("done", "skipped"),
    ]


def test_a_plan_by_filter_takes_every_matching_record_oldest_first() -> None:
    records = [
        record(letter("late", at=_at(NOW + timedelta(minutes=1)))),
        record(letter("early", at=_at(NOW - timedelta(minutes=1)))),
        record(letter("other", error_type="decode_error")),
        record(letter("edge", source="http:/v1/x", partition=-1, offset=-1)),
    ]
    plan = plan_redrive(records, TOPICS, by_filter=Filter(reason="invalid"))
    assert [r.id for r in plan.send] == ["early", "late"]
    assert [o.dead_letter_id for o in plan.kept_back] == ["edge"]


def test_newest_keeps_the_most_recent_oldest_first() -> None:
    records = [record(letter(str(i), at=_at(NOW + timedelta(seconds=i)))) for i in (3, 1, 2)]
    assert [r.id for r in newest(records, 2)] == ["2", "3"]
    assert [r.id for r in newest(records, None)] == ["1", "2", "3"]
    assert newest(records, 0) == []


def test_a_known_record_is_shown_field_by_field_masked() -> None:
    message = InboundMessage(
        message_id="m1",
        conversation_id="c1",
        channel=Channel.CHANNEL_EMAIL,
        text=PII,
        customer=Customer(customer_id="cust-1", display_name="li.lei@example.com"),
        attributes={"phone": "13812345678"},
    )
    shown = render.payload(
        record(
            letter(
                original=message.SerializeToString(), original_headers={TYPE_HEADER: "switchboard.v1.InboundMessage"}
            )
        )
    )
    assert shown.kind == "switchboard.v1.InboundMessage"
    content = shown.content
    assert content["channel"] == "CHANNEL_EMAIL"
    assert content["attributes"] == {"phone": "138****5678"}
    assert content["customer"] == {"customer_id": "cust-1", "display_name": "l***@example.com"}
    assert no_pii(json.dumps(content, ensure_ascii=False))


def test_bytes_fields_are_shown_as_masked_text_not_base64() -> None:
    inner = letter(original=PII.encode(), original_headers={"x": "13812345678"})
    outer = letter(original=inner.SerializeToString(), original_headers={TYPE_HEADER: "switchboard.v1.DeadLetter"})
    content = render.payload(record(outer)).content
    assert content["original"].startswith("手机 138****5678")
    assert content["original_headers"] == {"x": "138****5678"}
    assert no_pii(json.dumps(content, ensure_ascii=False))


def test_payloads_that_are_not_their_type_are_shown_as_text_or_bytes_masked() -> None:
    wrong = letter(original=PII.encode(), original_headers={TYPE_HEADER: "switchboard.v1.AgentCommand"})
    # The header says AgentCommand, the bytes are not one (a decode_error record): shown as the text they are.
    shown = render.payload(record(wrong))
    assert shown.kind == "text" and no_pii(shown.content)
    text = render.payload(record(letter(original=PII.encode())))
    assert text.kind == "text" and no_pii(text.content)
    binary = render.payload(record(letter(original=b"\xff\xfe" + PII.encode() + b"\x1b[2J")))
    assert binary.kind == "binary" and no_pii(binary.content)
    assert render.payload(record(letter())).kind == "empty"


def test_show_and_list_mask_every_free_text_and_escape_control_characters() -> None:
    command = AgentCommand(command_id="k", type=AgentCommandType.AGENT_COMMAND_CLOSE, wrap_up_code=PII)
    dl = letter(
        "d-9",
        reason=f"bad field: {PII}",
        tenant_id="shop-a",
        key="13812345678",
        original=command.SerializeToString(),
        original_headers={TYPE_HEADER: "switchboard.v1.AgentCommand", "x-from": "li.lei@example.com\x1b[31m"},
    )
    text = render.show_text(record(dl), TOPICS)
    table = render.table([record(dl)], TOPICS)
    detail = json.dumps(render.detail(record(dl), TOPICS), ensure_ascii=False)
    for shown in (text, table, detail):
        assert no_pii(shown), shown
    assert "\x1b" not in text and "\\x1b[31m" in text and "\x1b" not in table
    for field in ("d-9", "router", TOPICS.inbound, "partition", "offset", "invalid", "AGENT_COMMAND_CLOSE"):
        assert field in text
    assert "can go back to p.sb.inbound.v1" in text


def test_a_redriven_record_says_where_it_went() -> None:
    mark = DeadLetterRedrive(dead_letter_id="d1", topic=TOPICS.inbound, partition=1, offset=9, by="ops", at=_at(NOW))
    [marked] = attach_redrives([record(letter("d1"))], [mark])
    assert render.status(marked, TOPICS) == "redriven"
    assert "re-driven         to p.sb.inbound.v1 (partition 1, offset 9) at 2026-11-11T00:30:00.000+00:00 by ops" in (
        render.show_text(marked, TOPICS)
    )
    assert render.status(record(letter(source="smtp", partition=-1)), TOPICS) == "not_redrivable"
