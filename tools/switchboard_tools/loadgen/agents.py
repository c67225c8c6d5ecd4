"""Simulated agents over the real desktop protocol (docs/desktop-protocol.md).

Each agent logs in (`POST /login` → token), opens `/desk`, sends the auth frame, then for every event:
an offer is accepted after a drawn accept delay (or missed now and then, so the router re-offers it); an assigned
conversation is greeted with a first reply after a drawn delay, every later customer message is answered after
another, and when its drawn handling time is over it gets a last reply and is closed with a wrap-up code (so
switchboard has response times to measure). Every event is acked by seq. At the end of its shift the agent sets
itself busy (no new work), finishes what it holds, and leaves. Its random draws come from its own seeded generator,
so two runs make the same choices.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from switchboard.runtime.logs import get_logger
from switchboard_tools.loadgen.scenario import Agents, Range
from switchboard_tools.loadgen.schedule import AgentShift
from switchboard_tools.loadgen.sockets import Socket, SocketClosed, open_socket

log = get_logger(__name__)

HEARTBEAT_S = 10.0


class DeskRecorder(Protocol):
    """Where agents report what their desktop showed (the driver's bookkeeping)."""

    def desk_event(self, agent: AgentShift, frame: dict[str, Any], received_at: float) -> None:
        """An event frame as received (offers, assignments, messages, closes …)."""

    def handled(self, agent: AgentShift, conversation_id: str, answered_at: float, closed_at: float) -> None:
        """The agent closed a conversation it held."""


def handling_time(rng: random.Random, mean_s: float, sigma: float, max_s: float) -> float:
    """A lognormal draw with the given mean (μ = ln(mean) − σ²/2), cut at `max_s`."""
    mu = math.log(mean_s) - sigma * sigma / 2
    return min(max_s, rng.lognormvariate(mu, sigma))


@dataclass
class _Held:
    epoch: int
    answered_at: float
    task: asyncio.Task[None] | None = None
    # The last reply and the close are on their way: no more in-between replies.
    closing: bool = False


@dataclass
class SimulatedAgent:
    """One agent's session at the desktop."""

    shift: AgentShift
    behaviour: Agents
    password: str
    gateway_http: str
    recorder: DeskRecorder
    clock: Callable[[], float] = time.time
    rng: random.Random = field(init=False)
    held: dict[str, _Held] = field(default_factory=dict)
    logged_on_at: float | None = None
    logged_off_at: float | None = None
    busy_s: float = 0.0
    handled: int = 0
    missed: int = 0
    _busy_since: float | None = None
    _ws: Socket | None = None
    _refs: int = 0
    _leaving: bool = False
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    _pending: set[asyncio.Task[None]] = field(default_factory=set)
    # Commands sent and not yet answered (result or error frame): a leaving agent waits for them.
    _unanswered: set[str] = field(default_factory=set)
    _answered: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.shift.seed)

    async def login(self, client: aiohttp.ClientSession) -> str:
        """A desk token for this agent."""
        async with client.post(
            f"{self.gateway_http}/login",
            json={"tenant_id": self.shift.tenant_id, "agent_id": self.shift.agent_id, "password": self.password},
        ) as resp:
            resp.raise_for_status()
            return str((await resp.json())["token"])

    async def run(self, client: aiohttp.ClientSession, leave: asyncio.Event) -> None:
        """Log in, work until `leave` is set, hand over, disconnect."""
        token = await self.login(client)
        url = self.gateway_http.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/desk"
        async with open_socket(client, url) as ws:
            self._ws = ws
            await ws.send(json.dumps({"type": "auth", "token": token, "tenant": self.shift.tenant_id}))
            self.logged_on_at = self.clock()
            reader = asyncio.create_task(self._read(ws))
            beats = asyncio.create_task(self._heartbeats())
            try:
                await self._until(leave, reader)
                if not reader.done() and not self.shift.abrupt:
                    await self._hand_over(reader)
            finally:
                beats.cancel()
                for held in self.held.values():
                    if held.task is not None:
                        held.task.cancel()
                self._mark_idle_if_free(force=True)
                self.logged_off_at = self.clock()
                reader.cancel()
                await asyncio.gather(reader, beats, return_exceptions=True)

    async def _until(self, leave: asyncio.Event, reader: asyncio.Task[None]) -> None:
        waiter = asyncio.create_task(leave.wait())
        try:
            await asyncio.wait([waiter, reader], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if reader.done() and not reader.cancelled() and reader.exception() is not None:
            raise reader.exception()  # type: ignore[misc]

    async def _hand_over(self, reader: asyncio.Task[None]) -> None:
        """Shift end: take no new work, finish what is held (bounded), then go."""
        self._leaving = True
        await self._send({"type": "set_status", "status": "busy", "reason": "shift end"})
        deadline = self.clock() + self.behaviour.handling_time.max_s + 10
        # An accept sent just before the hand-over brings an assignment after it: finish that one too.
        while (self.held or self._unanswered) and self.clock() < deadline and not reader.done():
            left = deadline - self.clock()
            if self._unanswered:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._answered.wait(), min(5.0, left))
            if self.held:
                self._idle.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), left)
            else:
                # The result of an accept can come before its assignment: give the assignment a moment.
                await asyncio.sleep(0.5)

    def quiet(self) -> bool:
        """Nothing of this desk's is in flight: no reply waiting for its time, no command waiting for its answer."""
        return not self._pending and not self._unanswered

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await self._send({"type": "heartbeat"})

    async def _send(self, frame: dict[str, Any]) -> None:
        if self._ws is None:
            return
        self._refs += 1
        frame.setdefault("id", f"{self.shift.agent_id}-{self._refs}")
        if frame["type"] not in ("ack", "heartbeat"):
            self._unanswered.add(frame["id"])
            self._answered.clear()
        with contextlib.suppress(SocketClosed):
            await self._ws.send(json.dumps(frame, ensure_ascii=False))

    async def _read(self, ws: Socket) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("type") in ("result", "error"):
                self._unanswered.discard(str(frame.get("id", "")))
                if not self._unanswered:
                    self._answered.set()
                continue
            if frame.get("type") != "event":
                continue
            now = self.clock()
            self.recorder.desk_event(self.shift, frame, now)
            await self._send({"type": "ack", "seq": frame["seq"]})
            self._on_event(frame, now)

    def _on_event(self, frame: dict[str, Any], now: float) -> None:
        kind = frame.get("event")
        conversation = str(frame.get("conversation_id", ""))
        epoch = int(frame.get("epoch", 0))
        if kind == "offer":
            if self.rng.random() < self.behaviour.missed_offer_probability:
                self.missed += 1
                return
            delay = self.rng.uniform(self.behaviour.accept_delay_s.min, self.behaviour.accept_delay_s.max)
            asyncio.get_running_loop().call_later(delay, self._accept, conversation, epoch)
        elif kind == "assigned" and conversation not in self.held:
            held = _Held(epoch, now)
            self.held[conversation] = held
            self._mark_busy(now)
            held.task = asyncio.create_task(self._handle(conversation, held))
            self._reply_later(conversation, held, self.behaviour.first_reply_s)
        elif kind in ("message", "transcript") and conversation in self.held:
            self._reply_later(conversation, self.held[conversation], self.behaviour.reply_s)
        elif kind in ("closed", "transferred", "revoked") and conversation in self.held:
            held = self.held.pop(conversation)
            if held.task is not None and kind != "closed":
                held.task.cancel()
            self._mark_idle_if_free()

    def _reply_later(self, conversation: str, held: _Held, delay: Range) -> None:
        """Answer the customer after a drawn delay, if the agent still holds the conversation by then."""
        task = asyncio.create_task(self._reply(conversation, held, self.rng.uniform(delay.min, delay.max)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _reply(self, conversation: str, held: _Held, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if self.held.get(conversation) is held and not held.closing:
            text = self.behaviour.reply_text
            await self._send({"type": "reply", "conversation_id": conversation, "epoch": held.epoch, "text": text})

    def _accept(self, conversation: str, epoch: int) -> None:
        # An agent handing over at the end of a shift declines what was offered meanwhile: it goes to another.
        frame = {"type": "decline" if self._leaving else "accept", "conversation_id": conversation, "epoch": epoch}
        if self._leaving:
            frame["reason"] = "shift end"
        task = asyncio.create_task(self._send(frame))
        # Keep a reference until it is done: the loop holds tasks only weakly.
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _handle(self, conversation: str, held: _Held) -> None:
        h = self.behaviour.handling_time
        await asyncio.sleep(handling_time(self.rng, h.mean_s, h.sigma, h.max_s))
        held.closing = True
        text = self.behaviour.closing_text
        await self._send({"type": "reply", "conversation_id": conversation, "epoch": held.epoch, "text": text})
        await self._send(
            {
                "type": "close",
                "conversation_id": conversation,
                "epoch": held.epoch,
                "wrap_up_code": self.behaviour.wrap_up_code,
            }
        )
        closed_at = self.clock()
        self.handled += 1
        self.recorder.handled(self.shift, conversation, held.answered_at, closed_at)
        if self.held.get(conversation) is held:
            del self.held[conversation]
        self._mark_idle_if_free()

    def _mark_busy(self, now: float) -> None:
        if self._busy_since is None:
            self._busy_since = now

    def _mark_idle_if_free(self, force: bool = False) -> None:
        if not self.held:
            self._idle.set()
        if self._busy_since is not None and (force or not self.held):
            self.busy_s += self.clock() - self._busy_since
            self._busy_since = None
