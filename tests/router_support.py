"""Router test support: agents set up as presence would, messages, and docs/invariants.md checked on Redis state.

Until the presence service runs in a test, the test writes the presence-owned fields of the agent hash itself
(docs/state.md): status, groups, cap:<channel>, multiplier, status_since_ms, session_epoch, and the group and
tenant agent sets.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer
from redis.asyncio import Redis

from switchboard.contracts import (
    TYPE_HEADER,
    AgentPresence,
    AgentStatus,
    Channel,
    ChannelCapacity,
    CommerceContext,
    Customer,
    DeskEvent,
    DeskEventType,
    InboundMessage,
    decode,
)
from switchboard.routing.config import CHANNELS, TenantRouting
from switchboard.routing.exclusion import excluded_now
from switchboard.routing.skills import DEFAULT_LEVEL, language_relax_after_s, min_level
from switchboard.state.keys import Keys
from switchboard.state.outbox import read_outbox

CHANNEL_OF = {"chat": Channel.CHANNEL_CHAT, "email": Channel.CHANNEL_EMAIL, "phone": Channel.CHANNEL_PHONE}
STATUS_OF = {
    "available": AgentStatus.AGENT_STATUS_AVAILABLE,
    "busy": AgentStatus.AGENT_STATUS_BUSY,
    "away": AgentStatus.AGENT_STATUS_AWAY,
    "offline": AgentStatus.AGENT_STATUS_OFFLINE,
}


def now_ms() -> int:
    """Wall-clock milliseconds."""
    return int(time.time() * 1000)


async def put_agent(
    redis: Redis,
    keys: Keys,
    tenant: str,
    agent: str,
    groups: list[str],
    *,
    chat: int = 3,
    email: int = 5,
    phone: int = 1,
    status: str = "available",
    multiplier: float = 1.0,
    since_ms: int | None = None,
    languages: str = "zh,en",
    proficiency: str = "",
) -> None:
    """Write an agent as presence would (its own fields only; the router's used:* fields are left alone);
    `proficiency` as presence writes it ("complaints:5,orders:2"), left out when empty."""
    if proficiency:
        await redis.hset(keys.agent(tenant, agent), "proficiency", proficiency)
    await redis.hset(
        keys.agent(tenant, agent),
        mapping={
            "status": status,
            "session_epoch": 1,
            "groups": ",".join(groups),
            "languages": languages,
            "cap:chat": chat,
            "cap:email": email,
            "cap:phone": phone,
            "multiplier": multiplier,
            "status_since_ms": since_ms if since_ms is not None else now_ms(),
            "last_heartbeat_ms": now_ms(),
        },
    )
    await redis.sadd(keys.tenant_agents(tenant), agent)
    for group in groups:
        await redis.sadd(keys.group_agents(tenant, group), agent)


async def set_status(
    redis: Redis, keys: Keys, tenant: str, agent: str, status: str, *, since_ms: int | None = None
) -> None:
    """Change an agent's status as presence would."""
    await redis.hset(
        keys.agent(tenant, agent),
        mapping={"status": status, "status_since_ms": since_ms if since_ms is not None else now_ms()},
    )


def presence_record(tenant: str, agent: str, status: str, groups: list[str], multiplier: float = 1.0) -> AgentPresence:
    """The AgentPresence record presence publishes after such a change."""
    record = AgentPresence(
        tenant_id=tenant,
        agent_id=agent,
        status=STATUS_OF[status],
        session_epoch=1,
        skill_groups=groups,
        changed_by="agent",
        capacity_multiplier=multiplier,
    )
    record.capacity.append(ChannelCapacity(channel=Channel.CHANNEL_CHAT, slots=3))
    record.changed_at.GetCurrentTime()
    return record


def message(
    tenant: str,
    conv: str,
    mid: str,
    text: str = "你好",
    *,
    channel: str = "chat",
    customer: str = "",
    tier: str = "",
    order_status: str = "",
    dispute_stage: str = "",
    language: str = "zh",
) -> InboundMessage:
    """An inbound customer message as an adapter would write it."""
    m = InboundMessage(
        message_id=mid,
        tenant_id=tenant,
        conversation_id=conv,
        channel=CHANNEL_OF[channel],
        text=text,
        language=language,
        customer=Customer(customer_id=customer or f"cust-{conv}", member_tier=tier),
        commerce=CommerceContext(order_status=order_status, dispute_stage=dispute_stage, platform="tmall"),
    )
    m.received_at.GetCurrentTime()
    return m


async def outbox(redis: Redis, keys: Keys, tenant: str, agent: str) -> list[DeskEvent]:
    """Every event of an agent's desk outbox."""
    events: list[DeskEvent] = []
    while True:
        batch = await read_outbox(redis, keys, tenant, agent, events[-1].seq if events else 0, count=1000)
        if not batch:
            return events
        events.extend(batch)


@dataclass
class TenantState:
    """Everything routing-related of one tenant, read from Redis."""

    agents: dict[str, dict[str, str]] = field(default_factory=dict)
    agent_convs: dict[str, set[str]] = field(default_factory=dict)
    convs: dict[str, dict[str, str]] = field(default_factory=dict)
    queues: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    backlogs: dict[str, list[str]] = field(default_factory=dict)
    outboxes: dict[str, list[DeskEvent]] = field(default_factory=dict)


def _s(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


async def read_state(redis: Redis, keys: Keys, config: TenantRouting, conv_ids: set[str]) -> TenantState:
    """Read agents, conversations, queues, backlogs and outboxes of one tenant."""
    tenant = config.tenant
    state = TenantState()
    for raw in await redis.smembers(keys.tenant_agents(tenant)):
        agent = raw.decode()
        state.agents[agent] = _s(await redis.hgetall(keys.agent(tenant, agent)))
        state.agent_convs[agent] = {c.decode() for c in await redis.smembers(keys.agent_conversations(tenant, agent))}
        state.outboxes[agent] = await outbox(redis, keys, tenant, agent)
    for conv in conv_ids:
        fields = _s(await redis.hgetall(keys.conversation(tenant, conv)))
        if fields:
            state.convs[conv] = fields
            backlog = await redis.lrange(keys.conversation_backlog(tenant, conv), 0, -1)
            state.backlogs[conv] = [InboundMessage.FromString(b).message_id for b in backlog]
    for group in config.skill_groups:
        for ch in CHANNELS:
            members = await redis.zrange(keys.queue_channel(tenant, group.name, ch), 0, -1)
            state.queues[(group.name, ch)] = [m.decode() for m in members]
    return state


def _eligible(agent: dict[str, str], conv: dict[str, str], group: str, config: TenantRouting, now: int) -> bool:
    """The agent meets what the group asks for the conversation now (docs/routing.md, "Skills"): the group takes
    its channel, the agent's level is at the ring in force for its wait, and it speaks its language when the group
    lists that language and the wait has not relaxed it."""
    skill = config.group(group)
    if conv.get("channel") not in skill.channels:
        return False
    waited_s = (now - int(float(conv.get("enqueued_ms") or now))) / 1000
    levels = dict(entry.split(":") for entry in agent.get("proficiency", "").split(",") if ":" in entry)
    if int(levels.get(group, DEFAULT_LEVEL)) < min_level(skill, waited_s):
        return False
    lang = conv.get("lang", "")
    relax = language_relax_after_s(config, skill)
    if lang in skill.languages and (relax is None or waited_s < relax):
        spoken = {code for code in agent.get("languages", "").split(",") if code} or set(skill.languages)
        return lang in spoken
    return True


def _fits(agent: dict[str, str], ch: str, group: str, config: TenantRouting) -> bool:
    if agent.get("status") != "available" or group not in agent.get("groups", "").split(","):
        return False
    mult = float(agent.get("multiplier") or 1) or 1.0
    if int(agent.get(f"used:{ch}") or 0) + 1 > math.floor(int(agent.get(f"cap:{ch}") or 0) * mult):
        return False
    if config.capacity.phone_blocks_other_work and ch != "phone" and int(agent.get("used:phone") or 0) > 0:
        return False
    if config.capacity.mode == "units":
        weights: dict[str, int] = {str(k): v for k, v in config.capacity.unit_weights.items()}
        in_use = sum(int(agent.get(f"used:{c}") or 0) * weights.get(c, 1) for c in CHANNELS)
        return in_use + weights.get(ch, 1) <= math.floor(config.capacity.units_per_agent * mult)
    return True


def check_invariants(
    state: TenantState,
    config: TenantRouting,
    sent: dict[str, list[str]],
    *,
    check_capacity: bool = True,
    now_ms: int | None = None,
) -> None:
    """Assert invariants 1-6 of docs/invariants.md over one tenant's state; `sent`: each conversation's message ids.

    `now_ms` is the router's clock: an agent who declined or missed a conversation's offer is passed over for it
    only until their back-off ends then (None: wall-clock time).
    """
    holders = _check_capacity(state, check_capacity)
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    for conv, fields in state.convs.items():
        _check_conversation(state, config, conv, fields, holders, now)
    _check_delivery(state, config, sent)


def _check_capacity(state: TenantState, check_capacity: bool) -> Counter[str]:
    """Load counters match what each agent holds, and never exceed capacity."""
    holders: Counter[str] = Counter()
    for agent, convs in state.agent_convs.items():
        fields = state.agents[agent]
        for ch in CHANNELS:
            mine = [c for c in convs if state.convs.get(c, {}).get("channel") == ch]
            used = int(fields.get(f"used:{ch}") or 0)
            assert used == len(mine), f"{agent} used:{ch}={used} but holds {sorted(mine)}"
            if check_capacity:
                cap = math.floor(int(fields.get(f"cap:{ch}") or 0) * (float(fields.get("multiplier") or 1) or 1.0))
                assert used <= cap, f"{agent} over capacity on {ch}: {used} > {cap}"
        holders.update(convs)
    return holders


def _check_conversation(
    state: TenantState, config: TenantRouting, conv: str, fields: dict[str, str], holders: Counter[str], now: int
) -> None:
    """One owner (or offered agent) at most, queues consistent, and nothing waits while an eligible agent has room."""
    st, owner, offered = fields.get("state"), fields.get("owner", ""), fields.get("offer_agent", "")
    assert st in ("queued", "offered", "assigned", "closed", "abandoned"), f"{conv} in state {st}"
    holder = owner if st == "assigned" else offered if st == "offered" else ""
    if holder:
        assert conv in state.agent_convs.get(holder, set()), f"{conv} owned by {holder} who does not hold it"
        assert holders[conv] == 1, f"{conv} held by {holders[conv]} agents"
    else:
        assert holders[conv] == 0, f"{conv} ({st}) still holds an agent's capacity"
    in_queues = {g for (g, _), members in state.queues.items() if conv in members}
    if st != "queued":
        assert not in_queues, f"{conv} ({st}) still in queues {in_queues}"
        return
    expected = set(fields.get("queues", "").split(","))
    assert in_queues == expected, f"{conv} queued in {in_queues}, expected {expected}"
    # Passed over only while their back-off lasts: after it, a queued conversation must not wait for them.
    declined = excluded_now(fields.get("declined", ""), now)
    for group in in_queues:
        for agent, afields in state.agents.items():
            if (
                agent not in declined
                and _fits(afields, fields["channel"], group, config)
                and _eligible(afields, fields, group, config, now)
            ):
                raise AssertionError(
                    f"{conv} waits in {group} while {agent} has room (not work-conserving; "
                    f"declined={fields.get('declined', '')!r} now={now})"
                )


def _check_delivery(state: TenantState, config: TenantRouting, sent: dict[str, list[str]]) -> None:
    """The owner has the whole conversation: under the current ownership epoch their desk got every message of it
    once, in order (the ASSIGNED and what followed), however often it was requeued, timed out or transferred.
    A queued, offered or abandoned conversation holds every message in its backlog for the next owner; a closed one
    reached an owner. No desk gets a message twice under one epoch, or out of order.
    """
    got: dict[tuple[str, str, int], list[str]] = {}
    kinds = (DeskEventType.DESK_EVENT_ASSIGNED, DeskEventType.DESK_EVENT_MESSAGE)
    for agent, events in state.outboxes.items():
        for event in events:
            assert event.tenant_id == config.tenant and event.agent_id == agent, "desk event of another tenant/agent"
            if event.type in kinds and event.message.message_id:
                got.setdefault((agent, event.conversation_id, event.epoch), []).append(event.message.message_id)
    for (agent, conv, epoch), seen in got.items():
        mids = sent.get(conv, [])
        assert len(seen) == len(set(seen)), f"{conv}: {agent} got a message twice under epoch {epoch}: {seen}"
        assert seen == [m for m in mids if m in seen], f"{conv} out of order on {agent}'s desk: {seen} vs {mids}"
    for conv, mids in sent.items():
        fields = state.convs.get(conv, {})
        st = fields.get("state")
        if st == "assigned":
            owner, epoch = fields["owner"], int(fields["epoch"])
            mine = got.get((owner, conv, epoch), [])
            assert mine == mids, f"{conv}: owner {owner} (epoch {epoch}) has {mine}, the customer sent {mids}"
        elif st in ("queued", "offered", "abandoned"):
            # An abandoned conversation keeps them too, for when its customer comes back and writes again.
            held = state.backlogs.get(conv, [])
            assert held == mids, f"{conv} ({st}) holds {held} for its next owner, the customer sent {mids}"
        elif st == "closed":
            reached = {m for (_, c, _), seen in got.items() if c == conv for m in seen}
            assert set(mids) <= reached, f"{conv} closed without {sorted(set(mids) - reached)} reaching an owner"


async def presence_backlog(consumer: AIOKafkaConsumer) -> list[AgentPresence]:
    """Every presence record on the consumer's partitions up to their current end, not yet read."""
    partitions = list(consumer.assignment())
    ends = await consumer.end_offsets(partitions)
    records: list[AgentPresence] = []
    while [p for p in partitions if await consumer.position(p) < ends[p]]:
        for batch in (await consumer.getmany(timeout_ms=200)).values():
            for r in batch:
                headers = {k: v.decode() for k, v in r.headers}
                record = decode(headers.get(TYPE_HEADER), r.value)
                assert isinstance(record, AgentPresence)
                records.append(record)
    return records
