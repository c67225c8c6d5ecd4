"""Replies to customers without an open widget socket: a signed POST to the tenant's platform callback URL."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from switchboard.chat.settings import Tenant
from switchboard.runtime.http_client import shared_session
from switchboard.runtime.logs import get_logger
from switchboard.runtime.signing import signed_headers

log = get_logger(__name__)


class CallbackFailed(Exception):
    """The platform did not take the reply (no URL, refused, or unreachable after the retries)."""


class PlatformCallbacks:
    """POSTs frames to platforms, signed like the webhooks they send us (X-SB-Timestamp, X-SB-Signature)."""

    def __init__(self, tenants: dict[str, Tenant], timeout_s: float, attempts: int) -> None:
        self._tenants = tenants
        self._attempts = max(1, attempts)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def close(self) -> None:
        """Nothing of its own to close: the process's HTTP client (runtime/http_client.py) is closed by
        ServiceRuntime."""

    def configured(self, tenant_id: str) -> bool:
        """True when the tenant's platform takes replies by callback."""
        tenant = self._tenants.get(tenant_id)
        return tenant is not None and bool(tenant.callback_url)

    async def post(self, tenant_id: str, customer_id: str, frame: dict[str, Any]) -> None:
        """Deliver one frame; raises CallbackFailed with the reason when the platform did not take it."""
        tenant = self._tenants.get(tenant_id)
        if tenant is None or not tenant.callback_url:
            raise CallbackFailed(f"no socket open and no callback URL for tenant {tenant_id!r}")
        body = json.dumps({"tenant_id": tenant_id, "customer_id": customer_id, **frame}, ensure_ascii=False).encode()
        reason = ""
        for attempt in range(self._attempts):
            headers = {"Content-Type": "application/json", **signed_headers(tenant.secret, int(time.time()), body)}
            try:
                async with shared_session().post(
                    tenant.callback_url, data=body, headers=headers, timeout=self._timeout
                ) as response:
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = f"callback unreachable: {exc!r}"
            else:
                if 200 <= status < 300:
                    return
                reason = f"callback answered {status}"
                if status < 500 and status != 429:
                    break  # the platform refused this reply; retrying will not change its mind
            await asyncio.sleep(0.2 * (attempt + 1))
        log.warning("chat_callback_failed", tenant_id=tenant_id, reason=reason)
        raise CallbackFailed(reason)
