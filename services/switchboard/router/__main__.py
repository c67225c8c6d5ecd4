"""`python -m switchboard.router`: the router (settings from the environment, prefix `SB_`)."""

import asyncio

from switchboard.router.service import run
from switchboard.router.settings import RouterSettings

asyncio.run(run(RouterSettings()))
