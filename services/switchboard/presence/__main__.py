"""`python -m switchboard.presence`: the presence service (settings from the environment, prefix `SB_`)."""

import asyncio

from switchboard.presence.service import run
from switchboard.presence.settings import PresenceSettings

asyncio.run(run(PresenceSettings()))
