"""The error types of the runtime's boundaries."""

from __future__ import annotations


class TransientError(Exception):
    """A dependency is unreachable or slow (Redis, Kafka); the same work may succeed when retried."""


class BrokerUnavailable(TransientError):
    """Kafka did not acknowledge a record in time; the sender must be told to retry later."""


class InvalidRecord(ValueError):
    """A record or request cannot be taken as it is; it goes to the DLQ with this reason."""

    def __init__(self, reason: str, error_type: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_type = error_type
