"""Settings of the presence service (env prefix `SB_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from switchboard.runtime.settings import ServiceSettings
from switchboard.state.operators import OperatorGrant

__all__ = ["OperatorGrant", "PresenceSettings"]

# The example configs of the repository this package lives in (config/routing/*.yaml), as the router's default.
REPO_ROUTING_DIR = Path(__file__).resolve().parents[3] / "config" / "routing"


class PresenceSettings(ServiceSettings):
    """Presence: heartbeat grace, sweep cadence, wrap-up, roster and operator tokens."""

    service_name: str = "presence"
    # `config/agents/dev-agents.yaml` of the repo when empty.
    roster_path: str = ""
    load_roster_on_start: bool = True
    # The roster file is checked for changes this often (and agent counts for /metrics refreshed).
    roster_poll_s: float = 10.0
    # An agent whose heartbeats stopped this long ago is set offline (tolerates mobile networks flapping).
    heartbeat_grace_s: float = 45.0
    sweep_interval_s: float = 2.0
    # Wrap-up lasts this long unless the agent (or caller) says otherwise, then the agent is available again.
    wrap_up_s: float = 30.0
    # A change whose AgentPresence record was not acked this long after is republished by the sweep.
    republish_after_s: float = 10.0
    # JSON list of {"name", "token", "tenants"}; empty means the operator API answers 401 to everyone.
    # e.g. SB_OPERATOR_TOKENS='[{"name":"ops-a","token":"…32 chars…","tenants":["shop-a"]}]'
    operator_tokens: list[OperatorGrant] = Field(default_factory=list)
    audit_maxlen: int = 10_000
    # The tenants' routing configs (`*.yaml`), the same directory as the router's: surge profiles are checked
    # against them (unknown groups are refused). The repository's `config/routing` when empty.
    routing_config_dir: str = ""

    def config_dir(self) -> Path:
        """The routing config directory in force."""
        return Path(self.routing_config_dir) if self.routing_config_dir else REPO_ROUTING_DIR
