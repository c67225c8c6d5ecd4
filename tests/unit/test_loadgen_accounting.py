"""The accounting: every message sent matched to exactly one desktop delivery."""

from __future__ import annotations

from switchboard_tools.loadgen.accounting import Delivery, Ledger, Sent


def _ledger(tags: list[str]) -> Ledger:
    ledger = Ledger()
    for i, tag in enumerate(tags):
        ledger.record_sent(Sent(tag, "shop-a", f"c{i}", "chat", sent_at=float(i)))
    return ledger


def _deliver(ledger: Ledger, tag: str, agent: str = "a1", epoch: int = 1, at: float = 10.0) -> None:
    ledger.record_delivery(Delivery(tag, "shop-a", agent, "conv", epoch, "MESSAGE", at))


def test_every_message_delivered_once_is_balanced() -> None:
    ledger = _ledger(["aaa", "bbb", "ccc"])
    for tag in ("aaa", "bbb", "ccc"):
        _deliver(ledger, tag)
    result = ledger.settle()
    assert result.balanced
    assert (result.accepted, result.delivered) == (3, 3)
    assert result.first_delivery["bbb"].agent_id == "a1"


def test_a_deliberately_dropped_message_is_reported_as_lost() -> None:
    ledger = _ledger(["aaa", "bbb", "ccc"])
    _deliver(ledger, "aaa")
    _deliver(ledger, "ccc")  # "bbb" is dropped on its way
    result = ledger.settle()
    assert not result.balanced
    assert result.lost == ["bbb"]
    assert result.summary()["lost"] == 1


def test_the_same_message_twice_to_one_owner_is_a_duplicate() -> None:
    ledger = _ledger(["aaa"])
    _deliver(ledger, "aaa", at=1.0)
    _deliver(ledger, "aaa", at=2.0)
    result = ledger.settle()
    assert result.duplicated == ["aaa"]
    assert not result.balanced


def test_a_new_owner_after_requeue_is_a_redelivery_not_a_duplicate() -> None:
    ledger = _ledger(["aaa"])
    _deliver(ledger, "aaa", agent="a1", epoch=1, at=1.0)
    _deliver(ledger, "aaa", agent="b1", epoch=2, at=5.0)
    result = ledger.settle()
    assert result.balanced
    assert result.redelivered == ["aaa"]
    assert result.first_delivery["aaa"].agent_id == "a1"


def test_a_message_nobody_sent_is_unexpected() -> None:
    ledger = _ledger(["aaa"])
    _deliver(ledger, "aaa")
    _deliver(ledger, "zzz")
    result = ledger.settle()
    assert result.unexpected == ["zzz"]
    assert not result.balanced


def test_a_refused_message_is_neither_lost_nor_expected() -> None:
    ledger = Ledger()
    ledger.record_sent(Sent("aaa", "shop-a", "c", "email", 0.0, accepted=False))
    result = ledger.settle()
    assert result.refused == ["aaa"]
    assert result.lost == []
    assert result.balanced


def test_a_message_queued_at_cut_off_is_pending_not_lost() -> None:
    ledger = _ledger(["aaa", "bbb", "ccc"])
    _deliver(ledger, "aaa")
    assert ledger.undelivered() == ["bbb", "ccc"]
    # "bbb" still waits in a queue when the run ends; "ccc" went missing.
    result = ledger.settle(waiting={"bbb"})
    assert result.pending_at_cut_off == ["bbb"]
    assert result.lost == ["ccc"]
    assert not result.balanced
    summary = result.summary()
    assert (summary["lost"], summary["pending_at_cut_off"]) == (1, 1)


def test_pending_at_cut_off_alone_keeps_the_accounting_balanced() -> None:
    ledger = _ledger(["aaa", "bbb"])
    _deliver(ledger, "aaa")
    _deliver(ledger, "zzz")
    assert ledger.settle(waiting={"bbb"}).balanced is False  # the unexpected "zzz" still counts
    ledger.deliveries.pop()
    result = ledger.settle(waiting={"bbb", "aaa"})  # a delivered tag named waiting stays delivered
    assert result.balanced
    assert (result.delivered, result.lost, result.pending_at_cut_off) == (1, [], ["bbb"])


def test_messages_of_abandoned_or_bot_answered_conversations_are_not_lost() -> None:
    ledger = _ledger(["aaa", "bbb", "ccc", "ddd"])
    _deliver(ledger, "aaa")
    # "bbb": the customer hung up; "ccc": the bot answered; "ddd": nobody knows.
    result = ledger.settle(not_for_agents={"bbb": "abandoned", "ccc": "answered_by_bot", "aaa": "abandoned"})
    assert result.abandoned == ["bbb"]
    assert result.answered_by_bot == ["ccc"]
    assert result.lost == ["ddd"]
    assert result.delivered == 1  # a delivered message stays delivered whatever its conversation did later
    summary = result.summary()
    assert (summary["abandoned_by_customer"], summary["answered_by_bot"], summary["lost"]) == (1, 1, 1)
    ledger.deliveries.append(Delivery("ddd", "shop-a", "a1", "conv", 1, "MESSAGE", 11.0))
    assert ledger.settle(not_for_agents={"bbb": "abandoned", "ccc": "answered_by_bot"}).balanced
