"""The configuration a stack needs to serve a scenario's shops: roster, routing, chat and e-mail webhook secrets,
phone directory, operator tokens (one for every shop, one per shop).

When the load generator starts a local stack it writes these files into the run folder and points the services at
them (SB_ROSTER_PATH, SB_AGENTS_FILE, SB_ROUTING_CONFIG_DIR, SB_CHAT_TENANT_SECRETS, SB_PHONE_DIRECTORY, …). Against a
deployed stack, `switchboard loadtest --write-config DIR` writes the same files for the operator to install.
Secrets here are derived from the run's seed: they are for load-test tenants only, never for real shops.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from switchboard.routing.config import TenantRouting
from switchboard.routing.surge import profile_errors
from switchboard_tools.loadgen.scenario import Scenario
from switchboard_tools.loadgen.schedule import AgentShift, Schedule, caller_number, customer_email

# Intent → skill group id, and the words the router's intent rules match on (they appear in the sample texts).
GROUPS = {
    "pre_sales": "presales",
    "order": "orders",
    "order_status": "orders",
    "after_sales": "aftersales",
    "logistics": "logistics",
    "complaints": "complaints",
    "promotions": "promotions",
    "cross_border": "crossborder",
}
KEYWORDS = {
    "order": ["收货地址", "取消", "发货", "拍错", "订单", "address", "cancel", "order"],
    "after_sales": ["退货", "退款", "发票", "质量问题", "refund", "exchange", "broken"],
    "logistics": ["快递", "包裹", "物流", "parcel", "tracking"],
    "complaints": ["投诉", "气人", "complaint", "unacceptable", "escalate"],
    "promotions": ["券", "定金", "尾款", "价保", "coupon", "price protection"],
    "cross_border": ["海外", "关税", "新加坡", "customs", "singapore", "usd"],
}
# Every skill group of a load-test shop, once each (two intents share `orders`).
SKILL_GROUPS = sorted(set(GROUPS.values()))
EMAIL_DOMAIN = "inbound.switchboard.local"


@dataclass(frozen=True)
class Credentials:
    """Secrets of the load-test tenants, derived from one run key."""

    run_key: str

    def _derive(self, *parts: str) -> str:
        return hashlib.sha256("\x1f".join((self.run_key, *parts)).encode()).hexdigest()[:32]

    def agent_password(self, tenant_id: str, agent_id: str) -> str:
        """The dev password of a simulated agent."""
        return self._derive("agent", tenant_id, agent_id)

    def chat_secret(self, tenant_id: str) -> str:
        """The tenant's HMAC secret for widget tokens and webhooks."""
        return self._derive("chat", tenant_id)

    def phone_key(self, tenant_id: str) -> str:
        """The tenant's telephony API key."""
        return self._derive("phone", tenant_id)

    def operator_token(self) -> str:
        """The operator token that may switch surge profiles of every load-test tenant."""
        return self._derive("operator")

    def shop_operator_token(self, tenant_id: str) -> str:
        """An operator (supervisor) token granted this tenant only."""
        return self._derive("operator", tenant_id)

    def email_secret(self, tenant_id: str) -> str:
        """The tenant's HMAC secret for its e-mail webhook (`POST /v1/email/inbound/<tenant>`)."""
        return self._derive("email", tenant_id)

    def email_customer_key(self) -> str:
        """The e-mail adapter's key for customers' addresses (SB_EMAIL_CUSTOMER_KEY: reply contacts are sealed)."""
        return self._derive("email-customer")


def hotline(index: int) -> str:
    """A dialled number per tenant (400 numbers are what shops publish)."""
    return f"400-900-{index:04d}"


def email_address(tenant_id: str) -> str:
    """Where customers write to a shop."""
    return f"service@{tenant_id}.{EMAIL_DOMAIN}"


# Levels of a simulated agent: strong in its main group, uneven in the others (1 beginner .. 5 expert).
MAIN_LEVELS = {3: 0.3, 4: 0.4, 5: 0.3}
OTHER_LEVELS = {1: 0.15, 2: 0.35, 3: 0.35, 4: 0.15}
# The extra language of a shop's 1st, 2nd, ... cross-border agent (beyond the scenario's agent languages); the
# others have none, as in shops where a few agents carry the foreign buyers.
CROSS_BORDER_LANGUAGES = ("ja", "ko", "es", "ru", None, None)


def levels(shift: AgentShift, groups: list[str]) -> dict[str, int]:
    """The simulated agent's level per group, drawn from its own seed (the same run gives the same levels)."""
    rng = random.Random(f"levels/{shift.seed}")
    main = rng.choice(groups)
    draw = {g: MAIN_LEVELS if g == main else OTHER_LEVELS for g in groups}
    return {g: rng.choices(list(w), weights=list(w.values()), k=1)[0] for g, w in draw.items()}


def roster(scenario: Scenario, schedule: Schedule, creds: Credentials) -> dict[str, Any]:
    """The agent roster (docs/agents-config.md) with every simulated agent of the schedule: levels per group, the
    scenario's languages, and a foreign language for some cross-border agents (the first of each shop: Japanese)."""
    by_tenant: dict[str, list[dict[str, Any]]] = {t.id: [] for t in scenario.all_tenants()}
    for shift in schedule.agents:
        groups = list(shift.groups) or SKILL_GROUPS
        languages = list(scenario.agents.languages)
        if GROUPS["cross_border"] in groups:
            nth = sum(GROUPS["cross_border"] in (a["groups"]) for a in by_tenant[shift.tenant_id])
            extra = CROSS_BORDER_LANGUAGES[nth % len(CROSS_BORDER_LANGUAGES)]
            languages += [extra] if extra and extra not in languages else []
        by_tenant[shift.tenant_id].append(
            {
                "agent_id": shift.agent_id,
                "display_name": f"LG {shift.agent_id}",
                "password": creds.agent_password(shift.tenant_id, shift.agent_id),
                "groups": groups,
                "proficiency": levels(shift, groups),
                "languages": languages,
                "capacity": dict(scenario.agents.capacity),
            }
        )
    return {"version": 1, "tenants": [{"tenant_id": t, "agents": agents} for t, agents in by_tenant.items()]}


def routing(scenario: Scenario, tenant_id: str) -> dict[str, Any]:
    """A tenant's routing config: a skill group per intent, keyword rules, offers with a timeout."""
    aht = scenario.agents.handling_time.mean_s
    groups = [
        {"name": group, "languages": list(scenario.agents.languages), "avg_handle_s": aht} for group in SKILL_GROUPS
    ]
    rules = [
        {"name": intent, "group": GROUPS[intent], "priority": 10 if intent == "complaints" else 0,
         "match": {"keywords": words}}
        for intent, words in KEYWORDS.items()
    ]  # fmt: skip
    config = {
        "tenant": tenant_id,
        "default_group": "presales",
        "skill_groups": groups,
        "rules": rules,
        # Offers time out quickly, so a missed offer is re-offered within the compressed time of a scenario.
        "offers": {"mode": scenario.agents.offer_mode, "timeout_s": scenario.agents.offer_timeout_s, "max_misses": 3},
        "offline_grace_s": 5.0,
    }
    return merged(config, scenario.routing)


def merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `extra` laid over it: mappings merged key by key, anything else replaced."""
    result = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def checked_routing(scenario: Scenario, tenant_id: str) -> TenantRouting:
    """The tenant's routing config as the router will read it; a scenario whose profile does not fit it fails
    here, before any service starts (the operator API would refuse it with the same errors)."""
    config = TenantRouting.model_validate(routing(scenario, tenant_id))
    if scenario.operator is not None and scenario.operator.definition is not None:
        errors = profile_errors(scenario.operator.definition, config)
        if errors:
            raise ValueError(f"surge profile of scenario {scenario.name} does not fit {tenant_id}: {errors}")
    return config


# What the run's order file says about the orders customers ask after: mostly under way, as at 00:00 of a sale.
ORDER_STATUSES = {"paid": 0.35, "shipped": 0.25, "in_transit": 0.25, "out_for_delivery": 0.05, "delivered": 0.1}
CARRIERS = ("顺丰速运", "中通快递", "圆通速递", "京东物流")
ITEMS = ("羽绒服 M码", "蓝牙耳机", "保温杯 500ml", "沙发套", "猫粮 10kg", "Wool coat, size L")


def orders(schedule: Schedule) -> dict[str, Any]:
    """The order file of a run (tools/switchboard_tools/orders format): every order id a customer asks about,
    for its shop and customer, with a status, carrier, tracking number and expected arrival drawn from the seed."""
    rng = random.Random(f"{schedule.seed}-orders")
    rows = []
    for conv in schedule.conversations:
        if not conv.order_id:
            continue
        status = rng.choices(list(ORDER_STATUSES), weights=list(ORDER_STATUSES.values()), k=1)[0]
        moving = status != "paid"
        rows.append(
            {
                "tenant_id": conv.tenant_id,
                "order_id": conv.order_id,
                "customer_id": conv.customer_id,
                "status": status,
                "carrier": rng.choice(CARRIERS) if moving else "",
                "tracking_number": f"SF{rng.randrange(10**12):012d}" if moving else "",
                "eta": f"2026-11-{rng.randint(12, 16)}",
                "paid_at": "2026-11-11T00:00:05+08:00",
                "shipped_at": "2026-11-11T08:00:00+08:00" if moving else "",
                "item": rng.choice(ITEMS),
                "placed_at": "2026-11-11T00:00:01+08:00",
            }
        )
    return {"orders": rows, "customers": customers(schedule)}


def customers(schedule: Schedule) -> list[dict[str, str]]:
    """The members among the run's e-mail and phone customers, for the customer lookup (docs/customer-lookup.md):
    the contact the adapter will look them up by, and their tier."""
    rows = []
    for conv in schedule.conversations:
        if not conv.member_tier or conv.channel == "chat":
            continue
        contact = {"email": customer_email(conv.customer_id)} if conv.channel == "email" else {}
        if conv.channel == "phone":
            contact = {"phone": caller_number(conv.messages[0])}
        rows.append({"tenant_id": conv.tenant_id, **contact, "member_tier": conv.member_tier})
    return rows


def write_stack_config(scenario: Scenario, schedule: Schedule, creds: Credentials, out: Path) -> dict[str, str]:
    """Write every file into `out`; return the environment that points services at them."""
    out.mkdir(parents=True, exist_ok=True)
    tenants = [t.id for t in scenario.all_tenants()]
    roster_path = out / "agents.yaml"
    roster_path.write_text(yaml.safe_dump(roster(scenario, schedule, creds), allow_unicode=True, sort_keys=False))
    routing_dir = out / "routing"
    routing_dir.mkdir(exist_ok=True)
    for tenant in tenants:
        checked_routing(scenario, tenant)
        text = yaml.safe_dump(routing(scenario, tenant), allow_unicode=True, sort_keys=False)
        (routing_dir / f"{tenant}.yaml").write_text(text)
    phone_path = out / "phone-directory.yaml"
    phone = {
        "version": 1,
        "tenants": [
            {"tenant_id": t, "numbers": [hotline(i)], "api_keys": [creds.phone_key(t)]}
            for i, t in enumerate(tenants, start=1)
        ],
    }
    phone_path.write_text(yaml.safe_dump(phone, sort_keys=False))
    orders_path = out / "orders.json"
    orders_path.write_text(json.dumps(orders(schedule), ensure_ascii=False, indent=1), encoding="utf-8")
    grants = [{"name": "loadgen", "token": creds.operator_token(), "tenants": tenants}]
    grants += [{"name": f"ops-{t}", "token": creds.shop_operator_token(t), "tenants": [t]} for t in tenants]
    return {
        "SB_ROSTER_PATH": str(roster_path),
        "SB_AGENTS_FILE": str(roster_path),
        "SB_ROUTING_CONFIG_DIR": str(routing_dir),
        "SB_PHONE_DIRECTORY": str(phone_path),
        "SB_CHAT_TENANT_SECRETS": json.dumps({t: creds.chat_secret(t) for t in tenants}),
        "SB_TENANT_SUBDOMAIN_OF": EMAIL_DOMAIN,
        # The shops the e-mail adapter's metrics name (others are `unknown`, docs/metrics.md).
        "SB_EMAIL_TENANTS": json.dumps(tenants),
        "SB_EMAIL_WEBHOOK_SECRETS": json.dumps({t: creds.email_secret(t) for t in tenants}),
        "SB_EMAIL_CUSTOMER_KEY": creds.email_customer_key(),
        "SB_OPERATOR_TOKENS": json.dumps(grants),
        # The order service the load test starts serves this file (SB_ORDER_LOOKUP_URL points the router at it,
        # SB_CUSTOMER_LOOKUP_URL the e-mail and phone adapters).
        "SB_ORDERS_FILE": str(orders_path),
    }
