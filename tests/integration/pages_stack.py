"""A running stack for the page tests: presence, router, gateway, chat, phone and email processes on the test's
topics and keys, with the dev roster (shop-a, shop-b) and the dev shops' order service, and Debian's Chromium
driven by Playwright."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from switchboard.runtime.settings import ServiceSettings
from switchboard_tools.orders import OrderServer, load_orders
from switchboard_tools.stack.pages import build_pages, ensure_chromium
from switchboard_tools.stack.procs import free_port
from tests.helpers import service_env, start_service, stop_service
from tests.integration.router_procs import REPO, start_router, stop_router

SUPERVISOR_A = "supervisor-token-shop-a-0001"
SUPERVISOR_B = "supervisor-token-shop-b-0002"
OPERATOR_TOKENS = json.dumps(
    [
        {"name": "supervisor-a", "token": SUPERVISOR_A, "tenants": ["shop-a"]},
        {"name": "supervisor-b", "token": SUPERVISOR_B, "tenants": ["shop-b"]},
    ]
)
SCREENSHOTS = REPO / "reports" / "screenshots"
README_IMAGES = REPO / "docs" / "img"
# The dev shops' sample orders, served to the router's bot by switchboard's own order service.
DEV_ORDERS = REPO / "config" / "orders" / "dev-orders.yaml"


@dataclass
class PagesStack:
    """Where each service answers, and how to restart the gateway (a server-side drop of every desk socket)."""

    settings: ServiceSettings
    log_dir: Path
    gateway: str
    chat: str
    phone: str
    presence: str
    email: str
    gateway_env: dict[str, str]
    procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)

    async def restart_gateway(self) -> None:
        """Stop the gateway (desktops get 1012) and start it again on the same port."""
        proc = self.procs["gateway"]
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
        self.procs["gateway"], _ = await start_service("switchboard.gateway", self.gateway_env)


def _env(settings: ServiceSettings, name: str, port: int, **extra: str) -> dict[str, str]:
    return service_env(settings, port, SB_SERVICE_NAME=name, SB_SHUTDOWN_GRACE_S="3", **extra)


@asynccontextmanager
async def pages_stack(settings: ServiceSettings, log_dir: Path) -> AsyncIterator[PagesStack]:
    """Start the services (pages built, Chromium installed first); stop them all at the end."""
    await asyncio.to_thread(build_pages)
    await asyncio.to_thread(ensure_chromium)
    procs: dict[str, asyncio.subprocess.Process] = {}
    router = None
    orders = OrderServer(load_orders(DEV_ORDERS), free_port())
    await orders.start()
    try:
        presence_port = free_port()
        procs["presence"], presence = await start_service(
            "switchboard.presence",
            _env(settings, "presence", presence_port, SB_OPERATOR_TOKENS=OPERATOR_TOKENS, SB_SWEEP_INTERVAL_S="0.5"),
        )
        router, _ = await start_router(settings, log_dir, "router-pages", extra={"SB_ORDER_LOOKUP_URL": orders.url})
        gateway_env = _env(
            settings,
            "gateway",
            free_port(),
            SB_OPERATOR_TOKENS=OPERATOR_TOKENS,
            SB_PRESENCE_URL=presence,
            SB_BOARD_SAMPLE_S="1",
            SB_QUEUE_STATS_INTERVAL_S="1",
            SB_JWT_SECRET="pages-test-secret-0123456789abcdef",
        )
        procs["gateway"], gateway = await start_service("switchboard.gateway", gateway_env)
        procs["chat"], chat = await start_service("switchboard.chat", _env(settings, "chat", free_port()))
        procs["phone"], phone = await start_service("switchboard.phone", _env(settings, "phone", free_port()))
        email_env = _env(settings, "email", free_port(), SB_SMTP_PORT=str(free_port()), SB_SMTP_HOST="127.0.0.1")
        procs["email"], email = await start_service("switchboard.email", email_env)
        stack = PagesStack(settings, log_dir, gateway, chat, phone, presence, email, gateway_env, procs)
        yield stack
    finally:
        if router is not None:
            await stop_router(router)
        for proc in reversed(list(procs.values())):
            await stop_service(proc)
        await orders.stop()


def browser_args() -> dict[str, Any]:
    """Playwright's launch options: Debian's Chromium, headless, no sandbox (root), no background traffic."""
    return {
        "executable_path": os.environ.get("SB_CHROMIUM", "/usr/bin/chromium"),
        "headless": True,
        "args": ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"],
    }
