"""The order lookup's circuit breaker (pure, on a fake clock) and the dev order service's file."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.router.bot_lookup import CircuitBreaker
from switchboard_tools.orders.store import OrderFileError, load_orders, parse_orders


def test_breaker_opens_after_n_failures_in_a_row_and_lets_one_trial_through_after_the_cool_down() -> None:
    now = [0.0]
    breaker = CircuitBreaker("http://orders", failures=3, cooldown_s=10, clock=lambda: now[0])
    for _ in range(2):
        assert breaker.allow()
        breaker.failed()
    breaker.succeeded()  # a success in between: failures count in a row only
    for _ in range(3):
        assert breaker.allow()
        breaker.failed()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 9.9
    assert not breaker.allow()
    now[0] = 10.0
    assert breaker.allow() and breaker.state == "half_open"
    assert not breaker.allow()  # one trial at a time
    breaker.failed()  # the trial failed: open for another cool-down
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 20.0
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


def test_the_dev_orders_scope_lookups_to_the_shop_and_know_each_customers_latest(repo_root: Path) -> None:
    book = load_orders(repo_root / "config" / "orders" / "dev-orders.yaml")
    found = book.order("shop-a", "2026111100001")
    assert found is not None and found.status == "shipped" and found.tracking_number
    assert book.order("shop-b", "2026111100001") is None
    latest = book.latest("shop-a", "buyer-1001")
    assert latest is not None and latest.order_id == "2026111100001"  # placed after 2026111100003


def test_a_bad_order_entry_is_named() -> None:
    with pytest.raises(OrderFileError, match=r"orders\.1\.status"):
        parse_orders(
            {"orders": [{"tenant_id": "a", "order_id": "1", "status": "paid"}, {"tenant_id": "a", "order_id": "2"}]},
            "f",
        )
