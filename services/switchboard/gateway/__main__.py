"""`python -m switchboard.gateway`: one gateway replica, configured from the environment (SB_*)."""

from __future__ import annotations

import asyncio
import gc

from switchboard.gateway.limits import raise_open_files
from switchboard.gateway.service import build_gateway
from switchboard.gateway.settings import GatewaySettings
from switchboard.runtime.service import ServiceRuntime


async def main() -> None:
    """Serve desktops until SIGTERM."""
    settings = GatewaySettings()
    runtime = ServiceRuntime(settings)
    await build_gateway(runtime, settings)
    # Tens of thousands of long-lived socket objects make every full garbage collection walk all of them; the
    # roster and start-up objects never die, so freeze them, and collect the young generation less often.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    await runtime.serve()


if __name__ == "__main__":
    # Every desktop is a file descriptor; the default soft limit (often 1024) would cap a replica at ~1,000 agents.
    raise_open_files(GatewaySettings().max_open_files)
    try:
        import uvloop
    except ImportError:  # uvloop comes with uvicorn[standard]; plain asyncio works, only slower
        asyncio.run(main())
    else:
        uvloop.run(main())
