"""A customer's earlier conversations with one shop, kept after each close, bounded per tenant and customer.

The router records a conversation when it publishes the CLOSED decision; the gateway reads the list for the desk
(the `context` command) and the supervisor board. Each entry is one JSON object; the list holds the newest
`HISTORY_MAX` closes of one customer of one tenant (the key carries the tenant, so shops never see each other's).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis

from switchboard.state.keys import Keys

HISTORY_MAX = 20
# A customer silent for half a year starts afresh; the list is short, so its memory is bounded anyway.
HISTORY_TTL_S = 180 * 24 * 3600


@dataclass(frozen=True, slots=True)
class ClosedConversation:
    """One closed conversation of a customer, as the desk lists it."""

    conversation_id: str
    channel: str
    skill_group: str
    agent_id: str
    wrap_up_code: str
    opened_ms: int
    closed_ms: int
    epoch: int = 0

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> ClosedConversation | None:
        """The stored form read back; None when it is not one (an entry of another shape is skipped)."""
        try:
            data = json.loads(raw)
            return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})
        except (ValueError, TypeError):
            return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


@dataclass(frozen=True)
class Close:
    """A conversation the router closed: what its customer's history keeps of it."""

    conversation_id: str
    channel: str
    skill_group: str
    agent_id: str
    wrap_up_code: str
    epoch: int


class CustomerHistory:
    """Reads and writes the per-customer history lists of one deployment."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def record_closed(self, tenant_id: str, closes: Sequence[Close], now_ms: int) -> int:
        """Add each closed conversation to its customer's history; how many were added.

        The customer and opening time come from the conversation hash, which a close leaves in place. A close
        published twice (a retried batch) is recognised by conversation and epoch and added once.
        """
        added = 0
        for close in closes:
            customer, opened = await self.redis.hmget(
                self.keys.conversation(tenant_id, close.conversation_id), ["customer_id", "enqueued_ms"]
            )
            if not customer:
                continue
            entry = ClosedConversation(
                conversation_id=close.conversation_id,
                channel=close.channel,
                skill_group=close.skill_group,
                agent_id=close.agent_id,
                wrap_up_code=close.wrap_up_code,
                opened_ms=int(_text(opened) or 0),
                closed_ms=now_ms,
                epoch=close.epoch,
            )
            added += await self._push(tenant_id, _text(customer), entry)
        return added

    async def _push(self, tenant_id: str, customer_id: str, entry: ClosedConversation) -> int:
        key = self.keys.customer_history(tenant_id, customer_id)
        for raw in await self.redis.lrange(key, 0, HISTORY_MAX - 1):
            seen = ClosedConversation.from_json(raw)
            if seen is not None and (seen.conversation_id, seen.epoch) == (entry.conversation_id, entry.epoch):
                return 0
        # Not a transaction (a cluster pipeline need not support one): a list left one entry long is trimmed next time.
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(key, entry.to_json())
        pipe.ltrim(key, 0, HISTORY_MAX - 1)
        pipe.expire(key, HISTORY_TTL_S)
        await pipe.execute()
        return 1

    async def read(self, tenant_id: str, customer_id: str, limit: int = HISTORY_MAX) -> list[ClosedConversation]:
        """The customer's closed conversations with this shop, newest first."""
        if not customer_id:
            return []
        raws = await self.redis.lrange(self.keys.customer_history(tenant_id, customer_id), 0, limit - 1)
        return [entry for entry in map(ClosedConversation.from_json, raws) if entry is not None]
