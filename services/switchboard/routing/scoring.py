"""Queue scoring, estimated wait and service level: pure functions.

A queue is a Redis sorted set served lowest score first. A conversation's stored score is
`enqueued_ms - priority * aging_ms_per_point`: one priority point is worth `aging_s_per_point` seconds of waiting.
Because aging is linear in time for everyone, the order never changes as time passes, so the stored score needs no
rewriting, and a low-priority conversation that waited long enough overtakes any newer high-priority one — nobody
starves.

The router decides a batch of messages at one clock reading, so conversations it opens together share their
`enqueued_ms`; a batch holds several partitions, and their order in it is not their order of arrival. Equal scores
would be served by conversation id. So the score's fraction (under one ms, nothing a wait or a level ring reads)
orders them by arrival: how late in the second before `enqueued_ms` the adapter received the opening message.
"""

from __future__ import annotations

from collections.abc import Sequence

# The arrival fraction: 1/1000 of a ms per ms of arrival within the second before the enqueue time. Scores are
# epoch milliseconds (about 1.8e12), where a double still resolves 1/4096 of a ms.
ARRIVAL_WINDOW_MS = 1000


def stored_score(enqueued_ms: int, priority: int, aging_s_per_point: float, arrived_ms: int = 0) -> float:
    """The sorted-set score of a queued conversation (lower is served first). `arrived_ms`, when known, is when the
    adapter received its opening message: it breaks ties between conversations enqueued in the same ms."""
    score = enqueued_ms - priority * aging_s_per_point * 1000.0
    if arrived_ms:
        late = min(ARRIVAL_WINDOW_MS - 1, max(0, arrived_ms - (enqueued_ms - ARRIVAL_WINDOW_MS)))
        score += late / ARRIVAL_WINDOW_MS
    return score


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
