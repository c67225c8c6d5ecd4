"""The tenant-isolation sweep (switchboard_tools.faults.isolation), CI-sized, against the chat, e-mail, phone,
presence and gateway processes serving the fault scenario's shops: every cross-tenant attempt refused (or, for SMTP,
kept apart from the other shop's conversations), no canary seen or changed by another shop. `make faults` runs it at
10,000 attempts on the fault stack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from switchboard.runtime.settings import ServiceSettings
from switchboard_tools.faults.isolation import (
    ATTEMPTS,
    VECTORS,
    chat_webhook,
    email_webhook,
    open_sweep,
    operator_token,
    phone_stream,
    run_sweep,
    smtp,
)
from switchboard_tools.faults.scenario import RUN_KEY, fault_scenario
from switchboard_tools.loadgen.fixtures import Credentials, write_stack_config
from switchboard_tools.loadgen.schedule import build_schedule
from switchboard_tools.stack.procs import free_port
from tests.helpers import service_env, start_service, stop_service

pytestmark = [pytest.mark.broker]

SERVICES = ("presence", "gateway", "chat", "email", "phone")


@dataclass
class ShopsStack:
    """The part of a fault stack the sweep reaches (faults.isolation.SweepStack)."""

    urls: dict[str, str]
    tenants: list[str]
    agents: dict[str, list[str]]
    creds: Any
    config_env: dict[str, str]
    smtp: tuple[str, int]
    redis_url: str
    key_prefix: str


@pytest.fixture
async def shops(settings: ServiceSettings, tmp_path: Path) -> AsyncIterator[ShopsStack]:
    scenario = fault_scenario()
    schedule = build_schedule(scenario)
    creds = Credentials(RUN_KEY)
    config_env = write_stack_config(scenario, schedule, creds, tmp_path / "config")
    tenants = [t.id for t in scenario.all_tenants()]
    agents = {t: [s.agent_id for s in schedule.agents if s.tenant_id == t] for t in tenants}
    smtp_port = free_port()
    envs = {
        name: service_env(settings, free_port(), **config_env, SB_SERVICE_NAME=name, SB_LOG_LEVEL="WARNING")
        for name in SERVICES
    }
    envs["email"] |= {"SB_SMTP_HOST": "127.0.0.1", "SB_SMTP_PORT": str(smtp_port)}
    # started side by side: the start-up is most of this test's time
    started = await asyncio.gather(
        *(start_service(f"switchboard.{name}", env, timeout=120) for name, env in envs.items()), return_exceptions=True
    )
    try:
        for result in started:
            if isinstance(result, BaseException):
                raise result
        urls = {name: result[1] for name, result in zip(SERVICES, started, strict=True) if isinstance(result, tuple)}
        smtp_at = ("127.0.0.1", smtp_port)
        yield ShopsStack(urls, tenants, agents, creds, config_env, smtp_at, settings.redis_url, settings.key_prefix)
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

    # Controls, so that a clean run means something: what a shop may do with its own credentials and its own data
    # (its own secret on its own webhooks, its own key on its own call, its own operator token, its customer's reply
    # into its own thread) is taken, and the sweep must call each of them a leak.
    async with open_sweep(shops) as sweep:
        own = shops.tenants[0]
        for attempt in (chat_webhook, email_webhook, phone_stream, operator_token, smtp):
            await attempt(sweep, own, sweep.canaries[own], 0)
    assert len(sweep.outcome.leaks) == 5, sweep.outcome
    assert set(ATTEMPTS) == set(VECTORS)
