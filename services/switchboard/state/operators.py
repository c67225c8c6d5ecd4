"""Operator bearer tokens and the tenants each may act on: presence's operator API and the gateway's supervisor
board check the same grants (SB_OPERATOR_TOKENS)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class OperatorGrant(BaseModel):
    """One operator bearer token and the tenants it may control (`"*"` = every tenant)."""

    name: str
    token: str = Field(min_length=16)
    tenants: list[str] = Field(default_factory=list)

    def allows(self, tenant_id: str) -> bool:
        """True when this operator may act on the tenant."""
        return "*" in self.tenants or tenant_id in self.tenants
