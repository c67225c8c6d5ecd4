"""Free text from outside (display names, reasons, descriptions, passwords): bounded in length, valid Unicode, and
text by runtime.input_limits' rule where a person reads it.

A lone surrogate (`"\\ud800"` is valid JSON) cannot be encoded to UTF-8, so it would fail later where the text is
written to Redis, Kafka or a log line, as a 500 or a crash; control characters would forge log lines. Both are
refused where the text enters, with a 422 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

from switchboard.runtime.input_limits import text_problem

# The text rule of runtime.input_limits (no lone surrogates, no C0 control characters but tab, LF and CR) as a
# schema pattern; the validator applies that rule itself, so schema and check say the same.
PLAIN_TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f]*$"

NAME_MAX = 128
REASON_MAX = 512
DESCRIPTION_MAX = 2000
SECRET_MAX = 512


def _plain(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("holds a lone surrogate (not valid Unicode text)") from exc
    return value


def _plain_schema(max_length: int) -> Any:
    return Field(max_length=max_length, json_schema_extra={"pattern": PLAIN_TEXT_PATTERN})


# A name shown to people (an agent's display name).
Name = Annotated[str, _plain_schema(NAME_MAX), AfterValidator(_plain)]
# A reason an operator gives (a status change).
Reason = Annotated[str, _plain_schema(REASON_MAX), AfterValidator(_plain)]
# A description an operator writes (a surge profile).
Description = Annotated[str, _plain_schema(DESCRIPTION_MAX), AfterValidator(_plain)]
# A password or token a person types: any characters, but bounded and encodable.
Secret = Annotated[str, Field(max_length=SECRET_MAX), AfterValidator(_encodable)]
