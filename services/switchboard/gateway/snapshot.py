"""The snapshot a desktop gets right after auth: its status, open conversations, pending offers, queue stats."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from redis.asyncio import Redis

from switchboard.contracts import DeskEvent
from switchboard.gateway.trim import read_view
from switchboard.gateway.view import DeskView, fold
from switchboard.state.keys import Keys
from switchboard.state.outbox import outbox_event, read_outbox
from switchboard.state.responses import read_conversation_responses

# Outbox entries read in the snapshot's one atomic round trip; a longer backlog is read page by page.
_ONE_READ = 1000


@dataclass(frozen=True)
class Snapshot:
    """A desk view as of `as_of_seq`; events with seq > as_of_seq follow on the socket."""

    frame: str
    as_of_seq: int
    resumed: bool


async def _view_through(redis: Redis, keys: Keys, tenant_id: str, agent_id: str, as_of: int) -> DeskView | None:
    """The stored view folded with outbox events up to `as_of`; None when a trim raced the read (retry)."""
    view = await read_view(redis, keys, tenant_id, agent_id)
    through_before = view.through_seq
    while view.through_seq < as_of:
        events = [e for e in await read_outbox(redis, keys, tenant_id, agent_id, view.through_seq) if e.seq <= as_of]
        if not events:
            break
        fold(view, events, keep_messages=1_000_000)
    stored = await redis.hget(keys.desk_view(tenant_id, agent_id), "through")
    if int(stored or 0) != through_before:
        return None
    return view


async def _read_atomically(
    redis: Redis, keys: Keys, tenant_id: str, agent_id: str
) -> tuple[int, DeskView, str, list[DeskEvent], bool]:
    """Seq counter, stored view, status and the outbox's first entries in one MULTI (no trim can come between)."""
    pipe = redis.pipeline(transaction=True)
    pipe.get(keys.desk_seq(tenant_id, agent_id))
    pipe.hget(keys.desk_view(tenant_id, agent_id), "view")
    pipe.hget(keys.agent(tenant_id, agent_id), "status")
    pipe.xrange(keys.desk_outbox(tenant_id, agent_id), min="-", max="+", count=_ONE_READ)
    seq, raw_view, status, entries = await pipe.execute()
    events = []
    for entry_id, fields in entries:
        events.append(outbox_event(entry_id, fields))
    status_text = status.decode() if isinstance(status, bytes) else (status or "offline")
    return int(seq or 0), DeskView.from_json(raw_view), status_text, events, len(entries) >= _ONE_READ


async def build_snapshot(
    redis: Redis,
    keys: Keys,
    tenant_id: str,
    agent_id: str,
    resume_after: int | None,
    keep_messages: int,
    session_epoch: int,
) -> Snapshot:
    """The snapshot frame; resumes at `resume_after` when the outbox still holds every event after it."""
    current, view, status, events, more = await _read_atomically(redis, keys, tenant_id, agent_id)
    resumed = resume_after is not None and view.through_seq <= resume_after <= current
    as_of = resume_after if resumed and resume_after is not None else current
    if more and events[-1].seq < as_of:
        # A long unread backlog: fold it page by page, re-checking that no trim raced the reads.
        slow = None
        for _ in range(5):
            slow = await _view_through(redis, keys, tenant_id, agent_id, as_of)
            if slow is not None:
                break
        view = slow or view
        if resumed and view.through_seq > as_of:
            resumed, as_of = False, current
            view = await _view_through(redis, keys, tenant_id, agent_id, as_of) or view
    else:
        fold(view, [e for e in events if e.seq <= as_of], keep_messages=1_000_000)
    await _drop_stale(redis, keys, tenant_id, agent_id, view)
    responses = await read_conversation_responses(redis, keys, tenant_id, list(view.conversations))
    frame = {
        "type": "snapshot",
        "tenant_id": tenant_id,
        "agent_id": agent_id,
        "session_epoch": session_epoch,
        "status": status,
        "as_of_seq": as_of,
        "last_seq": current,
        "resumed": resumed,
        # `answered_ms`: customer messages received up to then are answered (the desk's timer starts after it).
        "conversations": [
            {**_trimmed(asdict(c), keep_messages), "answered_ms": responses[conv].answered_ms}
            for conv, c in view.conversations.items()
        ],
        "offers": [asdict(o) for o in view.offers.values()],
        "queue_stats": view.queue_stats,
    }
    return Snapshot(json.dumps(frame, ensure_ascii=False, separators=(",", ":")), as_of, resumed)


def _trimmed(conversation: dict[str, object], keep: int) -> dict[str, object]:
    messages = conversation.get("messages")
    if isinstance(messages, list):
        conversation["messages"] = messages[-keep:]
    return conversation


async def _drop_stale(redis: Redis, keys: Keys, tenant_id: str, agent_id: str, view: DeskView) -> None:
    """Leave out conversations the router says are owned by someone else or closed, and offers past deadline."""
    now_ms = int(time.time() * 1000)
    for conv, offer in list(view.offers.items()):
        if offer.offer_deadline_ms and offer.offer_deadline_ms < now_ms:
            del view.offers[conv]
    if not view.conversations:
        return
    pipe = redis.pipeline(transaction=False)
    for conv in view.conversations:
        pipe.hmget(keys.conversation(tenant_id, conv), ["owner", "state"])
    for conv, (owner, state) in zip(list(view.conversations), await pipe.execute(), strict=True):
        if owner is None and state is None:
            continue  # no conversation hash (yet): trust the events
        if (owner or b"").decode() != agent_id or state == b"closed":
            del view.conversations[conv]
