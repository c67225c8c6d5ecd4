"""Call state in Redis (`keys.phone_call`): written at call start, read by every later item of the call.

Fields: conversation_id, customer_id, caller_masked, dialled_number, language, ivr_choice, member_tier and
tier_source (the caller's, looked up at call start), state (started / answered / ended), next_seq (the lowest
final segment seq not yet written). The caller's number is stored masked only.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, replace

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from switchboard.phone.records import CallState
from switchboard.runtime.lua import LuaScript
from switchboard.runtime.redis_client import redis_unavailable_as_transient
from switchboard.state.keys import Keys

RAISE_NEXT_SEQ = LuaScript.load(__file__, "raise_next_seq")

FIRST_SEQ = 1
RECENT_CALLS = 20_000


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class CallStore:
    """Reads and writes call state; Redis errors surface as TransientError (the sender retries later).

    What a call is (conversation, customer, numbers, language) never changes after its start, so recent calls are
    also kept in memory: a segment then costs no Redis read. Only `ivr_choice` may change (on this replica, which
    updates its copy; another replica's copy may show the previous choice on later lifecycle events).
    """

    def __init__(self, redis: Redis, keys: Keys, ttl_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s
        self._recent: OrderedDict[tuple[str, str], CallState] = OrderedDict()

    def _remember(self, tenant_id: str, call_id: str, call: CallState) -> None:
        self._recent[(tenant_id, call_id)] = call
        self._recent.move_to_end((tenant_id, call_id))
        while len(self._recent) > RECENT_CALLS:
            self._recent.popitem(last=False)

    async def start(self, tenant_id: str, call_id: str, call: CallState) -> None:
        """Remember a call (a resent started event writes the same values again)."""
        key = self.keys.phone_call(tenant_id, call_id)
        with redis_unavailable_as_transient():
            async with self.redis.pipeline(transaction=True) as pipe:
                fields: dict[FieldT, EncodableT] = {k: v for k, v in asdict(call).items()}
                fields["state"] = "started"
                pipe.hset(key, mapping=fields)
                pipe.hsetnx(key, "next_seq", FIRST_SEQ)
                pipe.expire(key, self.ttl_s)
                await pipe.execute()
        self._remember(tenant_id, call_id, call)

    async def get(self, tenant_id: str, call_id: str) -> CallState | None:
        """The call's state, or None for a call this tenant never started."""
        known = self._recent.get((tenant_id, call_id))
        if known is not None:
            return known
        with redis_unavailable_as_transient():
            fields = await self.redis.hgetall(self.keys.phone_call(tenant_id, call_id))
        if not fields:
            return None
        text = {_text(k): _text(v) for k, v in fields.items()}
        call = CallState(
            conversation_id=text.get("conversation_id", ""),
            customer_id=text.get("customer_id", ""),
            caller_masked=text.get("caller_masked", ""),
            dialled_number=text.get("dialled_number", ""),
            language=text.get("language", ""),
            ivr_choice=text.get("ivr_choice", ""),
            member_tier=text.get("member_tier", ""),
            tier_source=text.get("tier_source", ""),
        )
        self._remember(tenant_id, call_id, call)
        return call

    async def update(self, tenant_id: str, call_id: str, **changes: str) -> None:
        """Set some fields (state, ivr_choice) and refresh the TTL."""
        key = self.keys.phone_call(tenant_id, call_id)
        fields: dict[FieldT, EncodableT] = {k: v for k, v in changes.items()}
        known = self._recent.get((tenant_id, call_id))
        if known is not None and "ivr_choice" in changes:
            self._recent[(tenant_id, call_id)] = replace(known, ivr_choice=changes["ivr_choice"])
        with redis_unavailable_as_transient():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=fields)
                pipe.expire(key, self.ttl_s)
                await pipe.execute()

    async def next_seq(self, tenant_id: str, call_id: str) -> int:
        """The lowest final segment seq of the call not yet written."""
        with redis_unavailable_as_transient():
            value = await self.redis.hget(self.keys.phone_call(tenant_id, call_id), "next_seq")
        return int(value) if value is not None else FIRST_SEQ

    async def advance(self, tenant_id: str, call_id: str, next_seq: int) -> None:
        """Record that every final segment below `next_seq` was written (or skipped)."""
        with redis_unavailable_as_transient():
            await RAISE_NEXT_SEQ(
                self.redis, keys=[self.keys.phone_call(tenant_id, call_id)], args=[next_seq, self.ttl_s]
            )
