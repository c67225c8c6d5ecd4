"""The agent roster config (`config/agents/*.yaml`): tenants, agents, skills, capacity and dev logins.

Presence loads it into Redis; the gateway's login endpoint checks passwords against it. Both use `load_roster`
so there is one parser. The file format is documented in docs/agents-config.md.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

CHANNELS = ("chat", "email", "phone")

Ident = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


def hash_secret(salt: str, password: str) -> str:
    """The `password_sha256` of a password: sha256 hex of salt + password."""
    return hashlib.sha256((salt + password).encode()).hexdigest()


def check_secret(salt: str, password: str, digest: str) -> bool:
    """Constant-time check of a password against its salted digest."""
    return hmac.compare_digest(hash_secret(salt, password), digest.lower())


class ChannelSlots(BaseModel):
    """Slots per channel before any surge multiplier."""

    model_config = ConfigDict(extra="forbid")

    chat: int = Field(default=0, ge=0)
    email: int = Field(default=0, ge=0)
    phone: int = Field(default=0, ge=0)

    def as_dict(self) -> dict[str, int]:
        """`{"chat": 5, "email": 10, "phone": 1}`."""
        return {"chat": self.chat, "email": self.email, "phone": self.phone}


class RosterAgent(BaseModel):
    """One agent of a tenant as configured."""

    model_config = ConfigDict(extra="forbid")

    agent_id: Ident
    display_name: str = ""
    password: str | None = None
    password_sha256: str | None = None
    password_salt: str = ""
    groups: list[Ident] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)
    capacity: ChannelSlots = Field(default_factory=ChannelSlots)
    temporary: bool = False

    def check_password(self, password: str) -> bool:
        """True when `password` is this agent's (constant-time compare); False when no password is configured."""
        if self.password_sha256:
            return check_secret(self.password_salt, password, self.password_sha256)
        if self.password is not None:
            return hmac.compare_digest(self.password.encode(), password.encode())
        return False


class RosterTenant(BaseModel):
    """A shop and its agents."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Ident
    display_name: str = ""
    agents: list[RosterAgent] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_agents(self) -> RosterTenant:
        ids = [a.agent_id for a in self.agents]
        if len(ids) != len(set(ids)):
            raise ValueError(f"tenant {self.tenant_id}: duplicate agent ids")
        return self


class Roster(BaseModel):
    """Every configured tenant and agent."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    tenants: list[RosterTenant] = Field(default_factory=list)

    def agent(self, tenant_id: str, agent_id: str) -> RosterAgent | None:
        """The configured agent, or None."""
        for tenant in self.tenants:
            if tenant.tenant_id == tenant_id:
                return next((a for a in tenant.agents if a.agent_id == agent_id), None)
        return None

    def check_login(self, tenant_id: str, agent_id: str, password: str) -> RosterAgent | None:
        """The agent when the password is right, else None (unknown tenant, agent or wrong password alike)."""
        agent = self.agent(tenant_id, agent_id)
        if agent is None or not agent.check_password(password):
            return None
        return agent


def default_roster_path() -> Path:
    """`config/agents/dev-agents.yaml` of the repository this package lives in."""
    return Path(__file__).resolve().parents[3] / "config" / "agents" / "dev-agents.yaml"


def load_roster(path: Path | str | None = None) -> Roster:
    """Parse and validate a roster file (raises ValueError / pydantic.ValidationError on bad content)."""
    source = Path(path) if path else default_roster_path()
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not valid YAML: {exc}") from exc
    return Roster.model_validate(data)
