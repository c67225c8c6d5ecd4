"""Which shop (tenant) a recipient address belongs to."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.utils import parseaddr

_TENANT_LABEL = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def normalise_address(address: str) -> str:
    """`"Shop" <Service@Shop-A.example>` → `service@shop-a.example` (empty when it is no address)."""
    addr = parseaddr(address)[1] or address.strip().strip("<>")
    return addr.strip().lower() if "@" in addr else ""


@dataclass(frozen=True)
class TenantDirectory:
    """Recipient → tenant: an exact address first, then its domain, then `<tenant>.<subdomain_of>` for a tenant of
    `subdomain_tenants` (any other subdomain is a shop a sender made up: refused at RCPT, not taken and lost later)."""

    addresses: dict[str, str] = field(default_factory=dict)
    domains: dict[str, str] = field(default_factory=dict)
    subdomain_of: str = ""
    subdomain_tenants: frozenset[str] = frozenset()

    def known_tenants(self, listed: list[str]) -> set[str]:
        """The tenants the address and domain tables name, and those `listed` (SB_EMAIL_TENANTS): the only tenant
        values of the adapter's metric labels (a subdomain names any tenant a sender makes up)."""
        return {*self.addresses.values(), *self.domains.values(), *listed}

    def tenant_for(self, recipient: str) -> str | None:
        """The tenant a recipient belongs to, or None when no shop receives mail there."""
        address = normalise_address(recipient)
        if not address:
            return None
        by_address = {k.lower(): v for k, v in self.addresses.items()}
        if address in by_address:
            return by_address[address]
        domain = address.rpartition("@")[2]
        by_domain = {k.lower(): v for k, v in self.domains.items()}
        if domain in by_domain:
            return by_domain[domain]
        suffix = "." + self.subdomain_of.lower().strip(".")
        if self.subdomain_of and domain.endswith(suffix):
            label = domain[: -len(suffix)]
            if _TENANT_LABEL.match(label) and label in self.subdomain_tenants:
                return label
        return None
