"""Redis key formats: the one place that knows them.

Every key of a tenant carries the tenant in a hash tag (`{tenant}`), so on Redis Cluster all of a tenant's keys
live in one slot and a Lua script may touch several of them atomically; keys of different tenants never share a
prefix, which is what keeps tenants apart in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key builder for one deployment (the prefix separates deployments and tests sharing a Redis)."""

    prefix: str = "sb"

    def _tenant(self, tenant_id: str, *parts: str) -> str:
        if not tenant_id or "}" in tenant_id or "{" in tenant_id:
            raise ValueError(f"invalid tenant id {tenant_id!r}")
        return ":".join((self.prefix, "{" + tenant_id + "}", *parts))

    def service_health(self, service: str, instance: str) -> str:
        """A service instance's heartbeat key (with a TTL): present means alive."""
        return f"{self.prefix}:health:{service}:{instance}"

    def processed(self, tenant_id: str, consumer: str, message_id: str) -> str:
        """Marks one record as processed by one consumer, so a redelivery changes nothing twice."""
        return self._tenant(tenant_id, "processed", consumer, message_id)

    def agent(self, tenant_id: str, agent_id: str) -> str:
        """Hash: an agent's status, session epoch, skills, capacity and load per channel."""
        return self._tenant(tenant_id, "agent", agent_id)

    def group_agents(self, tenant_id: str, group: str) -> str:
        """Set: agents of a skill group."""
        return self._tenant(tenant_id, "group", group, "agents")

    def queue(self, tenant_id: str, group: str) -> str:
        """Sorted set: conversations waiting for a skill group, by score."""
        return self._tenant(tenant_id, "queue", group)

    def routing_unsent(self, tenant_id: str) -> str:
        """Sorted set: decisions of the router's sweep and presence scripts (JSON) not yet on the routing topic,
        by time; removed once sent, re-sent by a later sweep if the sender died (router)."""
        return self._tenant(tenant_id, "routing", "unsent")

    def group_capacity_version(self, tenant_id: str, group: str) -> str:
        """Counter: bumped whenever capacity may have grown in a group (router), so a claim can tell its snapshot
        is still current and skip re-checking every agent before queueing."""
        return self._tenant(tenant_id, "group", group, "capver")

    def queue_channel(self, tenant_id: str, group: str, channel: str) -> str:
        """Sorted set: conversations of one channel waiting for a skill group (router), lowest score first."""
        return self._tenant(tenant_id, "queue", f"{group}:{channel}")

    def conversation_backlog(self, tenant_id: str, conversation_id: str) -> str:
        """List: customer messages of a queued or offered conversation, held until an owner takes it (router)."""
        return self._tenant(tenant_id, "conv", conversation_id, "backlog")

    def agent_conversations(self, tenant_id: str, agent_id: str) -> str:
        """Set: conversations an agent owns or was offered, i.e. what holds its capacity (router)."""
        return self._tenant(tenant_id, "agent", agent_id, "conversations")

    def bot_holds(self, tenant_id: str) -> str:
        """Conversations the bot holds while it looks their order up, by deadline (the sweep routes late ones)."""
        return self._tenant(tenant_id, "bot", "holds")

    def offers(self, tenant_id: str) -> str:
        """Sorted set: offered conversations by offer deadline (ms), swept for timeouts (router)."""
        return self._tenant(tenant_id, "offers")

    def conversation(self, tenant_id: str, conversation_id: str) -> str:
        """Hash: a conversation's owner, epoch, group, channel, priority and enqueue time."""
        return self._tenant(tenant_id, "conv", conversation_id)

    def returning_customer(self, tenant_id: str, customer_id: str) -> str:
        """String with a TTL: the agent who last served a customer (熟客优先)."""
        return self._tenant(tenant_id, "customer", customer_id, "last_agent")

    def heartbeats(self, tenant_id: str) -> str:
        """Sorted set: agents by the time of their last heartbeat, swept for lost agents."""
        return self._tenant(tenant_id, "heartbeats")

    def idempotency(self, tenant_id: str, channel: str, provider_id: str) -> str:
        """String with a TTL: a provider's message id already accepted by an adapter."""
        return self._tenant(tenant_id, "seen", channel, provider_id)

    def desk_outbox(self, tenant_id: str, agent_id: str) -> str:
        """Stream: an agent's DeskEvents in delivery order (entry field `e` = serialized DeskEvent, `seq`)."""
        return self._tenant(tenant_id, "desk", agent_id)

    def desk_seq(self, tenant_id: str, agent_id: str) -> str:
        """Counter: the last DeskEvent seq given to an agent (INCR in the script that appends to the outbox)."""
        return self._tenant(tenant_id, "desk", agent_id, "seq")

    def desk_notify(self, tenant_id: str) -> str:
        """Pub/sub channel: "agent_id seq" published after an append, so gateways read outboxes without polling."""
        return self._tenant(tenant_id, "desk-notify")

    def desk_notify_pattern(self) -> str:
        """PSUBSCRIBE pattern matching every tenant's desk-notify channel (one subscription per gateway replica)."""
        escaped = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix)
        return escaped + ":{*}:desk-notify"

    def desk_notify_tenant(self, channel: str) -> str | None:
        """The tenant of a desk-notify channel name, or None when it is not one of this deployment's."""
        head, tail = self.prefix + ":{", "}:desk-notify"
        if not channel.startswith(head) or not channel.endswith(tail):
            return None
        return channel[len(head) : -len(tail)] or None

    def desk_view(self, tenant_id: str, agent_id: str) -> str:
        """Hash: the agent's desk view folded from outbox events already trimmed (`through`, `view` JSON)."""
        return self._tenant(tenant_id, "desk", agent_id, "view")

    def tenant_agents(self, tenant_id: str) -> str:
        """Set: every agent id of a tenant known to presence."""
        return self._tenant(tenant_id, "agents")

    def chat_conversation(self, tenant_id: str, customer_id: str) -> str:
        """String with a TTL: a chat customer's open conversation id (deleted when the conversation closes)."""
        return self._tenant(tenant_id, "chat", "customer", customer_id, "conv")

    def chat_conversation_customer(self, tenant_id: str, conversation_id: str) -> str:
        """String with a TTL: the chat customer of a conversation (to find the socket of a reply or a close)."""
        return self._tenant(tenant_id, "chat", "conv", conversation_id, "customer")

    def chat_customer_channel(self, tenant_id: str, customer_id: str) -> str:
        """Pub/sub channel: frames for a customer's open widget sockets, on whichever chat replica holds them."""
        return self._tenant(tenant_id, "chat", "customer", customer_id, "frames")

    def chat_pending_replies(self, tenant_id: str, customer_id: str) -> str:
        """List with a TTL: replies for a chat customer who had no socket open, sent when they reconnect."""
        return self._tenant(tenant_id, "chat", "customer", customer_id, "pending")

    def chat_webhook_event(self, tenant_id: str, event_id: str) -> str:
        """String with a TTL: a platform webhook event id already taken (replay protection)."""
        return self._tenant(tenant_id, "chat", "event", event_id)

    def chat_customer_rate(self, tenant_id: str, customer_id: str, window: int) -> str:
        """Counter with a TTL: a chat customer's messages in one rate-limit window, across replicas."""
        return self._tenant(tenant_id, "chat", "rate", customer_id, str(window))

    def phone_call(self, tenant_id: str, call_id: str) -> str:
        """Hash with a TTL: a call's conversation, masked caller, dialled number, language, state, next segment seq."""
        return self._tenant(tenant_id, "phone", "call", call_id)

    def presence_tenants(self) -> str:
        """Set (not per tenant): tenants with agents in presence, so the sweep knows which heartbeat sets to read."""
        return f"{self.prefix}:presence:tenants"

    def presence_pending(self, tenant_id: str) -> str:
        """Sorted set: agents whose presence changed but whose AgentPresence record is not acked yet, by change time."""
        return self._tenant(tenant_id, "presence", "pending")

    def removed_agents(self, tenant_id: str) -> str:
        """Set: agents removed (operator DELETE, roster prune) whose conversations the router may still have to hand
        back to the queue (presence adds them; the router's sweep takes them out once they hold none)."""
        return self._tenant(tenant_id, "presence", "removed")

    def wrap_up_timers(self, tenant_id: str) -> str:
        """Sorted set: agents in wrap_up, by the time (ms) their wrap-up ends."""
        return self._tenant(tenant_id, "presence", "wrap_up")

    def presence_audit(self, tenant_id: str) -> str:
        """Stream: audit log of operator controls (surge, capacity, temporary agents) of a tenant."""
        return self._tenant(tenant_id, "presence", "audit")

    def surge_profiles(self, tenant_id: str) -> str:
        """Hash: surge profile name -> JSON definition (tenant factor, group factors)."""
        return self._tenant(tenant_id, "surge", "profiles")

    def surge_state(self, tenant_id: str) -> str:
        """Hash: the surge profile in force (`active`, `since_ms`, `by`, `schedule_id`)."""
        return self._tenant(tenant_id, "surge", "state")

    def surge_schedules(self, tenant_id: str) -> str:
        """Hash: schedule id -> JSON window (profile, start_ms, end_ms, state)."""
        return self._tenant(tenant_id, "surge", "schedules")

    def email_thread(self, tenant_id: str, message_id_hash: str) -> str:
        """String with a TTL: the conversation an e-mail Message-ID (sha256 prefix) belongs to, in or out."""
        return self._tenant(tenant_id, "email", "thread", message_id_hash)

    def email_contact(self, tenant_id: str, conversation_id: str) -> str:
        """Hash: how to reply to an e-mail conversation (customer address, shop address, subject, last ids)."""
        return self._tenant(tenant_id, "email", "contact", conversation_id)

    def customer_history(self, tenant_id: str, customer_id: str) -> str:
        """List: a customer's last closed conversations with the shop, newest first, JSON (router, read by gateway)."""
        return self._tenant(tenant_id, "customer", customer_id, "history")

    def transfer_note(self, tenant_id: str, conversation_id: str) -> str:
        """String with a TTL: the note the last agent left when transferring a conversation (gateway)."""
        return self._tenant(tenant_id, "conv", conversation_id, "transfer-note")

    def chat_gone(self, tenant_id: str) -> str:
        """Sorted set: chat conversations whose customer has no widget socket open (and no platform callback),
        by the time (ms) their last socket closed (chat adapter); the router's sweep abandons those past the
        tenant's patience (state/departures.py)."""
        return self._tenant(tenant_id, "chat", "gone")

    def chat_customer_sockets(self, tenant_id: str, customer_id: str) -> str:
        """Set with a TTL: connection ids of a chat customer's open widget sockets, on any chat replica."""
        return self._tenant(tenant_id, "chat", "customer", customer_id, "sockets")

    def conversation_responses(self, tenant_id: str, conversation_id: str) -> str:
        """Hash: a conversation's response-time state (the opening it counts, the customer messages answered
        through, responses so far), written by the gateway's reply path (state/responses.py)."""
        return self._tenant(tenant_id, "conv", conversation_id, "responses")

    def response_figures(self, tenant_id: str, scope: str, bucket: str) -> str:
        """Hash with a TTL: response counts and sums of one group (`group:<name>`) or agent (`agent:<id>`) in one
        time bucket (`m<minute>` or `d<local day>`), state/responses.py."""
        return self._tenant(tenant_id, "responses", scope, bucket)

    def figures_minute(self, tenant_id: str, group: str, minute: int) -> str:
        """Hash with a TTL: one minute of a skill group's outcomes per channel (answered waits by bin, abandoned),
        written by the router (state/figures.py)."""
        return self._tenant(tenant_id, "figures", group, str(minute))

    def figures_counted(self, tenant_id: str, conversation_id: str, enqueued_ms: int) -> str:
        """String with a TTL: this arrival of a conversation is already counted as answered or abandoned."""
        return self._tenant(tenant_id, "figures", "counted", conversation_id, str(enqueued_ms))

    def figures_estimates(self, tenant_id: str) -> str:
        """Hash: `group:channel` -> JSON estimate (seconds per queue position, queue length, when), router."""
        return self._tenant(tenant_id, "figures", "estimates")

    def state_mark(self, tenant_id: str, service: str) -> str:
        """String: set by a service once its state of the tenant is in Redis (written or rebuilt); missing means
        Redis lost it (or the service never ran for the tenant): the service rebuilds from its sources of truth
        (`state/marks.py`, docs/state.md "When Redis loses its data")."""
        return self._tenant(tenant_id, "mark", service)

    def state_rebuild_lock(self, tenant_id: str, service: str) -> str:
        """String with a TTL: one replica of a service rebuilds the tenant's state at a time."""
        return self._tenant(tenant_id, "mark", service, "rebuilding")

    def tenant_pattern(self, tenant_id: str) -> str:
        """A SCAN pattern matching every key of one tenant."""
        return self._tenant(tenant_id, "*")
