"""The reorder rule of final segments, without I/O: a later seq waits for its predecessors, for a while."""

from __future__ import annotations

import asyncio

from switchboard.phone.sequencer import CallTurn, Sequencer


async def test_a_later_seq_waits_until_its_predecessor_is_written() -> None:
    turn = CallTurn(next_seq=1)
    waiting = asyncio.create_task(turn.wait_for(3, window_s=5))
    await asyncio.sleep(0)  # the waiter runs up to its wait
    assert turn.waiting == 1
    await turn.advance(2)
    assert not waiting.done()
    await turn.advance(3)
    assert await waiting is True
    assert await turn.wait_for(2, window_s=0) is True, "an earlier seq never waits"


async def test_the_gap_is_skipped_when_the_window_runs_out() -> None:
    turn = CallTurn(next_seq=1)
    assert await turn.wait_for(5, window_s=0.05) is False
    assert turn.waiting == 0


async def test_turns_load_next_seq_once_per_call() -> None:
    sequencer = Sequencer(window_s=1)
    loads = []

    async def load() -> int:
        loads.append(1)
        return 7

    first = await sequencer.turn("shop-a", "c1", load)
    again = await sequencer.turn("shop-a", "c1", load)
    other_tenant = await sequencer.turn("shop-b", "c1", load)
    assert first is again and first.next_seq == 7
    assert other_tenant is not first
    assert len(loads) == 2
