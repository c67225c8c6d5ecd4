"""The router's atomic Redis scripts (Lua in `lua/`), and the context they run with.

Each script is `DESK_APPEND_LUA` + `lua/lib.lua` + one action, so ownership, capacity and the desk events that
tell agents about them change in one atomic step. Scripts return the decisions they made as a JSON list; the
engine turns them into RoutingEvents.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from switchboard.router.config import OfferPolicy, TenantRouting
from switchboard.state.agents_lua import PRESENCE_STATUS_LUA
from switchboard.state.keys import Keys
from switchboard.state.outbox import DESK_APPEND_LUA

_MARK = "\x01"
ACTIONS = ("inbound", "command", "drain", "timeout", "requeue", "overflow", "peek")


def _lua(name: str) -> str:
    return (resources.files("switchboard.router") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def script_source(action: str) -> str:
    """The full Lua source of one action."""
    return "\n".join((DESK_APPEND_LUA, PRESENCE_STATUS_LUA, _lua("lib"), _lua(action)))


def _template(key: str) -> list[str]:
    before, _, after = key.partition(_MARK)
    return [before, after]


def key_templates(keys: Keys, tenant: str) -> dict[str, Any]:
    """Every key format a script needs, from keys.py, split around the variable part."""
    return {
        "agent": _template(keys.agent(tenant, _MARK)),
        "conv": _template(keys.conversation(tenant, _MARK)),
        "backlog": _template(keys.conversation_backlog(tenant, _MARK)),
        "agent_convs": _template(keys.agent_conversations(tenant, _MARK)),
        "group_agents": _template(keys.group_agents(tenant, _MARK)),
        "capver": _template(keys.group_capacity_version(tenant, _MARK)),
        "queue": _template(keys.queue(tenant, _MARK)),
        "outbox": _template(keys.desk_outbox(tenant, _MARK)),
        "seq": _template(keys.desk_seq(tenant, _MARK)),
        "returning": _template(keys.returning_customer(tenant, _MARK)),
        "processed": _template(keys.processed(tenant, "router", _MARK)),
        "notify": keys.desk_notify(tenant),
        "offers": keys.offers(tenant),
        "pending": keys.presence_pending(tenant),
        "unsent": keys.routing_unsent(tenant),
    }


def context(keys: Keys, config: TenantRouting, now_ms: int, instance: str) -> str:
    """ARGV[1] of every script: the tenant's keys and the parts of its config the scripts apply."""
    cap = config.capacity
    given: dict[str, int] = {str(k): v for k, v in cap.unit_weights.items()}
    weights = {ch: given.get(ch, 1) for ch in ("chat", "email", "phone")}
    policies: dict[str, Any] = {"*": _policy(config.offers)}
    for group in config.skill_groups:
        policies[group.name] = _policy(config.offer_policy(group.name))
    return json.dumps(
        {
            "t": config.tenant,
            "now": now_ms,
            "k": key_templates(keys, config.tenant),
            "cap": {
                "pb": cap.phone_blocks_other_work,
                "units": cap.units_per_agent if cap.mode == "units" else 0,
                "w": weights,
            },
            "pol": policies,
            "aging_ms": config.queue.aging_s_per_point * 1000.0,
            "aff_ttl": config.affinity.ttl_s if config.affinity.enabled else 0,
            "inst": instance,
        },
        separators=(",", ":"),
    )


def _policy(offer: OfferPolicy) -> dict[str, Any]:
    return {"mode": offer.mode, "ms": int(offer.timeout_s * 1000), "back": int(offer.reoffer_after_s * 1000)}


def excluded_now(declined: str, now_ms: int) -> frozenset[str]:
    """Agents a conversation's `declined` field still passes over at `now_ms`.

    The field lists `agent@until_ms` entries (docs/state.md); an expired entry, or one without a time (written
    by an older router), excludes nobody.
    """
    out = set()
    for entry in declined.split(","):
        agent, _, until = entry.rpartition("@")
        if agent and until.isdigit() and int(until) > now_ms:
            out.add(agent)
    return frozenset(out)


@dataclass
class Scripts:
    """The registered scripts of one Redis client (EVALSHA, loaded again if Redis lost them)."""

    inbound: AsyncScript
    command: AsyncScript
    drain: AsyncScript
    timeout: AsyncScript
    requeue: AsyncScript
    overflow: AsyncScript
    peek: AsyncScript

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        """Register every action with the client."""
        return cls(**{action: redis.register_script(script_source(action)) for action in ACTIONS})


def decisions(raw: bytes | str) -> list[dict[str, Any]]:
    """The decisions a script returned (cjson encodes an empty list as {})."""
    value = json.loads(raw)
    return value if isinstance(value, list) else []
