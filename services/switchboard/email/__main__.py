"""`python -m switchboard.email`: the e-mail adapter, configured from the environment only."""

from switchboard.email.service import build
from switchboard.email.settings import EmailSettings
from switchboard.runtime.service import run_service

run_service(build, EmailSettings())
