"""Router processes for tests, and a desk simulator that closes what agents are assigned (as agents would)."""

from __future__ import annotations

import asyncio
import math
import sys
import uuid
from pathlib import Path

import httpx
from redis.asyncio import Redis

from switchboard.contracts import AgentCommand, AgentCommandType, DeskEventType, RoutingEvent
from switchboard.routing.config import CHANNELS
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard.state.keys import Keys
from switchboard.state.outbox import read_outbox
from switchboard_tools.stack.procs import free_port
from tests.helpers import eventually, service_env
from tests.integration.email_support import read_all

REPO = Path(__file__).resolve().parents[2]


async def start_router(
    settings: ServiceSettings, log_dir: Path, name: str, *, extra: dict[str, str] | None = None
) -> tuple[asyncio.subprocess.Process, int]:
    """Start `python -m switchboard.router` on the test's topics and keys; wait until it is ready."""
    port = free_port()
    defaults = {
        "SB_SERVICE_NAME": "router",
        "SB_INSTANCE_ID": name,
        "SB_ROUTING_CONFIG_DIR": str(REPO / "config" / "routing"),
        "SB_SWEEP_INTERVAL_S": "0.3",
        "SB_SHUTDOWN_GRACE_S": "5",
    }
    env = service_env(settings, port, **{**defaults, **(extra or {})})  # `extra` may replace a default
    log = (log_dir / f"{name}.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switchboard.router", env=env, stdout=log, stderr=log, cwd=str(REPO)
    )
    log.close()
    async with httpx.AsyncClient() as http:

        async def ready() -> bool:
            if proc.returncode is not None:
                raise AssertionError(f"router {name} exited with {proc.returncode}, see {log_dir / name}.log")
            try:
                return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        try:
            await eventually(ready, 60, f"router {name} ready")
        except BaseException:
            if proc.returncode is None:  # never leave a router running behind a failed test
                proc.kill()
                await proc.wait()
            raise
    return proc, port


async def stop_router(proc: asyncio.subprocess.Process) -> int:
    """SIGTERM and wait (SIGKILL if it hangs)."""
    if proc.returncode is None:
        proc.terminate()
        try:
            return await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
    return await proc.wait()


class DeskSimulator:
    """Agents who accept every offer and close every conversation they are assigned, through the commands topic.

    While it runs it also checks, hash by hash, that no agent is ever over capacity.
    """

    def __init__(
        self, redis: Redis, keys: Keys, producer: RecordProducer, tenant: str, agents: list[str], hold_s: float = 0.05
    ) -> None:
        self.redis, self.keys, self.producer = redis, keys, producer
        self.tenant, self.agents, self.hold_s = tenant, agents, hold_s
        self.seq = dict.fromkeys(agents, 0)
        self.closed = 0
        self.accepted = 0
        self.over_capacity: list[str] = []
        self._stop = asyncio.Event()

    async def run(self) -> None:
        """Poll outboxes and close what was assigned, until stopped."""
        while not self._stop.is_set():
            commands = []
            for agent in self.agents:
                events = await read_outbox(self.redis, self.keys, self.tenant, agent, self.seq[agent])
                for event in events:
                    self.seq[agent] = event.seq
                    if event.type == DeskEventType.DESK_EVENT_ASSIGNED:
                        commands.append(
                            (agent, event.conversation_id, event.epoch, AgentCommandType.AGENT_COMMAND_CLOSE)
                        )
                    elif event.type == DeskEventType.DESK_EVENT_OFFER:
                        commands.append(
                            (agent, event.conversation_id, event.epoch, AgentCommandType.AGENT_COMMAND_ACCEPT)
                        )
                await self._check_capacity(agent)
            if commands:
                await asyncio.sleep(self.hold_s)
                await self.producer.send_many(
                    self.producer.topics.commands,
                    [(conv, self._command(agent, conv, epoch, kind)) for agent, conv, epoch, kind in commands],
                )
                self.closed += sum(1 for c in commands if c[3] == AgentCommandType.AGENT_COMMAND_CLOSE)
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()

    def _command(self, agent: str, conv: str, epoch: int, kind: AgentCommandType.ValueType) -> AgentCommand:
        return AgentCommand(
            command_id=uuid.uuid4().hex,
            tenant_id=self.tenant,
            agent_id=agent,
            conversation_id=conv,
            type=kind,
            epoch=epoch,
            wrap_up_code="resolved",
        )

    async def _check_capacity(self, agent: str) -> None:
        fields = await self.redis.hgetall(self.keys.agent(self.tenant, agent))
        mult = float(fields.get(b"multiplier", b"1")) or 1.0
        for ch in CHANNELS:
            used = int(fields.get(f"used:{ch}".encode(), b"0"))
            cap = math.floor(int(fields.get(f"cap:{ch}".encode(), b"0")) * mult)
            if used > cap:
                self.over_capacity.append(f"{agent} {ch} {used}>{cap}")


async def first_decisions(settings: ServiceSettings, conversations: set[str]) -> dict[str, RoutingEvent]:
    """The router's first decision for each conversation on the routing topic, once it made one for every one."""
    found: dict[str, RoutingEvent] = {}

    async def all_decided() -> bool:
        for _, event in await read_all(settings.kafka_bootstrap, Topics(settings.topic_prefix).routing):
            if isinstance(event, RoutingEvent) and event.conversation_id in conversations:
                found.setdefault(event.conversation_id, event)
        return set(found) == conversations

    await eventually(all_decided, 60, "the router's decisions")
    return found
