"""Settings of the router (env prefix `SB_`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from switchboard.runtime.settings import ServiceSettings


@dataclass(frozen=True)
class BotSettings:
    """The bot's order lookups: the deployment's order system and its circuit breaker."""

    order_lookup_url: str = ""
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0


# The example configs of the repository this package lives in (config/routing/*.yaml).
REPO_ROUTING_DIR = Path(__file__).resolve().parents[3] / "config" / "routing"


class RouterSettings(ServiceSettings):
    """Router: where the routing configs live, how often they are re-read, the sweep cadence, marker lifetime."""

    service_name: str = "router"
    # Directory of per-tenant routing configs (`*.yaml`); the repository's `config/routing` when empty.
    routing_config_dir: str = ""
    config_poll_s: float = 2.0
    # Offer timeouts, time-based overflow, departed agents and safety drains run this often.
    sweep_interval_s: float = 0.5
    # A processed record's marker (and the decisions stored with it) lives this long: redeliveries after a
    # crash or rebalance within it change nothing twice.
    marker_ttl_s: int = 7 * 24 * 3600
    # Consecutive batches may plan on one snapshot of a tenant's agents for this long (the claim scripts re-check
    # every claim; a stale snapshot costs a re-check, never a wrong claim). 0 reads agents for every batch.
    snapshot_ttl_s: float = 0.2
    # The shops' order system for bot-first answers (docs/order-lookup.md); a tenant's `bot.order_lookup_url`
    # overrides it. Empty: only intents without a lookup are answered.
    order_lookup_url: str = ""
    # The order system's circuit breaker opens after this many failed lookups in a row, and lets one trial lookup
    # through after the cool-down.
    bot_breaker_failures: int = Field(default=5, ge=1)
    bot_breaker_cooldown_s: float = Field(default=30.0, gt=0)

    def bot(self) -> BotSettings:
        """The bot's lookup settings."""
        return BotSettings(self.order_lookup_url, self.bot_breaker_failures, self.bot_breaker_cooldown_s)

    def config_dir(self) -> Path:
        """The routing config directory in force."""
        return Path(self.routing_config_dir) if self.routing_config_dir else REPO_ROUTING_DIR
