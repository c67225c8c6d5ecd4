"""The typed contract between the router and its Redis scripts: one encode or decode per message, nothing else.

Requests are JSON in ARGV[2] (the context in ARGV[1]); results are the JSON list of decisions a script returns.
Field names here are the names the Lua reads and writes (router/lua/*.lua); `tests/unit/test_router_contract.py`
round-trips every message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Self

_COMPACT = (",", ":")


def _dump(value: object) -> str:
    return json.dumps(value, separators=_COMPACT, ensure_ascii=False)


@dataclass(frozen=True)
class AgentExpectation:
    """What a plan assumed of an agent: its presence version and used slots (chat, email, phone)."""

    v: str
    u: tuple[int, int, int]

    def encode(self) -> dict[str, Any]:
        """The JSON object the scripts compare."""
        return {"v": self.v, "u": list(self.u)}


@dataclass(frozen=True)
class ConversationExpectation:
    """What a plan assumed of a conversation: its state, owner, offered agent and epoch."""

    state: str
    owner: str
    offer_agent: str
    epoch: int

    def encode(self) -> dict[str, Any]:
        """The JSON object the scripts compare."""
        return asdict(self)


@dataclass(frozen=True)
class RouteCandidate:
    """An agent to try (`a`), the group it would serve in (`g`), the chain step (`s`), and what the plan assumed."""

    a: str
    g: str
    s: str
    expect: AgentExpectation

    def encode(self) -> dict[str, Any]:
        """The JSON object of one candidate."""
        return {"a": self.a, "g": self.g, "s": self.s, "expect": self.expect.encode()}


@dataclass(frozen=True)
class Route:
    """Where a conversation goes: the first candidate still as planned, else the groups' queues with `score`.

    `versions`: the groups' capacity versions a plan to queue was made on. `deadline`: the offer deadline (ms)
    when the conversation's group offers instead of assigning (0: assign).
    """

    cands: tuple[RouteCandidate, ...] = ()
    groups: tuple[str, ...] = ()
    score: float = 0.0
    versions: Mapping[str, int] = field(default_factory=dict)
    deadline: int = 0

    def encode(self) -> dict[str, Any]:
        """The JSON object of a route plan (empty maps as objects: the scripts iterate them with pairs)."""
        return {
            "cands": [c.encode() for c in self.cands],
            "groups": list(self.groups),
            "score": self.score,
            "versions": dict(self.versions),
            "deadline": self.deadline,
        }


@dataclass(frozen=True)
class OpenConversation:
    """A new conversation's classification and route; `since` (ms, 0: now) is the original arrival kept when a
    conversation the bot held or answered is routed after all (its queue score and waits count from then);
    `by` and `conf`: what classified it and the classifier's confidence (routing.classify.Classification)."""

    group: str
    prio: int
    rule: str
    route: Route
    since: int = 0
    by: str = ""
    conf: float = 0.0


@dataclass(frozen=True)
class BotHold:
    """The bot answers a new conversation: held (not queued) until the answer or `deadline` (ms); `group`,
    `prio`, `rule`, `by`, `conf` are its classification, for when it is routed after all."""

    intent: str
    group: str
    prio: int
    rule: str
    deadline: int
    by: str = ""
    conf: float = 0.0


@dataclass(frozen=True)
class InboundRequest:
    """inbound.lua: one customer message; `open` is given when the router found the conversation not open."""

    mid: str
    conv: str
    ch: str
    cust: str
    owner: str = ""
    live: bool = False
    open: OpenConversation | None = None
    bot: BotHold | None = None
    # The conversation's language (kept as `lang` when it opens or the bot holds it; the drain and the sweep read it).
    lang: str = ""

    def encode(self) -> str:
        """ARGV[2] of inbound.lua."""
        out: dict[str, Any] = {
            "mid": self.mid,
            "conv": self.conv,
            "ch": self.ch,
            "cust": self.cust,
            "owner": self.owner,
            "lang": self.lang,
        }
        if self.live:
            out["live"] = True  # only present when true: a JSON false is falsy in Lua, but keep the form small
        if self.open is not None:
            out["open"] = {
                "group": self.open.group,
                "prio": self.open.prio,
                "rule": self.open.rule,
                "route": self.open.route.encode(),
                "since": self.open.since,
                "by": self.open.by,
                "conf": self.open.conf,
            }
        if self.bot is not None:
            out["bot"] = asdict(self.bot)
        return _dump(out)


@dataclass(frozen=True)
class CommandRequest:
    """command.lua: an agent's command the router found allowed on the state it read."""

    cid: str
    type: str
    agent: str
    conv: str
    expect: ConversationExpectation
    session: str
    reason: str = ""
    wrap: str = ""
    to_agent: str = ""
    to_group: str = ""
    declined: str = ""
    target: AgentExpectation | None = None
    route: Route = field(default_factory=Route)
    bump: tuple[str, ...] = ()

    def encode(self) -> str:
        """ARGV[2] of command.lua."""
        out: dict[str, Any] = {
            "cid": self.cid,
            "type": self.type,
            "agent": self.agent,
            "conv": self.conv,
            "expect": self.expect.encode(),
            "session": self.session,
            "reason": self.reason,
            "wrap": self.wrap,
            "to_agent": self.to_agent,
            "to_group": self.to_group,
            "declined": self.declined,
            "route": self.route.encode(),
            "bump": list(self.bump),
        }
        if self.target is not None:
            out["target"] = self.target.encode()
        return _dump(out)


@dataclass(frozen=True)
class DrainPick:
    """A queued conversation a drain takes, at the epoch read, into `group`, offered until `deadline` (0: assign)."""

    conv: str
    group: str
    epoch: int
    deadline: int = 0


@dataclass(frozen=True)
class DrainRequest:
    """drain.lua: the conversations an agent with room takes, best first."""

    agent: str
    expect: AgentExpectation
    picks: tuple[DrainPick, ...]
    bump: tuple[str, ...] = ()

    def encode(self) -> str:
        """ARGV[2] of drain.lua."""
        picks = [asdict(p) for p in self.picks]
        return _dump({"agent": self.agent, "expect": self.expect.encode(), "picks": picks, "bump": list(self.bump)})


@dataclass(frozen=True)
class TimeoutRequest:
    """timeout.lua: an offer past its deadline; `missed` is the agent's count before this miss."""

    conv: str
    expect: ConversationExpectation
    missed: int
    version: str
    away: bool
    declined: str
    route: Route
    bump: tuple[str, ...] = ()

    def encode(self) -> str:
        """ARGV[2] of timeout.lua."""
        return _dump(
            {
                "conv": self.conv,
                "expect": self.expect.encode(),
                "missed": self.missed,
                "version": self.version,
                "away": self.away,
                "declined": self.declined,
                "route": self.route.encode(),
                "bump": list(self.bump),
            }
        )


@dataclass(frozen=True)
class RequeueItem:
    """A conversation of a departed agent and the score it goes back into its queue with."""

    conv: str
    score: float


@dataclass(frozen=True)
class RequeueRequest:
    """requeue.lua: a departed agent's conversations back to their queues."""

    agent: str
    expect: AgentExpectation
    convs: tuple[RequeueItem, ...]
    bump: tuple[str, ...] = ()

    def encode(self) -> str:
        """ARGV[2] of requeue.lua."""
        convs = [asdict(c) for c in self.convs]
        return _dump({"agent": self.agent, "expect": self.expect.encode(), "convs": convs, "bump": list(self.bump)})


@dataclass(frozen=True)
class OverflowRequest:
    """overflow.lua: a queued conversation joins an overflow ring's queue with its score (`why`: the trigger, as
    the routing event's reason)."""

    conv: str
    epoch: int
    queues: str
    ring: str
    score: float
    why: str = ""

    def encode(self) -> str:
        """ARGV[2] of overflow.lua."""
        return _dump(asdict(self))


@dataclass(frozen=True)
class AbandonRequest:
    """abandon.lua: the customer left a queued or offered conversation (`reason`: call_ended, chat_patience).

    `mid`: the call.ended message (its processed marker makes a redelivery change nothing); empty for the sweep.
    `gone_before`: for the sweep, the customer must still be marked gone since this time (ms) or earlier.
    """

    conv: str
    expect: ConversationExpectation
    reason: str
    mid: str = ""
    gone_before: int = 0
    bump: tuple[str, ...] = ()

    def encode(self) -> str:
        """ARGV[2] of abandon.lua."""
        return _dump(
            {
                "conv": self.conv,
                "expect": self.expect.encode(),
                "reason": self.reason,
                "mid": self.mid,
                "gone_before": self.gone_before,
                "bump": list(self.bump),
            }
        )


@dataclass(frozen=True)
class BotAnswerRequest:
    """bot_answer.lua: the bot answered a held conversation (`token`: the message it held it for); ARGV[3] is the
    answer as the thread keeps it. `lookup`: the order lookup's fields, JSON."""

    conv: str
    token: str
    tpl: str
    lookup: str

    def encode(self) -> str:
        """ARGV[2] of bot_answer.lua."""
        return _dump(asdict(self))


@dataclass(frozen=True)
class BotRouteRequest:
    """bot_route.lua: a held conversation the bot does not answer after all is routed with this plan."""

    conv: str
    token: str
    route: Route

    def encode(self) -> str:
        """ARGV[2] of bot_route.lua."""
        return _dump({"conv": self.conv, "token": self.token, "route": self.route.encode()})


# Conversation states of the bot: held while it looks the order up, answered until the customer writes again.
BOT_STATES = ("bot", "bot_answered")


@dataclass(frozen=True)
class Peek:
    """peek.lua, per message: its conversation's state, owner and last owner, and its customer's last agent; for a
    conversation the bot holds or answered, also its arrival (`enq`, ms), group, priority, rule, what classified
    it and with which confidence, answer time and language."""

    state: str = ""
    owner: str = ""
    last_owner: str = ""
    returning: str = ""
    enq: int = 0
    group: str = ""
    prio: int = 0
    rule: str = ""
    answered: int = 0
    by: str = ""
    conf: float = 0.0
    lang: str = ""

    @classmethod
    def decode_all(cls, raw: bytes | str) -> list[Peek]:
        """The script's JSON list (an empty list comes as {}); numbers come as strings."""
        value = json.loads(raw)
        if not isinstance(value, list):
            return []
        return [cls(**row) for row in value]

    def __post_init__(self) -> None:
        # Redis hash fields come as strings from the script.
        for name in ("enq", "prio", "answered"):
            object.__setattr__(self, name, int(float(getattr(self, name) or 0)))
        object.__setattr__(self, "conf", float(self.conf or 0))

    def encode(self) -> dict[str, Any]:
        """The JSON object the script returns for one message (tests)."""
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """One decision a script made (becomes a RoutingEvent, or is logged: held, refused, dropped_live ...)."""

    type: str
    conv: str = ""
    agent: str = ""
    group: str = ""
    epoch: int = 0
    channel: str = ""
    step: str = ""
    enq: float = 0.0
    prio: int = 0
    rule: str = ""
    pos: int = 0
    deadline: int = 0
    prev: str = ""
    to_agent: str = ""
    to_group: str = ""
    wrap: str = ""
    reason: str = ""
    command: str = ""
    state: str = ""
    missed: int = 0
    away: bool = False
    live: bool = False
    stale: bool = False
    overflow: str = ""
    mid: str = ""
    cid: str = ""
    changed: tuple[str, ...] = ()
    # The conversation's own group when another group's agent took it (overflow): its figures count there.
    home: str = ""
    # ABANDONED: how long the customer waited, from the original arrival.
    wait: int = 0
    tpl: str = ""
    lookup: str = ""
    # What classified the conversation, the classifier's confidence and the classifying rule, from its hash: on
    # every decision of the conversation (lib.lua's `classified`).
    by: str = ""
    conf: float = 0.0
    crule: str = ""
    # Route decisions (assigned, offered, queued): the conversation's language as the router stored it.
    lang: str = ""
    # offered / assigned / accepted: the conversation's first offer, or first assignment, since its arrival `enq`
    # (a re-offer or a re-assignment with the same arrival is not measured again: router/metrics.py).
    first: bool = False

    @classmethod
    def decode(cls, raw: Mapping[str, Any]) -> Self:
        """One decision from the script's JSON object; an unknown field is an error, not a guess."""
        try:
            return cls(**{name: _DECISION_FIELDS[name](value) for name, value in raw.items()})
        except KeyError as exc:
            unknown = sorted(set(raw) - set(_DECISION_FIELDS))
            raise ValueError(f"script decision with unknown fields {unknown}: {raw}") from exc

    def encode(self) -> dict[str, Any]:
        """The JSON object a script would return for this decision (defaults left out)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def _strings(value: Any) -> tuple[str, ...]:
    # cjson encodes an empty Lua table as {}.
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


_CONVERTERS: dict[str, Any] = {"tuple[str, ...]": _strings, "int": int, "float": float, "bool": bool, "str": str}
# How each decision field is read from JSON, by its declared type.
_DECISION_FIELDS: dict[str, Any] = {f.name: _CONVERTERS[str(f.type)] for f in fields(Decision)}


def decode_decisions(raw: bytes | str) -> list[Decision]:
    """The decisions a script returned (cjson encodes an empty list as {})."""
    value = json.loads(raw)
    return [Decision.decode(d) for d in value] if isinstance(value, list) else []


def encode_decisions(decisions: Sequence[Decision]) -> str:
    """The JSON a script returns for these decisions (tests)."""
    return _dump([d.encode() for d in decisions])
