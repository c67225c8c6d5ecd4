"""A stack of its own for one load test, built from `switchboard up`'s pieces.

Kafka and Redis are the ones in KAFKA_BOOTSTRAP / REDIS_URL, or local processes started here (as `up` does). The
services run as `python -m switchboard.<name>` on loopback with the run's roster, routing, chat secrets and phone
directory, and with topic and key prefixes of the run, so a shared broker and Redis are not disturbed; the run's
topics and keys are removed afterwards. switchboard's own order service serves the run's order file to the bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiosmtpd.controller import Controller

from switchboard.runtime.kafka import ensure_topics, kafka_options_for
from switchboard.runtime.logs import get_logger
from switchboard.runtime.redis_client import redis_for
from switchboard.runtime.topics import Topics
from switchboard_tools.loadgen.customers import Endpoints
from switchboard_tools.stack.procs import free_port, terminate
from switchboard_tools.stack.up import (
    NOT_STARTED_BY_UP,
    RunningService,
    existing_services,
    infrastructure,
    start_order_service,
    start_services,
)
from switchboard_tools.stack.up import wait_ready as wait_services_ready

log = get_logger(__name__)

NEEDED = ("presence", "router", "gateway", "chat", "email", "phone")


@contextlib.contextmanager
def local_stack(
    run_dir: Path,
    config_env: dict[str, str],
    run_id: str,
    partitions: int,
    ready_timeout: float = 120.0,
    keep_data: bool = False,
    log_level: str = "WARNING",
) -> Iterator[Endpoints]:
    """Start infrastructure and services for one run; yield where they listen; stop and clean up after."""
    missing = [name for name in NEEDED if name not in existing_services()]
    if missing:
        raise RuntimeError(f"services not built yet, the load test needs them: {', '.join(missing)}")
    topic_prefix, key_prefix = f"{run_id}.", run_id
    smtp_port = free_port()
    # Agents' e-mail replies leave through a relay: the customers' mail server, here a sink that counts them.
    relay = Controller(ReplySink(), hostname="127.0.0.1", port=free_port())
    relay.start()
    env = {
        **config_env,
        "SB_TOPIC_PREFIX": topic_prefix,
        "SB_KEY_PREFIX": key_prefix,
        "SB_HTTP_HOST": "127.0.0.1",
        "SB_SMTP_HOST": "127.0.0.1",
        "SB_SMTP_PORT": str(smtp_port),
        "SB_RELAY_HOST": "127.0.0.1",
        "SB_RELAY_PORT": str(relay.port),
        "SB_LOG_LEVEL": log_level,
    }
    saved = {name: os.environ.get(name) for name in [*env, "SB_ORDER_LOOKUP_URL", "SB_CUSTOMER_LOOKUP_URL"]}
    # start_services passes its own environment on to every child: set the run's config there for the start.
    os.environ.update(env)
    services: list[RunningService] = []
    try:
        with infrastructure(run_dir) as infra:
            asyncio.run(ensure_topics(infra.bootstrap, Topics(topic_prefix).specs(partitions)))
            names = [n for n in existing_services() if n not in NOT_STARTED_BY_UP]
            try:
                # The shops' order system for the bot's lookups: switchboard's own order service over the run's
                # order file (every order id the schedule's customers ask about).
                if config_env.get("SB_ORDERS_FILE"):
                    services.append(start_order_service(run_dir, Path(config_env["SB_ORDERS_FILE"])))
                    os.environ["SB_ORDER_LOOKUP_URL"] = f"http://127.0.0.1:{services[-1].port}"
                    # The same service answers the e-mail and phone adapters' customer (tier) lookups.
                    os.environ["SB_CUSTOMER_LOOKUP_URL"] = os.environ["SB_ORDER_LOOKUP_URL"]
                services += start_services(names, infra.bootstrap, infra.redis_url, run_dir)
                wait_services_ready(services, ready_timeout)
                http = {s.name: f"http://127.0.0.1:{s.port}" for s in services}
                yield Endpoints(
                    chat_http=http["chat"],
                    gateway_http=http["gateway"],
                    phone_http=http["phone"],
                    presence_http=http["presence"],
                    smtp_host="127.0.0.1",
                    smtp_port=smtp_port,
                    kafka_bootstrap=infra.bootstrap,
                    redis_url=infra.redis_url,
                    topic_prefix=topic_prefix,
                    key_prefix=key_prefix,
                    email_http=http["email"],
                    processes={**infra.pids, **{s.name: s.proc.pid for s in services}},
                )
            finally:
                for svc in reversed(services):
                    terminate(svc.proc)
                if keep_data:
                    log.warning("loadgen_data_kept", topic_prefix=topic_prefix, key_prefix=key_prefix)
                else:
                    # A broker holds files open per partition: a run's topics must not outlive it.
                    cleanup = _clean_up(infra.bootstrap, infra.redis_url, topic_prefix, key_prefix, partitions)
                    try:
                        asyncio.run(cleanup)
                    except Exception as exc:
                        log.warning("loadgen_cleanup_failed", topic_prefix=topic_prefix, error=repr(exc))
    finally:
        relay.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class ReplySink:
    """An SMTP handler that accepts every message (the customers' side of agents' e-mail replies)."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802 (aiosmtpd)
        """Take the message."""
        self.received += 1
        return "250 OK"


async def _clean_up(bootstrap: str, redis_url: str, topic_prefix: str, key_prefix: str, partitions: int) -> None:
    """Delete the run's topics and keys (they carry the run's own prefixes, nobody else uses them)."""
    admin = AIOKafkaAdminClient(**kafka_options_for(bootstrap), client_id="switchboard-loadgen-cleanup")
    await admin.start()
    try:
        await admin.delete_topics([spec.name for spec in Topics(topic_prefix).specs(partitions)])
    finally:
        await admin.close()
    redis = redis_for(redis_url)
    try:
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=f"{key_prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await redis.unlink(*batch)
                batch.clear()
        if batch:
            await redis.unlink(*batch)
    finally:
        await redis.aclose()
