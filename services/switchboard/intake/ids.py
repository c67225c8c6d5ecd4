"""Deterministic ids: the same provider message always gets the same switchboard message id."""

from __future__ import annotations

import hashlib


def message_id(tenant_id: str, channel: str, provider_id: str) -> str:
    """The idempotency id of a provider's message (a sender's retry gets the same id)."""
    return hashlib.sha256(f"{tenant_id}\x1f{channel}\x1f{provider_id}".encode()).hexdigest()[:32]


def stable_id(*parts: str) -> str:
    """A short stable id from parts (customer ids from e-mail addresses or phone numbers)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]
