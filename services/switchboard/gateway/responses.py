"""Response time on the gateway: the targets in force, and each agent reply counted once as a response.

The target of a group lives in the tenant's routing config (`response_target_s` of the tenant and of each skill
group, config/routing/<tenant>.yaml, the files the router reads), and the surge profile in force may override it
per group (`SurgeProfile.response_target_s`). `TenantRouting.response_target` is the one rule; this module only
finds its inputs. The desk's red timer, the counted responses and the board all take the target from here.

Why the gateway counts: it is where an agent's reply becomes an OutboundMessage, and the customer messages it
answers are in the router's backlog of the conversation (each with the adapter's `received_at`). After the reply
is on the broker, one script (state/responses.py) counts it once by its message id (the desktop's resend of the
same reply has the same id), so replicas and retries never count a reply twice; the RESPONDED routing event carries
an id made from the reply's, so a consumer that sees it twice (the re-send after a broker error) can tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import ValidationError
from redis.asyncio import Redis

from switchboard.contracts import Channel, RoutingEvent, RoutingEventType
from switchboard.gateway.metrics import RESPONSE_SECONDS, RESPONSES
from switchboard.routing.config import DEFAULT_RESPONSE_TARGET_S, ConfigError, TenantRouting, load_config_file
from switchboard.routing.surge import SurgeProfile
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.logs import get_logger
from switchboard.state.keys import Keys
from switchboard.state.metrics import LabelBounds
from switchboard.state.responses import (
    Recorded,
    Reply,
    agent_scope,
    day_bucket,
    group_scope,
    minute_buckets,
    read_customer_messages,
    read_figures,
    record_response,
)
from switchboard.state.surge import read_active_surge

log = get_logger(__name__)

# Routing config files are checked for changes this often (an operator's edit reaches the targets within it).
RECHECK_S = 10.0


def load_routing_configs(directory: Path) -> dict[str, TenantRouting]:
    """Every tenant's routing config in `directory` (the router's); a file that fails validation is logged and
    skipped (the router refuses it too), so its tenant gets the default target."""
    configs: dict[str, TenantRouting] = {}
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
        try:
            config = load_config_file(path)
        except ConfigError as exc:
            log.warning("routing_config_skipped", path=str(path), error=str(exc))
            continue
        configs[config.tenant] = config
    return configs


@dataclass(frozen=True)
class TargetsInForce:
    """A tenant's response targets right now: its routing config and the surge profile's overrides."""

    config: TenantRouting | None
    profile: str = ""
    overrides: dict[str, float] = field(default_factory=dict)

    def target(self, group: str) -> float:
        """The target of `group` in seconds."""
        if self.config is None:
            return float(self.overrides.get(group, DEFAULT_RESPONSE_TARGET_S))
        return self.config.response_target(group, self.overrides)

    def groups(self) -> dict[str, float]:
        """The target of every group of the config (and of every group the profile names)."""
        names = [g.name for g in self.config.skill_groups] if self.config else []
        names += [g for g in self.overrides if g not in names]
        return {name: self.target(name) for name in names}


def _signature(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when a routing config file is added, removed or rewritten."""
    if not directory.is_dir():
        return ()
    found = []
    for path in sorted(directory.glob("*.yaml")):
        with contextlib.suppress(OSError):
            stat = path.stat()
            found.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(found)


class ResponseTargets:
    """The routing configs of every tenant (the router's files, re-read when they change, as the router does) and
    the surge profile in force (read from Redis)."""

    def __init__(
        self, redis: Redis, keys: Keys, directory: Path | None = None, *, recheck_s: float = RECHECK_S
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.directory = directory
        self.recheck_s = recheck_s
        self.configs: dict[str, TenantRouting] = {}
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self._checked = float("-inf")
        self.refresh()

    def refresh(self) -> None:
        """Re-read the configs if a file changed since the last read (checked at most every `recheck_s`)."""
        if self.directory is None or time.monotonic() - self._checked < self.recheck_s:
            return
        self._checked = time.monotonic()
        signature = _signature(self.directory)
        if signature != self._signature:
            self._signature = signature
            self.configs = load_routing_configs(self.directory)
            log.info("response_targets_loaded", tenants=sorted(self.configs))

    def labels(self, tenant_id: str, group: str) -> tuple[str, str]:
        """Metric label values of a tenant's group: as configured in the routing configs, else "unknown" / "none"."""
        return LabelBounds({t: [g.name for g in c.skill_groups] for t, c in self.configs.items()}).pair(
            tenant_id, group
        )

    async def in_force(self, tenant_id: str) -> TargetsInForce:
        """The tenant's targets now: a profile whose definition does not validate overrides nothing (logged)."""
        self.refresh()
        config = self.configs.get(tenant_id)
        surge = await read_active_surge(self.redis, self.keys, tenant_id)
        if surge is None:
            return TargetsInForce(config)
        try:
            profile = SurgeProfile.model_validate(surge.definition)
        except ValidationError as exc:
            log.warning("surge_profile_unreadable", tenant_id=tenant_id, profile=surge.name, error=str(exc))
            return TargetsInForce(config, surge.name)
        return TargetsInForce(config, surge.name, dict(profile.response_target_s))


def _ts(ms: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp


@dataclass(frozen=True, slots=True)
class RepliedTo:
    """The conversation facts a reply is counted under (read by the reply path)."""

    tenant_id: str
    conversation_id: str
    agent_id: str
    epoch: int
    channel: Channel.ValueType
    group: str
    opened_ms: int


class ResponseRecorder:
    """Counts an agent's reply as a response and publishes it (RESPONDED event, metrics)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        producer: RecordProducer,
        routing_topic: str,
        targets: ResponseTargets,
        utc_offset_min: int,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.producer = producer
        self.routing_topic = routing_topic
        self.targets = targets
        self.utc_offset_min = utc_offset_min

    async def replied(self, to: RepliedTo, reply_id: str, reply_ms: int) -> Recorded:
        """Count the reply `reply_id` sent at `reply_ms` (after its OutboundMessage is on the broker)."""
        targets, messages = await asyncio.gather(
            self.targets.in_force(to.tenant_id),
            read_customer_messages(self.redis, self.keys, to.tenant_id, to.conversation_id),
        )
        target_s = targets.target(to.group)
        reply = Reply(
            to.tenant_id,
            to.conversation_id,
            to.agent_id,
            to.group,
            reply_id,
            reply_ms,
            to.opened_ms,
            target_s,
            messages,
        )
        recorded = await record_response(self.redis, self.keys, reply, self.utc_offset_min)
        if recorded.response is None:
            return recorded
        response = recorded.response
        if recorded.new:
            kind = "first" if response.first else "later"
            tenant, group = self.targets.labels(to.tenant_id, to.group)
            RESPONSE_SECONDS.labels(tenant, group, kind).observe(response.response_ms / 1000)
            RESPONSES.labels(tenant, group, kind, "yes" if response.within else "no").inc()
        event = RoutingEvent(
            event_id="responded-" + hashlib.sha256(f"{to.tenant_id}\x00{reply_id}".encode()).hexdigest()[:32],
            tenant_id=to.tenant_id,
            conversation_id=to.conversation_id,
            type=RoutingEventType.ROUTING_EVENT_RESPONDED,
            at=_ts(reply_ms),
            skill_group=to.group,
            agent_id=to.agent_id,
            epoch=to.epoch,
            channel=to.channel,
            message_id=response.message_id,
            surge_profile=targets.profile,
            response_ms=response.response_ms,
            first_response=response.first,
            response_target_s=target_s,
            reasons=[f"reply:{reply_id}", "within_target" if response.within else "over_target"],
        )
        if to.opened_ms:
            event.enqueued_at.CopyFrom(_ts(to.opened_ms))
        await self.producer.send(self.routing_topic, to.conversation_id, event)
        return recorded


async def group_responses(
    redis: Redis,
    keys: Keys,
    targets: TargetsInForce,
    tenant_id: str,
    groups: list[str],
    *,
    now_ms: int,
    window_s: float,
    utc_offset_min: int,
) -> dict[str, dict[str, object]]:
    """What the board shows of each group's responses: the target in force, today's figures and the last
    `window_s` seconds' (whole minutes)."""
    scopes = [group_scope(g) for g in groups]
    today = await read_figures(redis, keys, tenant_id, scopes, [day_bucket(now_ms, utc_offset_min)])
    window = await read_figures(redis, keys, tenant_id, scopes, minute_buckets(now_ms, window_s))
    return {
        g: {
            "response_target_s": targets.target(g),
            "responses_today": today[scope].as_dict(),
            "responses_window": window[scope].as_dict(),
        }
        for g, scope in zip(groups, scopes, strict=True)
    }


async def agent_responses(
    redis: Redis, keys: Keys, tenant_id: str, agents: list[str], *, now_ms: int, utc_offset_min: int
) -> dict[str, dict[str, int | float | None]]:
    """Each agent's responses today (the shop's local day)."""
    scopes = [agent_scope(a) for a in agents]
    today = await read_figures(redis, keys, tenant_id, scopes, [day_bucket(now_ms, utc_offset_min)])
    return {a: today[scope].as_dict() for a, scope in zip(agents, scopes, strict=True)}
