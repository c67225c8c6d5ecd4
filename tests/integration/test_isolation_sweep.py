"""The tenant-isolation sweep (switchboard_tools.faults.isolation), CI-sized, against the chat, phone, presence and
gateway processes serving the fault scenario's shops: every cross-tenant attempt refused, no canary seen by another
shop. `make faults` runs it at 10,000 attempts on the fault stack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.runtime.settings import ServiceSettings
from switchboard_tools.faults.isolation import VECTORS, Sweep, chat_webhook, plant_canaries, run_sweep
from switchboard_tools.faults.scenario import RUN_KEY, fault_scenario
from switchboard_tools.loadgen.fixtures import Credentials, write_stack_config
from switchboard_tools.loadgen.schedule import build_schedule
from switchboard_tools.stack.procs import free_port
from tests.helpers import service_env, start_service, stop_service

pytestmark = [pytest.mark.broker]

SERVICES = ("presence", "gateway", "chat", "phone")


@dataclass
class ShopsStack:
    """The part of a fault stack the sweep reaches (faults.isolation.SweepStack)."""

    urls: dict[str, str]
    tenants: list[str]
    agents: dict[str, list[str]]
    creds: Any
    config_env: dict[str, str]


@pytest.fixture
async def shops(settings: ServiceSettings, tmp_path: Path) -> AsyncIterator[ShopsStack]:
    scenario = fault_scenario()
    schedule = build_schedule(scenario)
    creds = Credentials(RUN_KEY)
    config_env = write_stack_config(scenario, schedule, creds, tmp_path / "config")
    tenants = [t.id for t in scenario.all_tenants()]
    agents = {t: [s.agent_id for s in schedule.agents if s.tenant_id == t] for t in tenants}
    envs = {
        name: service_env(settings, free_port(), **config_env, SB_SERVICE_NAME=name, SB_LOG_LEVEL="WARNING")
        for name in SERVICES
    }
    # started side by side: the start-up is most of this test's time
    started = await asyncio.gather(
        *(start_service(f"switchboard.{name}", env, timeout=120) for name, env in envs.items()), return_exceptions=True
    )
    try:
        for result in started:
            if isinstance(result, BaseException):
                raise result
        urls = {name: result[1] for name, result in zip(SERVICES, started, strict=True) if isinstance(result, tuple)}
        yield ShopsStack(urls, tenants, agents, creds, config_env)
    finally:
        for result in started:
            if isinstance(result, tuple):
                await stop_service(result[0])


async def test_no_shop_reaches_another_shops_data(shops: ShopsStack) -> None:
    outcome = await run_sweep(shops, attempts=len(VECTORS) * 6 * 4)
    print(f"isolation sweep: {outcome.attempts} attempts, {dict(outcome.by_vector)}")
    assert not outcome.leaks, outcome.leaks[:10]
    assert not outcome.errors, outcome.errors[:10]
    assert set(outcome.by_vector) == set(VECTORS), outcome.by_vector
    assert outcome.refused == outcome.attempts >= len(VECTORS) * 6 * 4

    # A control, so that a clean run means something: a shop's own secret on its own webhook is accepted, and the
    # sweep must call that a leak.
    async with httpx.AsyncClient(timeout=10) as http:
        sweep = Sweep(shops, http)
        await plant_canaries(sweep)
        own = shops.tenants[0]
        await chat_webhook(sweep, own, sweep.canaries[own], 0)
    assert len(sweep.outcome.leaks) == 1, sweep.outcome
