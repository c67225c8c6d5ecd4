"""Skills: agents' proficiency per group, bullseye rings of minimum level, languages and channels.

Pure functions over plain data; the candidate chain (`chain`) and the drain (`drain`) ask them whether an agent may
serve a conversation in a group at a moment:

- **Proficiency**: an agent's level in a group, 1–5, from the agent hash's `proficiency` ("presales:5,orders:3",
  written by presence from the roster or the operator API). A group the agent serves without a level counts as
  `DEFAULT_LEVEL` (a surge pool's agent in a pooled group too, unless the roster gives one).
- **Bullseye rings**: a group's `skill_levels` say the minimum level a conversation needs after it has waited so
  long (`[{min_level: 4}, {min_level: 2, after_s: 30}, {min_level: 1, after_s: 90}]`): the ring in force is the last
  whose `after_s` the wait reached. Rings only relax (validated), so an agent eligible once stays eligible while the
  conversation waits. No rings: any level.
- **Languages**: a conversation in a language its group lists in `languages` needs an agent who speaks it (an agent
  without languages speaks the group's); strict until the wait reaches the group's or the tenant's
  `language_relax_after_s` (None: never). A language the group does not list (or none detected, "") asks nothing of
  the agent: the group promised only the languages it lists.
- **Channels**: a group whose `channels` lack the conversation's channel never gets it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from switchboard.routing.config import SkillGroup, TenantRouting

# The level of an agent in a group it serves without one (contract with presence: `proficiency` lists levels only
# for the groups the roster or an operator gave one).
DEFAULT_LEVEL = 3
MIN_LEVEL = 1
MAX_LEVEL = 5


def format_proficiency(proficiency: Mapping[str, int]) -> str:
    """The agent hash's `proficiency` field: `"orders:3,presales:5"` (sorted by group)."""
    return ",".join(f"{group}:{level}" for group, level in sorted(proficiency.items()))


def parse_proficiency(text: str) -> dict[str, int]:
    """`presales:5,orders:3` → {"presales": 5, "orders": 3}; malformed or out-of-range entries are left out (presence
    validates what it writes; a reader never guesses a level from a broken entry)."""
    levels: dict[str, int] = {}
    for entry in text.split(","):
        group, sep, level = entry.strip().partition(":")
        if not sep or not group:
            continue
        try:
            value = int(level)
        except ValueError:
            continue
        if MIN_LEVEL <= value <= MAX_LEVEL:
            levels[group] = value
    return levels


def parse_languages(text: str) -> frozenset[str]:
    """`zh,en` → {"zh", "en"} (lower case, blanks left out)."""
    return frozenset(code.strip().lower() for code in text.split(",") if code.strip())


def level_in(proficiency: Mapping[str, int], group: str) -> int:
    """The agent's level in a group (DEFAULT_LEVEL when none is given)."""
    return proficiency.get(group, DEFAULT_LEVEL)


def min_level(group: SkillGroup, waited_s: float) -> int:
    """The minimum level the group requires of an agent for a conversation that has waited `waited_s` seconds."""
    level = MIN_LEVEL
    for ring in group.skill_levels:
        if waited_s >= ring.after_s:
            level = ring.min_level
    return level


def language_relax_after_s(config: TenantRouting, group: SkillGroup) -> float | None:
    """After how long a conversation waiting in `group` may go to an agent who does not speak its language: the
    group's own setting when it has one (a number, or null for never), else the tenant's `skills` default."""
    if "language_relax_after_s" in group.model_fields_set:
        return group.language_relax_after_s
    return config.skills.language_relax_after_s


@dataclass(frozen=True)
class Requirement:
    """What a group asks of an agent for one conversation at one moment.

    `language`: the language the agent must speak ("" when any agent will do); `relaxed`: the conversation's language
    would have been required but its wait relaxed it; `channel_ok`: the group takes the conversation's `channel`.
    """

    group: str
    channel: str = ""
    min_level: int = MIN_LEVEL
    language: str = ""
    relaxed: bool = False
    channel_ok: bool = True

    def reasons(self) -> list[str]:
        """The requirement in force as routing-event reasons (nothing when it asks nothing)."""
        out = []
        if self.min_level > MIN_LEVEL:
            out.append(f"min_level:{self.group}:{self.min_level}")
        if self.relaxed:
            out.append(f"language_relaxed:{self.group}")
        return out


def requirement(config: TenantRouting, group: SkillGroup, channel: str, language: str, waited_s: float) -> Requirement:
    """The requirement of `group` for a conversation of `channel` in `language` that has waited `waited_s`."""
    lang = language.lower()
    asked = lang if lang and lang in group.languages else ""
    relaxed = False
    if asked:
        after = language_relax_after_s(config, group)
        if after is not None and waited_s >= after:
            asked, relaxed = "", True
    return Requirement(group.name, channel, min_level(group, waited_s), asked, relaxed, group.takes(channel))


def speaks(languages: Iterable[str], group: SkillGroup, language: str) -> bool:
    """Whether an agent with these languages speaks `language` in `group` (no languages: the group's)."""
    spoken = frozenset(languages) or frozenset(group.languages)
    return language in spoken


def skill_refusal(
    need: Requirement, group: SkillGroup, proficiency: Mapping[str, int], languages: Iterable[str]
) -> str | None:
    """Why an agent of the group may not serve the conversation under `need`, or None: `channel:<ch>` (the group
    does not take it), `below_level:<n>` (the level in force), `language:<lang>` (the agent does not speak it)."""
    if not need.channel_ok:
        return f"channel:{need.channel}"
    if level_in(proficiency, need.group) < need.min_level:
        return f"below_level:{need.min_level}"
    if need.language and not speaks(languages, group, need.language):
        return f"language:{need.language}"
    return None
