"""Skills (routing/skills.py): proficiency levels, bullseye rings, languages strict then relaxed, channels."""

from __future__ import annotations

import pytest

from switchboard.routing.chain import AgentView
from switchboard.routing.config import ConfigError, TenantRouting, parse_config
from switchboard.routing.skills import (
    DEFAULT_LEVEL,
    format_proficiency,
    language_relax_after_s,
    level_in,
    min_level,
    parse_proficiency,
    requirement,
    skill_refusal,
)

CONFIG = """
tenant: skills
default_group: presales
default_groups: {phone: complaints}
skills:
  proficiency_weight: 0.25
  language_relax_after_s: 120
skill_groups:
  - name: presales
    channels: [chat, email]
  - name: complaints
    languages: [zh, en]
    skill_levels:
      - {min_level: 4}
      - {min_level: 2, after_s: 30}
      - {min_level: 1, after_s: 90}
  - name: cross_border
    languages: [en, ja, es]
    language_relax_after_s: 60
  - name: strict
    languages: [ja]
    language_relax_after_s: null
"""


@pytest.fixture(scope="module")
def config() -> TenantRouting:
    return parse_config(CONFIG, "skills.yaml")


def test_proficiency_field_round_trips_and_broken_entries_are_left_out() -> None:
    assert parse_proficiency("presales:5,orders:3") == {"presales": 5, "orders": 3}
    assert parse_proficiency("presales:9,orders:x,:2,nolevel,after_sales: 2") == {"after_sales": 2}
    assert parse_proficiency("") == {}
    assert format_proficiency({"orders": 3, "presales": 5}) == "orders:3,presales:5"
    assert level_in({"presales": 5}, "presales") == 5
    assert level_in({"presales": 5}, "orders") == DEFAULT_LEVEL == 3


def test_agent_view_reads_proficiency_and_languages_from_the_hash() -> None:
    view = AgentView.from_hash(
        "mei", {b"status": b"available", b"proficiency": b"complaints:5,presales:2", b"languages": b"zh, JA"}
    )
    assert view.proficiency == {"complaints": 5, "presales": 2}
    assert view.languages == frozenset({"zh", "ja"})
    assert AgentView.from_hash("old", {b"status": b"available"}).proficiency == {}


@pytest.mark.parametrize(("waited_s", "level"), [(0, 4), (29.9, 4), (30, 2), (89, 2), (90, 1), (10_000, 1)])
def test_bullseye_rings_relax_with_waiting(config: TenantRouting, waited_s: float, level: int) -> None:
    assert min_level(config.group("complaints"), waited_s) == level


def test_a_group_without_rings_takes_any_level(config: TenantRouting) -> None:
    assert min_level(config.group("presales"), 0) == 1


def test_language_is_strict_then_relaxed_by_the_group_or_the_tenant(config: TenantRouting) -> None:
    cross = config.group("cross_border")
    assert language_relax_after_s(config, cross) == 60
    assert language_relax_after_s(config, config.group("complaints")) == 120  # the tenant's
    assert language_relax_after_s(config, config.group("strict")) is None  # null: never, over the tenant's
    early = requirement(config, cross, "chat", "ja", 10)
    assert (early.language, early.relaxed) == ("ja", False)
    late = requirement(config, cross, "chat", "ja", 60)
    assert (late.language, late.relaxed) == ("", True)
    assert late.reasons() == ["language_relaxed:cross_border"]
    assert requirement(config, config.group("strict"), "chat", "ja", 86_400).language == "ja"


def test_a_language_the_group_does_not_list_asks_nothing(config: TenantRouting) -> None:
    cross = config.group("cross_border")
    assert requirement(config, cross, "chat", "ru", 0).language == ""
    assert requirement(config, cross, "chat", "", 0).language == ""
    assert requirement(config, cross, "chat", "EN", 0).language == "en"


def test_refusals_name_level_language_and_channel(config: TenantRouting) -> None:
    complaints, cross, presales = config.group("complaints"), config.group("cross_border"), config.group("presales")
    fresh = requirement(config, complaints, "chat", "zh", 0)
    assert fresh.reasons() == ["min_level:complaints:4"]
    assert skill_refusal(fresh, complaints, {"complaints": 3}, {"zh"}) == "below_level:4"
    assert skill_refusal(fresh, complaints, {"complaints": 5}, {"zh"}) is None
    assert skill_refusal(fresh, complaints, {}, {"zh"}) == "below_level:4"  # DEFAULT_LEVEL 3
    later = requirement(config, complaints, "chat", "zh", 45)
    assert skill_refusal(later, complaints, {}, {"zh"}) is None
    ja = requirement(config, cross, "chat", "ja", 0)
    assert skill_refusal(ja, cross, {}, {"en"}) == "language:ja"
    assert skill_refusal(ja, cross, {}, {"en", "ja"}) is None
    # An agent without languages speaks the group's.
    assert skill_refusal(ja, cross, {}, set()) is None
    assert skill_refusal(requirement(config, complaints, "chat", "en", 100), complaints, {}, set()) is None
    phone = requirement(config, presales, "phone", "zh", 0)
    assert skill_refusal(phone, presales, {"presales": 5}, {"zh"}) == "channel:phone"


@pytest.mark.parametrize(
    ("rings", "error"),
    [
        ("[{min_level: 3, after_s: 10}]", "applies from the start"),
        ("[{min_level: 3}, {min_level: 4, after_s: 10}]", "only relax"),
        ("[{min_level: 3}, {min_level: 2, after_s: 0}]", "in order of after_s"),
        ("[{min_level: 6}]", "less than or equal to 5"),
    ],
)
def test_rings_that_do_not_relax_are_rejected_with_their_line(rings: str, error: str) -> None:
    text = f"tenant: t\ndefault_group: g\nskill_groups:\n  - name: g\n    skill_levels: {rings}\n"
    with pytest.raises(ConfigError, match=rf"t\.yaml:5: skill_groups\.0\.skill_levels.*{error}"):
        parse_config(text, "t.yaml")


def test_language_codes_of_groups_are_checked() -> None:
    text = "tenant: t\ndefault_group: g\nskill_groups:\n  - name: g\n    languages: [zh, other]\n"
    with pytest.raises(ConfigError, match=r"t\.yaml:5: skill_groups\.0\.languages.*'other'"):
        parse_config(text, "t.yaml")


def test_proficiency_weight_is_bounded() -> None:
    text = "tenant: t\ndefault_group: g\nskills: {proficiency_weight: 2}\nskill_groups:\n  - name: g\n"
    with pytest.raises(ConfigError, match=r"t\.yaml:3: skills\.proficiency_weight"):
        parse_config(text, "t.yaml")
