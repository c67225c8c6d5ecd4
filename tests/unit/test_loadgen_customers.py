"""What a simulated customer learns while waiting, and how its patience ends (no I/O)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from switchboard_tools.loadgen.customers import CustomerContext, Endpoints, Signals
from switchboard_tools.loadgen.fixtures import Credentials
from switchboard_tools.loadgen.schedule import PlannedConversation, PlannedMessage


def _conv(key: str, tag: str, leave_after_s: float | None) -> PlannedConversation:
    message = PlannedMessage(tag, 0.0, "订单3123456789012345678到哪了？")
    return PlannedConversation(key, "shop-a", "buyer-1", "chat", "order_status", "zh", (message,),
                               leave_after_s=leave_after_s)  # fmt: skip


def _ctx(signals: Signals) -> CustomerContext:
    endpoints = Endpoints("http://c", "http://g", "http://p", "http://pr", "127.0.0.1", 25, "k:9092", "redis://r")
    return CustomerContext(
        endpoints, Credentials("unit"), 0.0, lambda sent: None, lambda kind: None, asyncio.Event(), signals=signals
    )


def test_signals_match_a_bot_answer_to_its_customer_whichever_record_comes_first() -> None:
    signals = Signals({"aaaaaaaaaa": "k1", "bbbbbbbbbb": "k2"})
    signals.on_topic("aaaaaaaaaa", "c1")
    signals.bot_answer("c1")
    # The bot's event read before the message's inbound record: matched when the record comes.
    signals.bot_answer("c2")
    assert not signals.bot_answered("k2").is_set()
    signals.on_topic("bbbbbbbbbb", "c2")
    signals.on_topic("zzzzzzzzzz", "c3")  # not a message of this run's customers
    assert signals.bot_answered("k1").is_set() and signals.bot_answered("k2").is_set()
    assert not signals.taken("k1").is_set()
    signals.delivered("aaaaaaaaaa")
    assert signals.taken("k1").is_set()


async def test_a_customer_waits_for_an_agent_or_the_bot_until_patience_runs_out() -> None:
    signals = Signals({"aaaaaaaaaa": "k1", "bbbbbbbbbb": "k2", "cccccccccc": "k3"})
    ctx = _ctx(signals)
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, signals.delivered, "aaaaaaaaaa")
    assert await ctx.waits_for_agent(_conv("k1", "aaaaaaaaaa", 5.0), ctx.clock()) == "taken"
    signals.on_topic("bbbbbbbbbb", "c2")
    loop.call_later(0.05, signals.bot_answer, "c2")
    assert await ctx.waits_for_agent(_conv("k2", "bbbbbbbbbb", 5.0), ctx.clock()) == "bot"
    assert await ctx.waits_for_agent(_conv("k3", "cccccccccc", 0.1), ctx.clock()) == "gave_up"
    ctx.stop.set()
    assert await ctx.waits_for_agent(_conv("k3", "cccccccccc", None), ctx.clock()) == "stopped"


async def test_the_end_of_a_run_names_a_task_that_ignores_its_cancellation(monkeypatch: pytest.MonkeyPatch) -> None:
    from switchboard_tools.loadgen import driver
    from switchboard_tools.loadgen.scenario import load_scenario
    from switchboard_tools.loadgen.schedule import build_schedule

    scenario = load_scenario("smoke")
    endpoints = Endpoints("http://c", "http://g", "http://p", "http://pr", "127.0.0.1", 25, "k:9092", "redis://r")
    run = driver.Run(scenario, build_schedule(scenario), endpoints, Credentials("unit"), "unit", progress=False)
    monkeypatch.setattr(driver, "FINISH_TIMEOUT_S", 0.2)
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)

    async def polite() -> None:
        await asyncio.sleep(10)

    tasks = [asyncio.create_task(stubborn(), name="customer:x"), asyncio.create_task(polite(), name="agent:a")]
    await asyncio.sleep(0)  # both started
    await run._finish(tasks)
    assert run.obs.notes == ["1 tasks still running after the stop: customer:x"]
    assert tasks[1].cancelled()
    release.set()
    tasks[0].cancel()
    await asyncio.gather(tasks[0], return_exceptions=True)
