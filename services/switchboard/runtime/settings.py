"""Settings from the environment, one pydantic-settings class per service built on ServiceSettings."""

from __future__ import annotations

import os
import socket

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ServiceSettings(BaseSettings):
    """What every service reads from its environment (prefix `SB_`; Kafka and Redis also by their usual names)."""

    model_config = SettingsConfigDict(env_prefix="SB_", extra="ignore", validate_by_name=True, validate_by_alias=True)

    service_name: str = "switchboard"
    instance_id: str = Field(default_factory=_instance_id)
    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "SB_KAFKA_BOOTSTRAP")
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", validation_alias=AliasChoices("REDIS_URL", "SB_REDIS_URL")
    )
    # Redis Cluster instead of one server (also chosen by a `redis+cluster://` REDIS_URL): the URL names one node.
    redis_cluster: bool = False
    # Prepended to every topic name and Redis key; tests give each test its own.
    topic_prefix: str = ""
    key_prefix: str = "sb"
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    # The operator surface (/metrics, /healthz, /readyz, presence's operator API) on a port of its own; the public
    # port then answers 404 for it. None: everything on http_port (docs: deploy/README.md, "Internal port").
    internal_port: int | None = None
    # Largest websocket message the HTTP server reads; a bigger one closes the socket (1009) before it is buffered.
    http_ws_max_bytes: int = 16 * 1024 * 1024
    # permessage-deflate for websockets when the client offers it (browsers always do). Each compressed socket holds
    # zlib state (about 40 KiB); services holding tens of thousands of sockets turn it off.
    http_ws_deflate: bool = True
    log_level: str = "INFO"
    # SIGTERM: stop intake, then give in-flight work this long before cancelling it.
    shutdown_grace_s: float = 10.0
    consumer_max_records: int = 500
    consumer_poll_ms: int = 200
    # Transient errors (Redis or Kafka unreachable) are retried this many times with backoff, then the
    # consumer reports not-ready and keeps retrying at the longest backoff: it pauses, it never skips.
    transient_retries: int = 5
    retry_backoff_s: float = 0.1
    retry_backoff_max_s: float = 5.0
    # An adapter waits this long for the broker's ack before telling its sender to retry later.
    produce_timeout_s: float = 5.0
