"""Surge profiles as routing policy: validation against a tenant's config and the effective config."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from switchboard.routing.config import OverflowRing, load_config_file
from switchboard.routing.surge import (
    CustomerUpdates,
    SurgeProfile,
    effective_config,
    pooled_groups,
    profile_errors,
)

CONFIG = load_config_file(Path(__file__).resolve().parents[2] / "config" / "routing" / "shop-a.yaml")


def test_a_profile_replaces_a_groups_overflow_rings_only_while_it_is_given() -> None:
    profile = SurgeProfile(overflow={"presales": [OverflowRing(group="general", after_s=10)]})
    surged = effective_config(CONFIG, profile)
    assert surged.group("presales").overflow == [OverflowRing(group="general", after_s=10)]
    assert surged.group("orders").overflow == CONFIG.group("orders").overflow
    assert effective_config(CONFIG, None) is CONFIG
    assert CONFIG.group("presales").overflow[0].after_s == 90


def test_pools_add_the_groups_a_pool_serves_and_nothing_without_a_profile() -> None:
    profile = SurgeProfile(pools={"general": ["presales", "orders"]})
    assert pooled_groups(["general"], profile) == ["general", "presales", "orders"]
    assert pooled_groups(["presales", "general"], profile) == ["presales", "general", "orders"]
    assert pooled_groups(["general"], None) == ["general"]


def test_profile_errors_name_unknown_groups() -> None:
    profile = SurgeProfile(
        overflow={"nope": [], "presales": [OverflowRing(group="presales")]},
        pools={"general": ["ghost"]},
        response_target_s={"x": 60},
    )
    errors = profile_errors(profile, CONFIG)
    assert "overflow: unknown group 'nope'" in errors
    assert "overflow.presales: unknown or own group 'presales'" in errors
    assert "pools.general: unknown group 'ghost'" in errors
    assert "response_target_s: unknown group 'x'" in errors
    assert profile_errors(SurgeProfile(pools={"general": ["presales"]}), CONFIG) == []


@pytest.mark.parametrize(
    "data",
    [
        {"overflow": {"presales": [{"group": "general", "after_s": -1}]}},
        {"overflow": {"presales": [{"group": "general", "estimated_wait_over_s": 1e9}]}},
        {"overflow": {"presales": [{"group": "general", "service_level_below": 1.5}]}},
        {"response_target_s": {"presales": 0}},
        {"group_factors": {"presales": 11}},
        {"customer_updates": {"fax": True}},
    ],
)
def test_out_of_range_profiles_are_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SurgeProfile.model_validate(data)


def test_customer_update_channels() -> None:
    assert CustomerUpdates(chat=True, phone=True).channels() == {"chat", "phone"}
