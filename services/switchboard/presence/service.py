"""Wiring of the presence service: clients, store, roster, sweep and the operator API on the runtime's app."""

from __future__ import annotations

import asyncio
from pathlib import Path

from switchboard.presence.api import OPENAPI_TITLE, mount_operator_api
from switchboard.presence.audit import AuditLog
from switchboard.presence.control import SurgeControl
from switchboard.presence.rebuild import PresenceRebuild
from switchboard.presence.routing_configs import RoutingConfigs
from switchboard.presence.settings import PresenceSettings
from switchboard.presence.sweep import Sweeper
from switchboard.presence.watch import RosterWatcher
from switchboard.runtime.logs import get_logger
from switchboard.runtime.redis_client import redis_client
from switchboard.runtime.service import ServiceRuntime
from switchboard.state.agents import PresenceStore
from switchboard.state.keys import Keys
from switchboard.state.roster import default_roster_path, load_roster

log = get_logger(__name__)


def _roster_path(settings: PresenceSettings) -> Path | None:
    """SB_ROSTER_PATH, else the repo's dev roster; None in an installed image without one (agents then come from
    operators as temporary agents, or from a roster mounted at SB_ROSTER_PATH)."""
    if settings.roster_path:
        return Path(settings.roster_path)
    if default_roster_path().exists():
        return default_roster_path()
    log.warning("no_roster", reason="SB_ROSTER_PATH unset and no dev roster next to the package")
    return None


async def build(settings: PresenceSettings) -> ServiceRuntime:
    """A ready-to-serve presence service: roster loaded, sweep and roster watch registered, operator API mounted."""
    runtime = ServiceRuntime(settings)
    runtime.internal_app.title = OPENAPI_TITLE
    redis = redis_client(settings)
    runtime.add_closer(redis.aclose)
    producer = await runtime.start_producer()
    store = PresenceStore(redis, Keys(settings.key_prefix), producer, wrap_up_s=settings.wrap_up_s)
    roster_path = _roster_path(settings)
    # before the roster loads: agents are written with what the surge profile in force (if any) adds to their groups
    control = SurgeControl(
        store, AuditLog(redis, store.keys, settings.audit_maxlen), RoutingConfigs(settings.config_dir())
    )
    roster = None
    if settings.load_roster_on_start and roster_path is not None:
        # a broken roster at start is a deployment error: fail loudly (a broken reload later is only logged)
        roster = load_roster(roster_path)
    roster_tenants = {t.tenant_id for t in roster.tenants} if roster is not None else set()
    rebuild = PresenceRebuild(
        settings,
        store,
        settings.instance_id,
        roster_path if roster is not None else None,
        known=lambda: control.configs.tenants() | roster_tenants,
    )
    # Tenants whose state Redis lost are rebuilt before anything new is written for them; then every sweep interval
    # (Redis may lose it again while presence runs). A failure here (Kafka away) is retried by that loop.
    try:
        await rebuild.check()
    except Exception as exc:
        log.warning("presence_rebuild_failed", error=repr(exc))
    if roster is not None:
        await store.load_roster(roster)
    sweeper = Sweeper(
        store,
        control,
        grace_s=settings.heartbeat_grace_s,
        interval_s=settings.sweep_interval_s,
        republish_after_s=settings.republish_after_s,
    )
    runtime.add_worker("sweep", sweeper.run, stop=sweeper.stop)
    runtime.add_ready_check("sweep", lambda: sweeper.healthy)
    watcher = RosterWatcher(
        store,
        roster_path if settings.load_roster_on_start else None,
        settings.roster_poll_s,
        control.audit,
        configured=control.configs.tenants,
        roster_tenants=[t.tenant_id for t in roster.tenants] if roster is not None else (),
    )
    runtime.add_worker("roster", watcher.run, stop=watcher.stop)
    stop_rebuild = asyncio.Event()
    runtime.add_worker("rebuild", lambda: rebuild.run(settings.sweep_interval_s, stop_rebuild), stop=stop_rebuild.set)
    # Operators only: on the internal port when SB_INTERNAL_PORT is set, never behind the public Ingress.
    mount_operator_api(runtime.internal_app, control, settings.operator_tokens)
    if not settings.operator_tokens:
        log.warning("operator_api_disabled", reason="SB_OPERATOR_TOKENS is empty: every operator call is 401")
    return runtime
