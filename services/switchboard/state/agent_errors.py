"""What PresenceStore answers when a change cannot be made as asked."""

from __future__ import annotations

from enum import StrEnum


class PresenceError(Exception):
    """A presence change that cannot be made as asked."""


class UnknownAgent(PresenceError):
    """No such agent in this tenant (or it was removed)."""


class StaleSession(PresenceError):
    """The caller's session epoch is older than the agent's current session: a newer login fenced it."""

    def __init__(self, current_epoch: int) -> None:
        super().__init__(f"session fenced by epoch {current_epoch}")
        self.current_epoch = current_epoch


class AgentOffline(PresenceError):
    """The agent is offline; only a login brings it back."""


class HeartbeatResult(StrEnum):
    """What a heartbeat did."""

    OK = "ok"
    STALE_SESSION = "stale_session"  # a newer login fenced this session: close the old socket
    OFFLINE = "offline"  # the agent was set offline (grace passed or logout): the desktop must log in again
