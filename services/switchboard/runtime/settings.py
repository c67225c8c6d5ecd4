"""Settings from the environment, one pydantic-settings class per service built on ServiceSettings.

Kafka and Redis credentials and TLS files are settings too (docs/security.md): secrets are `SecretStr` (never
printed), and the files are checked when the settings are read, so a wrong path or a bad PEM stops the service at
start with the setting's name in the error instead of failing on its first connection.
"""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
_FILE_SETTINGS = (
    "kafka_ssl_ca_file",
    "kafka_ssl_cert_file",
    "kafka_ssl_key_file",
    "redis_ssl_ca_file",
    "redis_ssl_cert_file",
    "redis_ssl_key_file",
)


def _instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _env_name(field: str) -> str:
    return f"SB_{field.upper()}"


def check_tls_files(what: str, ca_file: Path | None, cert_file: Path | None, key_file: Path | None) -> None:
    """Raise ValueError naming the setting when a CA, certificate or key file is not a readable PEM (or the
    certificate and key do not belong together): the same loads a client does on its first TLS connection."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"{_env_name(what + '_ssl_ca_file')}={ca_file}: not a PEM CA certificate ({exc})") from exc
    if (cert_file is None) != (key_file is None):
        raise ValueError(f"{_env_name(what + '_ssl_cert_file')} and {_env_name(what + '_ssl_key_file')} go together")
    if cert_file is not None:
        try:
            context.load_cert_chain(str(cert_file), str(key_file))
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(
                f"{_env_name(what + '_ssl_cert_file')}={cert_file} / {_env_name(what + '_ssl_key_file')}={key_file}:"
                f" not a PEM certificate and its unencrypted key ({exc})"
            ) from exc


class ServiceSettings(BaseSettings):
    """What every service reads from its environment (prefix `SB_`; Kafka and Redis also by their usual names)."""

    # hide_input_in_errors: a settings error must not print the values it was given (passwords among them).
    model_config = SettingsConfigDict(
        env_prefix="SB_", extra="ignore", validate_by_name=True, validate_by_alias=True, hide_input_in_errors=True
    )

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
    # The process's Redis connections. Every command waits for a free one up to `redis_pool_wait_s` instead of
    # failing (redis-py's own pool fails at once beyond 100: a burst of widget connects was refused with 1013), so
    # the pool is sized for the concurrency Redis should see, not for the socket count. Waited too long: the
    # command fails as Redis being away does (TransientError, "retry later"). On a cluster it is a cap per node.
    redis_max_connections: int = Field(default=100, ge=2)
    redis_pool_wait_s: float = Field(default=30.0, gt=0)
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
    # A request's line and headers must arrive within this of the connection opening (or of the request's first
    # byte on a keep-alive connection), its body within the second of its headers; else 408 and the connection is
    # closed (runtime/http_timeouts.py: uvicorn itself has no such deadline, so a slow client could hold it open).
    http_header_timeout_s: float = Field(default=10.0, gt=0)
    http_body_timeout_s: float = Field(default=30.0, gt=0)
    # permessage-deflate for websockets when the client offers it (browsers always do). Each compressed socket holds
    # zlib state (about 40 KiB); services holding tens of thousands of sockets turn it off.
    http_ws_deflate: bool = True
    log_level: str = "INFO"
    # SIGTERM: stop intake, then give in-flight work this long before cancelling it.
    shutdown_grace_s: float = 10.0
    consumer_max_records: int = 500
    consumer_poll_ms: int = 200
    # Handled offsets are committed at most this often (and on stop and when partitions are revoked), not after
    # every poll: at a sale's usual rates a poll holds a record or two, and a commit per poll cost the broker more
    # than the records did (deploy/README.md, "Offset commits"). 0: after every poll. A crash re-reads at most this
    # much, which every handler takes (they are idempotent). The router's conversations consumer always commits
    # after every poll: its rebuild after Redis lost its data reads the inbound topic up to the committed offsets,
    # and records handled but not committed then would be in no backlog (router/service.py).
    consumer_commit_interval_ms: int = Field(default=200, ge=0)
    # The broker answers a fetch when it has this many bytes for the consumer, or after the wait (aiokafka's
    # defaults: 1 byte, 500 ms). 1 byte answers at once, which is the lowest latency at low rates; a short wait for
    # a bigger batch cost more CPU in `make bench` (deploy/README.md, "Offset commits").
    kafka_fetch_min_bytes: int = Field(default=1, ge=1)
    kafka_fetch_max_wait_ms: int = Field(default=500, ge=0)
    # Transient errors (Redis or Kafka unreachable) are retried this many times with backoff, then the
    # consumer reports not-ready and keeps retrying at the longest backoff: it pauses, it never skips.
    transient_retries: int = 5
    retry_backoff_s: float = 0.1
    retry_backoff_max_s: float = 5.0
    # Consumer group timings (runtime/consumer.py). A replica that dies without leaving the group (SIGKILL, a lost
    # node) holds its partitions until the session times out, so the session is what a failover costs: 1.5 s with
    # a heartbeat every 0.3 s hands them over in about 2 s (aiokafka's own 10 s / 3 s took 10-13 s). The broker's
    # `group.min.session.timeout.ms` must allow it (LocalKafka and deploy/k8s/strimzi set 1000).
    kafka_session_timeout_ms: int = Field(default=1500, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(default=300, ge=100)
    # Static membership (KIP-345): a replica that comes back under the same id within the session takes its
    # partitions back without a rebalance. Empty: off. It must be unique and stable per replica (a StatefulSet's
    # pod name), never shared: two replicas with one id fence each other. With it on, a clean stop does not leave
    # the group (Kafka keeps the member for a session), so its partitions wait one session timeout.
    kafka_group_instance_id: str = ""
    # An adapter waits this long for the broker's ack before telling its sender to retry later.
    produce_timeout_s: float = 5.0
    # The DLQ's bound per sender (the tenant of a refused input, or `anonymous`), in each process: a token bucket
    # of `dlq_rate_per_s` records a second up to `dlq_burst`, and one of `dlq_bytes_per_hour` bytes of originals
    # an hour (up to an hour's worth); beyond either a refusal is answered but not recorded (counted in
    # sb_dlq_dropped_total). An original over `dlq_max_payload_bytes` is cut (docs/dlq.md).
    dlq_rate_per_s: float = Field(default=20.0, gt=0)
    dlq_burst: int = Field(default=200, ge=1)
    dlq_max_payload_bytes: int = Field(default=64 * 1024, ge=1024)
    dlq_bytes_per_hour: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)

    # Kafka credentials and TLS (runtime/kafka.py `kafka_client_options` hands them to every client). The CA file
    # is a PEM bundle (Strimzi: Secret switchboard-cluster-ca-cert, key ca.crt); without one, SSL and SASL_SSL
    # trust the system's CAs. Certificate and key (mutual TLS) are optional PEM files, the key unencrypted.
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: KafkaSaslMechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_file: Path | None = None
    kafka_ssl_cert_file: Path | None = None
    kafka_ssl_key_file: Path | None = None
    # Redis ACL user (a password alone is the `default` user's); a user and password in REDIS_URL win over these.
    # TLS is a `rediss://` URL; the CA file (PEM) is then needed unless the server's CA is a system CA.
    redis_username: str | None = None
    redis_password: SecretStr | None = None
    redis_ssl_ca_file: Path | None = None
    redis_ssl_cert_file: Path | None = None
    redis_ssl_key_file: Path | None = None

    @field_validator(
        "kafka_sasl_username", "kafka_sasl_password", "redis_username", "redis_password", *_FILE_SETTINGS, mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # An env var set from an optional Secret key that is missing arrives empty: that is "not set".
        return None if value == "" else value

    @model_validator(mode="after")
    def _check_group_timings(self) -> Self:
        if self.kafka_heartbeat_interval_ms * 3 > self.kafka_session_timeout_ms:
            raise ValueError(
                "SB_KAFKA_HEARTBEAT_INTERVAL_MS must be at most a third of SB_KAFKA_SESSION_TIMEOUT_MS"
                f" ({self.kafka_heartbeat_interval_ms} > {self.kafka_session_timeout_ms} / 3)"
            )
        return self

    @model_validator(mode="after")
    def _check_security(self) -> Self:
        for name in _FILE_SETTINGS:
            path: Path | None = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{_env_name(name)}={path}: no such file")
        self._check_kafka_security()
        self._check_redis_security()
        return self

    def _check_kafka_security(self) -> None:
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_") and (not self.kafka_sasl_username or self.kafka_sasl_password is None):
            raise ValueError(
                f"SB_KAFKA_SECURITY_PROTOCOL={protocol} needs SB_KAFKA_SASL_USERNAME and SB_KAFKA_SASL_PASSWORD"
            )
        files = self.kafka_ssl_ca_file or self.kafka_ssl_cert_file or self.kafka_ssl_key_file
        if files and protocol not in ("SSL", "SASL_SSL"):
            raise ValueError(
                f"SB_KAFKA_SSL_* files are set but SB_KAFKA_SECURITY_PROTOCOL={protocol}: use SSL or SASL_SSL"
            )
        check_tls_files("kafka", self.kafka_ssl_ca_file, self.kafka_ssl_cert_file, self.kafka_ssl_key_file)

    def _check_redis_security(self) -> None:
        files = self.redis_ssl_ca_file or self.redis_ssl_cert_file or self.redis_ssl_key_file
        if files and not self.redis_url.lower().startswith(("rediss://", "rediss+cluster://")):
            raise ValueError("SB_REDIS_SSL_* files are set but REDIS_URL is not a rediss:// (TLS) URL")
        if self.redis_password is None and self.redis_username:
            raise ValueError("SB_REDIS_USERNAME needs SB_REDIS_PASSWORD")
        check_tls_files("redis", self.redis_ssl_ca_file, self.redis_ssl_cert_file, self.redis_ssl_key_file)
