"""Bot-first answers, the pure part: the config's `bot:` section, intent match, order ids, template fill."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.routing.bot import bot_intent, fill, order_id_in, wants_human
from switchboard.routing.classify import Facts
from switchboard.routing.config import ConfigError, TenantRouting, load_config_file, parse_config
from switchboard.routing.surge import SurgeProfile, profile_errors

BASE = """\
tenant: shop-x
default_group: service
skill_groups:
  - name: service
bot:
  intents:
    - name: order_status
      match:
        keywords: [到哪了, where is my order]
      templates:
        zh: "订单 {order_id}：{status}，{carrier} {tracking_number}"
        en: "Order {order_id} is {status}: {carrier} {tracking_number}"
"""

LOOKUP = {"order_id": "2026111100001", "status": "shipped", "carrier": "顺丰速运", "tracking_number": "SF100"}


@pytest.fixture
def flagship(repo_root: Path) -> TenantRouting:
    return load_config_file(repo_root / "config" / "routing" / "tmall-flagship.yaml")


def test_the_examples_carry_the_four_simple_intents(flagship: TenantRouting, repo_root: Path) -> None:
    shop_a = load_config_file(repo_root / "config" / "routing" / "shop-a.yaml")
    for config in (flagship, shop_a):
        assert [i.name for i in config.bot.intents] == [
            "order_status",
            "shipping_time",
            "promotion_rules",
            "invoice_howto",
        ]
        assert {i.name: i.lookup for i in config.bot.intents}["invoice_howto"] == "none"


def test_unknown_template_field_is_rejected_at_its_line() -> None:
    text = BASE.replace('{carrier} {tracking_number}"\n        en', '{courier}"\n        en')
    with pytest.raises(ConfigError, match=r"^shop\.yaml:11: bot\.intents\.0\.templates\.zh: unknown field \{courier\}"):
        parse_config(text, "shop.yaml")


def test_a_lookup_field_in_a_template_without_lookup_is_rejected() -> None:
    text = BASE.replace("    - name: order_status\n", "    - name: order_status\n      lookup: none\n")
    with pytest.raises(ConfigError, match=r"shop\.yaml:12: bot\.intents\.0\.templates\.zh: .*needs `lookup: order`"):
        parse_config(text, "shop.yaml")


def test_duplicate_intents_and_bad_timeout_are_rejected() -> None:
    intent = BASE.split("  intents:\n", 1)[1]
    with pytest.raises(ConfigError, match=r"shop\.yaml:13: bot\.intents\.1\.name: .*defined twice"):
        parse_config(BASE + intent, "shop.yaml")
    with pytest.raises(ConfigError, match=r"shop\.yaml:6: bot\.lookup_timeout_s: "):
        parse_config(BASE.replace("bot:\n", "bot:\n  lookup_timeout_s: 0\n"), "shop.yaml")


def test_profile_naming_an_unknown_bot_intent_is_refused(flagship: TenantRouting) -> None:
    profile = SurgeProfile(bot_first=["order_status", "weather"])
    assert profile_errors(profile, flagship) == ["bot_first: unknown bot intent 'weather'"]


def test_intent_needs_the_profile_the_channel_and_no_human_request(flagship: TenantRouting) -> None:
    facts = Facts(text="我的订单到哪了 2026111100001", channel="chat")
    on = {"order_status", "shipping_time"}
    intent = bot_intent(flagship, facts, on)
    assert intent is not None and intent.name == "order_status"
    assert bot_intent(flagship, facts, set()) is None
    assert bot_intent(flagship, facts, {"shipping_time"}) is None
    assert bot_intent(flagship, Facts(text=facts.text, channel="phone"), on) is None
    assert bot_intent(flagship, Facts(text="订单到哪了？转人工", channel="chat"), on) is None
    assert bot_intent(flagship, Facts(text="Where is my order? I want a HUMAN", channel="chat"), on) is None
    assert bot_intent(flagship, Facts(text="这件衣服有XL码吗", channel="chat"), on) is None


def test_human_words_are_case_folded(flagship: TenantRouting) -> None:
    assert wants_human(flagship.bot, "Agent please")
    assert wants_human(flagship.bot, "人工客服")
    assert not wants_human(flagship.bot, "订单到哪了")


def test_order_id_from_commerce_first_then_the_text(flagship: TenantRouting) -> None:
    policy = flagship.bot
    assert order_id_in(policy, "9988776655", "订单 2026111100001 到哪了") == "9988776655"
    assert order_id_in(policy, "", "订单2026111100001到哪了") == "2026111100001"
    assert order_id_in(policy, "", "买了3件，12345 是编号") == ""
    assert order_id_in(policy, "", "no number here") == ""


def test_fill_in_the_conversations_language(flagship: TenantRouting) -> None:
    intent = flagship.bot.intent("order_status")
    assert intent is not None
    lookup = {**LOOKUP, "eta": "2026-11-13"}
    zh = fill(intent, "zh", lookup)
    assert zh is not None and zh.template == "order_status.zh"
    assert "订单 2026111100001 当前状态：已发货" in zh.text and "运单号：SF100" in zh.text
    en = fill(intent, "en-US", lookup)
    assert en is not None and en.template == "order_status.en"
    assert en.text.startswith("Hello, order 2026111100001 is shipped. Carrier: 顺丰速运, tracking number SF100")


def test_fill_refuses_when_the_lookup_lacks_a_field() -> None:
    config = parse_config(BASE, "shop.yaml")
    intent = config.bot.intents[0]
    assert fill(intent, "zh", {**LOOKUP, "tracking_number": ""}) is None
    unknown_status = fill(intent, "zh", {**LOOKUP, "status": "held_at_customs"})
    assert unknown_status is not None and "held_at_customs" in unknown_status.text


def test_an_intent_without_lookup_fills_from_the_template_alone(flagship: TenantRouting) -> None:
    intent = flagship.bot.intent("invoice_howto")
    assert intent is not None
    answer = fill(intent, "zh", {})
    assert answer is not None and "发票" in answer.text
