"""The record contracts of switchboard: protobuf messages generated from proto/, and their wire envelope.

Every Kafka record carries a `sb-type` header with the message's full name, so a consumer can tell an
InboundMessage from garbage before it parses a byte.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError, Message

from switchboard.contracts.v1.messages_pb2 import (
    AgentCommand,
    AgentCommandType,
    AgentPresence,
    AgentStatus,
    Attachment,
    CallEvent,
    CandidateVerdict,
    Channel,
    ChannelCapacity,
    ChatDetail,
    CommerceContext,
    Customer,
    DeadLetter,
    DeadLetterRedrive,
    DeskEvent,
    DeskEventType,
    EmailDetail,
    InboundMessage,
    MessageKind,
    OutboundMessage,
    PhoneDetail,
    RoutingEvent,
    RoutingEventType,
)

TYPE_HEADER = "sb-type"
# On every record whose message has a `channel` (inbound, routing, outbound): its Channel name, e.g. CHANNEL_EMAIL.
# A consumer that handles one channel skips the others' records by it, without decoding them.
CHANNEL_HEADER = "sb-channel"
# On a record an operator sent back from the DLQ (`switchboard dlq redrive`): the dead_letter_id it came from.
REDRIVEN_FROM_HEADER = "sb-redriven-from"

RECORD_TYPES: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        InboundMessage,
        RoutingEvent,
        AgentPresence,
        OutboundMessage,
        DeadLetter,
        AgentCommand,
        DeskEvent,
        DeadLetterRedrive,
    )
}


class ContractError(ValueError):
    """A record does not decode into the message its headers name."""


def type_name(message: Message) -> str:
    """The `sb-type` header value of a message, e.g. "switchboard.v1.InboundMessage"."""
    return str(message.DESCRIPTOR.full_name)


def decode(type_header: str | None, value: bytes | None) -> Message:
    """Parse a record's value into the message its type header names, or raise ContractError."""
    if type_header is None:
        raise ContractError(f"missing {TYPE_HEADER} header")
    cls = RECORD_TYPES.get(type_header)
    if cls is None:
        raise ContractError(f"unknown record type {type_header!r}")
    if value is None:
        raise ContractError("empty record value")
    message = cls()
    try:
        message.ParseFromString(value)
    except DecodeError as exc:
        raise ContractError(f"cannot decode {type_header}: {exc}") from exc
    return message


__all__ = [
    "RECORD_TYPES",
    "REDRIVEN_FROM_HEADER",
    "TYPE_HEADER",
    "AgentCommand",
    "AgentCommandType",
    "AgentPresence",
    "AgentStatus",
    "Attachment",
    "CallEvent",
    "CandidateVerdict",
    "Channel",
    "ChannelCapacity",
    "ChatDetail",
    "CommerceContext",
    "ContractError",
    "Customer",
    "DeadLetter",
    "DeadLetterRedrive",
    "DeskEvent",
    "DeskEventType",
    "EmailDetail",
    "InboundMessage",
    "MessageKind",
    "OutboundMessage",
    "PhoneDetail",
    "RoutingEvent",
    "RoutingEventType",
    "decode",
    "type_name",
]
