"""Token buckets per key (the DLQ budget): each key its own burst, and a bounded number of keys."""

from __future__ import annotations

from switchboard.runtime.buckets import KeyedBuckets


def test_each_key_has_its_own_burst_and_refills_at_the_rate() -> None:
    now = [0.0]
    budget = KeyedBuckets(rate=1.0, burst=3, clock=lambda: now[0])
    assert [budget.take("a") for _ in range(4)] == [True, True, True, False]
    assert budget.take("b")
    now[0] += 2.0
    assert [budget.take("a") for _ in range(3)] == [True, True, False]


def test_invented_keys_do_not_get_fresh_bursts_once_the_map_is_full() -> None:
    now = [0.0]
    budget = KeyedBuckets(rate=0.001, burst=2, max_keys=10, clock=lambda: now[0])
    taken = sum(budget.take(f"made-up-{i}") for i in range(1000) for _ in range(2))
    # Ten keys with their bursts, then every new key shares the overflow key's bucket (one burst).
    assert taken == 10 * 2 + 2
    assert len(budget) <= 11


def test_refilled_buckets_are_forgotten_to_make_room() -> None:
    now = [0.0]
    budget = KeyedBuckets(rate=1.0, burst=1, max_keys=2, clock=lambda: now[0])
    assert budget.take("a") and budget.take("b")
    now[0] += 5.0  # both refilled: the same as new ones
    assert budget.take("c") and budget.take("d")
    assert not budget.take("c")


def test_a_cost_spends_that_many_tokens_and_is_refused_whole_when_they_are_not_there() -> None:
    now = [0.0]
    sizes = KeyedBuckets(rate=10.0, burst=1000, clock=lambda: now[0])
    assert sizes.take("a", 600)
    assert not sizes.take("a", 600)  # 400 left: refused, and nothing spent
    assert sizes.take("a", 400)
    now[0] += 30.0  # 300 back
    assert not sizes.take("a", 301) and sizes.take("a", 300)
    assert sizes.take("b", 1000)
