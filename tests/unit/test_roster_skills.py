"""Agents' proficiency and languages: the roster file (with file:line errors), the agent hash field, the record."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from switchboard.presence.control import LevelsInvalid, fit_levels
from switchboard.presence.schemas import AgentChanges, TemporaryAgent
from switchboard.state.agent_model import (
    ProfileChange,
    format_proficiency,
    parse_agent_hash,
    parse_proficiency,
    to_presence_record,
)
from switchboard.state.languages import ISO_639_1, language_errors
from switchboard.state.roster import RosterError, load_roster, parse_roster

ROSTER = """\
version: 1
tenants:
  - tenant_id: shop-x
    agents:
      - agent_id: x-li
        groups: [presales, orders]
        languages: [zh, en]
        proficiency: {presales: 5, orders: 2}
      - agent_id: x-mai
        groups: [cross_border]
        languages: [ja, zh]
"""


def roster_error(text: str) -> str:
    with pytest.raises(RosterError) as caught:
        parse_roster(text, "agents.yaml")
    return str(caught.value)


def test_levels_and_languages_parse() -> None:
    roster = parse_roster(ROSTER, "agents.yaml")
    li = roster.agent("shop-x", "x-li")
    mai = roster.agent("shop-x", "x-mai")
    assert li is not None and mai is not None
    assert li.proficiency == {"presales": 5, "orders": 2}
    assert mai.proficiency == {}  # no levels: every group counts at the router's default
    assert mai.languages == ["ja", "zh"]


@pytest.mark.parametrize(
    ("old", "new", "line", "says"),
    [
        ("{presales: 5, orders: 2}", "{presales: 6, orders: 2}", 8, "less than or equal to 5"),
        ("{presales: 5, orders: 2}", "{presales: 5, orders: 0}", 8, "greater than or equal to 1"),
        ("{presales: 5, orders: 2}", "{presales: 5, orders: high}", 8, "valid integer"),
        ("{presales: 5, orders: 2}", "{presales: 4.5}", 8, "valid integer"),
        ("{presales: 5, orders: 2}", "{presale: 5}", 8, "'presale', which is not one of the agent's groups"),
        ("languages: [ja, zh]", "languages: [jp, zh]", 11, "'jp' is not an ISO 639-1 language code"),
        ("languages: [zh, en]", "languages: [zh, EN]", 7, "'EN' must be lowercase ('en')"),
        ("languages: [zh, en]", "languages: [zh, zh-CN]", 7, "'zh-CN' is not an ISO 639-1"),
        ("languages: [zh, en]", "languages: [zh, zh]", 7, "listed twice"),
    ],
)
def test_bad_levels_and_languages_name_file_line_and_field(old: str, new: str, line: int, says: str) -> None:
    assert old in ROSTER
    message = roster_error(ROSTER.replace(old, new))
    assert message.startswith(f"agents.yaml:{line}: tenants.0.agents."), message
    assert says in message


def test_other_roster_errors_name_the_line_too() -> None:
    assert roster_error("tenants:\n  - tenant_id: shop-x\n    agents: [{agent_id: a}, {agent_id: a}]\n").startswith(
        "agents.yaml:2: tenants.0: "
    )
    assert "agents.yaml:3: tenants.0.agents.0.capacity.fax" in roster_error(
        "tenants:\n  - tenant_id: s\n    agents: [{agent_id: a, capacity: {fax: 1}}]\n"
    )
    assert roster_error("tenants: [\n").startswith("agents.yaml:2: not valid YAML")


def test_a_broken_roster_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text(ROSTER.replace("orders: 2", "orders: 9"), encoding="utf-8")
    with pytest.raises(RosterError, match=rf"^{path}:8: "):
        load_roster(path)


def test_dev_roster_has_levels_and_a_japanese_speaker() -> None:
    roster = load_roster()
    agents = [a for t in roster.tenants for a in t.agents]
    assert all(a.proficiency for a in agents), "every dev agent has levels"
    assert {level for a in agents for level in a.proficiency.values()} >= {2, 3, 4, 5}
    assert any("ja" in a.languages and "cross_border" in a.groups for a in agents)


def test_language_codes_are_iso_639_1() -> None:
    assert len(ISO_639_1) == 183
    assert language_errors(["zh", "en", "ja", "ko", "es", "ru", "fr", "de", "pt", "it", "vi", "th", "ar"]) == []
    assert language_errors(["cn", "jp", "other", "", "eng"]) == [
        f"{c!r} is not an ISO 639-1 language code (e.g. 'zh', 'en', 'ja')" for c in ["cn", "jp", "other", "", "eng"]
    ]


def test_the_hash_field_and_the_record_carry_levels() -> None:
    assert format_proficiency({"presales": 5, "orders": 3}) == "orders:3,presales:5"
    assert parse_proficiency("presales:5,orders:3") == {"presales": 5, "orders": 3}
    # a hand-edited or truncated field never breaks parsing: what cannot be read is no level
    assert parse_proficiency("presales:5,orders:9,logistics:x,:4,general") == {"presales": 5}
    assert parse_proficiency("") == {}
    fields = ProfileChange(proficiency={"presales": 5, "orders": 3}).hash_fields()
    assert fields == ["proficiency", "orders:3,presales:5"]
    assert ProfileChange(proficiency={}).hash_fields() == ["proficiency", ""]
    with pytest.raises(ValueError, match="bad proficiency"):
        ProfileChange(proficiency={"presales": 7}).hash_fields()
    state = parse_agent_hash("shop-x", "x-li", {b"groups": b"presales,orders", b"proficiency": b"orders:3,presales:5"})
    assert state.proficiency == {"orders": 3, "presales": 5}
    record = to_presence_record(state, now_ms=1)
    assert dict(record.proficiency) == {"orders": 3, "presales": 5}
    assert dict(to_presence_record(parse_agent_hash("shop-x", "old", {}), now_ms=1).proficiency) == {}


def test_operator_bodies_bound_levels_and_languages() -> None:
    assert AgentChanges.model_validate({"proficiency": {"orders": 4}}).proficiency == {"orders": 4}
    for bad in [
        {"proficiency": {"orders": 0}},
        {"proficiency": {"orders": 6}},
        {"proficiency": {"orders": "4"}},  # a level is a number, not text
        {"proficiency": {"orders": True}},
        {"proficiency": {"bad group!": 3}},
        {"languages": ["zh", "jp"]},
    ]:
        with pytest.raises(ValidationError):
            AgentChanges.model_validate(bad)
    helper = {"agent_id": "t1", "groups": ["general"], "languages": ["zh"], "proficiency": {"general": 2}}
    assert TemporaryAgent.model_validate(helper).proficiency == {"general": 2}
    with pytest.raises(ValidationError, match="'presales', which is not one of the agent's groups"):
        TemporaryAgent.model_validate({**helper, "proficiency": {"presales": 4}})


def test_levels_fit_the_groups_after_a_change() -> None:
    state = parse_agent_hash("shop-x", "x-li", {b"groups": b"presales,orders", b"proficiency": b"orders:2,presales:5"})
    # leaving a group drops its level; staying keeps the others
    assert fit_levels(state, {"groups": ["presales", "logistics"]}) == {
        "groups": ["presales", "logistics"],
        "proficiency": {"presales": 5},
    }
    assert fit_levels(state, {"groups": ["presales", "orders", "general"]}) == {
        "groups": ["presales", "orders", "general"]
    }
    assert fit_levels(state, {"proficiency": {"orders": 4}}) == {"proficiency": {"orders": 4}}
    assert fit_levels(state, {"groups": ["general"], "proficiency": {"general": 1}})["proficiency"] == {"general": 1}
    with pytest.raises(LevelsInvalid, match="'logistics', which is not one of the agent's groups"):
        fit_levels(state, {"proficiency": {"logistics": 4}})
    with pytest.raises(LevelsInvalid):
        fit_levels(state, {"groups": ["general"], "proficiency": {"presales": 5}})
