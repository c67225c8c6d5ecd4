"""What a waiting caller is told: an announcement (queue position, estimated wait, zh/en) in the answer to the
call's events, for the telephony side to play (TTS) while the caller holds.

Only while the tenant's surge profile in force has `customer_updates.phone`, and only for calls of the delivery
that are waiting: a call whose conversation the router queued gets its place in its group's phone queue and the
router's estimate for that queue (`state.waiting`); a call the router has not decided yet (the usual case for the
answer to `call.started`, which is given as soon as Kafka took the record) gets the tenant's phone queue — everyone
waiting on the phone ahead, and the longest of its groups' estimated waits — and nothing when no call waits (an
agent is most likely free). Calls answered or ended in the same delivery, or assigned, offered or closed by the
router, get none. An announcement is a hint: when Redis cannot be read the answer goes out without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.phone.adapter import ItemResult, results_json
from switchboard.phone.calls import CallStore
from switchboard.phone.wire import CallAnswered, CallEnded, Delivery, PhoneItem
from switchboard.runtime.errors import TransientError
from switchboard.runtime.logs import get_logger
from switchboard.state.keys import Keys
from switchboard.state.waiting import channel_queue, places_of, updates_on, wait_phrase

log = get_logger(__name__)


@dataclass(frozen=True)
class Announcement:
    """The text to play to one waiting caller, and what it says as figures."""

    call_id: str
    text: str
    lang: str
    position: int
    estimated_wait_s: int

    def json(self) -> dict[str, Any]:
        """As it appears in the answer's `announcements`."""
        return asdict(self)


def announcement_text(position: int, wait_s: int, lang: str) -> str:
    """The sentence to play: the place in the queue and the estimated wait."""
    phrase = wait_phrase(wait_s, lang)
    if lang == "zh":
        where = "您是下一位" if position <= 1 else f"您前面还有 {position - 1} 位顾客"
        return f"您好，目前咨询较多，{where}，预计等待{phrase}，请不要挂机。"
    where = "you are next in line" if position <= 1 else f"you are number {position} in the queue"
    return f"Thank you for calling. All our agents are busy: {where}. The estimated wait is {phrase}. Please hold."


class Announcer:
    """Builds the announcements of a delivery's waiting calls from the router's state."""

    def __init__(
        self, redis: Redis, keys: Keys, calls: CallStore, *, fallback_s_per_position: float, default_lang: str
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.calls = calls
        self.fallback_s_per_position = fallback_s_per_position
        self.default_lang = default_lang

    async def for_items(self, tenant_id: str, items: Sequence[PhoneItem]) -> list[Announcement]:
        """Announcements for the waiting calls among the items (empty when the profile does not ask for them)."""
        over = {item.call_id for item in items if isinstance(item, CallAnswered | CallEnded)}
        call_ids = [c for c in dict.fromkeys(item.call_id for item in items) if c not in over]
        if not call_ids:
            return []
        try:
            if not await updates_on(self.redis, self.keys, tenant_id, "phone"):
                return []
            return await self._waiting(tenant_id, call_ids)
        except (RedisError, TransientError, OSError) as exc:
            log.warning("phone_announcement_failed", tenant_id=tenant_id, error=repr(exc))
            return []

    async def _waiting(self, tenant_id: str, call_ids: list[str]) -> list[Announcement]:
        calls = [(c, await self.calls.get(tenant_id, c)) for c in call_ids]
        known = [(c, call) for c, call in calls if call is not None]
        conversations = [(tenant_id, call.conversation_id) for _, call in known]
        places = await places_of(self.redis, self.keys, conversations, self.fallback_s_per_position)
        unplaced = [conv for (_, conv), place in zip(conversations, places, strict=True) if place is None]
        undecided = await self._undecided(tenant_id, unplaced)
        queue = await channel_queue(self.redis, self.keys, tenant_id, "phone") if undecided else None
        out = []
        for (call_id, call), place in zip(known, places, strict=True):
            lang = call.language if call.language in ("zh", "en") else self._lang_of_other(call.language)
            if place is not None:
                position, wait = place.position, place.estimated_wait_s
            elif queue is not None and call.conversation_id in undecided and queue.waiting > 0:
                position, wait = queue.waiting + 1, queue.newcomer_wait_s
            else:
                continue
            out.append(Announcement(call_id, announcement_text(position, wait, lang), lang, position, wait))
        return out

    def _lang_of_other(self, language: str) -> str:
        # A caller in a third language hears English; one of unknown language the shop's default.
        return "en" if language else self.default_lang

    async def _undecided(self, tenant_id: str, conversation_ids: list[str]) -> set[str]:
        """Of these conversations, those the router has not decided on yet (no state, or `new`)."""
        if not conversation_ids:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for conv in conversation_ids:
            pipe.hget(self.keys.conversation(tenant_id, conv), "state")
        states = await pipe.execute()
        return {c for c, s in zip(conversation_ids, states, strict=True) if (s or b"") in (b"", b"new", "", "new")}


async def answer(
    announcer: Announcer, tenant_id: str, delivery: Delivery, results: Sequence[ItemResult]
) -> dict[str, Any]:
    """The acknowledgement both transports send: one result per item, and `announcements` when there are any."""
    body: dict[str, Any] = {"id": delivery.id, "results": results_json(results)}
    announcements = await announcer.for_items(tenant_id, delivery.items)
    if announcements:
        body["announcements"] = [a.json() for a in announcements]
    return body
