"""The fault harness's judgement of a history: a double owner, a reordered message, a duplicate, a loss and the
recovery time are each found; a clean history is a clean row."""

from __future__ import annotations

from typing import Any

from switchboard_tools.faults.history import History, Injection, judge
from switchboard_tools.faults.scenario import fault_scenario
from switchboard_tools.faults.table import FaultRow, markdown_table
from switchboard_tools.loadgen.accounting import Sent
from switchboard_tools.loadgen.observations import Observations, Stages
from switchboard_tools.loadgen.schedule import PlannedConversation, Schedule, build_schedule
from switchboard_tools.loadgen.service import EventRecord


def _schedule() -> tuple[Schedule, PlannedConversation]:
    schedule = build_schedule(fault_scenario(duration_s=20, seed=3))
    conv = next(c for c in schedule.conversations if len(c.tags) >= 2)
    return schedule, conv


def _frame(event: str, conv: str, epoch: int, seq: int, tag: str) -> dict[str, Any]:
    return {"event": event, "conversation_id": conv, "epoch": epoch, "seq": seq,
            "message": {"message_id": f"m-{tag}", "text": f"text [lg:{tag}]"}}  # fmt: skip


def _observe(history: History, obs: Observations, agent: str, frame: dict[str, Any], at: float) -> None:
    """What the traced recorder does with one desk event: history and ledger."""
    from switchboard_tools.loadgen.accounting import Delivery

    history.desk_event("fx-flagship", agent, frame, at)
    if frame["event"] in ("assigned", "message"):
        tag = frame["message"]["text"].split("[lg:")[1].rstrip("]")
        delivery = Delivery(tag, "fx-flagship", agent, frame["conversation_id"], frame["epoch"], frame["event"], at)
        obs.ledger.record_delivery(delivery)


def _sent(obs: Observations, conv: PlannedConversation, at: float) -> None:
    for i, tag in enumerate(conv.tags[:2]):
        obs.ledger.record_sent(Sent(tag, conv.tenant_id, conv.conversation_key, conv.channel, at + i))


def test_a_clean_history_is_a_clean_row_with_its_recovery() -> None:
    schedule, conv = _schedule()
    obs, history = Observations("r", "faults", 3, 100.0), History()
    _sent(obs, conv, 100.0)
    history.injections.append(Injection("router SIGKILL", "router-1", 100.5, healed_at=103.0))
    first, second = conv.tags[:2]
    _observe(history, obs, "a1", _frame("assigned", "c1", 1, 1, first), 100.2)
    _observe(history, obs, "a1", _frame("message", "c1", 1, 2, second), 105.0)
    row = judge("router SIGKILL", history, obs, schedule)
    assert row.clean and row.acked == 2 and row.injections == 1
    # The second message, sent at 101 during the fault, reached its desk at 105.
    assert row.recovery_s == 4.0


def test_double_owner_reorder_duplicate_and_loss_are_each_counted() -> None:
    schedule, conv = _schedule()
    obs, history = Observations("r", "faults", 3, 100.0), History()
    _sent(obs, conv, 100.0)
    first, second = conv.tags[:2]
    # The later message first, then the earlier one twice, and another agent given the same epoch.
    _observe(history, obs, "a1", _frame("assigned", "c1", 1, 1, second), 102.0)
    _observe(history, obs, "a1", _frame("message", "c1", 1, 2, first), 102.1)
    _observe(history, obs, "a1", _frame("message", "c1", 1, 3, first), 102.2)
    _observe(history, obs, "a2", _frame("assigned", "c1", 1, 1, second), 102.3)
    row = judge("x", history, obs, schedule)
    assert (row.duplicated, row.double_owned, row.reordered, row.lost) == (1, 1, 1, 0)
    assert not row.clean

    lonely = Observations("r", "faults", 3, 100.0)
    _sent(lonely, conv, 100.0)
    assert judge("x", History(), lonely, schedule).lost == 2


def test_the_table_prints_every_column_and_escapes_pipes() -> None:
    row = FaultRow("router SIGKILL", 20, 300, 0, 0, 0, 0, 0, 2.345, "a | b")
    table = markdown_table([row, FaultRow("sweep", 0, 0, 0, 0, 0, 0, 0, None)])
    assert "| router SIGKILL | 20 | 300 | 0 | 0 | 0 | 0 | 0 | 2.3 s | a \\| b |" in table
    assert "| sweep | 0 | 0 | 0 | 0 | 0 | 0 | 0 | – |  |" in table


def test_the_page_keeps_rows_not_measured_again_with_the_run_that_measured_them() -> None:
    from switchboard_tools.faults.doc import render

    kill = FaultRow("router SIGKILL + restart", 20, 300, 0, 0, 0, 0, 0, 9.0)
    stall = FaultRow("network: services ↔ Redis blackholed 5 s", 3, 90, 1, 0, 0, 0, 0, 6.0, "one lost")
    first = render([stall, kill], "python -m switchboard_tools.faults --full", 600.0, stamp="t1")
    assert first.index("| router SIGKILL") < first.index("| network: services ↔ Redis")
    again = render(
        [FaultRow("router SIGKILL + restart", 2, 40, 0, 0, 0, 0, 0, 2.0)], "--only router-kill", 60.0, first, "t2"
    )
    assert "| router SIGKILL + restart | 2 | 40 |" in again and "| 20 | 300 |" not in again
    assert "| network: services ↔ Redis blackholed 5 s | 3 | 90 | 1 |" in again
    assert "`python -m switchboard_tools.faults --full`" in again and "`--only router-kill`" in again


def test_a_message_a_desk_first_showed_in_a_snapshot_is_delivered_and_the_note_says_so() -> None:
    """After Redis lost an outbox, events folded into a fresh snapshot never come as events: the snapshot's
    messages are the desk's, and a row that ignored them would report them lost."""
    from switchboard_tools.faults.traced import TracingRecorder
    from switchboard_tools.loadgen.schedule import AgentShift

    schedule, conv = _schedule()
    obs, history = Observations("r", "faults", 3, 100.0), History()
    _sent(obs, conv, 100.0)
    recorder = TracingRecorder(obs, schedule, history)
    shift = AgentShift(conv.tenant_id, "a1", 0.0, None, 1)
    first, second = conv.tags[:2]
    recorder.desk_event(shift, _frame("assigned", "c1", 1, 1, first), 100.2)
    assert judge("Redis restarted empty", history, obs, schedule).lost == 1
    recorder.snapshot_message(shift, "c1", 2, _frame("message", "c1", 2, 0, second)["message"], 104.0)
    row = judge("Redis restarted empty", history, obs, schedule)
    assert row.clean and row.lost == 0
    assert "1 messages reached their desk in a snapshot" in row.note
    assert len(history.events) == 1, "a snapshot's message is no desk event (no order or owner to judge)"
    # An earlier run's message the snapshot still shows is not this run's delivery.
    recorder.snapshot_message(shift, "c0", 1, {"message_id": "m-old", "text": "earlier [lg:zz-not-sent]"}, 104.5)
    again = judge("Redis restarted empty", history, obs, schedule)
    assert again.clean and "1 messages reached their desk in a snapshot" in again.note
    assert "no channel acknowledged" not in again.note


def test_samples_over_capacity_are_listed_in_the_note() -> None:
    schedule, _ = _schedule()
    obs, history = Observations("r", "faults", 3, 100.0), History()
    history.over_capacity = [f"{100 + i}.0 fx-flagship/a1 chat 2>1" for i in range(10)]
    row = judge("Redis restarted empty", history, obs, schedule)
    assert row.over_capacity == 10
    assert "fx-flagship/a1 chat 2>1" in row.note and "and 2 more" in row.note


def test_a_slow_injection_is_named_with_where_its_message_waited() -> None:
    schedule, conv = _schedule()
    obs, history = Observations("r", "faults", 3, 100.0), History()
    _sent(obs, conv, 100.0)
    first, second = conv.tags[:2]
    history.injections.append(Injection("router SIGKILL", "router-1", 98.0, healed_at=98.0))
    history.injections.append(Injection("router SIGKILL", "router-2", 100.5, healed_at=101.5))
    _observe(history, obs, "a1", _frame("assigned", "c1", 1, 1, first), 100.2)
    _observe(history, obs, "a1", _frame("message", "c1", 1, 2, second), 105.0)
    # The second message (sent at 101) reached the inbound topic at once; the router decided at 104.8.
    obs.stages = {first: Stages("c1", 100.1, 100.15), second: Stages("c1", 101.1, 104.8)}
    obs.events = [EventRecord("c1", "assigned", 100.3, agent_id="a1"), EventRecord("c2", "queued", 104.0)]
    row = judge("router SIGKILL", history, obs, schedule)
    assert "1 of 2 under 3 s" in row.note
    assert (
        f"router-2 at 100.5: 4.0 s ({second} inbound +0.1 decided +3.8 desk +4.0 (a1 message)"
        " routing: assigned -0.7 a1)"
    ) in row.note
