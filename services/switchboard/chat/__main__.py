"""`python -m switchboard.chat`: the chat channel adapter (config from the environment, see settings.py)."""

from __future__ import annotations

import asyncio

from switchboard.chat.service import build
from switchboard.chat.settings import ChatSettings


async def main() -> None:
    """Build the adapter and serve until SIGTERM."""
    runtime = await build(ChatSettings())
    await runtime.serve()


if __name__ == "__main__":
    asyncio.run(main())
