"""Queue stats figures and frames, and how they share a socket's queue with events (no I/O)."""

from __future__ import annotations

import json

from switchboard.gateway.queue_stats import GroupQueue, group_board, group_queue, parse_groups, stats_frame
from switchboard.gateway.session import DeskSession


async def _send(frame: str) -> None:
    return None


async def _close(code: int, reason: str) -> None:
    return None


def test_groups_field_is_split_trimmed_and_deduplicated() -> None:
    assert parse_groups(b"presales, orders,presales,") == ("orders", "presales")
    assert parse_groups(None) == ()
    assert parse_groups("") == ()


def test_group_figures_from_the_scripts_answer() -> None:
    stats = group_queue(2, [940_000, 970_000, 0], [3, 1, 0], 1_000_000)
    assert stats == GroupQueue(
        waiting={"chat": 3, "email": 1, "phone": 0},
        oldest_wait_s=60,
        available_agents=2,
        oldest_wait_by_channel={"chat": 60, "email": 30, "phone": 0},
    )
    frame = json.loads(stats_frame("售前", stats))
    assert frame == {
        "type": "queue_stats",
        "skill_group": "售前",
        "waiting": 4,
        "waiting_by_channel": {"chat": 3, "email": 1, "phone": 0},
        "oldest_wait_s": 60,
        "available_agents": 2,
    }


def test_an_empty_queue_has_waited_nothing() -> None:
    assert group_queue(0, [0, 0, 0], [0, 0, 0], 1_000_000).oldest_wait_s == 0
    assert group_queue(1, [1_000_500, 0, 0], [1, 0, 0], 1_000_000).oldest_wait_s == 0  # clocks a little apart


def test_board_figures_from_the_scripts_answer_per_channel() -> None:
    board = group_board([0, 880_000, 995_000, 1, 2, 0, 1, 3, 4, 10], [0, 2, 1], 1_000_000)
    assert board.queue.oldest_wait_by_channel == {"chat": 0, "email": 120, "phone": 5}
    assert board.queue.oldest_wait_s == 120
    assert board.queue.available_agents == 1
    assert board.agents_by_status == {"available": 1, "busy": 2, "away": 0, "wrap_up": 1, "offline": 3}
    assert board.occupancy == 0.4


async def test_stats_skip_a_desktop_that_is_behind_and_never_take_its_events_room() -> None:
    # Its writer starts with the first frame and runs at the first await: everything below happens before.
    session = DeskSession("shop-a", "a-lina", 1, _send, _close, queue_max=8)
    for seq in range(1, 4):
        session.enqueue(seq, f"event {seq}")
    assert session.offer_ephemeral("stats")  # 3 of 8 queued: room
    assert not session.offer_ephemeral("stats")  # half full: skipped, the next tick brings fresh figures
    assert session.last_sent == 3 and session.full_since is None
    assert list(session.queue) == ["event 1", "event 2", "event 3", "stats"]
    assert session.writer is not None
    await session.writer
    assert session.queued() == 0 and session.writer.done()


def test_a_stats_frame_carries_the_groups_response_target_in_force_when_known() -> None:
    stats = GroupQueue(waiting={"chat": 1, "email": 0, "phone": 0}, oldest_wait_s=3, available_agents=1)
    assert json.loads(stats_frame("presales", stats, 60.0))["response_target_s"] == 60.0
    assert "response_target_s" not in json.loads(stats_frame("presales", stats))
