"""What a telephony platform sends: call lifecycle events and ASR segments, as JSON, validated here.

One delivery (an HTTP batch body or a websocket frame) is `{"id": "...", "items": [...]}` or a single item.
Every refusal raises PhoneInputError with the HTTP status and the websocket error code it maps to.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from switchboard.runtime.errors import InvalidRecord
from switchboard.runtime.input_limits import INVALID_JSON, InputRefused, parse_json
from switchboard.runtime.pii import mask_pii

# The endpoints refuse bigger bodies and frames (SB_PHONE_MAX_*_BYTES, 413/1009) before anything is parsed.
PARSE_MAX_BYTES = 8 * 1024 * 1024

CALL_ID = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"
SPEAKERS = {
    "customer": "customer",
    "caller": "customer",
    "client": "customer",
    "客户": "customer",
    "顾客": "customer",
    "agent": "agent",
    "operator": "agent",
    "staff": "agent",
    "客服": "agent",
}


class PhoneInputError(InvalidRecord):
    """Input the adapter refuses: a reason, an error type for the DLQ, and the HTTP status it answers with."""

    def __init__(self, reason: str, error_type: str = "invalid", status: int = 422) -> None:
        # Reasons quote bits of the input (a timestamp, a call id); they reach logs, answers and the DLQ masked.
        super().__init__(mask_pii(reason), error_type)
        self.status = status


def speaker_of(name: str) -> str:
    """ "customer", "agent", or "unknown" for whatever a vendor calls the two sides."""
    return SPEAKERS.get(name.strip().lower(), "unknown")


class _Item(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    call_id: Annotated[str, Field(pattern=CALL_ID)]
    at_ms: int | None = Field(default=None, ge=0)


class CallStarted(_Item):
    """A call reached the shop's hotline."""

    type: Literal["call.started"]
    caller: Annotated[str, Field(max_length=40)] = ""
    dialled_number: Annotated[str, Field(min_length=3, max_length=40)]
    ivr_choice: Annotated[str, Field(max_length=64)] = ""
    language: Annotated[str, Field(max_length=16)] = ""


class CallIvr(_Item):
    """The caller chose an IVR menu entry."""

    type: Literal["call.ivr"]
    ivr_choice: Annotated[str, Field(min_length=1, max_length=64)]


class CallAnswered(_Item):
    """An agent picked the call up."""

    type: Literal["call.answered"]
    agent_id: Annotated[str, Field(max_length=128)] = ""


class CallEnded(_Item):
    """The call is over."""

    type: Literal["call.ended"]
    reason: Annotated[str, Field(max_length=64)] = ""


class Segment(_Item):
    """One ASR transcript segment; partial ones are live hypotheses, the final one is what was said."""

    type: Literal["segment"]
    seq: int = Field(ge=0, le=10_000_000)
    speaker: Annotated[str, Field(max_length=32)] = "customer"
    text: Annotated[str, Field(max_length=20_000)]
    start_ms: int = Field(ge=0)
    end_ms: int = Field(ge=0)
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)
    final: bool = True

    @model_validator(mode="after")
    def _ends_after_start(self) -> Segment:
        if self.end_ms < self.start_ms:
            raise ValueError(f"segment {self.seq} ends ({self.end_ms} ms) before it starts ({self.start_ms} ms)")
        return self


PhoneItem = Annotated[CallStarted | CallIvr | CallAnswered | CallEnded | Segment, Field(discriminator="type")]


class Delivery(BaseModel):
    """A batch of items; `id` is echoed in the acknowledgement."""

    model_config = ConfigDict(extra="ignore")

    id: Annotated[str, Field(max_length=128)] = ""
    items: list[PhoneItem] = Field(min_length=1)


def _summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"])
        parts.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    return "; ".join(parts)


def load_json(raw: bytes | str, what: str = "body") -> Any:
    """JSON through runtime/input_limits (depth, lone surrogates, control characters, UTF-8); PhoneInputError
    with `bad_json` (not JSON, the documented type), `too_deep` or `invalid_text` and status 400 otherwise. The
    callers bound the size before."""
    try:
        return parse_json(raw, max_bytes=PARSE_MAX_BYTES)
    except InputRefused as exc:
        kind = "bad_json" if exc.kind == INVALID_JSON else exc.kind
        reason = exc.reason.replace("JSON is nested", f"{what} is nested").replace("not JSON", f"{what} is not JSON")
        raise PhoneInputError(reason, kind, exc.status) from exc


def parse_delivery(raw: bytes | str, max_items: int, max_text_chars: int) -> Delivery:
    """Decode and validate one delivery; raises PhoneInputError with a reason an integrator can act on."""
    data = load_json(raw)
    if isinstance(data, dict) and "type" in data:
        data = {"id": data.get("id", ""), "items": [data]}
    if isinstance(data, list):
        data = {"items": data}
    if isinstance(data, dict) and isinstance(data.get("items"), list) and len(data["items"]) > max_items:
        raise PhoneInputError(f"{len(data['items'])} items in one delivery, at most {max_items}", "too_large", 413)
    try:
        delivery = Delivery.model_validate(data)
    except ValidationError as exc:
        raise PhoneInputError(f"invalid delivery: {_summary(exc)}") from exc
    for item in delivery.items:
        if isinstance(item, Segment) and len(item.text) > max_text_chars:
            raise PhoneInputError(
                f"segment {item.seq} of call {item.call_id}: text over {max_text_chars} characters", "too_large", 413
            )
    return delivery


def delivery_id(raw: bytes | str) -> str:
    """The `id` of a delivery when it can be read at all (for the error frame of a refused one)."""
    try:
        data = load_json(raw)
    except PhoneInputError:
        return ""
    return str(data.get("id", ""))[:128] if isinstance(data, dict) else ""
