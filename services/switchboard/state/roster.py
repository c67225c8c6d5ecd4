"""The agent roster config (`config/agents/*.yaml`): tenants, agents, skills, capacity and dev logins.

Presence loads it into Redis; the gateway's login endpoint checks passwords against it. Both use `load_roster`
so there is one parser. The file format is documented in docs/agents-config.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from switchboard.routing.skills import MAX_LEVEL, MIN_LEVEL
from switchboard.runtime.idents import Ident
from switchboard.runtime.text import Name
from switchboard.runtime.yaml_lines import located, yaml_error_line
from switchboard.state.languages import LanguageList

CHANNELS = ("chat", "email", "phone")
# Slots of one agent on one channel. More is a typo (41865718795), not a policy; the bound also keeps
# floor(slots × the highest surge factor) inside the AgentPresence record's int32.
MAX_SLOTS = 1000
# Skill groups of one agent: a bound so that one agent hash and one record stay small.
MAX_GROUPS = 64


# An agent's proficiency in a skill group: 1 (beginner) to 5 (expert), the scale of `switchboard.routing.skills`,
# which also counts a group the agent serves without a level as DEFAULT_LEVEL.
Level = Annotated[int, Field(ge=MIN_LEVEL, le=MAX_LEVEL, strict=True)]
Proficiency = Annotated[dict[Ident, Level], Field(max_length=MAX_GROUPS)]
# An agent's own skill groups.
Groups = Annotated[list[Ident], Field(max_length=MAX_GROUPS)]


def stray_levels(proficiency: dict[str, int], groups: list[str]) -> list[str]:
    """Groups given a level that the agent does not serve.

    A level only means something in a group the agent is in; a level for another group is most likely a typo
    (`presale: 5`), which would otherwise silently leave the agent at the default level where it was meant."""
    return [group for group in proficiency if group not in groups]


def stray_level_message(group: str, groups: list[str]) -> str:
    """What is wrong with a level for a group the agent does not serve."""
    return f"a level for {group!r}, which is not one of the agent's groups {groups}"


def hash_secret(salt: str, password: str) -> str:
    """The `password_sha256` of a password: sha256 hex of salt + password."""
    return hashlib.sha256((salt + password).encode()).hexdigest()


def check_secret(salt: str, password: str, digest: str) -> bool:
    """Constant-time check of a password against its salted digest."""
    return hmac.compare_digest(hash_secret(salt, password), digest.lower())


class ChannelSlots(BaseModel):
    """Slots per channel before any surge multiplier."""

    model_config = ConfigDict(extra="forbid")

    chat: int = Field(default=0, ge=0, le=MAX_SLOTS)
    email: int = Field(default=0, ge=0, le=MAX_SLOTS)
    phone: int = Field(default=0, ge=0, le=MAX_SLOTS)

    def as_dict(self) -> dict[str, int]:
        """`{"chat": 5, "email": 10, "phone": 1}`."""
        return {"chat": self.chat, "email": self.email, "phone": self.phone}


class RosterAgent(BaseModel):
    """One agent of a tenant as configured."""

    model_config = ConfigDict(extra="forbid")

    agent_id: Ident
    display_name: Name = ""
    password: str | None = None
    password_sha256: str | None = None
    password_salt: str = ""
    groups: Groups = Field(default_factory=list)
    languages: LanguageList = Field(default_factory=list)
    capacity: ChannelSlots = Field(default_factory=ChannelSlots)
    temporary: bool = False
    # level 1-5 per group of `groups`; a group without one counts as the router's default level
    proficiency: Proficiency = Field(default_factory=dict)

    @model_validator(mode="after")
    def _levels_in_own_groups(self) -> RosterAgent:
        stray = stray_levels(self.proficiency, self.groups)
        if stray:
            raise ValueError(f"at proficiency.{stray[0]}: {stray_level_message(stray[0], self.groups)}")
        return self

    def entry_digest(self) -> str:
        """A digest of what presence writes from this entry (skills, languages, levels, capacity, name): presence
        keeps it in the agent hash to tell an entry the file changed from one it already wrote."""
        written = self.model_dump(
            include={"display_name", "groups", "languages", "capacity", "temporary", "proficiency"}
        )
        return hashlib.sha256(json.dumps(written, sort_keys=True).encode()).hexdigest()[:16]

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


class RosterError(ValueError):
    """A roster file that cannot be taken; the message starts with `file:line:` of the offending value."""


def parse_roster(text: str, source: str) -> Roster:
    """Parse and validate roster text; RosterError naming `source:line` and the field on any error."""
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RosterError(f"{source}:{yaml_error_line(exc)}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    try:
        return Roster.model_validate(data)
    except ValidationError as exc:
        raise RosterError(located(exc, node, source)) from exc


def load_roster(path: Path | str | None = None) -> Roster:
    """Read, parse and validate a roster file (OSError when unreadable, RosterError on bad content)."""
    source = Path(path) if path else default_roster_path()
    return parse_roster(source.read_text(encoding="utf-8"), str(source))
