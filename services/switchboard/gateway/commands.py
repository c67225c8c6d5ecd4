"""Client commands: checked against the agent's tenant and ownership in Redis, then sent on as records.

Every key is built from the tenant in the agent's token, never from the frame, so a conversation id of another
shop names a key that does not exist: an agent of shop A can neither read nor act on shop B's conversations.
What agents write (replies, transfer notes, reasons) is PII-masked before it reaches a topic or Redis, as
customers' text is (runtime/pii.py): an agent who repeats a customer's phone number sends it masked.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import asdict

from redis.asyncio import Redis

from switchboard.contracts import AgentCommand, AgentCommandType, Channel, MessageKind, OutboundMessage
from switchboard.gateway.metrics import COMMANDS
from switchboard.gateway.protocol import CONVERSATION_COMMANDS, Command, FrameError
from switchboard.gateway.responses import RepliedTo, ResponseRecorder, ResponseTargets
from switchboard.gateway.session import DeskSession
from switchboard.routing.commands import (
    ConversationView,
    command_refusal,
    transfer_group_refusal,
    transfer_refusal,
)
from switchboard.runtime.kafka import RecordProducer, now_timestamp
from switchboard.runtime.pii import mask_pii
from switchboard.runtime.topics import Topics
from switchboard.state.history import CustomerHistory
from switchboard.state.keys import Keys
from switchboard.state.responses import read_conversation_responses

# A transfer note waits this long for the next owner to open the conversation.
TRANSFER_NOTE_TTL_S = 7 * 24 * 3600

_CHANNELS = {"chat": Channel.CHANNEL_CHAT, "email": Channel.CHANNEL_EMAIL, "phone": Channel.CHANNEL_PHONE}


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return value or ""


def command_id(session: DeskSession, cmd: Command) -> str:
    """The idempotency id of a command: the same client `id` resent (after a reconnect) gives the same id.

    The epoch the command acts under is part of it: a resend carries the same epoch, while a client that gives
    the same `id` to an accept of a later offer of the conversation (a new epoch) gets that accept applied, not
    the answer to its earlier one (docs/desktop-protocol.md §6). Without an epoch (a reply's message id, a status
    change) the id is what it always was, so a reply resent across an upgrade keeps its message id."""
    if not cmd.ref:
        return uuid.uuid4().hex
    parts = [session.tenant_id, session.agent_id, cmd.type, cmd.conversation_id]
    if cmd.epoch:
        parts.append(str(cmd.epoch))
    raw = "\x00".join([*parts, cmd.ref])
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


# The routing policy's reasons, as the desktop protocol's error codes (docs/desktop-protocol.md).
_ERRORS = {
    "not_found": ("not_found", "no such conversation"),
    "not_offered": ("not_offered", "this conversation is not offered to you"),
    "not_owner": ("not_owner", "you do not own this conversation"),
    "stale_session": ("stale_session", "a newer desktop session of yours exists"),
}


def check_conversation(agent_id: str, cmd: Command, conv: ConversationView) -> int:
    """The epoch the command acts under, or FrameError when this agent may not do it (the routing policy's rules,
    routing/commands.py, which the router applies too)."""
    kind = "close" if cmd.type in ("reply", "typing") else cmd.type
    why = command_refusal(kind, agent_id, conv, epoch=cmd.epoch)
    if why == "not_offered" and cmd.type == "accept" and conv.owner == agent_id and conv.state == "assigned":
        return conv.epoch  # accepted already (a resend): the router ignores the duplicate
    if why == "stale_epoch":
        raise FrameError("stale_epoch", f"the conversation is at epoch {conv.epoch}", cmd.ref)
    if why is not None:
        code, text = _ERRORS.get(why, (why, why))
        raise FrameError(code, text, cmd.ref)
    return conv.epoch


class DeskCommands:
    """Turns checked client commands into AgentCommand and OutboundMessage records."""

    def __init__(self, redis: Redis, keys: Keys, producer: RecordProducer, topics: Topics) -> None:
        self.redis = redis
        self.keys = keys
        self.producer = producer
        self.topics = topics
        # Counts replies as responses (set by the service; None: replies are not timed).
        self.responses: ResponseRecorder | None = None
        # The tenants' routing configs (set by the service): a transfer to a group that does not take the
        # conversation's channel is refused here with a clear code, as the router would refuse it.
        self.routing: ResponseTargets | None = None

    async def conversation(self, tenant_id: str, conversation_id: str) -> ConversationView:
        """Read the conversation hash of this tenant."""
        fields = ConversationView.FIELDS
        values = await self.redis.hmget(self.keys.conversation(tenant_id, conversation_id), fields)
        return ConversationView.of(conversation_id, dict(zip(fields, (_text(v) for v in values), strict=True)))

    async def act(self, session: DeskSession, cmd: Command) -> int:
        """accept / decline / close / transfer: an AgentCommand on the commands topic; returns its epoch."""
        conv = await self.conversation(session.tenant_id, cmd.conversation_id)
        epoch = check_conversation(session.agent_id, cmd, conv)
        record = AgentCommand(
            command_id=command_id(session, cmd),
            tenant_id=session.tenant_id,
            agent_id=session.agent_id,
            conversation_id=cmd.conversation_id,
            type=CONVERSATION_COMMANDS[cmd.type],
            epoch=epoch,
            reason=mask_pii(cmd.reason),
            wrap_up_code=cmd.wrap_up_code,
            transfer_to_agent=cmd.to_agent,
            transfer_to_group=cmd.to_group,
            at=now_timestamp(),
            session_epoch=session.session_epoch,
            note=mask_pii(cmd.note),
        )
        if record.type == AgentCommandType.AGENT_COMMAND_TRANSFER and transfer_refusal(session.agent_id, cmd.to_agent):
            raise FrameError("bad_field", "cannot transfer a conversation to yourself", cmd.ref)
        if record.type == AgentCommandType.AGENT_COMMAND_TRANSFER and cmd.to_group:
            self._check_group(session.tenant_id, cmd, conv)
        if record.type == AgentCommandType.AGENT_COMMAND_TRANSFER:
            await self._keep_note(session, cmd.conversation_id, record.note)
        await self.producer.send(self.topics.commands, cmd.conversation_id, record)
        COMMANDS.labels(cmd.type, "sent").inc()
        return epoch

    def _check_group(self, tenant_id: str, cmd: Command, conv: ConversationView) -> None:
        """A transfer to a group of the shop's routing config that does not take the conversation's channel is
        refused (`wrong_channel`); a tenant or group the gateway does not know is left to the router."""
        if self.routing is None or not conv.channel:
            return
        self.routing.refresh()
        config = self.routing.configs.get(tenant_id)
        group = next((g for g in config.skill_groups if g.name == cmd.to_group), None) if config else None
        if group is not None and transfer_group_refusal(group, conv.channel):
            detail = f"{cmd.to_group} does not take {conv.channel} conversations"
            raise FrameError("wrong_channel", detail, cmd.ref)

    async def reply(self, session: DeskSession, cmd: Command) -> str:
        """An OutboundMessage, only from the current owner at the current epoch; returns its message id."""
        conv = await self.conversation(session.tenant_id, cmd.conversation_id)
        check_conversation(session.agent_id, cmd, conv)
        if cmd.epoch != conv.epoch:
            raise FrameError("stale_epoch", f"the conversation is at epoch {conv.epoch}", cmd.ref)
        source = cmd.client_message_id or cmd.ref
        message_id = command_id(session, Command("reply", source, cmd.conversation_id)) if source else uuid.uuid4().hex
        record = OutboundMessage(
            message_id=message_id,
            tenant_id=session.tenant_id,
            conversation_id=cmd.conversation_id,
            channel=_channel(conv.channel),
            agent_id=session.agent_id,
            epoch=conv.epoch,
            sent_at=now_timestamp(),
            kind=MessageKind.MESSAGE_KIND_TEXT,
            text=mask_pii(cmd.text),
            customer_id=conv.customer_id,
        )
        await self.producer.send(self.topics.outbound, cmd.conversation_id, record)
        COMMANDS.labels("reply", "sent").inc()
        if self.responses is not None:
            # Counted only once the reply is on the broker; a resend after an error here counts it then, once.
            to = RepliedTo(
                session.tenant_id,
                conv.conversation_id,
                session.agent_id,
                conv.epoch,
                record.channel,
                conv.served_group or conv.group,
                conv.enqueued_ms,
            )
            await self.responses.replied(to, message_id, record.sent_at.ToMilliseconds())
        return message_id

    async def typing(self, session: DeskSession, cmd: Command) -> bool:
        """A typing indicator of the owner: an OutboundMessage of kind TYPING for a chat conversation (the chat
        adapter shows it in the customer's widget); other channels have nowhere to show it. True when forwarded."""
        conv = await self.conversation(session.tenant_id, cmd.conversation_id)
        check_conversation(session.agent_id, cmd, conv)
        if _channel(conv.channel) != Channel.CHANNEL_CHAT:
            return False
        record = OutboundMessage(
            message_id=uuid.uuid4().hex,
            tenant_id=session.tenant_id,
            conversation_id=cmd.conversation_id,
            channel=Channel.CHANNEL_CHAT,
            agent_id=session.agent_id,
            epoch=conv.epoch,
            sent_at=now_timestamp(),
            kind=MessageKind.MESSAGE_KIND_TYPING,
            customer_id=conv.customer_id,
        )
        await self.producer.send(self.topics.outbound, cmd.conversation_id, record)
        return True

    async def _keep_note(self, session: DeskSession, conversation_id: str, text: str) -> None:
        """Keep the (masked) transfer note for whoever owns the conversation next (the router never sees it)."""
        key = self.keys.transfer_note(session.tenant_id, conversation_id)
        if not text:
            await self.redis.delete(key)
            return
        note = {"from_agent": session.agent_id, "note": text, "at_ms": int(time.time() * 1000)}
        await self.redis.set(key, json.dumps(note, ensure_ascii=False), ex=TRANSFER_NOTE_TTL_S)

    async def context(self, session: DeskSession, cmd: Command) -> dict[str, object]:
        """What the desk shows beside a conversation the agent owns or is offered: the customer's earlier
        conversations with this shop and the note of the agent who transferred it here."""
        conv = await self.conversation(session.tenant_id, cmd.conversation_id)
        if not conv.exists:
            raise FrameError("not_found", "no such conversation", cmd.ref)
        if session.agent_id not in (conv.owner, conv.offer_agent):
            raise FrameError("not_owner", "you do not own this conversation", cmd.ref)
        return await conversation_context(self.redis, self.keys, session.tenant_id, cmd.conversation_id, conv)


def _channel(value: str) -> Channel.ValueType:
    if value.isdigit():
        return Channel.ValueType(int(value))
    return _CHANNELS.get(value.lower(), Channel.CHANNEL_UNSPECIFIED)


async def conversation_context(
    redis: Redis, keys: Keys, tenant_id: str, conversation_id: str, conv: ConversationView
) -> dict[str, object]:
    """History, transfer note and responses so far of one conversation of `tenant_id` (shared by the desk and the
    board)."""
    history = await CustomerHistory(redis, keys).read(tenant_id, conv.customer_id)
    raw_note = await redis.get(keys.transfer_note(tenant_id, conversation_id))
    responses = await read_conversation_responses(redis, keys, tenant_id, [conversation_id])
    return {
        "conversation_id": conversation_id,
        "customer_id": conv.customer_id,
        "history": [asdict(h) for h in history if h.conversation_id != conversation_id],
        "transfer_note": json.loads(raw_note) if raw_note else None,
        "responses": responses[conversation_id].as_dict(),
    }
