"""How `switchboard dlq` connects to Kafka: the runtime's settings (KAFKA_BOOTSTRAP, SB_TOPIC_PREFIX, SB_KAFKA_*)."""

from __future__ import annotations

from typing import Any

from switchboard.runtime.settings import ServiceSettings


class DlqUnavailable(RuntimeError):
    """The DLQ cannot be read or written: no broker answers, or the topic is not there."""


def client_options(settings: ServiceSettings) -> dict[str, Any]:
    """The connection options of every Kafka client the command makes."""
    return {"bootstrap_servers": settings.kafka_bootstrap}
