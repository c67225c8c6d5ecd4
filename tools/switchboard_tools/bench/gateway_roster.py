"""The benchmark's synthetic roster: `agents` agents spread over `tenants` shops."""

from __future__ import annotations

from switchboard.state.roster import ChannelSlots, Roster, RosterAgent, RosterTenant


def agent_of(index: int, tenants: int) -> tuple[str, str]:
    """(tenant, agent) of the benchmark agent number `index`."""
    return f"bench-{index % tenants}", f"ag-{index:06d}"


def bench_roster(agents: int, tenants: int) -> Roster:
    """A roster with the benchmark's agents (no passwords: the benchmark mints tokens itself)."""
    shops: dict[str, list[RosterAgent]] = {}
    for index in range(agents):
        tenant, agent = agent_of(index, tenants)
        shops.setdefault(tenant, []).append(
            RosterAgent(agent_id=agent, groups=["presales"], languages=["zh"], capacity=ChannelSlots(chat=5))
        )
    return Roster(tenants=[RosterTenant(tenant_id=t, agents=a) for t, a in shops.items()])
