"""Bot-first answers (智能客服先答): which intent a first message is, and the answer filled from an order lookup.

Pure functions over plain data. The bot answers only the first message of a conversation, only for intents the
active surge profile switches on (`bot_first`), on the channels the tenant's `bot.channels` allow, and never when
the customer asks for a person (转人工 / 人工 / agent / human). The router does the I/O (router/bot.py).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache

from switchboard.routing.classify import Facts, matches
from switchboard.routing.config import BotIntent, BotPolicy, TenantRouting, template_fields

# An order's status code (docs/order-lookup.md) in the customer's words; an unknown code is shown as it is.
STATUS_NAMES: dict[str, tuple[str, str]] = {
    "unpaid": ("待付款", "awaiting payment"),
    "paid": ("已付款，等待发货", "paid, waiting to be shipped"),
    "shipped": ("已发货", "shipped"),
    "in_transit": ("运输中", "in transit"),
    "out_for_delivery": ("派送中", "out for delivery"),
    "delivered": ("已签收", "delivered"),
    "refunding": ("退款中", "being refunded"),
    "refunded": ("已退款", "refunded"),
    "cancelled": ("已取消", "cancelled"),
}


@dataclass(frozen=True)
class Answer:
    """A filled answer: its text and the template it came from (`<intent>.<language>`)."""

    text: str
    template: str


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def wants_human(policy: BotPolicy, text: str) -> bool:
    """The customer asks for a person (any of the tenant's human words, case-folded)."""
    folded = text.casefold()
    return any(word.casefold() in folded for word in policy.human_words)


def bot_intent(config: TenantRouting, facts: Facts, enabled: Collection[str]) -> BotIntent | None:
    """The first intent (in config order) switched on by the profile whose match holds for a first message;
    None when the channel is not the bot's, the customer asks for a person, or nothing matches."""
    policy = config.bot
    if not enabled or facts.channel not in policy.channels or wants_human(policy, facts.text):
        return None
    for intent in policy.intents:
        if intent.name in enabled and matches(intent.match, facts):
            return intent
    return None


def order_id_in(policy: BotPolicy, commerce_order_id: str, text: str) -> str:
    """The order the customer asks about: the message's commerce order id, else the first id in the text."""
    if commerce_order_id:
        return commerce_order_id
    found = _compiled(policy.order_id_pattern).search(text)
    return found.group(0) if found else ""


def answer_language(language: str) -> str:
    """Chinese for conversations in Chinese or of unknown language, English for every other language."""
    return "zh" if language in ("", "zh") else "en"


def display_fields(lookup: Mapping[str, str], language: str) -> dict[str, str]:
    """Template fields from a lookup: the status code in the customer's words, everything else as given."""
    fields = dict(lookup)
    code = lookup.get("status", "")
    fields["status_code"] = code
    if code in STATUS_NAMES:
        zh, en = STATUS_NAMES[code]
        fields["status"] = en if language == "en" else zh
    return fields


def fill(intent: BotIntent, language: str, lookup: Mapping[str, str]) -> Answer | None:
    """The intent's answer in the conversation's language, or None when the lookup lacks a field the template
    needs (an unpaid order has no tracking number: a person answers instead of a half-empty sentence)."""
    lang = answer_language(language)
    template = getattr(intent.templates, lang)
    fields = display_fields(lookup, lang)
    needed = template_fields(template)
    if any(not fields.get(name) for name in needed):
        return None
    return Answer(template.format_map({name: fields[name] for name in needed}), f"{intent.name}.{lang}")
