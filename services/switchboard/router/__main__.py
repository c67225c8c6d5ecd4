"""`python -m switchboard.router`: the router (settings from the environment, prefix `SB_`)."""

import uvloop

from switchboard.router.service import run
from switchboard.router.settings import RouterSettings

# uvloop (installed with uvicorn[standard]) takes a good share off the per-decision cost of the asyncio loop.
uvloop.run(run(RouterSettings()))
