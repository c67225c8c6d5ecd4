"""`python -m switchboard.router`: the router (settings from the environment, prefix `SB_`)."""

from switchboard.router.service import build
from switchboard.router.settings import RouterSettings
from switchboard.runtime.service import run_service

run_service(build, RouterSettings())
