"""Audit log of operator controls: a Redis stream per tenant (readable through the operator API) and a log line."""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel
from redis.asyncio import Redis

from switchboard.runtime.logs import get_logger
from switchboard.state.agent_model import text
from switchboard.state.keys import Keys

log = get_logger(__name__)


class AuditEntry(BaseModel):
    """One control an operator (or a schedule acting for one) used."""

    entry_id: str
    at_ms: int
    operator: str
    action: str
    params: dict[str, Any]
    result: dict[str, Any]


class AuditLog:
    """Appends and reads the audit stream of a tenant."""

    def __init__(self, redis: Redis, keys: Keys, maxlen: int = 10_000) -> None:
        self.redis = redis
        self.keys = keys
        self.maxlen = maxlen

    async def record(
        self, tenant_id: str, operator: str, action: str, params: dict[str, Any], result: dict[str, Any]
    ) -> str:
        """Append one entry and log it; returns the stream entry id."""
        at_ms = int(time.time() * 1000)
        entry_id = await self.redis.xadd(
            self.keys.presence_audit(tenant_id),
            {
                "at_ms": at_ms,
                "operator": operator,
                "action": action,
                "params": json.dumps(params, ensure_ascii=False, sort_keys=True),
                "result": json.dumps(result, ensure_ascii=False, sort_keys=True),
            },
            maxlen=self.maxlen,
            approximate=True,
        )
        log.info("operator_audit", tenant_id=tenant_id, operator=operator, action=action, params=params, result=result)
        return text(entry_id)

    async def read(self, tenant_id: str, limit: int = 100) -> list[AuditEntry]:
        """The newest `limit` entries, newest first."""
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await self.redis.xrevrange(  # type: ignore[assignment]
            self.keys.presence_audit(tenant_id), count=limit
        )
        out = []
        for entry_id, raw in entries:
            fields = {text(k): text(v) for k, v in raw.items()}
            out.append(
                AuditEntry(
                    entry_id=text(entry_id),
                    at_ms=int(fields["at_ms"]),
                    operator=fields["operator"],
                    action=fields["action"],
                    params=json.loads(fields["params"]),
                    result=json.loads(fields["result"]),
                )
            )
        return out
