"""`python -m switchboard.gateway`: one gateway replica, configured from the environment (SB_*)."""

from switchboard.gateway.service import build
from switchboard.gateway.settings import GatewaySettings
from switchboard.runtime.service import run_service

run_service(build, GatewaySettings())
