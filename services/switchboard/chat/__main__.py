"""`python -m switchboard.chat`: the chat channel adapter (config from the environment, see settings.py)."""

from switchboard.chat.service import build
from switchboard.chat.settings import ChatSettings
from switchboard.runtime.service import run_service

run_service(build, ChatSettings())
