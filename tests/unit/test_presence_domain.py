"""Pure presence logic: roster parsing and logins, the agent hash as data, surge factors and schedule timing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from switchboard.contracts import AgentStatus, Channel, DeskEventType
from switchboard.presence.settings import OperatorGrant
from switchboard.presence.surge import (
    ScheduleAction,
    ScheduleState,
    SurgeSchedule,
    due_action,
)
from switchboard.routing.surge import SurgeProfile, factor_for
from switchboard.state.agent_model import (
    ProfileChange,
    Status,
    parse_agent_hash,
    status_desk_event,
    to_presence_record,
)
from switchboard.state.roster import Roster, load_roster


def test_dev_roster_logins() -> None:
    roster = load_roster()
    assert {t.tenant_id for t in roster.tenants} == {"shop-a", "shop-b"}
    assert roster.check_login("shop-a", "a-lina", "dev-lina") is not None
    assert roster.check_login("shop-a", "a-lina", "dev-wei") is None
    assert roster.check_login("shop-b", "a-lina", "dev-lina") is None  # another shop's agent
    assert roster.check_login("shop-a", "ghost", "") is None


def test_hashed_password_and_bad_rosters(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"s4lt" + b"secret").hexdigest()
    roster = Roster.model_validate(
        {
            "tenants": [
                {
                    "tenant_id": "shop-x",
                    "agents": [
                        {"agent_id": "x1", "password_sha256": digest, "password_salt": "s4lt"},
                        {"agent_id": "x2"},
                    ],
                }
            ]
        }
    )
    assert roster.check_login("shop-x", "x1", "secret") is not None
    assert roster.check_login("shop-x", "x1", "Secret") is None
    assert roster.check_login("shop-x", "x2", "") is None  # no password configured: no login
    for bad in [
        {"tenants": [{"tenant_id": "shop{x}", "agents": []}]},
        {"tenants": [{"tenant_id": "s", "agents": [{"agent_id": "a"}, {"agent_id": "a"}]}]},
        {"tenants": [{"tenant_id": "s", "agents": [{"agent_id": "a", "capacity": {"chat": -1}}]}]},
        {"tenants": [{"tenant_id": "s", "agents": [{"agent_id": "a", "capacity": {"fax": 1}}]}]},
    ]:
        with pytest.raises(ValidationError):
            Roster.model_validate(bad)


def test_agent_hash_to_record_and_load() -> None:
    raw = {
        b"status": b"wrap_up",
        b"session_epoch": b"4",
        b"groups": b"presales,orders",
        b"languages": b"zh,en",
        b"cap:chat": b"5",
        b"cap:email": b"10",
        b"used:chat": b"3",
        b"multiplier": b"1.5",
        b"wrap_up_until_ms": b"1700000030000",
        b"status_since_ms": b"1700000000000",
        b"presence_version": b"9",
        b"status_changed_by": b"agent",
    }
    state = parse_agent_hash("shop-a", "a-lina", raw)
    assert state.effective_capacity() == {"chat": 7, "email": 15, "phone": 0}
    assert state.load() == pytest.approx(3 / 7)
    record = to_presence_record(state, now_ms=1)
    assert record.status == AgentStatus.AGENT_STATUS_WRAP_UP
    assert list(record.skill_groups) == ["presales", "orders"]
    assert record.capacity_multiplier == 1.5
    assert record.presence_version == 9
    assert record.wrap_up_until.ToMilliseconds() == 1700000030000
    assert {(c.channel, c.slots) for c in record.capacity} >= {(Channel.CHANNEL_CHAT, 5)}
    assert record.surge_profile == ""
    # own groups: kept apart while a pool widens what the agent serves; a hash from before serves its own
    assert state.own_groups == ["presales", "orders"]
    pooled = parse_agent_hash(
        "shop-a", "a-lina", {**raw, b"groups": b"presales,orders,general", b"own_groups": b"orders"}
    )
    assert (pooled.groups, pooled.own_groups) == (["presales", "orders", "general"], ["orders"])
    assert to_presence_record(pooled, now_ms=1, surge_profile="double11").surge_profile == "double11"
    assert ProfileChange(groups=["orders"]).hash_fields() == ["own_groups", "orders"]
    assert ProfileChange(regroup=True).hash_fields() == []
    # garbage in a field never breaks parsing
    odd = parse_agent_hash("shop-a", "x", {"status": "dancing", "multiplier": "lots", "cap:chat": "many"})
    assert odd.status is Status.OFFLINE
    assert odd.multiplier == 1.0
    assert odd.capacity["chat"] == 0
    event = status_desk_event("shop-a", "a-lina", Status.AWAY, 5, "router", "3 missed offers")
    assert event.type == DeskEventType.DESK_EVENT_STATUS
    assert event.attributes["reason"] == "3 missed offers"


def test_factor_for_groups() -> None:
    profile = SurgeProfile(tenant_factor=1.2, group_factors={"presales": 2.0, "orders": 1.5})
    assert factor_for(["presales", "orders"], profile) == 2.0
    assert factor_for(["orders", "logistics"], profile) == 1.5
    assert factor_for(["logistics"], profile) == 1.2
    assert factor_for(["presales"], None) == 1.0
    with pytest.raises(ValidationError):
        SurgeProfile(tenant_factor=0)
    with pytest.raises(ValidationError):
        SurgeProfile(group_factors={"presales": 40})


def test_schedule_timing() -> None:
    window = SurgeSchedule(profile="double11", start_ms=1000, end_ms=2000)
    assert due_action(window, 999) is None
    assert due_action(window, 1000) is ScheduleAction.APPLY
    assert due_action(window, 2500) is ScheduleAction.EXPIRE  # the whole window was missed: never applied late
    active = window.model_copy(update={"state": ScheduleState.ACTIVE})
    assert due_action(active, 1999) is None
    assert due_action(active, 2000) is ScheduleAction.REVERT
    assert due_action(window.model_copy(update={"state": ScheduleState.DONE}), 5000) is None
    with pytest.raises(ValidationError):
        SurgeSchedule(profile="p", start_ms=2000, end_ms=2000)


def test_operator_grants() -> None:
    assert OperatorGrant(name="a", token="x" * 16, tenants=["shop-a"]).allows("shop-a")
    assert not OperatorGrant(name="a", token="x" * 16, tenants=["shop-a"]).allows("shop-b")
    assert OperatorGrant(name="p", token="x" * 16, tenants=["*"]).allows("shop-b")
    with pytest.raises(ValidationError):
        OperatorGrant(name="short", token="abc", tenants=["*"])
