"""The desk socket's auth matrix: every refusal closes with its documented code, before anything else is sent."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from switchboard.gateway.app import SOCKET_LIMIT_REASON
from switchboard.gateway.protocol import CloseCode
from switchboard.runtime.settings import ServiceSettings
from tests.integration.gateway_support import (
    ORIGIN,
    Desk,
    gateway_settings,
    roster_loaded,
    running_gateway,
    token,
)
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]


async def _refused(url: str, first_frame: dict[str, object] | None, origin: str | None = ORIGIN) -> tuple[int, str]:
    """Connect, send the first frame (if any), and return the close code and reason; fails if any frame arrives."""
    async with connect(url, origin=Origin(origin) if origin else None) as ws:
        try:
            if first_frame is not None:
                await ws.send(json.dumps(first_frame))
            frame = await ws.recv()
        except ConnectionClosed as exc:
            assert exc.rcvd is not None
            return exc.rcvd.code, exc.rcvd.reason
        raise AssertionError(f"expected a close, got a frame: {frame!r}")


async def test_auth_matrix_refuses_each_case_with_its_close_code(settings: ServiceSettings, redis: Redis) -> None:
    gs = gateway_settings(settings, auth_timeout_s=0.5)
    await roster_loaded(gs, redis)
    async with running_gateway(gs) as gw:
        url = gw.url
        cases: list[tuple[str, str, dict[str, object] | None, str | None, CloseCode]] = [
            ("missing token", url, {"type": "auth"}, ORIGIN, CloseCode.TOKEN_MISSING),
            ("bad token", url, {"type": "auth", "token": "not.a.jwt"}, ORIGIN, CloseCode.TOKEN_INVALID),
            (
                "wrong signature",
                url,
                {"type": "auth", "token": token("shop-a", "a-lina", secret="another-secret-0123456789-0123456789")},
                ORIGIN,
                CloseCode.TOKEN_INVALID,
            ),
            (
                "expired",
                url,
                {"type": "auth", "token": token("shop-a", "a-lina", ttl=60, now=time.time() - 600)},
                ORIGIN,
                CloseCode.TOKEN_EXPIRED,
            ),
            (
                "agent of another tenant",
                url,
                {"type": "auth", "token": token("shop-b", "a-lina")},
                ORIGIN,
                CloseCode.WRONG_TENANT,
            ),
            (
                "desktop expects another tenant",
                url,
                {"type": "auth", "token": token("shop-a", "a-lina"), "tenant": "shop-b"},
                ORIGIN,
                CloseCode.WRONG_TENANT,
            ),
            (
                "token in the query string",
                f"{url}?token={token('shop-a', 'a-lina')}",
                {"type": "auth", "token": token("shop-a", "a-lina")},
                ORIGIN,
                CloseCode.TOKEN_IN_URL,
            ),
            (
                "bad origin",
                url,
                {"type": "auth", "token": token("shop-a", "a-lina")},
                "http://evil.example",
                CloseCode.ORIGIN_NOT_ALLOWED,
            ),
            ("first frame not auth", url, {"type": "reply", "text": "hi"}, ORIGIN, CloseCode.PROTOCOL_ERROR),
            ("no frame at all", url, None, ORIGIN, CloseCode.AUTH_TIMEOUT),
        ]
        for name, case_url, frame, origin, expected in cases:
            code, reason = await _refused(case_url, frame, origin)
            assert code == expected, f"{name}: closed with {code} {reason!r}, expected {expected}"
            assert reason, f"{name}: close without a reason"

        # The right token opens a session whose first frame is the snapshot.
        desk = await Desk.open(url, token("shop-a", "a-lina"))
        assert desk.snapshot["agent_id"] == "a-lina"
        assert desk.snapshot["session_epoch"] >= 1
        await desk.close()


async def test_login_issues_tokens_for_roster_agents_only(settings: ServiceSettings, redis: Redis) -> None:
    gs = gateway_settings(settings)
    await roster_loaded(gs, redis)
    async with running_gateway(gs) as gw, httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as http:
        wrong = await http.post("/login", json={"tenant_id": "shop-a", "agent_id": "a-lina", "password": "nope"})
        assert wrong.status_code == 401
        other_shop = await http.post(
            "/login", json={"tenant_id": "shop-b", "agent_id": "a-lina", "password": "dev-lina"}
        )
        assert other_shop.status_code == 401
        ok = await http.post("/login", json={"tenant_id": "shop-a", "agent_id": "a-lina", "password": "dev-lina"})
        assert ok.status_code == 200
        body = ok.json()
        assert body["expires_in"] == gs.token_ttl_s
        desk = await Desk.open(gw.url, body["token"])
        assert desk.snapshot["tenant_id"] == "shop-a"
        await desk.close()


async def test_a_desk_beyond_the_replicas_socket_limit_is_closed_1013_and_the_others_keep_working(
    settings: ServiceSettings, redis: Redis
) -> None:
    gs = gateway_settings(settings)
    await roster_loaded(gs, redis)
    async with running_gateway(gs) as gw:
        gw.gateway.socket_limit = 2  # as if the open-files limit less SB_FD_RESERVE left room for two
        held = [await Desk.open(gw.url, token("shop-a", agent)) for agent in ("a-lina", "a-wei")]
        code, reason = await _refused(gw.url, {"type": "auth", "token": token("shop-b", "b-hao")})
        assert (code, reason) == (CloseCode.TRY_AGAIN_LATER, SOCKET_LIMIT_REASON)
        beat = await held[0].command({"type": "heartbeat", "id": "still-here"})
        assert beat["type"] == "result", beat
        await held[1].ws.close()
        await asyncio.sleep(0.2)
        again = await Desk.open(gw.url, token("shop-b", "b-hao"))  # room again once a desk left
        assert again.snapshot["type"] == "snapshot"
        for desk in (held[0], again):
            await desk.ws.close()
