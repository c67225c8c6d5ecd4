"""What a run observed, as plain data: the driver fills it, the report reads it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from switchboard_tools.loadgen.accounting import Ledger
from switchboard_tools.loadgen.service import EventRecord
from switchboard_tools.loadgen.stats import AgentSession, TimeSeries


@dataclass
class ConversationTrack:
    """One conversation as the simulated customer and agents saw it (wall-clock seconds)."""

    tenant_id: str
    channel: str
    started_at: float
    offered_at: float | None = None
    answered_at: float | None = None
    closed_at: float | None = None
    agent_id: str = ""


@dataclass(frozen=True)
class Stages:
    """Where a message was seen on its way: the inbound topic (the adapter's receive time), the first routing
    decision about it (the router's decision time; None: none seen)."""

    conversation_id: str
    inbound_at: float
    decided_at: float | None


@dataclass
class Observations:
    """Everything measured during one run."""

    run_name: str
    scenario: str
    seed: int
    started_at: float
    ended_at: float = 0.0
    ledger: Ledger = field(default_factory=Ledger)
    # Keyed by the conversation id the system gave (a customer writing again after a close opens a new one).
    conversations: dict[str, ConversationTrack] = field(default_factory=dict)
    sessions: list[AgentSession] = field(default_factory=list)
    # Routing decision latency: the adapter's receive time → the router's first decision about a message.
    decision_latencies_s: list[float] = field(default_factory=list)
    routing_event_times: list[float] = field(default_factory=list)
    inbound_times: list[float] = field(default_factory=list)
    # For each undelivered message: whether it reached the inbound topic, its conversation's last decision, and
    # whether that left it queued at the cut-off (pending, not lost).
    whereabouts: dict[str, dict[str, object]] = field(default_factory=dict)
    # For each message on the inbound topic: its conversation, when the adapter received it and when the router
    # first decided about it (None: no decision seen), in epoch seconds. Splits a message's wait by stage.
    stages: dict[str, Stages] = field(default_factory=dict)
    routing_event_types: Counter[str] = field(default_factory=Counter)
    # Offer latency: customer send → the first offer (or assignment) shown on any desktop.
    offer_latencies_s: list[float] = field(default_factory=list)
    series: TimeSeries = field(default_factory=TimeSeries)
    errors: Counter[str] = field(default_factory=Counter)
    agents_online: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    surge_on_at: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # "on" (the operator switched the scenario's surge profile on) or "off" (the same run without it).
    profile: str = "on"
    # Every routing event of the run's tenants (the service figures: deflection, abandonment, response time).
    events: list[EventRecord] = field(default_factory=list)
    # What customers did besides writing: gave_up:<channel>, asked_human, skipped (planned, never sent).
    behaviour: Counter[str] = field(default_factory=Counter)

    def elapsed(self, at: float) -> float:
        """Seconds since the run started."""
        return at - self.started_at

    def queued_at_cut_off(self) -> set[str]:
        """Undelivered messages still waiting in a queue when the run ended."""
        return {tag for tag, where in self.whereabouts.items() if where.get("queued_at_cut_off")}

    def not_for_agents(self) -> dict[str, str]:
        """Undelivered messages of conversations the customer left or the bot answered: tag → which."""
        return {tag: str(w["not_for_agents"]) for tag, w in self.whereabouts.items() if w.get("not_for_agents")}
