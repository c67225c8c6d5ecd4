"""Per-shop desk configuration: UI language, wrap-up codes, decline reasons, quick replies.

One YAML file per tenant under `config/desk/` (format in docs/desk-config.md). Files are validated at start; a
broken one raises DeskConfigError naming the file, the field and the problem. A tenant without a file gets
DEFAULT_CONFIG (English UI, wrap-up code optional with one `answered` code, no quick replies).

The response-time target the desk's timer turns red at is not desk config: it is the routing config's (per group,
overridden by the surge profile in force; gateway/responses.py), handed to `for_agent` with the groups' targets.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

Code = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")]
Label = Annotated[str, StringConstraints(min_length=1, max_length=80)]


DEFAULT_TARGET_S = 180.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CodeLabel(_Model):
    """A code the desk sends (wrap-up code, decline reason) with its label in each UI language."""

    code: Code
    zh: Label
    en: Label


class QuickReply(_Model):
    """A phrase the agent inserts with a key; `key` is what the agent types after `/` to find it."""

    key: Code
    text: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class WrapUp(_Model):
    """The tenant's wrap-up codes and whether a close needs one."""

    required: bool = False
    codes: Annotated[list[CodeLabel], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self) -> WrapUp:
        codes = [c.code for c in self.codes]
        if len(codes) != len(set(codes)):
            raise ValueError(f"wrap-up codes must be unique, got {codes}")
        return self


class QuickReplies(_Model):
    """Phrases for every agent of the tenant, and per skill group."""

    tenant: list[QuickReply] = Field(default_factory=list)
    groups: dict[Code, list[QuickReply]] = Field(default_factory=dict)


class DeskConfig(_Model):
    """What the desk of one shop shows and requires."""

    tenant_id: Code
    language: Literal["zh", "en"] = "en"
    wrap_up: WrapUp = WrapUp(codes=[CodeLabel(code="answered", zh="已解答", en="Answered")])
    decline_reasons: list[CodeLabel] = Field(default_factory=lambda: [CodeLabel(code="busy", zh="忙碌中", en="Busy")])
    quick_replies: QuickReplies = QuickReplies()

    @model_validator(mode="before")
    @classmethod
    def _target_moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "response_target_s" in data:
            raise ValueError(
                "response_target_s is set in the routing config (config/routing/<tenant>.yaml: `response_target_s` "
                "of the tenant or of a skill group; a surge profile may override it), not in the desk config"
            )
        return data

    def for_agent(self, groups: tuple[str, ...], targets: Mapping[str, float]) -> dict[str, Any]:
        """The config as the desk of an agent of `groups` gets it: the tenant's phrases, then its groups'; the
        response targets in force per group (`targets`) and the strictest of the agent's groups as
        `response_target_s` (what a desktop that knows no groups shows red at)."""
        phrases = [{"key": q.key, "text": q.text, "group": ""} for q in self.quick_replies.tenant]
        for group in groups:
            phrases += [
                {"key": q.key, "text": q.text, "group": group} for q in self.quick_replies.groups.get(group, [])
            ]
        return {
            "tenant_id": self.tenant_id,
            "language": self.language,
            "response_target_s": min((targets[g] for g in groups if g in targets), default=DEFAULT_TARGET_S),
            "response_targets": dict(targets),
            "wrap_up_required": self.wrap_up.required,
            "wrap_up_codes": [c.model_dump() for c in self.wrap_up.codes],
            "decline_reasons": [c.model_dump() for c in self.decline_reasons],
            "quick_replies": phrases,
        }


class DeskConfigError(ValueError):
    """A desk config file that cannot be used; the message names the file and the field."""


def default_config(tenant_id: str) -> DeskConfig:
    """The config of a tenant without a file."""
    return DeskConfig(tenant_id=tenant_id)


def parse_desk_config(text: str, source: str) -> DeskConfig:
    """One tenant's file, validated; DeskConfigError with `source` and the field path otherwise."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DeskConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise DeskConfigError(f"{source}: expected a mapping with tenant_id, wrap_up, quick_replies, ...")
    try:
        return DeskConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise DeskConfigError(f"{source}: {problems}") from exc


def load_desk_configs(directory: Path) -> dict[str, DeskConfig]:
    """Every `*.yaml` of `directory` by tenant; a missing directory is no configs. Two files of one tenant, or a
    file whose name differs from its tenant_id, are refused."""
    configs: dict[str, DeskConfig] = {}
    if not directory.is_dir():
        return configs
    for path in sorted(directory.glob("*.yaml")):
        config = parse_desk_config(path.read_text(encoding="utf-8"), str(path))
        if config.tenant_id != path.stem:
            raise DeskConfigError(f"{path}: tenant_id {config.tenant_id!r} must match the file name {path.stem!r}")
        configs[config.tenant_id] = config
    return configs
