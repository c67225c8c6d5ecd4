"""The board's tally of routing decisions: arrivals once per enqueue, and pruning."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from switchboard.contracts import RoutingEvent, RoutingEventType
from switchboard.gateway.board_stats import RoutingTally

PAIR = ("shop-a", "presales")


def _ts(ms: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def decision(kind: RoutingEventType.ValueType, conv: str, enqueued_ms: int, at_ms: int) -> RoutingEvent:
    return RoutingEvent(
        tenant_id="shop-a",
        conversation_id=conv,
        type=kind,
        skill_group="presales",
        enqueued_at=_ts(enqueued_ms),
        at=_ts(at_ms),
    )


def test_arrivals_count_once_per_enqueue() -> None:
    tally = RoutingTally(window_s=900)
    queued, offered = RoutingEventType.ROUTING_EVENT_QUEUED, RoutingEventType.ROUTING_EVENT_OFFERED
    assigned = RoutingEventType.ROUTING_EVENT_ASSIGNED
    tally.add(decision(queued, "c1", 1_000, 1_000))
    tally.add(decision(offered, "c1", 1_000, 11_000))  # answered after 10 s
    tally.add(decision(offered, "c1", 1_000, 40_000))  # re-offered after a miss: not a second answer
    tally.add(decision(assigned, "c2", 2_000, 62_000))  # answered after 60 s
    tally.add(decision(assigned, "c2", 90_000, 90_500))  # the same conversation back in line later: a new arrival
    assert tally.arrived_since(PAIR, 0) == 3
    assert tally.arrived_since(("shop-b", "presales"), 0) == 0, "other shops are counted apart"
    tally.prune(now_ms=80_000 + 900_000)  # the window now starts at 80 s
    assert tally.arrived_since(PAIR, 0) == 1, "only what is inside the window is kept"


def test_decisions_without_an_enqueue_time_or_of_other_kinds_are_not_arrivals() -> None:
    tally = RoutingTally(window_s=900)
    tally.add(RoutingEvent(tenant_id="shop-a", conversation_id="c1", type=RoutingEventType.ROUTING_EVENT_QUEUED))
    tally.add(decision(RoutingEventType.ROUTING_EVENT_CLOSED, "c2", 1_000, 2_000))
    assert tally.arrived_since(PAIR, 0) == 0
