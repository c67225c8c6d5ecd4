"""`python -m switchboard.presence`: the presence service (settings from the environment, prefix `SB_`)."""

from switchboard.presence.service import build
from switchboard.presence.settings import PresenceSettings
from switchboard.runtime.service import run_service

run_service(build, PresenceSettings())
