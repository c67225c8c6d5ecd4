"""Bounded label values of the services' domain metrics (the open-websocket gauge is in state/websockets.py).

A label value taken from outside (a tenant id in a request, a group in a record) would let anyone grow Prometheus'
series without bound. Every tenant and group label goes through `LabelBounds`: a configured tenant stays itself,
anything else is "unknown"; a group configured for that tenant stays itself, anything else is "none"
(docs/metrics.md, "Cardinality").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from switchboard.state.roster import CHANNELS

UNKNOWN_TENANT = "unknown"
NO_GROUP = "none"
# A channel outside chat|email|phone (never sent by our adapters; a record from elsewhere could carry it).
UNKNOWN_CHANNEL = "unknown"


class LabelBounds:
    """The label values a service may export: its configured tenants and each tenant's configured groups."""

    def __init__(self, groups_by_tenant: Mapping[str, Iterable[str]] | None = None) -> None:
        self._groups: dict[str, frozenset[str]] = {}
        self.update(groups_by_tenant or {})

    @classmethod
    def of_tenants(cls, tenants: Iterable[str]) -> LabelBounds:
        """Bounds knowing tenants only (adapters: they never label a group)."""
        return cls({tenant: () for tenant in tenants})

    def update(self, groups_by_tenant: Mapping[str, Iterable[str]]) -> None:
        """Know these tenants with these groups (added to what is known: a reload may add, never shrink a series
        that is already exported)."""
        for tenant, groups in groups_by_tenant.items():
            self._groups[tenant] = self._groups.get(tenant, frozenset()) | frozenset(groups)

    @property
    def tenants(self) -> frozenset[str]:
        """The configured tenants."""
        return frozenset(self._groups)

    def tenant(self, tenant_id: str) -> str:
        """A configured tenant as itself, anything else as "unknown"."""
        return tenant_id if tenant_id in self._groups else UNKNOWN_TENANT

    def group(self, tenant_id: str, group: str) -> str:
        """A group configured for the tenant as itself, anything else (an unknown tenant's too) as "none"."""
        return group if group in self._groups.get(tenant_id, ()) else NO_GROUP

    def pair(self, tenant_id: str, group: str) -> tuple[str, str]:
        """(tenant, group) label values."""
        return self.tenant(tenant_id), self.group(tenant_id, group)

    def known(self, tenant_id: str, group: str) -> bool:
        """Both the tenant and the group are configured (their labels are the values themselves)."""
        return self.pair(tenant_id, group) == (tenant_id, group)


def channel_label(channel: str) -> str:
    """chat, email or phone; anything else as "unknown"."""
    return channel if channel in CHANNELS else UNKNOWN_CHANNEL
