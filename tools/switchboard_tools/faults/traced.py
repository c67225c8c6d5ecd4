"""The load generator's run, with desktops that reconnect as the desktop protocol says and a trace of every event.

A fault may drop a desk socket (the gateway loses Redis, a session ends); a real desktop reconnects with
`resume_after` = the last seq it applied and drops frames it already applied (docs/desktop-protocol.md, §5), so
the harness's agents do too: a loss the harness reports is the system's, not a desktop that gave up. Every desk
event each agent applied goes into the row's `History` (what every actor saw).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from switchboard.runtime.logs import get_logger
from switchboard_tools.faults.history import BACK_FROM_AWAY_S, History
from switchboard_tools.loadgen.agents import SimulatedAgent
from switchboard_tools.loadgen.customers import Endpoints
from switchboard_tools.loadgen.driver import Recorder, Run
from switchboard_tools.loadgen.fixtures import Credentials
from switchboard_tools.loadgen.observations import Observations
from switchboard_tools.loadgen.scenario import Scenario
from switchboard_tools.loadgen.schedule import AgentShift, Schedule
from switchboard_tools.loadgen.sockets import SOCKET_ERRORS, Socket, open_socket

log = get_logger(__name__)

# Close codes after which a desktop does not come back by itself (docs/desktop-protocol.md): superseded.
NO_RECONNECT = {4009}
# A desktop waits this long before its first reconnect, twice as long after each failed one, at most MAX.
RECONNECT_PAUSE_S = 0.5
# Error codes of a command a desktop sends again later (docs/desktop-protocol.md, "Commands").
RETRYABLE = {"retry_later", "rate_limited"}
RECONNECT_PAUSE_MAX_S = 5.0


class ResumingAgent(SimulatedAgent):
    """A simulated agent whose desktop reconnects after a dropped socket and resumes after its last applied seq."""

    applied_seq: int = 0
    reconnects: int = 0
    # Times something else (the router after missed offers, presence) set this agent away.
    set_away: int = 0
    # Commands sent and not answered yet, by id: sent again after a "retry later" or a dropped socket.
    commands: dict[str, dict[str, Any]]
    # Commands this desk numbered: each new command gets an id of its own (a resend keeps its id).
    _numbered: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.commands = {}
        # Messages this desk shows, as (conversation, epoch, message id): from events and snapshots.
        self.shown: set[tuple[str, int, str]] = set()

    async def run(self, client: aiohttp.ClientSession, leave: asyncio.Event) -> None:
        """Work until `leave`, reconnecting whenever the socket drops; hand over and go at the end."""
        pause = RECONNECT_PAUSE_S
        try:
            while not leave.is_set():
                seen = self.applied_seq
                closed_for_good = await self._session(client, leave)
                if closed_for_good or leave.is_set():
                    break
                self.reconnects += 1
                # A session that brought events resets the back-off; one that brought nothing doubles it.
                pause = RECONNECT_PAUSE_S if self.applied_seq > seen else min(pause * 2, RECONNECT_PAUSE_MAX_S)
                await asyncio.sleep(pause)
        finally:
            for held in self.held.values():
                if held.task is not None:
                    held.task.cancel()
            self._mark_idle_if_free(force=True)
            self.logged_off_at = self.clock()

    async def _session(self, client: aiohttp.ClientSession, leave: asyncio.Event) -> bool:
        """One socket from login to its end; True when it ended in a way a desktop does not retry."""
        url = self.gateway_http.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/desk"
        try:
            token = await self.login(client)
            async with open_socket(client, url) as ws:
                self._ws = ws
                auth: dict[str, Any] = {"type": "auth", "token": token, "tenant": self.shift.tenant_id}
                if self.applied_seq:
                    auth["resume_after"] = self.applied_seq
                await ws.send(json.dumps(auth))
                if self.logged_on_at is None:
                    self.logged_on_at = self.clock()
                reader = asyncio.create_task(self._read(ws))
                beats = asyncio.create_task(self._heartbeats())
                try:
                    await self._until(leave, reader)
                    if leave.is_set() and not reader.done() and not self.shift.abrupt:
                        await self._hand_over(reader)
                finally:
                    beats.cancel()
                    reader.cancel()
                    await asyncio.gather(reader, beats, return_exceptions=True)
                    self._ws = None
                return ws.close_code in NO_RECONNECT
        except SOCKET_ERRORS as exc:
            log.info("faults_desk_reconnect", agent_id=self.shift.agent_id, error=repr(exc))
            return False

    async def _send(self, frame: dict[str, Any]) -> None:
        if frame["type"] not in ("ack", "heartbeat"):
            self._numbered += 1
            frame.setdefault("id", f"{self.shift.agent_id}-c{self._numbered}")
            self.commands[str(frame["id"])] = frame
        await super()._send(frame)

    async def _read(self, ws: Socket) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind in ("result", "error"):
                self._answered_command(frame)
            elif kind == "snapshot":
                self._take_snapshot(frame)
            elif kind == "event":
                await self._event(frame)

    def _answered_command(self, frame: dict[str, Any]) -> None:
        """A command's answer; one refused for now ("retry later", rate limited) is sent again, as a desktop does."""
        command_id = str(frame.get("id", ""))
        sent = self.commands.pop(command_id, None)
        if frame.get("type") == "error" and frame.get("code") in RETRYABLE and sent is not None:
            self.commands[command_id] = sent
            delay = float(frame.get("retry_after_s") or 1.0)
            asyncio.get_running_loop().call_later(delay, self._resend, command_id)
            return
        self._unanswered.discard(command_id)
        if not self._unanswered:
            self._answered.set()

    def _resend(self, command_id: str) -> None:
        frame = self.commands.get(command_id)
        if frame is not None:
            task = asyncio.create_task(self._send(frame))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    def _take_snapshot(self, frame: dict[str, Any]) -> None:
        """After a fresh start the snapshot is the desk: work on what it says this agent owns (a close that never
        went through, before a fault, leaves it there), answer its open offers, and send again every command the
        dropped socket left unanswered."""
        now = self.clock()
        if not frame.get("resumed"):
            # A fresh start replaces the desk's state, seq included: events follow from as_of_seq + 1, which is
            # below the seq this desk had applied when Redis lost the agent's seq counter (docs/desktop-protocol.md
            # §4). A desk that kept its old seq would drop those events as already applied.
            self.applied_seq = int(frame.get("as_of_seq", 0))
        for conv in frame.get("conversations") or []:
            conversation = str(conv.get("conversation_id", ""))
            epoch = int(conv.get("epoch", 0))
            for message in conv.get("messages") or []:
                # A message the desk had not shown before reaches it in the snapshot (events folded into it were
                # never sent as events): delivered, as on a real desktop that renders the snapshot.
                shown = (conversation, epoch, str(message.get("message_id", "")))
                if shown[2] and shown not in self.shown and isinstance(self.recorder, Recorder):
                    self.shown.add(shown)
                    self.recorder.snapshot_message(self.shift, conversation, epoch, message, now)
            if conversation and conversation not in self.held:
                self._on_event(
                    {"event": "assigned", "conversation_id": conversation, "epoch": conv.get("epoch", 0)}, now
                )
        for offer in frame.get("offers") or []:
            self._on_event({"event": "offer", "conversation_id": offer.get("conversation_id", ""),
                            "epoch": offer.get("epoch", 0)}, now)  # fmt: skip
        for command_id in list(self.commands):
            self._resend(command_id)

    async def _event(self, frame: dict[str, Any]) -> None:
        seq = int(frame.get("seq", 0))
        if seq and seq <= self.applied_seq:
            await self._send({"type": "ack", "seq": self.applied_seq})
            return  # already applied before the reconnect: the protocol says drop it
        now = self.clock()
        self.recorder.desk_event(self.shift, frame, now)
        message_id = str((frame.get("message") or {}).get("message_id", ""))
        if message_id:
            self.shown.add((str(frame.get("conversation_id", "")), int(frame.get("epoch", 0)), message_id))
        self.applied_seq = max(self.applied_seq, seq)
        await self._send({"type": "ack", "seq": frame["seq"]})
        self._on_event(frame, now)
        if frame.get("event") == "status" and self._sent_away(frame):
            # The agent at the desk sees it and makes themselves available again (counted: a finding).
            self.set_away += 1
            loop = asyncio.get_running_loop()
            loop.call_later(BACK_FROM_AWAY_S, self._resend_status)

    def _sent_away(self, frame: dict[str, Any]) -> bool:
        """True for a status event that made this agent away and that the agent did not ask for."""
        attributes = frame.get("attributes") or {}
        return bool(frame.get("status") == "away" and attributes.get("changed_by") not in (None, "", "agent"))

    def _resend_status(self) -> None:
        if not self._leaving:
            task = asyncio.create_task(self._send({"type": "set_status", "status": "available", "reason": "back"}))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)


class TracingRecorder(Recorder):
    """The driver's recorder, which also writes every applied desk event into the history."""

    def __init__(self, obs: Observations, schedule: Schedule, history: History) -> None:
        super().__init__(obs, schedule, None)
        self.history = history

    def desk_event(self, agent: AgentShift, frame: dict[str, Any], received_at: float) -> None:
        """Trace the event, then record it as the load generator does."""
        self.history.desk_event(agent.tenant_id, agent.agent_id, frame, received_at)
        super().desk_event(agent, frame, received_at)

    def snapshot_message(
        self, agent: AgentShift, conversation_id: str, epoch: int, message: dict[str, Any], received_at: float
    ) -> None:
        """Counted in the row's note; delivered, not traced as an event (it was none)."""
        if self.in_run(message):
            self.history.snapshot_deliveries += 1
        super().snapshot_message(agent, conversation_id, epoch, message, received_at)


class TracedRun(Run):
    """A load-generator run with resuming desktops and the history of what they saw."""

    agent_class = ResumingAgent

    def __init__(
        self,
        scenario: Scenario,
        schedule: Schedule,
        endpoints: Endpoints,
        creds: Credentials,
        run_name: str,
        history: History,
    ) -> None:
        super().__init__(scenario, schedule, endpoints, creds, run_name, progress=False, profile="off")
        self.recorder = TracingRecorder(self.obs, self.schedule, history)
        self.history = history
        # Set once the first agents are logged on and the load begins.
        self.started = asyncio.Event()

    async def _wait_logged_on(self, count: int, tasks: list[asyncio.Task[Any]]) -> None:
        await super()._wait_logged_on(count, tasks)
        self.started.set()

    def _agent_done(self, agent: SimulatedAgent) -> None:
        if isinstance(agent, ResumingAgent):
            self.history.reconnects += agent.reconnects
            self.history.set_away += agent.set_away
