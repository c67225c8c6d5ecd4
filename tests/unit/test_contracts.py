"""The protobuf contracts: round trips, the type header, and generated code that matches proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from switchboard.contracts import (
    RECORD_TYPES,
    Channel,
    CommerceContext,
    ContractError,
    DeadLetter,
    EmailDetail,
    InboundMessage,
    RoutingEvent,
    RoutingEventType,
    decode,
    type_name,
)


def test_every_record_type_round_trips_by_its_header() -> None:
    message = InboundMessage(
        message_id="m1",
        tenant_id="shop-a",
        conversation_id="c1",
        channel=Channel.CHANNEL_EMAIL,
        text="请问什么时候发货? When will it ship?",
        language="zh",
        commerce=CommerceContext(order_id="O123", order_status="paid", platform="tmall"),
        email=EmailDetail(message_id="<a@b>", references=["<r@b>"]),
    )
    again = decode(type_name(message), message.SerializeToString())
    assert again == message
    assert again.WhichOneof("detail") == "email"
    assert set(RECORD_TYPES) == {
        "switchboard.v1.InboundMessage",
        "switchboard.v1.RoutingEvent",
        "switchboard.v1.AgentPresence",
        "switchboard.v1.OutboundMessage",
        "switchboard.v1.DeadLetter",
        "switchboard.v1.DeadLetterRedrive",
        "switchboard.v1.AgentCommand",
        "switchboard.v1.DeskEvent",
    }


def test_decode_refuses_missing_unknown_and_garbage() -> None:
    with pytest.raises(ContractError, match="missing"):
        decode(None, b"")
    with pytest.raises(ContractError, match="unknown record type"):
        decode("switchboard.v1.Nope", b"")
    with pytest.raises(ContractError, match="cannot decode"):
        decode("switchboard.v1.RoutingEvent", b"\xff\xff\xff\xff")


def test_reasons_travel_with_routing_events() -> None:
    event = RoutingEvent(type=RoutingEventType.ROUTING_EVENT_QUEUED, reasons=["all agents at capacity"])
    letter = DeadLetter(reason="bad", original=event.SerializeToString())
    assert RoutingEvent.FromString(letter.original).reasons == ["all agents at capacity"]


def test_generated_code_is_not_stale(repo_root: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(repo_root / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
