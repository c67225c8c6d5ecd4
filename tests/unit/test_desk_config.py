"""Desk config files: the repo's load, broken ones are refused with the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.gateway.desk_config import DeskConfigError, load_desk_configs, parse_desk_config

ROOT = Path(__file__).resolve().parents[2]


def test_the_repo_desk_configs_load_and_give_an_agent_its_groups_phrases() -> None:
    configs = load_desk_configs(ROOT / "config" / "desk")
    shop_a = configs["shop-a"].for_agent(("presales",), {"presales": 120.0, "orders": 180.0})
    assert shop_a["language"] == "zh" and shop_a["wrap_up_required"] is True
    assert shop_a["response_target_s"] == 120.0 and shop_a["response_targets"] == {"presales": 120.0, "orders": 180.0}
    groups = {q["group"] for q in shop_a["quick_replies"]}
    assert groups == {"", "presales"}, "the shop's phrases and the agent's groups', not other groups'"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tenant_id: shop-x\nwrap_up: {codes: []}\n", "wrap_up.codes"),
        ("tenant_id: shop-x\nresponse_target_s: 180\n", "response_target_s is set in the routing config"),
        ("tenant_id: shop-x\nlanguage: fr\n", "language"),
        ("tenant_id: shop-x\nquick_replies: {tenant: [{key: 'Bad Key', text: x}]}\n", "quick_replies.tenant.0.key"),
        ("tenant_id: shop-x\nsurprise: 1\n", "surprise"),
        ("- just a list\n", "expected a mapping"),
    ],
)
def test_a_broken_file_names_the_file_and_the_field(text: str, expected: str) -> None:
    with pytest.raises(DeskConfigError) as caught:
        parse_desk_config(text, "config/desk/shop-x.yaml")
    assert "config/desk/shop-x.yaml" in str(caught.value) and expected in str(caught.value)


def test_a_file_named_for_another_tenant_is_refused(tmp_path: Path) -> None:
    (tmp_path / "shop-a.yaml").write_text("tenant_id: shop-b\n")
    with pytest.raises(DeskConfigError, match="must match the file name"):
        load_desk_configs(tmp_path)
