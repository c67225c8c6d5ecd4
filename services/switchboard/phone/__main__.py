"""`python -m switchboard.phone`: the phone transcripts adapter (HTTP and websocket on SB_HTTP_PORT)."""

from switchboard.phone.service import build
from switchboard.phone.settings import PhoneSettings
from switchboard.runtime.service import run_service

run_service(build, PhoneSettings())
