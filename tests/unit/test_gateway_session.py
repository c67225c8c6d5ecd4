"""A desk session's writer: it runs only while frames are queued, and frames go out in the order queued; a command's
idempotency id."""

from __future__ import annotations

import asyncio
import hashlib

from switchboard.gateway.commands import command_id
from switchboard.gateway.protocol import Command
from switchboard.gateway.session import DeskSession


async def test_an_idle_session_holds_no_writer_and_frames_go_out_in_order_across_writers() -> None:
    sent: list[str] = []
    slow = asyncio.Event()

    async def send(frame: str) -> None:
        if frame == "e2":
            await slow.wait()  # the socket is slow on this one: later frames queue behind it
        sent.append(frame)

    async def close(code: int, reason: str) -> None:
        return None

    session = DeskSession("shop-a", "a-lina", 1, send, close, queue_max=8)
    assert session.writer is None and session.queued() == 0
    session.enqueue(1, "e1")
    session.enqueue(2, "e2")
    first = session.writer
    await asyncio.sleep(0)
    session.enqueue(3, "e3")  # queued while the writer waits on e2: the same writer takes it
    assert session.writer is first
    slow.set()
    assert first is not None
    await first
    assert sent == ["e1", "e2", "e3"] and session.queued() == 0
    session.enqueue(4, "e4")  # the queue was empty and its writer ended: a new one starts
    assert session.writer is not first and session.writer is not None
    await session.writer
    assert sent == ["e1", "e2", "e3", "e4"]


async def test_a_full_queue_that_drained_to_half_tells_the_hub() -> None:
    drained: list[DeskSession] = []

    async def send(frame: str) -> None:
        await asyncio.sleep(0)

    async def close(code: int, reason: str) -> None:
        return None

    session = DeskSession("shop-a", "a-lina", 1, send, close, queue_max=4)
    session.on_drained = drained.append
    for seq in range(1, 5):
        session.enqueue(seq, f"e{seq}")
    assert session.full_since is not None
    assert session.writer is not None
    await session.writer
    assert drained == [session] and session.full_since is None


async def test_a_closed_session_starts_no_writer() -> None:
    async def send(frame: str) -> None:
        return None

    async def close(code: int, reason: str) -> None:
        return None

    session = DeskSession("shop-a", "a-lina", 1, send, close, queue_max=4)
    await session.close(1000, "bye")
    session.enqueue(1, "e1")
    assert session.writer is None


def test_a_command_id_is_the_same_for_a_resend_and_new_for_a_later_epoch() -> None:
    async def send(frame: str) -> None: ...
    async def close(code: int, reason: str) -> None: ...

    session = DeskSession("shop-a", "a-lina", 1, send, close, queue_max=4)
    accept = Command("accept", "c1", "conv-1", epoch=1)
    assert command_id(session, accept) == command_id(session, Command("accept", "c1", "conv-1", epoch=1))
    # The same client id on the accept of a later offer (a new epoch) is another command, applied on its own.
    assert command_id(session, accept) != command_id(session, Command("accept", "c1", "conv-1", epoch=3))
    assert command_id(session, accept) != command_id(session, Command("accept", "c1", "conv-2", epoch=1))
    assert command_id(session, Command("accept", "", "conv-1", epoch=1)) != command_id(
        session, Command("accept", "", "conv-1", epoch=1)
    )
    # Without an epoch (a reply's message id) the id is the one earlier gateways gave: a resend across an upgrade
    # keeps it.
    before = hashlib.sha256(b"shop-a\x00a-lina\x00reply\x00conv-1\x00r1").hexdigest()[:32]
    assert command_id(session, Command("reply", "r1", "conv-1")) == before
