"""The supervisor board's HTTP API and the static desk and board pages.

Every board route is under `/v1/board/tenants/{tenant_id}` and needs `Authorization: Bearer <operator token>`
(SB_OPERATOR_TOKENS, the same grants presence checks): 401 for a missing or unknown token, 403 for a tenant the
token is not granted. A supervisor is an operator token granted one shop. What the board shows of a tenant is read
with that tenant's keys only; surge and capacity controls are forwarded to presence's operator API with the
supervisor's own token, so presence decides and audits them.
"""

from __future__ import annotations

import hmac
import time
from pathlib import Path
from typing import Annotated, Any

import aiohttp
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, status
from fastapi import Path as PathParam
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from redis.asyncio import Redis

from switchboard.contracts import InboundMessage
from switchboard.contracts.json import message_dict
from switchboard.gateway.board_stats import BoardFigures
from switchboard.gateway.commands import DeskCommands, conversation_context
from switchboard.gateway.responses import ResponseTargets, agent_responses, group_responses
from switchboard.runtime.http_client import shared_session
from switchboard.runtime.http_errors import ERROR_RESPONSES
from switchboard.runtime.idents import Ident
from switchboard.runtime.logs import get_logger
from switchboard.runtime.text import Secret
from switchboard.state.agents import PresenceStore
from switchboard.state.keys import Keys
from switchboard.state.operators import OperatorGrant
from switchboard.state.responses import CHINA_UTC_OFFSET_MIN

log = get_logger(__name__)

_bearer = HTTPBearer(auto_error=False, description="An operator (supervisor) token from SB_OPERATOR_TOKENS")
MONITOR_MESSAGES = 200
# Presence operator calls the board may make, as (method, path under the tenant).
# How long a forward to presence may take before the board answers 502.
FORWARD_TIMEOUT = aiohttp.ClientTimeout(total=10)
FORWARDED = {("GET", "surge"), ("POST", "surge/activate"), ("POST", "surge/deactivate"), ("POST", "capacity")}


class BoardLogin(BaseModel):
    """A supervisor's sign-in: the shop and the operator token granted it."""

    tenant_id: Ident
    token: Annotated[Secret, Field(min_length=1)]


class Board:
    """What the board routes read: grants, figures, presence, conversations."""

    def __init__(
        self,
        grants: list[OperatorGrant],
        figures: BoardFigures,
        presence: PresenceStore,
        commands: DeskCommands,
        redis: Redis,
        keys: Keys,
        presence_url: str | None,
        targets: ResponseTargets | None = None,
        utc_offset_min: int = CHINA_UTC_OFFSET_MIN,
    ) -> None:
        self.targets = targets
        self.utc_offset_min = utc_offset_min
        self.grants = grants
        self.figures = figures
        self.presence = presence
        self.commands = commands
        self.redis = redis
        self.keys = keys
        self.presence_url = presence_url.rstrip("/") if presence_url else None

    def grant_for(self, token: str | None, tenant_id: str) -> OperatorGrant:
        """The operator behind `token` if it may see `tenant_id` (else 401 / 403)."""
        if not token:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "sign in with a supervisor token", {"WWW-Authenticate": "Bearer"}
            )
        grant = next((g for g in self.grants if hmac.compare_digest(g.token.encode(), token.encode())), None)
        if grant is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "unknown supervisor token", {"WWW-Authenticate": "Bearer"}
            )
        if not grant.allows(tenant_id):
            log.warning("board_denied", operator=grant.name, tenant_id=tenant_id)
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this token may not see shop {tenant_id}")
        return grant


def _board(request: Request) -> Board:
    board: Board = request.app.state.board
    return board


def supervisor(
    request: Request,
    tenant_id: Annotated[Ident, PathParam(description="The shop")],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> OperatorGrant:
    """The supervisor of this tenant behind the bearer token."""
    token = credentials.credentials if credentials and credentials.scheme.lower() == "bearer" else None
    return _board(request).grant_for(token, tenant_id)


Supervisor = Annotated[OperatorGrant, Depends(supervisor)]
router = APIRouter(prefix="/v1/board", tags=["board"], responses=ERROR_RESPONSES)
# A conversation id as the channels make them: bounded, and refused before it reaches a key when it is not text.
ConversationId = Annotated[str, PathParam(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f{}]+$")]


@router.post("/login")
async def board_login(request: Request, body: BoardLogin) -> dict[str, str]:
    """Check a supervisor token for a shop before the board opens."""
    grant = _board(request).grant_for(body.token, body.tenant_id)
    return {"tenant_id": body.tenant_id, "operator": grant.name}


@router.get("/tenants/{tenant_id}/groups")
async def groups(request: Request, tenant_id: str, who: Supervisor) -> dict[str, Any]:
    """Live figures and the last 30 minutes of every skill group of the tenant, with its response times (target in
    force, 3分钟响应率 and average today and over the service-level window)."""
    board = _board(request)
    now_ms = int(time.time() * 1000)
    view = board.figures.tenant_view(tenant_id, now_ms)
    if board.targets is not None:
        rows = view["groups"]
        found = await group_responses(
            board.redis,
            board.keys,
            await board.targets.in_force(tenant_id),
            tenant_id,
            [row["skill_group"] for row in rows],
            now_ms=now_ms,
            window_s=view["service_level_window_s"],
            utc_offset_min=board.utc_offset_min,
        )
        for row in rows:
            row.update(found[row["skill_group"]])
    return view


@router.get("/tenants/{tenant_id}/agents")
async def agents(request: Request, tenant_id: str, who: Supervisor) -> dict[str, Any]:
    """Every agent of the tenant: status and since when, groups with its levels, load per channel and the
    conversations it holds."""
    board = _board(request)
    states = await board.presence.list_agents(tenant_id)
    pipe = board.redis.pipeline(transaction=False)
    for state in states:
        pipe.smembers(board.keys.agent_conversations(tenant_id, state.agent_id))
    held = await pipe.execute() if states else []
    now_ms = int(time.time() * 1000)
    responses = await agent_responses(
        board.redis,
        board.keys,
        tenant_id,
        [state.agent_id for state in states],
        now_ms=now_ms,
        utc_offset_min=board.utc_offset_min,
    )
    rows = []
    for state, convs in zip(states, held, strict=True):
        rows.append(
            {
                "agent_id": state.agent_id,
                "display_name": state.display_name,
                "status": state.status.value,
                "status_since_ms": state.status_since_ms,
                "groups": state.groups,
                "proficiency": state.proficiency,
                "languages": state.languages,
                "effective_capacity": state.effective_capacity(),
                "used": state.used,
                "load": round(state.load(), 3),
                "conversations": sorted(c.decode() if isinstance(c, bytes) else c for c in convs),
                "responses_today": responses[state.agent_id],
            }
        )
    return {"tenant_id": tenant_id, "now_ms": now_ms, "agents": rows}


@router.get("/tenants/{tenant_id}/conversations/{conversation_id}")
async def monitor(request: Request, tenant_id: str, conversation_id: ConversationId, who: Supervisor) -> dict[str, Any]:
    """Read-only view of one conversation of the tenant: state, owner, messages so far, customer history."""
    board = _board(request)
    conv = await board.commands.conversation(tenant_id, conversation_id)
    if not conv.exists:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"shop {tenant_id} has no conversation {conversation_id}")
    fields = await board.redis.hmget(board.keys.conversation(tenant_id, conversation_id), ["group", "enqueued_ms"])
    group, enqueued = (v.decode() if isinstance(v, bytes) else (v or "") for v in fields)
    raws = await board.redis.lrange(board.keys.conversation_backlog(tenant_id, conversation_id), -MONITOR_MESSAGES, -1)
    messages = []
    for raw in raws:
        message = InboundMessage()
        message.ParseFromString(raw if isinstance(raw, bytes) else raw.encode())
        messages.append(message_dict(message))
    context = await conversation_context(board.redis, board.keys, tenant_id, conversation_id, conv)
    return {
        **context,
        "state": conv.state,
        "owner": conv.owner,
        "offer_agent": conv.offer_agent,
        "epoch": conv.epoch,
        "channel": conv.channel,
        "skill_group": group,
        "enqueued_ms": int(enqueued or 0),
        "messages": messages,
    }


@router.api_route("/tenants/{tenant_id}/operator/{path:path}", methods=["GET", "POST"])
async def forward(request: Request, tenant_id: str, path: str, who: Supervisor) -> Response:
    """Surge switch and capacity: forwarded to presence's operator API with the supervisor's token."""
    board = _board(request)
    if (request.method, path) not in FORWARDED:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the board does not forward {request.method} {path}")
    if board.presence_url is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "surge controls need SB_PRESENCE_URL on the gateway")
    url = f"{board.presence_url}/v1/operator/tenants/{tenant_id}/{path}"
    headers = {"Authorization": request.headers.get("authorization", ""), "Content-Type": "application/json"}
    body = await request.body()
    try:
        async with shared_session().request(
            request.method, url, data=body, headers=headers, timeout=FORWARD_TIMEOUT
        ) as answer:
            status_code, content = answer.status, await answer.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"presence did not answer: {exc!r}") from exc
    return Response(content, status_code, media_type="application/json")


def install_board(app: FastAPI, board: Board) -> None:
    """Add the board API to the gateway's app."""
    app.state.board = board
    app.include_router(router)


def install_pages(app: FastAPI, pages_dir: Path) -> None:
    """Serve the built desk and board pages at /desk/ and /board/ (and their shared assets at /assets/).

    When they are not built, those paths answer 503 saying how to build them, rather than a bare 404.
    """
    for name in ("desk", "board", "assets"):
        directory = pages_dir / name
        if directory.is_dir():
            app.mount(f"/{name}", StaticFiles(directory=directory, html=True), name=f"pages-{name}")
            continue

        async def missing() -> PlainTextResponse:
            return PlainTextResponse("the desk and board pages are not built: run `make pages`", status_code=503)

        app.add_api_route(f"/{name}/{{rest:path}}", missing, methods=["GET"], include_in_schema=False)
