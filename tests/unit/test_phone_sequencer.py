"""The reorder rule of final segments, without I/O: a later seq waits for its predecessors, for a while."""

from __future__ import annotations

import asyncio

import pytest

from switchboard.phone.directory import PhoneDirectory
from switchboard.phone.sequencer import CallTurn, Sequencer
from switchboard.phone.settings import DEV_DIRECTORY


async def test_a_later_seq_waits_until_its_predecessor_is_written() -> None:
    turn = CallTurn(next_seq=1)
    waiting = asyncio.create_task(turn.wait_for(3, window_s=5))
    await asyncio.sleep(0)  # the waiter runs up to its wait
    assert turn.waiting == 1
    await turn.advance(2)
    assert not waiting.done()
    await turn.advance(3)
    assert await waiting is True
    assert await turn.wait_for(2, window_s=0) is True, "an earlier seq never waits"


async def test_the_gap_is_skipped_when_the_window_runs_out() -> None:
    turn = CallTurn(next_seq=1)
    assert await turn.wait_for(5, window_s=0.05) is False
    assert turn.waiting == 0


async def test_turns_load_next_seq_once_per_call() -> None:
    sequencer = Sequencer(window_s=1)
    loads = []

    async def load() -> int:
        loads.append(1)
        return 7

    first = await sequencer.turn("shop-a", "c1", load)
    again = await sequencer.turn("shop-a", "c1", load)
    other_tenant = await sequencer.turn("shop-b", "c1", load)
    assert first is again and first.next_seq == 7
    assert other_tenant is not first
    assert len(loads) == 2


def test_directory_maps_keys_and_numbers_to_tenants() -> None:
    directory = PhoneDirectory.from_mapping(
        {
            "tenants": [
                {"tenant_id": "shop-a", "numbers": ["400-800-1001"], "api_keys": ["k-a"]},
                {
                    "tenant_id": "shop-b",
                    "numbers": ["021 6123 4567"],
                    "api_key_sha256": ["d9b6a8a3b5e1f0e6b3a5f3e0e2c8a4f1b7e6d5c4b3a2918070605040302010ff"],
                },
            ]
        }
    )
    assert directory.tenant_for_key("k-a") == "shop-a"
    assert directory.tenant_for_key("k-b") is None
    assert directory.tenant_for_key(None) is None
    assert directory.tenant_for_number("4008001001") == "shop-a"
    assert directory.tenant_for_number("+021-61234567") == "shop-b"
    assert directory.tenant_for_number("110") is None


def test_a_number_or_key_listed_for_two_tenants_is_a_config_error() -> None:
    twice = [{"tenant_id": "a", "numbers": ["4008001001"]}, {"tenant_id": "b", "numbers": ["400-800-1001"]}]
    with pytest.raises(ValueError, match="two tenants"):
        PhoneDirectory.from_mapping({"tenants": twice})
    with pytest.raises(ValueError, match="bad tenant_id"):
        PhoneDirectory.from_mapping({"tenants": [{"tenant_id": "{x}"}]})


def test_the_dev_directory_loads() -> None:
    directory = PhoneDirectory.load(DEV_DIRECTORY)
    assert directory.tenant_for_key("dev-phone-shop-a") == "shop-a"
