"""The router's Redis scripts (router/lua/) and the keys each call declares.

Each script is the outbox append + presence's status function + `lua/lib.lua` + one action (runtime/lua.py). A
call declares every key the script will touch in KEYS (`KeySet`), so the scripts run on Redis Cluster: all keys of
one call carry the tenant's hash tag. The context (ARGV[1]) gives the key templates the Lua builds names from;
lib.lua refuses a name that was not declared.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from switchboard.router.contract import Route
from switchboard.routing.config import CHANNELS, TenantRouting
from switchboard.runtime.lua import LuaScript, lua_file
from switchboard.state.agents_lua import PRESENCE_STATUS_LUA
from switchboard.state.keys import Keys
from switchboard.state.outbox import DESK_APPEND_LUA

_MARK = "\x01"
ACTIONS = ("inbound", "command", "drain", "timeout", "requeue", "overflow", "abandon", "bot_answer", "bot_route")
# The script that writes one conversation back after Redis lost the router's state (router/rebuild.py).
REBUILD = "rebuild"
# Read-only scripts: no shared functions, no context.
READS = ("peek",)


def script(action: str) -> LuaScript:
    """One action with the shared functions: outbox append, presence's status function, lib.lua, bot.lua."""
    libs = (DESK_APPEND_LUA, PRESENCE_STATUS_LUA, lua_file(__file__, "lib"), lua_file(__file__, "bot"))
    return LuaScript.load(__file__, action, libs=libs)


def _template(key: str) -> list[str]:
    before, _, after = key.partition(_MARK)
    return [before, after]


@lru_cache(maxsize=1024)
def key_templates(keys: Keys, tenant: str) -> str:
    """`key_formats` as the JSON the context embeds (built once per tenant)."""
    return json.dumps(key_formats(keys, tenant), separators=(",", ":"))


def key_formats(keys: Keys, tenant: str) -> dict[str, Any]:
    """Every key format a script builds names from, from keys.py, split around the variable part."""
    return {
        "agent": _template(keys.agent(tenant, _MARK)),
        "conv": _template(keys.conversation(tenant, _MARK)),
        "backlog": _template(keys.conversation_backlog(tenant, _MARK)),
        "agent_convs": _template(keys.agent_conversations(tenant, _MARK)),
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
        "gone": keys.chat_gone(tenant),
        "bot_holds": keys.bot_holds(tenant),
    }


def context(keys: Keys, config: TenantRouting, now_ms: int, instance: str, marker_ttl_s: int, mark: str = "") -> str:
    """ARGV[1] of every script: tenant, time, key templates, affinity TTL, marker TTL, router instance, and the
    router's state mark of the tenant when the scripts must check it (declared in KEYS; lib.lua `begin`)."""
    fields: dict[str, Any] = {
        "t": config.tenant,
        "now": now_ms,
        "aff_ttl": config.affinity.ttl_s if config.affinity.enabled else 0,
        "ttl": marker_ttl_s,
        "inst": instance,
    }
    if mark:
        fields["mark"] = mark
    rest = json.dumps(fields, separators=(",", ":"))
    # The key templates are the same for every call of a tenant: spliced in as the JSON built once.
    return '{"k":' + key_templates(keys, config.tenant) + "," + rest[1:]


# Key names of agents, groups and tenants repeat in every call: built once each, as the bytes the client sends
# (a script call declares some thirty keys; encoding them again each time was a fifth of the router's CPU).
@lru_cache(maxsize=1024)
def _tenant_keys(keys: Keys, tenant: str) -> tuple[bytes, ...]:
    # In this order: offers and notify (every claim), unsent, presence pending (see KeySet).
    return _encoded(
        keys.offers(tenant), keys.desk_notify(tenant), keys.routing_unsent(tenant), keys.presence_pending(tenant)
    )


@lru_cache(maxsize=65536)
def _agent_keys(keys: Keys, tenant: str, agent_id: str) -> tuple[bytes, ...]:
    return _encoded(
        keys.agent(tenant, agent_id),
        keys.agent_conversations(tenant, agent_id),
        keys.desk_outbox(tenant, agent_id),
        keys.desk_seq(tenant, agent_id),
    )


@lru_cache(maxsize=16384)
def _group_keys(keys: Keys, tenant: str, group: str) -> tuple[bytes, ...]:
    return _encoded(
        keys.group_capacity_version(tenant, group), *(keys.queue_channel(tenant, group, ch) for ch in CHANNELS)
    )


def _encoded(*names: str) -> tuple[bytes, ...]:
    return tuple(name.encode() for name in names)


@dataclass
class KeySet:
    """The keys one script call declares (KEYS), in a stable order, each once."""

    keys: Keys
    tenant: str
    _names: dict[bytes, None] = field(default_factory=dict)

    def add(self, *names: str | bytes) -> KeySet:
        """Declare keys by name."""
        for name in names:
            self._names[name.encode() if isinstance(name, str) else name] = None
        return self

    def tenant_wide(self) -> KeySet:
        """What every claim may touch: the tenant's offers and desk notify channel."""
        return self.add(*_tenant_keys(self.keys, self.tenant)[:2])

    def unsent(self) -> KeySet:
        """The tenant's unsent decisions (scripts without processed marker keep their decisions there)."""
        return self.add(_tenant_keys(self.keys, self.tenant)[2])

    def presence_pending(self) -> KeySet:
        """Presence's pending set (a script that changes an agent's status through presence's function)."""
        return self.add(_tenant_keys(self.keys, self.tenant)[3])

    def gone(self) -> KeySet:
        """The tenant's chat customers without a socket (the patience sweep)."""
        return self.add(self.keys.chat_gone(self.tenant))

    def bot_holds(self) -> KeySet:
        """The conversations the bot holds (a script that holds, answers or routes one of them)."""
        return self.add(self.keys.bot_holds(self.tenant))

    def agent(self, agent_id: str) -> KeySet:
        """An agent's hash, its conversations and its desk outbox and seq."""
        return self.add(*_agent_keys(self.keys, self.tenant, agent_id))

    def conversation(self, conversation_id: str, customer_id: str = "") -> KeySet:
        """A conversation's hash and backlog (and its customer's returning-agent key)."""
        k, t = self.keys, self.tenant
        self.add(k.conversation(t, conversation_id), k.conversation_backlog(t, conversation_id))
        if customer_id:
            self.add(k.returning_customer(t, customer_id))
        return self

    def capacity_versions(self, groups: Iterable[str]) -> KeySet:
        """The groups' capacity versions (what a release bumps and a plan to queue checks)."""
        for group in groups:
            self.add(_group_keys(self.keys, self.tenant, group)[0])
        return self

    def groups(self, names: Iterable[str], channel: str) -> KeySet:
        """Each group's capacity version and its queue of one channel."""
        index = 1 + CHANNELS.index(channel)
        for group in names:
            found = _group_keys(self.keys, self.tenant, group)
            self.add(found[0], found[index])
        return self

    def route(self, route: Route, channel: str) -> KeySet:
        """What a route plan of a conversation of `channel` may touch: its candidates, and its groups' (and the
        candidates' groups') capacity versions and queues."""
        for cand in route.cands:
            self.agent(cand.a)
        return self.groups({*route.groups, *(c.g for c in route.cands)}, channel)

    def list(self) -> list[bytes]:
        """KEYS, in declaration order."""
        return list(self._names)


@dataclass(frozen=True)
class Scripts:
    """The router's scripts (EVALSHA; loaded on the node, or every primary of a cluster, that lacks one)."""

    inbound: LuaScript
    command: LuaScript
    drain: LuaScript
    timeout: LuaScript
    requeue: LuaScript
    overflow: LuaScript
    abandon: LuaScript
    bot_answer: LuaScript
    bot_route: LuaScript
    peek: LuaScript

    @classmethod
    def load(cls) -> Scripts:
        """Read every script from router/lua/."""
        return cls(**{action: script(action) for action in ACTIONS}, peek=LuaScript.load(__file__, "peek"))


SCRIPTS = Scripts.load()
