"""Desk protocol frames, tokens, the command bucket and the ownership check: pure, no I/O."""

from __future__ import annotations

import json
import time

import pytest

from switchboard.contracts import Channel, DeskEvent, DeskEventType, InboundMessage
from switchboard.gateway.commands import check_conversation
from switchboard.gateway.protocol import (
    CloseCode,
    CommandBucket,
    FrameError,
    event_frame,
    parse_command,
    parse_hello,
)
from switchboard.gateway.tokens import TokenRefused, issue_token, verify_token
from switchboard.routing.commands import ConversationView
from switchboard.runtime.input_limits import InputRefused

SECRET = "unit-secret-0123456789-0123456789-abc"


def test_hello_needs_type_auth() -> None:
    assert parse_hello('{"type": "auth", "token": "t", "resume_after": 7}').resume_after == 7
    assert parse_hello('{"type": "auth"}').token == ""
    with pytest.raises(FrameError):
        parse_hello('{"type": "reply"}')
    with pytest.raises(InputRefused) as refused:
        parse_hello("not json")
    assert (refused.value.kind, refused.value.close_code) == ("invalid_json", CloseCode.INVALID_PAYLOAD)
    with pytest.raises(FrameError):
        parse_hello('{"type": "auth", "token": "t", "resume_after": -1}')


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("[" * 5000 + "]" * 5000, "too_deep"),
        ('{"type": "reply", "conversation_id": "c", "epoch": 1, "text": "\\ud800"}', "invalid_text"),
        ('{"type": "set_status", "status": "away", "reason": "\\u0000"}', "invalid_text"),
        ('{"type": "heartbeat", "n": NaN}', "invalid_json"),
    ],
)
def test_hostile_frames_are_refused_before_they_are_read(raw: str, kind: str) -> None:
    for parse in (parse_hello, parse_command):
        with pytest.raises(InputRefused) as refused:
            parse(raw)
        assert refused.value.kind == kind and refused.value.close_code == 1007


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "launch"}, "unknown_type"),
        # a type that is no string (unhashable ones too) is an unknown type, not a failure of the socket's handler
        ({"type": [1, 2]}, "unknown_type"),
        ({"type": {"reply": 1}}, "unknown_type"),
        ({"type": None}, "unknown_type"),
        ({"type": ["reply"] * 5000, "conversation_id": "c", "epoch": 1, "text": "hi"}, "unknown_type"),
        ({"type": "reply", "conversation_id": "c", "text": "hi"}, "bad_field"),  # epoch required
        ({"type": "reply", "conversation_id": "c", "epoch": 1, "text": ""}, "bad_field"),
        ({"type": "reply", "conversation_id": "c", "epoch": 1, "text": "x" * 9000}, "bad_field"),
        ({"type": "close", "conversation_id": "c"}, "bad_field"),
        ({"type": "transfer", "conversation_id": "c"}, "bad_field"),
        ({"type": "transfer", "conversation_id": "c", "to_agent": "a", "to_group": "g"}, "bad_field"),
        ({"type": "set_status", "status": "offline"}, "bad_field"),
        ({"type": "ack"}, "bad_field"),
        ({"type": "ack", "seq": True}, "bad_field"),
        ({"type": "accept"}, "bad_field"),
    ],
)
def test_bad_commands_are_named(frame: dict[str, object], code: str) -> None:
    with pytest.raises(FrameError) as caught:
        parse_command(json.dumps({**frame, "id": "r1"}))
    assert caught.value.code == code
    assert caught.value.ref == "r1"
    assert len(caught.value.detail) <= 200


def test_good_commands_parse() -> None:
    reply = parse_command('{"type":"reply","id":"1","conversation_id":"c","epoch":3,"text":"好的"}')
    assert (reply.conversation_id, reply.epoch, reply.text) == ("c", 3, "好的")
    transfer = parse_command('{"type":"transfer","conversation_id":"c","to_group":"after_sales"}')
    assert transfer.to_group == "after_sales"
    assert parse_command('{"type":"ack","seq":12}').seq == 12
    assert parse_command('{"type":"set_status","status":"wrap_up"}').status == "wrap_up"


def test_event_frame_numbers_and_names_the_event() -> None:
    event = DeskEvent(
        tenant_id="shop-a",
        agent_id="a1",
        seq=42,
        type=DeskEventType.DESK_EVENT_OFFER,
        conversation_id="c1",
        epoch=5,
        message=InboundMessage(message_id="m1", channel=Channel.CHANNEL_CHAT, text="尺码偏大吗"),
    )
    event.offer_deadline.FromMilliseconds(1_700_000_000_000)
    frame = json.loads(event_frame(event))
    assert frame["type"] == "event" and frame["seq"] == 42 and frame["event"] == "offer"
    assert frame["epoch"] == 5 and frame["offer_deadline"].startswith("2023-11-14T")
    assert frame["message"]["text"] == "尺码偏大吗"
    assert "tenant_id" not in frame


def test_tokens_round_trip_and_refusals() -> None:
    claims = verify_token(SECRET, issue_token(SECRET, "shop-a", "a1", 60))
    assert (claims.tenant_id, claims.agent_id) == ("shop-a", "a1")
    cases = [
        ("", CloseCode.TOKEN_MISSING),
        ("garbage", CloseCode.TOKEN_INVALID),
        (issue_token(SECRET + "x", "shop-a", "a1", 60), CloseCode.TOKEN_INVALID),
        (issue_token(SECRET, "shop-a", "a1", 60, now=time.time() - 3600), CloseCode.TOKEN_EXPIRED),
    ]
    for raw, code in cases:
        with pytest.raises(TokenRefused) as caught:
            verify_token(SECRET, raw)
        assert caught.value.code == code


def test_command_bucket_refills_at_its_rate() -> None:
    bucket = CommandBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) >= 0 for _ in range(4)] == [True, True, True, False]
    assert bucket.take(1.0) >= 0  # two tokens back after a second


def _conv(**fields: object) -> ConversationView:
    base: dict[str, object] = {
        "exists": True,
        "owner": "",
        "epoch": 4,
        "state": "assigned",
        "offer_agent": "",
        "channel": "chat",
        "customer_id": "",
    }
    return ConversationView(**{**base, **fields})  # type: ignore[arg-type]


def test_ownership_rules() -> None:
    accept = parse_command('{"type":"accept","conversation_id":"c"}')
    close = parse_command('{"type":"close","conversation_id":"c","wrap_up_code":"ok","epoch":4}')
    assert check_conversation("a1", accept, _conv(state="offered", offer_agent="a1")) == 4
    assert check_conversation("a1", accept, _conv(owner="a1")) == 4  # a resent accept
    assert check_conversation("a1", close, _conv(owner="a1")) == 4
    refusals = [
        (accept, _conv(state="offered", offer_agent="a2"), "not_offered"),
        (close, _conv(owner="a2"), "not_owner"),
        (close, _conv(owner="a1", state="closed"), "not_owner"),
        (close, _conv(owner="a1", epoch=5), "stale_epoch"),
        (close, _conv(exists=False), "not_found"),
    ]
    for cmd, conv, code in refusals:
        with pytest.raises(FrameError) as caught:
            check_conversation("a1", cmd, conv)
        assert caught.value.code == code
