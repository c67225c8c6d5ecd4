"""Topic names and layouts: the one place that knows them."""

from __future__ import annotations

from dataclasses import dataclass

INBOUND = "sb.inbound.v1"
ROUTING = "sb.routing.v1"
PRESENCE = "sb.presence.v1"
OUTBOUND = "sb.outbound.v1"
DLQ = "sb.dlq.v1"
COMMANDS = "sb.commands.v1"


@dataclass(frozen=True)
class TopicSpec:
    """How one topic is created."""

    name: str
    partitions: int
    compacted: bool = False
    retention_ms: int = 7 * 24 * 3600 * 1000

    def configs(self) -> dict[str, str]:
        """Topic-level configs for CreateTopics."""
        if self.compacted:
            return {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
        return {"retention.ms": str(self.retention_ms)}


@dataclass(frozen=True)
class Topics:
    """The topic names of one deployment; a prefix gives tests and tenants-in-staging their own set."""

    prefix: str = ""

    @property
    def inbound(self) -> str:
        """Customer messages from every channel. Key: conversation id."""
        return self.prefix + INBOUND

    @property
    def routing(self) -> str:
        """Every routing decision with its reasons. Key: conversation id."""
        return self.prefix + ROUTING

    @property
    def presence(self) -> str:
        """Agent state, compacted. Key: tenant/agent."""
        return self.prefix + PRESENCE

    @property
    def outbound(self) -> str:
        """Agents' replies on their way out. Key: conversation id."""
        return self.prefix + OUTBOUND

    @property
    def commands(self) -> str:
        """Agents' accept/decline/close/transfer from the desktops to the router. Key: conversation id.

        Same partition count as the inbound topic, so a conversation's commands and messages meet at one router.
        """
        return self.prefix + COMMANDS

    @property
    def dlq(self) -> str:
        """Records and requests that could not be taken, with the reason."""
        return self.prefix + DLQ

    def specs(self, partitions: int | None = None) -> list[TopicSpec]:
        """Every topic with its layout; `partitions` overrides the production counts (tests use fewer)."""

        def n(default: int) -> int:
            return partitions if partitions is not None else default

        return [
            TopicSpec(self.inbound, n(12)),
            TopicSpec(self.routing, n(12)),
            TopicSpec(self.presence, n(6), compacted=True),
            TopicSpec(self.outbound, n(12)),
            TopicSpec(self.commands, n(12)),
            TopicSpec(self.dlq, n(3), retention_ms=30 * 24 * 3600 * 1000),
        ]
