"""Messages as ProtoJSON objects with their proto field names: what `MessageToDict(message,
preserving_proto_field_name=True)` gives, at a fraction of its cost.

    body = message_dict(event)

protobuf's `json_format` looks every field's conversion up again for every value (a dozen calls per field); the
gateway turns each desk event into a frame this way, and that was a third of its CPU in the fan-out benchmark.
Here each message type's fields are turned into converters once, from the descriptors generated from proto/, with
the rules of the ProtoJSON mapping: 64-bit integers as strings, enums by name (an unknown number as the number),
bytes as base64, infinities and NaN as strings, 32-bit floats at their shortest, maps with string keys. Well-known
types (Timestamp, Duration, wrappers, Struct, Any, ...) are left to `json_format` itself. A test checks the two
agree on every message type of the contracts.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

Convert = Callable[[Any], Any]
# A field's descriptor: google.protobuf.descriptor.FieldDescriptor, or upb's own class of it (typed apart).
Field = Any

# Per message type (full name): field number -> (proto field name, conversion of its value).
_CONVERTERS: dict[str, dict[int, tuple[str, Convert]]] = {}


def message_dict(message: Message) -> dict[str, Any]:
    """The message's ProtoJSON object, proto field names kept (as MessageToDict with preserving_proto_field_name).

    For a message of the contracts; a well-known type alone (a bare Timestamp) is json_format's to write."""
    descriptor = message.DESCRIPTOR
    fields = _CONVERTERS.get(descriptor.full_name)
    if fields is None:
        fields = _CONVERTERS[descriptor.full_name] = {f.number: (f.name, _field(f)) for f in descriptor.fields}
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        name, convert = fields[field.number]
        out[name] = convert(value)
    return out


def _well_known(message: Message) -> Any:
    return MessageToDict(message, preserving_proto_field_name=True)


def _special(full_name: str) -> bool:
    """A type json_format writes in its own way (a well-known type: not a JSON object of its fields)."""
    return full_name.startswith("google.protobuf.")


def _field(field: Field) -> Convert:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_field = field.message_type.fields_by_name["key"]
        value = _value(field.message_type.fields_by_name["value"])
        is_bool = key_field.cpp_type == FieldDescriptor.CPPTYPE_BOOL

        def convert_map(entries: Any) -> dict[str, Any]:
            return {(("true" if k else "false") if is_bool else str(k)): value(entries[k]) for k in entries}

        return convert_map
    single = _value(field)
    if field.is_repeated:
        return lambda values: [single(v) for v in values]
    return single


def _value(field: Field) -> Convert:
    if field.cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        return _enum(field)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return _bytes
    return _BY_CPP_TYPE.get(field.cpp_type, _same)


def _enum(field: Field) -> Convert:
    if field.enum_type.full_name == "google.protobuf.NullValue":
        return lambda _: None
    names = {v.number: v.name for v in field.enum_type.values}
    return lambda number: names.get(number, number)


def _bytes(raw: bytes) -> str:
    return base64.b64encode(raw).decode("utf-8")


def _float32(value: float) -> Any:
    return _not_finite(value) if _is_special_float(value) else type_checkers.ToShortestFloat(value)


def _double(value: float) -> Any:
    return _not_finite(value) if _is_special_float(value) else value


def _same(value: Any) -> Any:
    return value


def _message_value(message: Message) -> Any:
    if _special(message.DESCRIPTOR.full_name):
        return _well_known(message)
    return message_dict(message)


def _is_special_float(value: float) -> bool:
    return math.isinf(value) or math.isnan(value)


def _not_finite(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "-Infinity" if value < 0 else "Infinity"


_BY_CPP_TYPE: dict[int, Convert] = {
    FieldDescriptor.CPPTYPE_MESSAGE: _message_value,
    FieldDescriptor.CPPTYPE_STRING: str,
    FieldDescriptor.CPPTYPE_BOOL: bool,
    FieldDescriptor.CPPTYPE_INT64: str,
    FieldDescriptor.CPPTYPE_UINT64: str,
    FieldDescriptor.CPPTYPE_FLOAT: _float32,
    FieldDescriptor.CPPTYPE_DOUBLE: _double,
}
