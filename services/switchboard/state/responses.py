"""Response time as Taobao/Tmall shops are judged on it: every customer message timed to the agent's next reply.

A response is the time from a conversation's first customer message not answered yet to the agent's next reply
(several messages before one reply count from the first of them). The first response of a conversation (per
opening: an e-mail thread that opens again starts over) is counted apart as well, so both 首次响应 and every later
response are known.

The gateway's reply path records a reply once its OutboundMessage is on the broker, with one script
(`lua/record_response.lua`) that, atomically:
- answers the same result again for a reply id it has seen (a resent reply counts once, on any replica);
- finds the first unanswered customer message from the times the caller read from the router's backlog, and
  moves the conversation's "answered through" mark past every message the reply answers;
- adds the response to per-minute and per-day figures of the group and of the agent (`n`, `within`, `sum_ms`
  and the same for first responses), which every gateway replica and the board read.

Day buckets are local days (a fixed UTC offset, China's by default): "today" is the shop's day.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from redis.asyncio import Redis

from switchboard.contracts import InboundMessage, MessageKind
from switchboard.runtime.lua import LuaScript
from switchboard.state.keys import Keys

_RECORD = LuaScript.load(__file__, "record_response")

# The reply's marker outlives any resend of a desktop (they resend within minutes of a reconnect).
MARKER_TTL_S = 7 * 24 * 3600
# Minute buckets cover the board's windows and a day of hindsight; day buckets a week of "today"s.
MINUTE_TTL_S = 26 * 3600
DAY_TTL_S = 8 * 24 * 3600
# A conversation's response state outlives its longest plausible life (e-mail threads stay open for days).
CONVERSATION_TTL_S = 30 * 24 * 3600
CHINA_UTC_OFFSET_MIN = 8 * 60
# How the router marks the bot's answer it keeps in a conversation's thread (an InboundMessage attribute).
BOT_SENDER = "bot"

# Messages a customer writes; a phone call's events and transcript segments are spoken, not waiting for a reply.
_WRITTEN = frozenset(
    {
        MessageKind.MESSAGE_KIND_UNSPECIFIED,
        MessageKind.MESSAGE_KIND_TEXT,
        MessageKind.MESSAGE_KIND_IMAGE,
        MessageKind.MESSAGE_KIND_PRODUCT_CARD,
        MessageKind.MESSAGE_KIND_ORDER_CARD,
        MessageKind.MESSAGE_KIND_EMOJI,
    }
)


@dataclass(frozen=True, slots=True)
class Reply:
    """One agent reply to count: who, where, when, against which target and which customer messages."""

    tenant_id: str
    conversation_id: str
    agent_id: str
    group: str
    reply_id: str
    reply_ms: int
    # The conversation's opening (the router's enqueued_ms): a conversation that opens again counts anew.
    opened_ms: int
    target_s: float
    # (received ms, message id) of the conversation's customer messages, oldest first.
    customer_messages: Sequence[tuple[int, str]]


@dataclass(frozen=True, slots=True)
class Response:
    """What a reply answered: the wait of the first unanswered customer message."""

    response_ms: int
    first: bool
    within: bool
    message_id: str
    started_ms: int


@dataclass(frozen=True, slots=True)
class Recorded:
    """A reply's outcome: its response (None: it answered no waiting customer message) and whether it was counted
    by this call (False for a resent reply, whose response was counted the first time)."""

    response: Response | None
    new: bool


def group_scope(group: str) -> str:
    """The figures' scope of a skill group."""
    return f"group:{group}"


def agent_scope(agent_id: str) -> str:
    """The figures' scope of an agent."""
    return f"agent:{agent_id}"


def minute_bucket(at_ms: int) -> str:
    """The minute bucket of a time."""
    return f"m{at_ms // 60_000}"


def day_bucket(at_ms: int, utc_offset_min: int = CHINA_UTC_OFFSET_MIN) -> str:
    """The local day bucket of a time (`dYYYYMMDD`)."""
    return "d" + time.strftime("%Y%m%d", time.gmtime(at_ms / 1000 + utc_offset_min * 60))


def minute_buckets(now_ms: int, window_s: float) -> list[str]:
    """The minute buckets of the last `window_s` seconds, the current minute included."""
    last = now_ms // 60_000
    count = max(1, int(-(-window_s // 60)))
    return [f"m{m}" for m in range(last - count + 1, last + 1)]


def customer_messages(raws: Iterable[bytes | str]) -> list[tuple[int, str]]:
    """(received ms, message id) of the written customer messages among serialized InboundMessages (a router
    backlog) still waiting for a person, oldest first: those the bot's answer in the thread (attributes
    `sender` = "bot") already answered are left out, and undecodable entries are skipped."""
    found: list[tuple[int, str]] = []
    bot_answered_ms = 0
    for raw in raws:
        message = InboundMessage()
        try:
            message.ParseFromString(raw if isinstance(raw, bytes) else raw.encode())
        except DecodeError:
            continue
        if not message.HasField("received_at"):
            continue
        at_ms = message.received_at.ToMilliseconds()
        if message.attributes.get("sender") == BOT_SENDER:
            # The bot's answer (kept in the thread by the router) answered what the customer wrote before it.
            bot_answered_ms = max(bot_answered_ms, at_ms)
        elif message.kind in _WRITTEN:
            found.append((at_ms, message.message_id))
    return sorted(m for m in found if m[0] > bot_answered_ms)


async def read_customer_messages(
    redis: Redis, keys: Keys, tenant_id: str, conversation_id: str
) -> list[tuple[int, str]]:
    """The customer messages of an open conversation, from the router's backlog (every message it kept, newest
    200, until the close)."""
    raws = await redis.lrange(keys.conversation_backlog(tenant_id, conversation_id), 0, -1)
    return customer_messages(raws)


async def record_response(
    redis: Redis, keys: Keys, reply: Reply, utc_offset_min: int = CHINA_UTC_OFFSET_MIN
) -> Recorded:
    """Count `reply` once (see the module doc)."""
    t = reply.tenant_id
    scopes = (group_scope(reply.group), agent_scope(reply.agent_id))
    buckets = (minute_bucket(reply.reply_ms), day_bucket(reply.reply_ms, utc_offset_min))
    answer = await _RECORD(
        redis,
        keys=[
            keys.processed(t, "responses", reply.reply_id),
            keys.conversation_responses(t, reply.conversation_id),
            *(keys.response_figures(t, scope, bucket) for scope in scopes for bucket in buckets),
        ],
        args=[
            reply.reply_ms,
            str(reply.opened_ms),
            int(reply.target_s * 1000),
            json.dumps([[at, mid] for at, mid in reply.customer_messages]),
            MARKER_TTL_S,
            MINUTE_TTL_S,
            DAY_TTL_S,
            CONVERSATION_TTL_S,
        ],
    )
    raw, new = answer
    result = json.loads(raw)
    if not result.get("responded"):
        return Recorded(None, bool(int(new)))
    response = Response(
        response_ms=int(result["response_ms"]),
        first=bool(result["first"]),
        within=bool(result["within"]),
        message_id=str(result.get("message_id") or ""),
        started_ms=int(result.get("started_ms") or 0),
    )
    return Recorded(response, bool(int(new)))


@dataclass(frozen=True, slots=True)
class ResponseFigures:
    """Responses of one scope over some buckets: counts and sums, and the rates and averages they give."""

    responses: int = 0
    within: int = 0
    sum_ms: int = 0
    first_responses: int = 0
    first_within: int = 0
    first_sum_ms: int = 0

    @classmethod
    def of(cls, fields: Mapping[bytes | str, bytes | str]) -> ResponseFigures:
        """From one bucket's hash."""

        def value(name: str) -> int:
            raw = fields.get(name.encode()) or fields.get(name)
            return int(raw) if raw else 0

        return cls(
            value("n"), value("within"), value("sum_ms"), value("first_n"), value("first_within"), value("first_sum_ms")
        )

    def __add__(self, other: ResponseFigures) -> ResponseFigures:
        return ResponseFigures(
            self.responses + other.responses,
            self.within + other.within,
            self.sum_ms + other.sum_ms,
            self.first_responses + other.first_responses,
            self.first_within + other.first_within,
            self.first_sum_ms + other.first_sum_ms,
        )

    @property
    def within_rate(self) -> float | None:
        """Share of responses within their target (Taobao's 3分钟响应率 at a 180 s target); None without any."""
        return round(self.within / self.responses, 4) if self.responses else None

    @property
    def average_s(self) -> float | None:
        """Average response time in seconds (平均响应时间); None without any response."""
        return round(self.sum_ms / self.responses / 1000, 1) if self.responses else None

    @property
    def first_within_rate(self) -> float | None:
        """Share of first responses within their target; None without any."""
        return round(self.first_within / self.first_responses, 4) if self.first_responses else None

    @property
    def first_average_s(self) -> float | None:
        """Average first response time in seconds (首次响应时间); None without any."""
        return round(self.first_sum_ms / self.first_responses / 1000, 1) if self.first_responses else None

    def as_dict(self) -> dict[str, int | float | None]:
        """The figures as the board and the desk get them."""
        return {
            "responses": self.responses,
            "within_target": self.within,
            "within_rate": self.within_rate,
            "average_s": self.average_s,
            "first_responses": self.first_responses,
            "first_within_rate": self.first_within_rate,
            "first_average_s": self.first_average_s,
        }


async def read_figures(
    redis: Redis, keys: Keys, tenant_id: str, scopes: Sequence[str], buckets: Sequence[str]
) -> dict[str, ResponseFigures]:
    """Each scope's figures summed over `buckets` (one pipelined round trip)."""
    pipe = redis.pipeline(transaction=False)
    for scope in scopes:
        for bucket in buckets:
            pipe.hgetall(keys.response_figures(tenant_id, scope, bucket))
    answers = iter(await pipe.execute() if scopes and buckets else [])
    result: dict[str, ResponseFigures] = {}
    for scope in scopes:
        total = ResponseFigures()
        for _bucket in buckets:
            total = total + ResponseFigures.of(next(answers))
        result[scope] = total
    return result


@dataclass(frozen=True, slots=True)
class ConversationResponses:
    """One conversation's responses so far (this opening): how many, the first, their sum and how many within."""

    responses: int = 0
    first_ms: int | None = None
    sum_ms: int = 0
    within: int = 0
    # Customer messages received up to this time are answered (0: none yet).
    answered_ms: int = 0

    def as_dict(self) -> dict[str, int | float | None]:
        """As the board's monitor and the desk show it."""
        return {
            "responses": self.responses,
            "first_response_s": round(self.first_ms / 1000, 1) if self.first_ms is not None else None,
            "average_s": round(self.sum_ms / self.responses / 1000, 1) if self.responses else None,
            "within_target": self.within,
            "answered_ms": self.answered_ms,
        }


_CONVERSATION_FIELDS = ("responses", "first_ms", "sum_ms", "within", "answered_ms")


async def read_conversation_responses(
    redis: Redis, keys: Keys, tenant_id: str, conversation_ids: Sequence[str]
) -> dict[str, ConversationResponses]:
    """The responses of each conversation so far (one pipelined round trip)."""
    pipe = redis.pipeline(transaction=False)
    for conversation_id in conversation_ids:
        pipe.hmget(keys.conversation_responses(tenant_id, conversation_id), _CONVERSATION_FIELDS)
    rows = await pipe.execute() if conversation_ids else []
    found = {}
    for conversation_id, row in zip(conversation_ids, rows, strict=True):
        n, first, total, within, answered = (int(v) if v else None for v in row)
        found[conversation_id] = ConversationResponses(n or 0, first, total or 0, within or 0, answered or 0)
    return found
