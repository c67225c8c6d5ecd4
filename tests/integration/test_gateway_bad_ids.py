"""The gateway's HTTP endpoints (`/login`, the board API) refuse ids outside the id pattern (braces, lone
surrogates, control characters, too long) with a 4xx in the one error shape, never a 500."""

from __future__ import annotations

import json

import httpx
import pytest

from switchboard.runtime.settings import ServiceSettings
from switchboard_tools.stack.procs import free_port
from tests.helpers import service_env, start_service, stop_service

pytestmark = [pytest.mark.broker]

SUPERVISOR = "supervisor-token-shop-a-0001"
# Tenant and agent ids a client may send, each escaped as JSON allows; none is an id.
BAD_IDS = ["{", "}", "shop{a}", "\\ud800", "a\\udfff", "shop a", "a\\u0000", "x" * 65, "", "商店"]


def _login_body(tenant_id: str, agent_id: str, password: str = "dev-lina") -> bytes:
    # built by hand: json.dumps would refuse to write a lone surrogate, a client need not
    return f'{{"tenant_id": "{tenant_id}", "agent_id": "{agent_id}", "password": "{password}"}}'.encode()


async def test_bad_ids_are_refused_with_4xx_never_500(settings: ServiceSettings) -> None:
    env = service_env(
        settings,
        free_port(),
        SB_SERVICE_NAME="gateway",
        SB_OPERATOR_TOKENS=json.dumps([{"name": "supervisor-a", "token": SUPERVISOR, "tenants": ["shop-a"]}]),
        SB_JWT_SECRET="bad-ids-test-secret-0123456789abcdef",
    )
    proc, base = await start_service("switchboard.gateway", env, timeout=60)
    answers: list[tuple[str, int, dict[str, object]]] = []
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            json_type = {"Content-Type": "application/json"}
            for bad in BAD_IDS:
                for body in (_login_body(bad, "a-lina"), _login_body("shop-a", bad), _login_body("shop-a", "a", bad)):
                    resp = await http.post("/login", content=body, headers=json_type)
                    answers.append((body.decode(), resp.status_code, resp.json()))
                board_login = f'{{"tenant_id": "{bad}", "token": "{SUPERVISOR}"}}'.encode()
                resp = await http.post("/v1/board/login", content=board_login, headers=json_type)
                answers.append((board_login.decode(), resp.status_code, resp.json()))
            supervisor = {"Authorization": f"Bearer {SUPERVISOR}"}
            for path in [
                "/v1/board/tenants/%7Bshop-a%7D/groups",
                "/v1/board/tenants/%ED%A0%80/agents",
                "/v1/board/tenants/shop%20a/agents",
                "/v1/board/tenants/shop-a/conversations/%7B%7D",
                "/v1/board/tenants/shop-a/conversations/" + "c" * 300,
                "/v1/board/tenants/%7B/operator/surge",
            ]:
                resp = await http.get(path, headers=supervisor)
                answers.append((path, resp.status_code, resp.json()))
            ok = await http.post("/login", json={"tenant_id": "shop-a", "agent_id": "a-lina", "password": "dev-lina"})
            assert ok.status_code == 200, ok.text
            unknown = await http.post("/login", json={"tenant_id": "shop-a", "agent_id": "a-lina", "password": "x"})
            assert (unknown.status_code, unknown.json()["error"]) == (401, "unauthorized")
    finally:
        await stop_service(proc)
    wrong = [(sent, code, body) for sent, code, body in answers if not (400 <= code < 500)]
    assert not wrong, wrong
    # the password with a bad text is a 401 or 422; an id is always a schema error
    shapes = [(sent, body) for sent, _, body in answers if set(body) != {"error", "detail"}]
    assert not shapes, shapes
