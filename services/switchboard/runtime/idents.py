"""Identifiers that come from outside (tenant, agent, skill group, profile ids): one pattern for all of them.

A value outside it is refused where it enters (HTTP 4xx, a websocket close code, a DLQ record where the docs
promise one) before it reaches a Redis key, a metric label or a log line: no braces (they would break a key's hash
tag), no spaces, no control characters or lone surrogates, at most 64 characters.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

IDENT_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
_IDENT = re.compile(IDENT_PATTERN)

# The pydantic type of such an id (request bodies, path parameters, config files).
Ident = Annotated[str, StringConstraints(pattern=IDENT_PATTERN)]


def is_ident(value: object) -> bool:
    """True when `value` is a string of the one id pattern."""
    return isinstance(value, str) and _IDENT.fullmatch(value) is not None
