"""Which conversation an e-mail belongs to, and how to reply into it (Redis).

Every Message-ID seen (the customer's and our agents' replies) points at its conversation for `thread_ttl_s`. A new
message joins the conversation of its own Message-ID (a redelivery), else of In-Reply-To, else of the most recent
References entry that is known. When none is known, the conversation id is derived from the thread's root
(first References entry, else In-Reply-To, else the message's own id), so two replies of one thread that arrive
before their parent still meet in one conversation, and a new thread opens a new conversation. A thread's ids
lead only the customer who wrote into the conversation there (see `conversation_for`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from switchboard.email.settings import DEV_CUSTOMER_KEY
from switchboard.runtime.pii import ContactSeal, keyed_id
from switchboard.runtime.redis_client import redis_unavailable_as_transient
from switchboard.state.keys import Keys

MAX_REFERENCES_KEPT = 20


def message_id_hash(message_id: str) -> str:
    """What `keys.email_thread` names a Message-ID (without brackets) by."""
    return hashlib.sha256(message_id.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Contact:
    """How an agent's reply reaches the customer: addresses, subject and the thread's ids."""

    customer_address: str
    shop_address: str
    subject: str
    last_message_id: str
    references: list[str]
    # The customer's language as detected from their mail (ISO 639-1: "zh", "en", "ja" ..., "" when unknown).
    language: str = ""


def thread_root(message_id: str, in_reply_to: str, references: list[str]) -> str:
    """The id that names a thread when none of its messages is known yet."""
    if references:
        return references[0]
    return in_reply_to or message_id


def _contact_fields(contact: Contact, seal: ContactSeal) -> dict[FieldT, EncodableT]:
    return {
        "customer_address": seal.seal(contact.customer_address),
        "shop_address": contact.shop_address,
        "subject": contact.subject,
        "last_message_id": contact.last_message_id,
        "references": " ".join(contact.references[-MAX_REFERENCES_KEPT:]),
        "language": contact.language,
    }


class ThreadBook:
    """Message-ID → conversation, and conversation → reply contact, per tenant.

    The contact's customer address is kept sealed with `seal` (never in the clear in Redis), and a conversation id
    made from a sender's address is a hash keyed with `id_key` (when given)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        ttl_s: int,
        seal: ContactSeal | None = None,
        id_key: bytes = b"",
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s
        self.seal = seal or ContactSeal(DEV_CUSTOMER_KEY)
        self.id_key = id_key

    async def conversation_for(
        self, tenant_id: str, sender: str, message_id: str, in_reply_to: str, references: list[str]
    ) -> str:
        """The conversation a message joins (see module doc); raises TransientError when Redis is down.

        Only the customer who wrote into a conversation may join it by its ids: anyone can copy a Message-ID
        into In-Reply-To, and joining would make agents' replies go to them. Another sender gets a conversation
        of their own (derived from sender and thread root, so their own replies still meet).
        """
        lookup = [m for m in (message_id, in_reply_to, *reversed(references)) if m]
        with redis_unavailable_as_transient():
            found = (
                await self.redis.mget([self.keys.email_thread(tenant_id, message_id_hash(m)) for m in lookup])
                if lookup
                else []
            )
            joined = next((_text(v) for v in found if v), None)
            if joined is not None:
                owner = await self.redis.hget(self.keys.email_contact(tenant_id, joined), "customer_address")
                if owner is None or self.seal.open(_text(owner)) == sender:
                    return joined
        root = thread_root(message_id, in_reply_to, references)
        return "email-" + keyed_id(self.id_key, tenant_id, "email", sender, root)

    async def remember(
        self, tenant_id: str, conversation_id: str, message_ids: list[str], contact: Contact | None = None
    ) -> None:
        """Point these Message-IDs at the conversation (an id pointing elsewhere keeps its conversation) and,
        given a contact, make it how replies into the conversation are addressed (the latest message wins).
        One round trip; raises TransientError when Redis is down."""
        with redis_unavailable_as_transient():
            async with self.redis.pipeline(transaction=False) as pipe:
                for mid in filter(None, message_ids):
                    pipe.set(
                        self.keys.email_thread(tenant_id, message_id_hash(mid)), conversation_id, nx=True, ex=self.ttl_s
                    )
                if contact is not None:
                    key = self.keys.email_contact(tenant_id, conversation_id)
                    pipe.hset(key, mapping=_contact_fields(contact, self.seal))
                    pipe.expire(key, self.ttl_s)
                await pipe.execute()

    async def contact(self, tenant_id: str, conversation_id: str) -> Contact | None:
        """How to reply into a conversation, or None when no e-mail of it was ever received."""
        with redis_unavailable_as_transient():
            raw = await self.redis.hgetall(self.keys.email_contact(tenant_id, conversation_id))
        if not raw:
            return None
        fields = {_text(k): _text(v) for k, v in raw.items()}
        return Contact(
            customer_address=self.seal.open(fields.get("customer_address", "")),
            shop_address=fields.get("shop_address", ""),
            subject=fields.get("subject", ""),
            last_message_id=fields.get("last_message_id", ""),
            references=fields.get("references", "").split(),
            language=fields.get("language", ""),
        )
