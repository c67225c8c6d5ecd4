"""The load the fault harness runs while it injects faults: the smoke sale made steady.

Every channel as in `smoke`, a steady arrival rate with no spike, no shift change and no surge profile (so agents'
capacity is the roster's throughout and a fault is the only thing that changes), and more agents than the load
needs, so a message waits only when something is broken: its delivery time after a fault is the recovery time.
No order-status intent and no member tiers: the stack's order file is written once, for every row's seed.
"""

from __future__ import annotations

from typing import Any

from switchboard_tools.loadgen.scenario import Scenario, load_scenario

# The secrets of the fault tenants derive from this (dev secrets for a loopback stack, nothing else).
RUN_KEY = "switchboard-faults"
# Seconds after the last send a row waits for the last deliveries.
DRAIN_S = 60.0


def fault_scenario(duration_s: float = 30.0, seed: int = 1, rate_per_s: float = 1.0) -> Scenario:
    """The fault load for one row: `duration_s` of arrivals at `rate_per_s`, conversation keys unique to `seed`."""
    data: dict[str, Any] = load_scenario("smoke").model_dump(mode="json")
    intents = {name: intent for name, intent in data["intents"].items() if name != "order_status"}
    data.update(
        name="faults",
        description="steady multi-channel load for the fault harness",
        seed=seed,
        duration_s=duration_s,
        intents=intents,
        member_tiers={},
        shift_change=None,
        operator=None,
    )
    data["routing"] = {}
    data["arrivals"] = {"baseline_per_s": rate_per_s}
    data["tenants"] = [{"id": "fx-flagship", "share": 0.7, "agents": 6}]
    data["small_shops"] = {"count": 2, "prefix": "fx-shop", "share": 0.3, "agents": 2}
    data["agents"]["handling_time"] = {"mean_s": 3, "sigma": 0.4, "max_s": 8}
    data["agents"]["missed_offer_probability"] = 0.0
    # Customers wait through a fault (a real customer might leave; the harness wants every message judged).
    data["conversation"]["patience_s"] = 600
    conversations = int(duration_s * rate_per_s * 2) + 20
    data["limits"] = {"max_conversations": conversations, "drain_s": DRAIN_S, "max_run_s": duration_s + DRAIN_S + 60}
    return Scenario.model_validate(data)
