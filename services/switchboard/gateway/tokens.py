"""Desk tokens: short-lived HS256 JWTs naming the tenant and the agent."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from switchboard.gateway.protocol import CloseCode

ISSUER = "switchboard-gateway"
AUDIENCE = "switchboard-desk"


@dataclass(frozen=True)
class DeskClaims:
    """Who a token speaks for."""

    tenant_id: str
    agent_id: str
    expires_at: int


class TokenRefused(Exception):
    """A token that does not open a desk session; `code` is the websocket close code to use."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def issue_token(secret: str, tenant_id: str, agent_id: str, ttl_s: int, now: float | None = None) -> str:
    """A signed token for one agent of one tenant, valid for `ttl_s` seconds."""
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "tenant": tenant_id,
        "agent": agent_id,
        "iat": issued,
        "exp": issued + ttl_s,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: str, token: str) -> DeskClaims:
    """The claims of a valid token, or TokenRefused with the close code that says why not."""
    if not token:
        raise TokenRefused(CloseCode.TOKEN_MISSING, "token missing")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "tenant", "agent"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenRefused(CloseCode.TOKEN_EXPIRED, "token expired") from exc
    except jwt.PyJWTError as exc:
        raise TokenRefused(CloseCode.TOKEN_INVALID, f"token invalid: {type(exc).__name__}") from exc
    tenant, agent = claims.get("tenant"), claims.get("agent")
    if not isinstance(tenant, str) or not isinstance(agent, str) or not tenant or not agent:
        raise TokenRefused(CloseCode.TOKEN_INVALID, "token invalid: tenant and agent must be strings")
    return DeskClaims(tenant_id=tenant, agent_id=agent, expires_at=int(claims["exp"]))
