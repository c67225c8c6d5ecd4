"""Queue scoring, estimated wait and service level: pure functions.

A queue is a Redis sorted set served lowest score first. A conversation's stored score is
`enqueued_ms - priority * aging_ms_per_point`: one priority point is worth `aging_s_per_point` seconds of waiting.
Because aging is linear in time for everyone, the order never changes as time passes, so the stored score needs no
rewriting, and a low-priority conversation that waited long enough overtakes any newer high-priority one — nobody
starves.
"""

from __future__ import annotations

from collections.abc import Sequence


def stored_score(enqueued_ms: int, priority: int, aging_s_per_point: float) -> float:
    """The sorted-set score of a queued conversation (lower is served first)."""
    return enqueued_ms - priority * aging_s_per_point * 1000.0


def effective_priority(enqueued_ms: int, priority: int, aging_s_per_point: float, now_ms: int) -> float:
    """Priority plus aging at `now_ms`, as reported in RoutingEvent.score."""
    return priority + max(0, now_ms - enqueued_ms) / (aging_s_per_point * 1000.0)


def estimated_wait_s(queue_length: int, free_or_total_slots: int, avg_handle_s: float) -> float:
    """Rough wait of the next conversation joining a queue: the queue ahead drained by the group's slots."""
    return (queue_length + 1) * avg_handle_s / max(1, free_or_total_slots)


def service_level(waits_s: Sequence[float], target_s: float) -> float | None:
    """Fraction of recent conversations answered within the target, or None without data."""
    if not waits_s:
        return None
    return sum(1 for w in waits_s if w <= target_s) / len(waits_s)
