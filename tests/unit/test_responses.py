"""Response time's pure parts: the one rule for the target in force, the figures' rates and averages, which
backlog entries start a clock, and the buckets."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from switchboard.contracts import InboundMessage, MessageKind
from switchboard.gateway.responses import ResponseTargets, TargetsInForce
from switchboard.routing.config import ConfigError, parse_config
from switchboard.state.keys import Keys
from switchboard.state.responses import ResponseFigures, customer_messages, day_bucket, minute_buckets

CONFIG = """
tenant: shop
default_group: presales
response_target_s: 150
skill_groups:
  - name: presales
    response_target_s: 60
  - name: orders
"""


def test_the_target_in_force_is_the_profiles_then_the_groups_then_the_tenants() -> None:
    config = parse_config(CONFIG, "shop.yaml")
    assert config.response_target("presales") == 60
    assert config.response_target("orders") == 150
    assert config.response_target("unknown") == 150, "a group the config lacks gets the tenant's"
    assert config.response_target("presales", {"presales": 20}) == 20
    assert config.response_target("orders", {"presales": 20}) == 150
    assert parse_config(CONFIG.replace("response_target_s: 150\n", ""), "s.yaml").response_target("orders") == 180
    targets = TargetsInForce(config, "double11", {"orders": 30.0})
    assert targets.groups() == {"presales": 60, "orders": 30}
    assert TargetsInForce(None).target("presales") == 180, "a tenant without a routing config: the default"


def test_a_target_out_of_range_is_refused_with_its_line() -> None:
    with pytest.raises(ConfigError, match=r"shop\.yaml:7: skill_groups\.0\.response_target_s"):
        parse_config(CONFIG.replace("response_target_s: 60", "response_target_s: 0"), "shop.yaml")


def test_figures_give_the_rate_within_target_and_the_averages() -> None:
    one = ResponseFigures.of(
        {b"n": b"3", b"within": b"2", b"sum_ms": b"300000", b"first_n": b"1", b"first_sum_ms": b"200000"}
    )
    total = one + ResponseFigures.of({"n": "1", "within": "1", "sum_ms": "20000"})
    assert (total.responses, total.within, total.within_rate, total.average_s) == (4, 3, 0.75, 80.0)
    assert (total.first_within_rate, total.first_average_s) == (0.0, 200.0)
    assert ResponseFigures().as_dict()["within_rate"] is None and ResponseFigures().average_s is None


def _message(
    mid: str, at_ms: int, kind: MessageKind.ValueType = MessageKind.MESSAGE_KIND_TEXT, sender: str = ""
) -> bytes:
    m = InboundMessage(message_id=mid, kind=kind, attributes={"sender": sender} if sender else {})
    m.received_at.FromMilliseconds(at_ms)
    return m.SerializeToString()


def test_written_customer_messages_start_clocks_oldest_first() -> None:
    raws = [
        _message("b", 2_000),
        _message("a", 1_000),
        _message("call", 500, MessageKind.MESSAGE_KIND_CALL_EVENT),
        _message("said", 600, MessageKind.MESSAGE_KIND_TRANSCRIPT),
        InboundMessage(message_id="no-time").SerializeToString(),
        b"\xff\xff not protobuf",
    ]
    assert customer_messages(raws) == [(1_000, "a"), (2_000, "b")]


def test_today_is_the_shops_local_day_and_windows_cover_whole_minutes() -> None:
    # 2026-12-06 17:00 UTC is already 2026-12-07 01:00 in China.
    at_ms = 1_796_576_400_000
    assert day_bucket(at_ms) == "d20261207"
    assert day_bucket(at_ms, 0) == "d20261206"
    minute = at_ms // 60_000
    assert minute_buckets(at_ms, 900) == [f"m{m}" for m in range(minute - 14, minute + 1)]
    assert minute_buckets(at_ms, 1) == [f"m{minute}"]


def test_what_the_bots_answer_answered_starts_no_clock() -> None:
    raws = [_message("order?", 1_000), _message("bot", 1_500, sender="bot"), _message("转人工", 9_000)]
    assert customer_messages(raws) == [(9_000, "转人工")]


def test_the_gateway_rereads_a_routing_config_an_operator_changed(tmp_path: Path) -> None:
    (tmp_path / "shop.yaml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "broken.yaml").write_text("tenant: [", encoding="utf-8")
    targets = ResponseTargets(Redis(), Keys("t"), tmp_path, recheck_s=0)
    assert targets.configs["shop"].response_target("orders") == 150 and "broken" not in targets.configs
    (tmp_path / "shop.yaml").write_text(CONFIG.replace("response_target_s: 150", "response_target_s: 90"), "utf-8")
    targets.refresh()
    assert targets.configs["shop"].response_target("orders") == 90
