"""The desktop protocol's vocabulary: close codes, frame names, and the pure translation of frames.

Every frame is a JSON object in a text frame with a `type`. docs/desktop-protocol.md documents each one;
keep the two in step.
"""

from __future__ import annotations

import json
import reprlib
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any

from switchboard.contracts import AgentCommandType, AgentStatus, DeskEvent, DeskEventType
from switchboard.contracts.json import message_dict
from switchboard.runtime.input_limits import parse_json


class CloseCode(IntEnum):
    """Websocket close codes the gateway uses (4xxx are switchboard's own)."""

    INVALID_PAYLOAD = 1007  # a frame nested too deep, with a lone surrogate or a control character, or not JSON
    POLICY = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013  # the agent's state is being restored after Redis lost it: reconnect shortly
    PROTOCOL_ERROR = 4000  # the first frame is not an auth frame (a JSON object with type auth), or binary
    TOKEN_MISSING = 4001
    TOKEN_INVALID = 4002
    ORIGIN_NOT_ALLOWED = 4003
    TOKEN_EXPIRED = 4004
    WRONG_TENANT = 4005
    TOKEN_IN_URL = 4006
    AUTH_TIMEOUT = 4008
    SUPERSEDED = 4009  # a newer session of the same agent logged in (another tab, a reconnect)
    TOO_SLOW = 4010  # the desktop did not read its events for too long
    RESYNC = 4011  # events the desktop had not read were dropped from its outbox: reconnect for a snapshot
    SESSION_ENDED = 4012  # presence set the agent offline (heartbeats stopped): log in again
    RATE_LIMITED = 4029


EVENT_NAMES: dict[int, str] = {
    DeskEventType.DESK_EVENT_OFFER: "offer",
    DeskEventType.DESK_EVENT_ASSIGNED: "assigned",
    DeskEventType.DESK_EVENT_MESSAGE: "message",
    DeskEventType.DESK_EVENT_TRANSCRIPT: "transcript",
    DeskEventType.DESK_EVENT_CLOSED: "closed",
    DeskEventType.DESK_EVENT_TRANSFERRED: "transferred",
    DeskEventType.DESK_EVENT_REVOKED: "revoked",
    DeskEventType.DESK_EVENT_STATUS: "status",
    DeskEventType.DESK_EVENT_QUEUE_STATS: "queue_stats",
}

STATUS_NAMES: dict[int, str] = {
    AgentStatus.AGENT_STATUS_AVAILABLE: "available",
    AgentStatus.AGENT_STATUS_BUSY: "busy",
    AgentStatus.AGENT_STATUS_AWAY: "away",
    AgentStatus.AGENT_STATUS_WRAP_UP: "wrap_up",
    AgentStatus.AGENT_STATUS_OFFLINE: "offline",
}
STATUS_BY_NAME = {name: status for status, name in STATUS_NAMES.items()}

CONVERSATION_COMMANDS: dict[str, AgentCommandType.ValueType] = {
    "accept": AgentCommandType.AGENT_COMMAND_ACCEPT,
    "decline": AgentCommandType.AGENT_COMMAND_DECLINE,
    "close": AgentCommandType.AGENT_COMMAND_CLOSE,
    "transfer": AgentCommandType.AGENT_COMMAND_TRANSFER,
}
CLIENT_FRAMES = frozenset(
    {
        *CONVERSATION_COMMANDS,
        "reply",
        "typing",
        "set_status",
        "heartbeat",
        "ack",
        "context",
        "desk_config",
        "response_stats",
    }
)
MAX_TEXT = 8000
MAX_NOTE = 2000
MAX_FIELD = 200
# The socket refuses frames over SB_MAX_FRAME_BYTES (1009) before they are parsed; this only bounds direct callers.
PARSE_MAX_BYTES = 1024 * 1024


class FrameError(ValueError):
    """A client frame that cannot be taken; answered with an error frame carrying `code`."""

    def __init__(self, code: str, detail: str, ref: str = "") -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.ref = ref


@dataclass(frozen=True)
class Hello:
    """The first frame: the token, and optionally where to resume and which tenant the desktop expects."""

    token: str
    resume_after: int | None = None
    tenant: str | None = None


@dataclass(frozen=True)
class Command:
    """A validated client frame after auth."""

    type: str
    ref: str = ""
    conversation_id: str = ""
    epoch: int = 0
    text: str = ""
    reason: str = ""
    wrap_up_code: str = ""
    to_agent: str = ""
    to_group: str = ""
    status: str = ""
    seq: int = 0
    client_message_id: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _obj(raw: str) -> dict[str, Any]:
    """A frame's JSON object; InputRefused (runtime/input_limits.py) when it is not JSON text at all."""
    frame = parse_json(raw, max_bytes=PARSE_MAX_BYTES)
    if not isinstance(frame, dict):
        raise FrameError("bad_frame", "frame must be a JSON object")
    return frame


def _str(frame: dict[str, Any], name: str, *, required: bool = False, limit: int = MAX_FIELD) -> str:
    value = frame.get(name, "")
    if not isinstance(value, str) or len(value) > limit:
        raise FrameError("bad_field", f"{name} must be a string of at most {limit} characters")
    if required and not value:
        raise FrameError("bad_field", f"{name} is required")
    return value


def _int(frame: dict[str, Any], name: str, *, required: bool = False) -> int:
    value = frame.get(name)
    if value is None and not required:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FrameError("bad_field", f"{name} must be a non-negative integer")
    return value


def parse_hello(raw: str) -> Hello:
    """The auth frame `{"type": "auth", "token": ..., "resume_after": N}`; FrameError when it is not one."""
    frame = _obj(raw)
    if frame.get("type") != "auth":
        raise FrameError("auth_required", "the first frame must be {'type': 'auth', 'token': ...}")
    token = frame.get("token")
    if not isinstance(token, str):
        token = ""
    resume = frame.get("resume_after")
    if resume is not None and (isinstance(resume, bool) or not isinstance(resume, int) or resume < 0):
        raise FrameError("bad_field", "resume_after must be a non-negative integer")
    tenant = frame.get("tenant")
    return Hello(token=token, resume_after=resume, tenant=tenant if isinstance(tenant, str) else None)


def parse_command(raw: str) -> Command:
    """A client frame after auth, validated; FrameError names what is wrong."""
    frame = _obj(raw)
    kind = frame.get("type")
    ref = frame.get("id", "")
    ref = ref if isinstance(ref, str) and len(ref) <= MAX_FIELD else ""
    # A type that is no string is unknown too: a list or an object (unhashable) must not reach the set lookup.
    if not isinstance(kind, str) or kind not in CLIENT_FRAMES:
        raise FrameError("unknown_type", f"unknown frame type {reprlib.repr(kind)}", ref)
    try:
        return _command(str(kind), ref, frame)
    except FrameError as exc:
        exc.ref = ref
        raise


def _conversation(kind: str, ref: str, frame: dict[str, Any]) -> Command:
    conversation = _str(frame, "conversation_id", required=True)
    epoch = _int(frame, "epoch", required=kind == "reply")
    base = Command(kind, ref, conversation_id=conversation, epoch=epoch)
    if kind == "reply":
        text = _str(frame, "text", required=True, limit=MAX_TEXT)
        return replace(base, text=text, client_message_id=_str(frame, "client_message_id"))
    if kind == "decline":
        return replace(base, reason=_str(frame, "reason"))
    if kind == "close":
        return replace(base, wrap_up_code=_str(frame, "wrap_up_code", required=True))
    if kind == "transfer":
        to_agent, to_group = _str(frame, "to_agent"), _str(frame, "to_group")
        if bool(to_agent) == bool(to_group):
            raise FrameError("bad_field", "transfer needs exactly one of to_agent and to_group")
        return replace(base, to_agent=to_agent, to_group=to_group, note=_str(frame, "note", limit=MAX_NOTE))
    return base


def _command(kind: str, ref: str, frame: dict[str, Any]) -> Command:
    if kind == "ack":
        return Command(kind, ref, seq=_int(frame, "seq", required=True))
    if kind in ("heartbeat", "desk_config", "response_stats"):
        return Command(kind, ref)
    if kind == "set_status":
        status = _str(frame, "status", required=True)
        if status not in STATUS_BY_NAME or status == "offline":
            raise FrameError("bad_field", "status must be one of available, busy, away, wrap_up")
        return Command(kind, ref, status=status, reason=_str(frame, "reason"))
    return _conversation(kind, ref, frame)


def event_body(event: DeskEvent) -> dict[str, Any]:
    """A DeskEvent as the desktop sees it: proto3 JSON field names, without the fields the frame already says."""
    body = message_dict(event)
    for name in ("tenant_id", "agent_id", "seq", "type"):
        body.pop(name, None)
    if "epoch" in body:
        body["epoch"] = int(body["epoch"])
    if event.status:
        body["status"] = STATUS_NAMES.get(event.status, "unknown")
    return body


def event_frame(event: DeskEvent) -> str:
    """The text of one `event` frame."""
    frame = {"type": "event", "seq": event.seq, "event": EVENT_NAMES.get(event.type, "unknown"), **event_body(event)}
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def error_frame(code: str, detail: str, ref: str = "") -> str:
    """The text of an `error` frame answering a command (the socket stays open)."""
    return json.dumps({"type": "error", "id": ref, "code": code, "detail": detail}, ensure_ascii=False)


def result_frame(ref: str, **fields: Any) -> str:
    """The text of a `result` frame: the command with this id was taken."""
    return json.dumps({"type": "result", "id": ref, "ok": True, **fields}, ensure_ascii=False)


class CommandBucket:
    """Token bucket for one socket's commands: `rate` per second, at most `burst` at once (pure; caller's clock)."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> float:
        """Spend one token; returns the tokens left (negative: over the limit, by that much)."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1
        return self.tokens
