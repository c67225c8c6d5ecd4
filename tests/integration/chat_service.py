"""The chat adapter run in-process for tests: real Kafka, Redis, HTTP and websockets, on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from switchboard.chat.service import build
from switchboard.chat.settings import ChatSettings
from switchboard.chat.signing import widget_token
from switchboard.runtime.service import ServiceRuntime
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.signing import signed_headers

SECRETS = {
    "shop-a": "secret-a-0123456789",
    "shop-b": "secret-b-9876543210",
    "tmall-flagship": "secret-t-1357924680",
}


@dataclass
class RunningChat:
    """A chat adapter serving on `base` (http://127.0.0.1:port)."""

    runtime: ServiceRuntime
    settings: ChatSettings

    @property
    def base(self) -> str:
        """The HTTP base URL."""
        return f"http://127.0.0.1:{self.runtime.port}"

    def ws_url(self, tenant: str, customer: str, token: str | None = None) -> str:
        """The widget URL of a customer, with a valid token unless one is given."""
        if token is None:
            token = widget_token(SECRETS[tenant].encode(), customer)
        return f"ws://127.0.0.1:{self.runtime.port}/chat/v1/ws?tenant={tenant}&customer={customer}&token={token}"

    def claims_url(self, tenant: str, customer: str, claims: str, *, signed_claims: str | None = None) -> str:
        """The widget URL of a customer whose token vouches for `claims` (or, forged, for `signed_claims`)."""
        expires = int(time.time()) + 600
        token = widget_token(SECRETS[tenant].encode(), customer, expires, signed_claims or claims)
        return self.ws_url(tenant, customer, token) + f"&expires={expires}&claims={claims}"


def chat_settings(settings: ServiceSettings, **overrides: Any) -> ChatSettings:
    """ChatSettings on the test's topics and keys, with two shops."""
    values: dict[str, Any] = {
        **settings.model_dump(exclude_unset=True),
        "service_name": "chat",
        "chat_tenant_secrets": SECRETS,
        "produce_timeout_s": 3.0,
        **overrides,
    }
    return ChatSettings(**values)


@contextlib.asynccontextmanager
async def running_chat(settings: ChatSettings) -> AsyncIterator[RunningChat]:
    """Build, serve, and on exit stop the adapter gracefully."""
    runtime = await build(settings)
    async with runtime.serving():
        yield RunningChat(runtime, settings)


def signed(tenant: str, body: dict[str, Any] | bytes, timestamp: int) -> tuple[bytes, dict[str, str]]:
    """A webhook body and its headers, signed with the shop's secret."""
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", **signed_headers(SECRETS[tenant].encode(), timestamp, raw)}
    return raw, headers


async def next_frame(ws: ClientConnection, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    """The next frame of a type, skipping others (queue updates, pongs)."""
    async with asyncio.timeout(timeout):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame["type"] == kind:
                return frame


async def send_message(ws: ClientConnection, client_msg_id: str, **fields: Any) -> None:
    """Send one widget message frame."""
    await ws.send(json.dumps({"type": "message", "client_msg_id": client_msg_id, **fields}, ensure_ascii=False))


__all__ = ["SECRETS", "RunningChat", "chat_settings", "connect", "next_frame", "running_chat", "send_message", "signed"]
