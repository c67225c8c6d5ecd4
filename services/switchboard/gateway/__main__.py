"""`python -m switchboard.gateway`: one gateway replica, configured from the environment (SB_*)."""

from __future__ import annotations

import asyncio

from switchboard.gateway.service import build_gateway
from switchboard.gateway.settings import GatewaySettings
from switchboard.runtime.service import ServiceRuntime


async def main() -> None:
    """Serve desktops until SIGTERM."""
    settings = GatewaySettings()
    runtime = ServiceRuntime(settings)
    await build_gateway(runtime, settings)
    await runtime.serve()


if __name__ == "__main__":
    asyncio.run(main())
