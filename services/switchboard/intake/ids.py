"""Deterministic ids: the same provider message always gets the same switchboard message id."""

from __future__ import annotations

import hashlib

# The hash that stands for customers' contacts lives with the masking every service may import.
from switchboard.runtime.pii import stable_id

__all__ = ["message_id", "stable_id"]


def message_id(tenant_id: str, channel: str, provider_id: str) -> str:
    """The idempotency id of a provider's message (a sender's retry gets the same id)."""
    return hashlib.sha256(f"{tenant_id}\x1f{channel}\x1f{provider_id}".encode()).hexdigest()[:32]
