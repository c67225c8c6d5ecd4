"""Label values of the domain metrics stay bounded: configured tenants and groups as themselves, anything else as
"unknown" / "none" (docs/metrics.md, Cardinality); the inbound counter counts through those bounds."""

from __future__ import annotations

from prometheus_client import REGISTRY

from switchboard.gateway.board_stats import gauge_values
from switchboard.gateway.queue_stats import BOARD_STATUSES, GroupBoard, GroupQueue
from switchboard.intake.customers import CustomerLookupSettings, CustomerTiers
from switchboard.intake.tally import InboundOutcome, InboundTally
from switchboard.state.metrics import NO_GROUP, UNKNOWN_TENANT, LabelBounds, channel_label


def test_configured_tenants_and_groups_are_themselves_anything_else_is_bounded() -> None:
    bounds = LabelBounds({"shop-a": ["presales", "orders"], "shop-b": ["presales"]})
    assert bounds.pair("shop-a", "orders") == ("shop-a", "orders")
    assert bounds.pair("shop-b", "orders") == ("shop-b", NO_GROUP)  # another tenant's group
    assert bounds.pair("evil-shop-123", "presales") == (UNKNOWN_TENANT, NO_GROUP)
    assert bounds.pair("shop-a", "") == ("shop-a", NO_GROUP)
    assert bounds.known("shop-a", "presales") and not bounds.known("shop-b", "orders")


def test_an_update_adds_groups_and_tenants_and_keeps_what_was_known() -> None:
    bounds = LabelBounds.of_tenants(["shop-a"])
    assert bounds.group("shop-a", "presales") == NO_GROUP
    bounds.update({"shop-a": ["presales"], "shop-c": ["vip"]})
    assert bounds.pair("shop-a", "presales") == ("shop-a", "presales")
    assert bounds.pair("shop-c", "vip") == ("shop-c", "vip")
    assert bounds.tenants == {"shop-a", "shop-c"}


def test_channels_outside_the_three_are_unknown() -> None:
    assert [channel_label(c) for c in ("chat", "email", "phone", "fax", "")] == [
        "chat",
        "email",
        "phone",
        "unknown",
        "unknown",
    ]


def _inbound(channel: str, tenant: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "sb_inbound_messages_total", {"channel": channel, "tenant": tenant, "outcome": outcome}
    )
    return value or 0.0


def test_inbound_tally_counts_configured_tenants_by_name_and_others_as_unknown() -> None:
    tally = InboundTally("phone", ["tally-shop"])
    # Every outcome of a configured tenant is exported from the start.
    assert (
        REGISTRY.get_sample_value(
            "sb_inbound_messages_total", {"channel": "phone", "tenant": "tally-shop", "outcome": "not_routed"}
        )
        == 0.0
    )
    before_known = _inbound("phone", "tally-shop", "accepted")
    before_unknown = _inbound("phone", UNKNOWN_TENANT, "refused")
    tally.count("tally-shop", InboundOutcome.ACCEPTED, 3)
    tally.count("made-up-by-a-sender", InboundOutcome.REFUSED)
    tally.count("tally-shop", InboundOutcome.ACCEPTED, 0)
    assert _inbound("phone", "tally-shop", "accepted") == before_known + 3
    assert _inbound("phone", UNKNOWN_TENANT, "refused") == before_unknown + 1
    assert (
        REGISTRY.get_sample_value(
            "sb_inbound_messages_total", {"channel": "phone", "tenant": "made-up-by-a-sender", "outcome": "refused"}
        )
        is None
    )


def _board(waiting: dict[str, int], oldest: dict[str, int], used: int, slots: int) -> GroupBoard:
    statuses = {s: 0 for s in BOARD_STATUSES} | {"available": 1}
    queue = GroupQueue(waiting, max(oldest.values()), 1, oldest)
    return GroupBoard(queue=queue, agents_by_status=statuses, used_slots=used, slots=slots)


def test_board_gauges_fold_groups_outside_the_config_into_one_none_series() -> None:
    bounds = LabelBounds({"shop-a": ["presales"]})
    boards = {
        ("shop-a", "presales"): _board({"chat": 2, "email": 0, "phone": 0}, {"chat": 30, "email": 0, "phone": 0}, 1, 4),
        ("shop-a", "old-1"): _board({"chat": 1, "email": 0, "phone": 0}, {"chat": 90, "email": 0, "phone": 0}, 1, 2),
        ("shop-a", "old-2"): _board({"chat": 3, "email": 1, "phone": 0}, {"chat": 10, "email": 5, "phone": 0}, 0, 2),
    }
    values = gauge_values(boards, bounds, {("shop-a", "presales"): 0.9, ("shop-a", "old-1"): 0.1}, {"shop-a": 20.0})
    assert values.waiting[("shop-a", "presales", "chat")] == 2
    assert values.waiting[("shop-a", "none", "chat")] == 4  # added
    assert values.oldest[("shop-a", "none", "chat")] == 90  # the longest
    assert values.agents[("shop-a", "none", "available")] == 2
    assert values.occupancy(("shop-a", "none")) == 0.25 and values.occupancy(("shop-a", "presales")) == 0.25
    # A service level belongs to one configured group: none for the folded series.
    assert values.levels == {("shop-a", "presales"): 0.9}
    assert values.targets == {("shop-a", "presales"): 20.0}


def test_customer_lookups_name_only_configured_tenants() -> None:
    tiers = CustomerTiers(CustomerLookupSettings(customer_lookup_url="http://127.0.0.1:9"), known_tenants=["shop-a"])
    assert tiers.bounds.tenant("shop-a") == "shop-a"
    assert tiers.bounds.tenant("shop-from-a-made-up-subdomain") == UNKNOWN_TENANT
