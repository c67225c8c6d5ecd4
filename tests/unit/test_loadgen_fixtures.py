"""The stack config the load generator writes is what presence, the gateway, the router and phone accept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from switchboard.chat.facts import decode_claims
from switchboard.chat.signing import verify_widget_token
from switchboard.phone.directory import PhoneDirectory
from switchboard.router.inbound import facts_of
from switchboard.routing.bot import bot_intent, fill, order_id_in
from switchboard.routing.classify import classify
from switchboard.routing.config import load_config_file
from switchboard.routing.surge import profile_errors
from switchboard.state.operators import OperatorGrant
from switchboard.state.roster import load_roster
from switchboard_tools.loadgen.customers import widget_query
from switchboard_tools.loadgen.fixtures import Credentials, checked_routing, orders, routing, write_stack_config
from switchboard_tools.loadgen.scenario import load_scenario
from switchboard_tools.loadgen.schedule import build_schedule, caller_number, customer_email
from switchboard_tools.orders import load_orders


def test_written_config_is_accepted_by_the_services(tmp_path: Path) -> None:
    scenario = load_scenario("double11")
    schedule = build_schedule(scenario)
    creds = Credentials("unit")
    env = write_stack_config(scenario, schedule, creds, tmp_path)

    roster = load_roster(env["SB_ROSTER_PATH"])
    every_agent = [(s.tenant_id, s.agent_id) for s in schedule.agents]
    for tenant_id, agent_id in every_agent:
        assert roster.check_login(tenant_id, agent_id, creds.agent_password(tenant_id, agent_id)) is not None
    assert roster.check_login("lg-flagship", "lg-flagship-a000", "wrong") is None
    # every simulated agent has levels in its groups, strong somewhere; each shop has a Japanese-speaking
    # cross-border agent
    for tenant in roster.tenants:
        assert all(set(a.proficiency) == set(a.groups) and max(a.proficiency.values()) >= 3 for a in tenant.agents)
        assert any("ja" in a.languages and "crossborder" in a.groups for a in tenant.agents), tenant.tenant_id
    levels = [n for t in roster.tenants for a in t.agents for n in a.proficiency.values()]
    assert set(levels) == {1, 2, 3, 4, 5}
    again = load_roster(write_stack_config(scenario, schedule, creds, tmp_path / "again")["SB_ROSTER_PATH"])
    assert again == roster, "the same run gives the same levels"

    routing_files = sorted(Path(env["SB_ROUTING_CONFIG_DIR"]).glob("*.yaml"))
    assert len(routing_files) == len(scenario.all_tenants())
    for path in routing_files:
        load_config_file(path)

    directory = PhoneDirectory.load(Path(env["SB_PHONE_DIRECTORY"]))
    assert directory.tenant_for_key(creds.phone_key("lg-shop-07")) == "lg-shop-07"
    assert set(json.loads(env["SB_CHAT_TENANT_SECRETS"])) == {t.id for t in scenario.all_tenants()}
    assert yaml.safe_load(Path(env["SB_ROSTER_PATH"]).read_text())["version"] == 1


def test_sample_texts_reach_their_skill_groups(tmp_path: Path) -> None:
    from switchboard.contracts import Channel, InboundMessage

    scenario = load_scenario("smoke")
    env = write_stack_config(scenario, build_schedule(scenario), Credentials("unit"), tmp_path)
    config = load_config_file(Path(env["SB_ROUTING_CONFIG_DIR"]) / "lg-flagship.yaml")
    expected = {"logistics": "logistics", "promotions": "promotions", "after_sales": "aftersales"}
    for intent, group in expected.items():
        for language, texts in scenario.intents[intent].texts.items():
            for text in texts:
                message = InboundMessage(
                    tenant_id="lg-flagship", text=text, language=language, channel=Channel.CHANNEL_CHAT
                )
                assert classify(config, facts_of(message)).group == group, text


def test_the_flagships_teams_and_the_scenarios_profile_fit_the_generated_config(tmp_path: Path) -> None:
    scenario = load_scenario("double11")
    schedule = build_schedule(scenario)
    env = write_stack_config(scenario, schedule, Credentials("unit"), tmp_path)
    roster = yaml.safe_load(Path(env["SB_ROSTER_PATH"]).read_text())
    groups = {a["agent_id"]: a["groups"] for t in roster["tenants"] for a in t["agents"]}
    assert groups["lg-flagship-a000"] == ["presales", "promotions", "crossborder"]
    assert groups["lg-flagship-a001"] == ["orders", "logistics"]
    assert len(groups["lg-shop-01-a000"]) == 7
    config = checked_routing(scenario, "lg-flagship")
    definition = scenario.operator.definition  # type: ignore[union-attr]
    assert definition is not None and profile_errors(definition, config) == []


def test_a_scenarios_routing_section_is_merged_and_a_profile_that_does_not_fit_is_refused() -> None:
    scenario = load_scenario("double11")
    merged_scenario = scenario.model_copy(update={"routing": {"offers": {"timeout_s": 9.0}, "offline_grace_s": 2}})
    config = routing(merged_scenario, "lg-shop-01")
    assert config["offers"] == {"mode": "offer", "timeout_s": 9.0, "max_misses": 3}
    assert config["offline_grace_s"] == 2
    op = scenario.operator
    assert op is not None and op.definition is not None
    bad = op.definition.model_copy(update={"pools": {"presales": ["nosuchgroup"]}})
    broken = scenario.model_copy(update={"operator": op.model_copy(update={"definition": bad})})
    with pytest.raises(ValueError, match="nosuchgroup"):
        checked_routing(broken, "lg-flagship")


def test_the_order_file_serves_every_order_a_customer_asks_about(tmp_path: Path) -> None:
    scenario = load_scenario("double11")
    schedule = build_schedule(scenario)
    env = write_stack_config(scenario, schedule, Credentials("unit"), tmp_path)
    book = load_orders(Path(env["SB_ORDERS_FILE"]))
    asking = [c for c in schedule.conversations if c.order_id]
    assert len(book) == len(asking) > 100
    for conv in asking:
        order = book.order(conv.tenant_id, conv.order_id)
        assert order is not None and order.customer_id == conv.customer_id
        assert book.order("lg-shop-99", conv.order_id) is None  # another shop's order is not found
    statuses = {o.status for c in asking if (o := book.order(c.tenant_id, c.order_id)) is not None}
    assert {"paid", "shipped", "in_transit"} <= statuses
    assert build_schedule(scenario) == schedule and orders(schedule) == orders(build_schedule(scenario))


def test_the_bot_answers_the_order_questions_and_only_those_when_the_profile_is_on(tmp_path: Path) -> None:
    from switchboard.contracts import Channel, InboundMessage

    scenario = load_scenario("double11")
    schedule = build_schedule(scenario)
    env = write_stack_config(scenario, schedule, Credentials("unit"), tmp_path)
    config = load_config_file(Path(env["SB_ROUTING_CONFIG_DIR"]) / "lg-flagship.yaml")
    operator = scenario.operator
    assert operator is not None and operator.definition is not None
    enabled = operator.definition.bot_first
    book = load_orders(Path(env["SB_ORDERS_FILE"]))
    answered = 0
    for conv in schedule.conversations[:400]:
        if conv.channel != "chat":
            continue
        text = f"{conv.messages[0].text} [lg:{conv.messages[0].tag}]"
        message = InboundMessage(
            tenant_id=conv.tenant_id, text=text, language=conv.language, channel=Channel.CHANNEL_CHAT
        )
        intent = bot_intent(config, facts_of(message), enabled)
        assert (intent is not None) == (conv.intent == "order_status"), text
        assert bot_intent(config, facts_of(message), []) is None  # profile off: no bot
        if intent is None:
            continue
        assert order_id_in(config.bot, "", text) == conv.order_id
        order = book.order(conv.tenant_id, conv.order_id)
        assert order is not None
        lookup = order.model_dump()
        if fill(intent, conv.language, lookup) is not None:
            answered += 1
    assert answered > 10


def test_members_are_vouched_for_as_a_shop_would_token_claims_for_chat_the_lookup_for_email_and_phone(
    tmp_path: Path,
) -> None:
    scenario = load_scenario("double11").model_copy(update={"member_tiers": {"88VIP": 0.2}})
    schedule = build_schedule(scenario)
    env = write_stack_config(scenario, schedule, Credentials("unit"), tmp_path)
    book = load_orders(Path(env["SB_ORDERS_FILE"]))
    members = [c for c in schedule.conversations if c.member_tier]
    for conv in members:
        if conv.channel == "email":
            found = book.customer(conv.tenant_id, "email", customer_email(conv.customer_id))
        elif conv.channel == "phone":
            found = book.customer(conv.tenant_id, "phone", caller_number(conv.messages[0]))
        else:
            query = widget_query(b"secret", conv, 1_000.0)
            assert verify_widget_token(
                b"secret", conv.customer_id, query["token"], int(query["expires"]), 1_000.0, query["claims"]
            )
            assert decode_claims(query["claims"]).member_tier == "88VIP"
            continue
        assert found is not None and found.member_tier == "88VIP"
    assert {c.channel for c in members} == {"chat", "email", "phone"}
    plain = next(c for c in schedule.conversations if not c.member_tier and c.channel == "chat")
    assert "claims" not in widget_query(b"secret", plain, 1_000.0)


def test_every_shop_gets_an_email_webhook_secret_and_an_operator_token_of_its_own(tmp_path: Path) -> None:
    scenario = load_scenario("smoke")
    creds = Credentials("unit")
    env = write_stack_config(scenario, build_schedule(scenario), creds, tmp_path)
    tenants = [t.id for t in scenario.all_tenants()]
    assert json.loads(env["SB_EMAIL_WEBHOOK_SECRETS"]) == {t: creds.email_secret(t) for t in tenants}
    grants = [OperatorGrant.model_validate(g) for g in json.loads(env["SB_OPERATOR_TOKENS"])]
    for tenant in tenants:
        [grant] = [g for g in grants if g.token == creds.shop_operator_token(tenant)]
        assert [t for t in tenants if grant.allows(t)] == [tenant]
    [every] = [g for g in grants if g.token == creds.operator_token()]
    assert all(every.allows(t) for t in tenants)
    assert len({creds.email_secret(t) for t in tenants} | {creds.chat_secret(t) for t in tenants}) == 2 * len(tenants)
