"""contracts.json.message_dict gives what json_format.MessageToDict gives (proto field names kept), for every
message type of the contracts, empty and with every field set (nested, repeated, maps, enums, odd floats)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from switchboard.contracts.json import message_dict
from switchboard.contracts.v1 import messages_pb2

MESSAGE_TYPES = [getattr(messages_pb2, name) for name in messages_pb2.DESCRIPTOR.message_types_by_name]
FLOATS = [1.1, -0.0, 3.4028234663852886e38, 1e-45, math.inf, -math.inf, math.nan, 0.1 + 0.2]


SCALARS: dict[int, Any] = {
    FieldDescriptor.CPPTYPE_STRING: lambda v: f'值-{v}-\u00e9\n"q"',
    FieldDescriptor.CPPTYPE_BOOL: lambda v: v % 2 == 0,
    FieldDescriptor.CPPTYPE_FLOAT: lambda v: FLOATS[v % len(FLOATS)],
    FieldDescriptor.CPPTYPE_DOUBLE: lambda v: FLOATS[v % len(FLOATS)],
    FieldDescriptor.CPPTYPE_INT64: lambda v: 2**62 + v,
    FieldDescriptor.CPPTYPE_UINT64: lambda v: 2**63 + v,
    FieldDescriptor.CPPTYPE_INT32: lambda v: -(2**31) + v,
    FieldDescriptor.CPPTYPE_UINT32: lambda v: 2**32 - 1 - v,
}


def _scalar(field: Any, variant: int) -> Any:
    if field.cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        # An open enum may hold a number it does not name.
        numbers = [*(v.number for v in field.enum_type.values), 999]
        return numbers[variant % len(numbers)]
    if field.type == FieldDescriptor.TYPE_BYTES:
        return bytes([variant, 255, 0, 128])
    return SCALARS[field.cpp_type](variant)


def _fill_map(message: Message, field: Any, variant: int, depth: int) -> None:
    target = getattr(message, field.name)
    value_field = field.message_type.fields_by_name["value"]
    for i in range(2):
        key = _scalar(field.message_type.fields_by_name["key"], variant + i)
        if value_field.message_type is None:
            target[key] = _scalar(value_field, variant + i)
        elif depth < 3:
            fill(target[key], variant + i, depth + 1)


def _fill_message(message: Message, field: Any, variant: int, depth: int) -> None:
    if field.message_type.full_name == "google.protobuf.Timestamp":
        if not field.is_repeated:
            stamp = getattr(message, field.name)
            stamp.seconds, stamp.nanos = 1_762_790_400 + variant, 123_000_000 * (variant % 3)
    elif depth < 3 and field.is_repeated:
        for i in range(2):
            fill(getattr(message, field.name).add(), variant + i, depth + 1)
    elif depth < 3:
        fill(getattr(message, field.name), variant, depth + 1)


def fill(message: Message, variant: int, depth: int = 0) -> Message:
    """Set every field of the message (messages three levels deep), in a way that depends on `variant`."""
    for field in message.DESCRIPTOR.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            _fill_map(message, field, variant, depth)
        elif field.message_type is not None:
            _fill_message(message, field, variant, depth)
        elif field.is_repeated:
            getattr(message, field.name).extend(_scalar(field, variant + i) for i in range(3))
        else:
            setattr(message, field.name, _scalar(field, variant))
    return message


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.DESCRIPTOR.name)
@pytest.mark.parametrize("variant", [0, 1, 2, 5, 7])
def test_message_dict_is_what_json_format_gives(cls: type[Message], variant: int) -> None:
    message = fill(cls(), variant)
    expected = MessageToDict(message, preserving_proto_field_name=True)
    assert _same(message_dict(message), expected), (message_dict(message), expected)


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.DESCRIPTOR.name)
def test_an_empty_message_is_an_empty_object(cls: type[Message]) -> None:
    assert message_dict(cls()) == MessageToDict(cls(), preserving_proto_field_name=True) == {}
