"""Surge profiles as routing policy: validation against a tenant's config and the effective config."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from switchboard.router.surge import NO_PROFILE, ActiveProfile, ActiveProfiles, parse_profile
from switchboard.routing.chain import AgentIndex, AgentView, GroupStats, rings_due
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


def _view(agent_id: str, groups: set[str], chat: int = 2) -> AgentView:
    return AgentView(agent_id, status="available", groups=frozenset(groups), cap={"chat": chat})


def test_a_queued_conversation_is_due_in_every_ring_whose_trigger_fires() -> None:
    config = effective_config(
        CONFIG,
        SurgeProfile(
            overflow={
                "presales": [
                    OverflowRing(group="general", estimated_wait_over_s=200),
                    OverflowRing(group="orders", service_level_below=0.8),
                    OverflowRing(group="promotions", after_s=30),
                ]
            }
        ),
    )
    presales = config.group("presales")  # avg_handle_s 180
    index = AgentIndex.of([_view("lina", {"presales"}, chat=1)])
    calm = {"presales": GroupStats(queue_length=5, level=0.9)}

    def due(stats: dict[str, GroupStats], waited_s: float, ahead: int) -> list[str]:
        found = rings_due(config, presales, stats, index, "chat", waited_s=waited_s, ahead=ahead)
        return [why for _, why in found]

    # first in line, served well, waited little: nothing fires (the queue's length behind it does not count)
    assert due(calm, waited_s=5, ahead=0) == []
    # its place in the queue: one ahead of it on one slot is 360 s
    assert due(calm, waited_s=5, ahead=1) == ["overflow:general:estimated_wait=360s"]
    # the group's service level
    assert due({"presales": GroupStats(level=0.5)}, waited_s=5, ahead=0) == ["overflow:orders:service_level=0.50"]
    # its own wait
    assert due(calm, waited_s=31, ahead=0) == ["overflow:promotions:waited=31s"]
    assert len(due({"presales": GroupStats(level=0.1)}, waited_s=99, ahead=3)) == 3


def test_the_routers_config_follows_the_profile_in_force() -> None:
    profiles = ActiveProfiles()
    assert profiles.effective(CONFIG) is CONFIG
    d11 = SurgeProfile(overflow={"presales": [OverflowRing(group="general", after_s=5)]})
    assert profiles.set("shop-a", ActiveProfile("d11", d11), "v1")
    assert not profiles.set("shop-a", ActiveProfile("d11", d11), "v1")  # the same as stored: no switch
    surged = profiles.effective(CONFIG)
    assert surged.group("presales").overflow == [OverflowRing(group="general", after_s=5)]
    assert profiles.effective(CONFIG) is surged  # kept: the router's snapshot cache is keyed by the config object
    assert profiles.name("shop-a") == "d11"
    # a profile that no longer fits the config is not applied (routing goes on by the config)
    unfit = SurgeProfile(overflow={"presales": [OverflowRing(group="gone", after_s=5)]})
    assert profiles.set("shop-a", ActiveProfile("d11", unfit), "v2")
    assert profiles.effective(CONFIG) is CONFIG
    assert profiles.set("shop-a", NO_PROFILE)
    assert profiles.effective(CONFIG) is CONFIG
    assert profiles.name("shop-a") == ""
    # an unreadable stored definition routes like no profile, under its name
    broken = parse_profile("typo", {"overflow": {"presales": [{"group": "general", "after_s": -1}]}})
    assert broken == ActiveProfile("typo", None)
