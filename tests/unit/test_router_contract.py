"""The typed contract between the router and its scripts: every message survives the trip, and nothing is guessed."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from switchboard.router.contract import (
    AgentExpectation,
    BotAnswerRequest,
    BotHold,
    BotRouteRequest,
    CommandRequest,
    ConversationExpectation,
    Decision,
    DrainPick,
    DrainRequest,
    InboundRequest,
    OpenConversation,
    OverflowRequest,
    Peek,
    RequeueItem,
    RequeueRequest,
    Route,
    RouteCandidate,
    TimeoutRequest,
    decode_decisions,
    encode_decisions,
)
from switchboard.router.scripts import ACTIONS

EXPECT = AgentExpectation("7", (1, 0, 0))
CONV = ConversationExpectation("offered", "", "lina", 3)
ROUTE = Route(
    cands=(RouteCandidate("lina", "presales", "least_loaded", EXPECT),),
    groups=("presales", "general"),
    score=1765000000000.5,
    versions={"presales": 4},
    deadline=1765000020000,
)

REQUESTS = [
    InboundRequest("m1", "c1", "chat", "cust-1", "", False, OpenConversation("presales", 3, "product-card", ROUTE)),
    InboundRequest("m2", "c1", "phone", "", "lina", True),
    CommandRequest("cmd", "decline", "lina", "c1", CONV, "2", reason="busy", declined="lina@5", route=ROUTE),
    CommandRequest("cmd", "transfer", "lina", "c1", CONV, "2", to_agent="wei", target=EXPECT, bump=("presales",)),
    DrainRequest("lina", EXPECT, (DrainPick("c1", "presales", 2, 0), DrainPick("c2", "general", 5, 99)), ("presales",)),
    TimeoutRequest("c1", CONV, 1, "7", True, "lina@5", ROUTE, ("presales",)),
    RequeueRequest("lina", EXPECT, (RequeueItem("c1", 12.5),), ("presales",)),
    OverflowRequest("c1", 3, "presales", "general", 12.5),
    InboundRequest("m3", "c3", "chat", "cust-3", bot=BotHold("order_status", "logistics", 5, "parcel", 1765000002000)),
    InboundRequest("m4", "c3", "chat", "cust-3", open=OpenConversation("logistics", 5, "parcel", ROUTE, 1765000000000)),
    BotAnswerRequest("c3", "m3", "order_status.zh", '{"status":"shipped"}'),
    BotRouteRequest("c3", "m3", ROUTE),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_requests_encode_to_plain_json_without_nulls(request_: object) -> None:
    encoded = request_.encode()  # type: ignore[attr-defined]
    # cjson turns a JSON null into a truthy value in Lua: a request must never carry one.
    assert "null" not in encoded
    assert isinstance(json.loads(encoded), dict)


def test_decisions_round_trip() -> None:
    decisions = [
        Decision(
            "assigned",
            conv="c1",
            agent="lina",
            group="presales",
            epoch=2,
            channel="chat",
            step="least_loaded",
            enq=1765000000000.0,
            prio=3,
            rule="r",
            deadline=5,
            changed=("wei",),
        ),
        Decision("queued", conv="c2", group="presales", pos=4, stale=True, mid="m2"),
        Decision("timed_out", conv="c3", agent="lina", missed=2, away=True),
        Decision("closed", conv="c4", agent="lina", wrap="resolved", cid="cmd-1"),
        Decision("answered_by_bot", conv="c5", group="logistics", tpl="order_status.en", lookup='{"eta":"11-13"}'),
    ]
    assert decode_decisions(encode_decisions(decisions)) == decisions


def test_an_empty_lua_list_is_no_decision() -> None:
    assert decode_decisions("{}") == []
    assert decode_decisions("[]") == []


def test_an_unknown_decision_field_is_an_error_not_a_guess() -> None:
    with pytest.raises(ValueError, match="unknown fields"):
        decode_decisions('[{"type": "assigned", "owner": "lina"}]')


@pytest.mark.parametrize("action", ACTIONS)
def test_each_script_names_its_keys_and_arguments_and_encodes_no_protobuf(action: str) -> None:
    lua = (resources.files("switchboard.router") / "lua" / f"{action}.lua").read_text(encoding="utf-8")
    header = "\n".join(line for line in lua.splitlines() if line.startswith("--"))
    assert "KEYS:" in header and "ARGV[1]" in header and "ARGV[2]" in header
    lib = (resources.files("switchboard.router") / "lua" / "lib.lua").read_text(encoding="utf-8")
    for source in (lua, lib):
        assert "varint" not in source and "string.char" not in source  # records are built from proto/ in Python


def test_peeks_round_trip() -> None:
    peeks = [
        Peek("assigned", "lina", "wei", "lina"),
        Peek(),
        Peek("bot_answered", enq=1765000000000, group="g", prio=5),
    ]
    assert Peek.decode_all(json.dumps([p.encode() for p in peeks])) == peeks
    assert Peek.decode_all("{}") == []
