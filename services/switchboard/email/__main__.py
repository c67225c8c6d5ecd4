"""`python -m switchboard.email`: the e-mail adapter, configured from the environment only."""

from __future__ import annotations

import asyncio

from switchboard.email.service import build_service
from switchboard.email.settings import EmailSettings


async def main() -> None:
    """Serve SMTP, the inbound webhook and the reply sender until SIGTERM."""
    service = await build_service(EmailSettings())
    await service.runtime.serve()


if __name__ == "__main__":
    asyncio.run(main())
