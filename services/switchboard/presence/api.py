"""The operator HTTP API of presence: surge controls, live agent changes, who is where, and the audit log.

Every route is under `/v1/operator/tenants/{tenant_id}` and needs `Authorization: Bearer <token>`: a missing or
unknown token is 401, a token not granted the tenant is 403 (tokens are scoped per tenant; `"*"` grants all).
"""

from __future__ import annotations

import hmac
from collections import Counter, defaultdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from switchboard.presence.audit import AuditEntry
from switchboard.presence.control import ControlError, LevelsInvalid, ProfileInvalid, SurgeControl
from switchboard.presence.schemas import (
    ActivateRequest,
    AgentChanges,
    AgentView,
    CapacityRequest,
    ChangedView,
    RemoveRequest,
    ScheduleRequest,
    StatusRequest,
    SurgeView,
    TemporaryAgentsRequest,
    TemporaryAgentsView,
    WhereView,
)
from switchboard.presence.settings import OperatorGrant
from switchboard.presence.surge import SurgeSchedule
from switchboard.routing.surge import SurgeProfile
from switchboard.runtime.http_errors import ERROR_RESPONSES, ErrorBody, error_response, install_error_shapes
from switchboard.runtime.idents import Ident
from switchboard.runtime.input_limits import JsonBodyGate
from switchboard.runtime.logs import get_logger
from switchboard.state.agent_model import AgentState, Status
from switchboard.state.agents import AgentOffline, UnknownAgent
from switchboard.state.roster import RosterAgent

log = get_logger(__name__)

_bearer = HTTPBearer(auto_error=False, description="An operator token from SB_OPERATOR_TOKENS")


def _grants(request: Request) -> list[OperatorGrant]:
    grants: list[OperatorGrant] = request.app.state.operator_grants
    return grants


def operator_for_tenant(
    request: Request,
    tenant_id: Annotated[Ident, Path(description="The shop")],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> OperatorGrant:
    """The operator behind the bearer token, if it may act on this tenant (else 401 / 403)."""
    unauthorized = HTTPException(
        status.HTTP_401_UNAUTHORIZED, "missing or unknown operator token", {"WWW-Authenticate": "Bearer"}
    )
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized
    presented = credentials.credentials.encode()
    grant = next((g for g in _grants(request) if hmac.compare_digest(g.token.encode(), presented)), None)
    if grant is None:
        raise unauthorized
    if not grant.allows(tenant_id):
        # refused attempts on another shop are worth a look: logged, not audited into that shop's log
        log.warning("operator_denied", operator=grant.name, tenant_id=tenant_id, path=request.url.path)
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"operator {grant.name} may not control tenant {tenant_id}")
    return grant


Operator = Annotated[OperatorGrant, Depends(operator_for_tenant)]


def _control(request: Request) -> SurgeControl:
    control: SurgeControl = request.app.state.surge_control
    return control


Control = Annotated[SurgeControl, Depends(_control)]


def _actor(grant: OperatorGrant) -> str:
    return f"operator:{grant.name}"


router = APIRouter(prefix="/v1/operator/tenants/{tenant_id}", tags=["operator"], responses=ERROR_RESPONSES)
# At most this many agents are skipped by `offset` (a tenant has far fewer).
MAX_OFFSET = 1_000_000


def _answer(status_code: int, description: str) -> dict[int | str, dict[str, Any]]:
    return {status_code: {"model": ErrorBody, "description": description}}


_NO_AGENT = _answer(404, "`not_found`: the tenant has no such agent")


@router.get("/agents", summary="Who is where")
async def where(
    tenant_id: str,
    operator: Operator,
    control: Control,
    status_filter: Annotated[Status | None, Query(alias="status")] = None,
    group: Annotated[Ident | None, Query()] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> WhereView:
    """Agents of the tenant (optionally of one status / group) with load, by agent id, one page at a time;
    the counts by status and group cover every matching agent."""
    agents = await control.store.list_agents(tenant_id)
    if status_filter is not None:
        agents = [a for a in agents if a.status is status_filter]
    if group is not None:
        agents = [a for a in agents if group in a.groups]
    by_group: dict[str, Counter[str]] = defaultdict(Counter)
    for agent in agents:
        for g in agent.groups:
            by_group[g][agent.status.value] += 1
    return WhereView(
        total=len(agents),
        agents=[AgentView.of(a) for a in agents[offset : offset + limit]],
        by_status=dict(Counter(a.status.value for a in agents)),
        by_group={g: dict(c) for g, c in sorted(by_group.items())},
        active_profile=await control.active_profile_name(tenant_id),
    )


_LEVELS_INVALID = _answer(
    422,
    "`invalid_field`: a field out of bounds (capacity above 1000 slots, a level outside 1-5, a language that is not an "
    "ISO 639-1 code), or a level for a group the agent would not serve after the change; nothing was changed.",
)


@router.patch(
    "/agents/{agent_id}",
    summary="Change an agent's skills, levels, languages or capacity live",
    responses={**_LEVELS_INVALID, **_NO_AGENT},
)
async def update_agent(
    tenant_id: str, agent_id: Ident, body: AgentChanges, operator: Operator, control: Control
) -> AgentView:
    """Apply the changes at once; the router gets the agent's new AgentPresence record."""
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    if body.capacity is not None:
        changes["capacity"] = body.capacity.as_dict()
    try:
        await control.update_agent(tenant_id, agent_id, changes, _actor(operator))
    except LevelsInvalid as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    except ControlError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return AgentView.of(await _agent(control, tenant_id, agent_id))


@router.put(
    "/agents/{agent_id}/status",
    summary="Set an agent's status",
    responses={**_NO_AGENT, **_answer(409, "`conflict`: the agent is offline (it comes back only by logging in)")},
)
async def set_status(
    tenant_id: str, agent_id: Ident, body: StatusRequest, operator: Operator, control: Control
) -> AgentView:
    """Set the status as an operator (e.g. away during a meeting); an offline agent must log in itself."""
    try:
        await control.set_status(tenant_id, agent_id, body.status, body.reason, _actor(operator))
    except UnknownAgent as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no agent {agent_id}") from exc
    except AgentOffline as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"{agent_id} is offline") from exc
    return AgentView.of(await _agent(control, tenant_id, agent_id))


async def _agent(control: SurgeControl, tenant_id: str, agent_id: str) -> AgentState:
    state = await control.store.get_agent(tenant_id, agent_id)
    if state is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no agent {agent_id}")
    return state


@router.post("/capacity", summary="Raise or lower capacity by a factor")
async def scale_capacity(tenant_id: str, body: CapacityRequest, operator: Operator, control: Control) -> ChangedView:
    """Every agent of the tenant (or of `group`) gets `multiplier = factor`; effective slots are
    floor(cap × factor). The router reacts to the AgentPresence records at once."""
    changed = await control.scale_capacity(tenant_id, body.factor, _actor(operator), body.group)
    return ChangedView(changed=changed)


@router.post(
    "/temporary-agents",
    summary="Add temporary agents in bulk",
    status_code=201,
    responses=_answer(409, "`conflict`: the batch names a rostered agent; nothing was added"),
)
async def add_temporary(
    tenant_id: str, body: TemporaryAgentsRequest, operator: Operator, control: Control
) -> TemporaryAgentsView:
    """Create surge helpers (offline until they log in at the gateway with the password issued here, once);
    an active surge profile's factor applies to them. Adding an agent again issues it a new password."""
    agents = [RosterAgent(**a.model_dump(), temporary=True) for a in body.agents]
    try:
        passwords = await control.add_temporary_agents(tenant_id, agents, _actor(operator))
    except ControlError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return TemporaryAgentsView(changed=list(passwords), passwords=passwords)


@router.post("/temporary-agents/remove", summary="Remove temporary agents in bulk")
async def remove_temporary(tenant_id: str, body: RemoveRequest, operator: Operator, control: Control) -> dict[str, str]:
    """Each agent goes offline (its conversations go back to the queue) and leaves every group.
    Rostered agents are refused; the answer says what happened to each id."""
    return await control.remove_temporary_agents(tenant_id, body.agent_ids, _actor(operator))


@router.get("/surge", summary="Surge profiles, the one in force, and schedules")
async def surge(tenant_id: str, operator: Operator, control: Control) -> SurgeView:
    """The tenant's surge configuration."""
    return SurgeView(
        profiles=await control.profiles(tenant_id),
        active_profile=await control.active_profile_name(tenant_id),
        schedules=await control.schedules(tenant_id),
    )


_PROFILE_INVALID = _answer(
    422,
    "`invalid_field`: the profile is malformed, or does not fit the tenant's routing config: `detail` lists every "
    "problem (unknown group, overflow to its own group, threshold out of range); nothing was stored.",
)
_NO_PROFILE = _answer(404, "`not_found`: the tenant has no such surge profile")


def _invalid(exc: ProfileInvalid) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.errors)


@router.put("/surge/profiles/{name}", summary="Define a surge profile", responses=_PROFILE_INVALID)
async def put_profile(
    tenant_id: str, name: Ident, body: SurgeProfile, operator: Operator, control: Control
) -> SurgeView:
    """Create or replace a profile, checked against the tenant's routing config (422 with the list of errors, and
    nothing stored, when it does not fit). If it is in force, its new factors and pools apply at once."""
    try:
        await control.put_profile(tenant_id, name, body, _actor(operator))
    except ProfileInvalid as exc:
        raise _invalid(exc) from exc
    return await surge(tenant_id, operator, control)


@router.post("/surge/activate", summary="Switch a surge profile on", responses={**_PROFILE_INVALID, **_NO_PROFILE})
async def activate(tenant_id: str, body: ActivateRequest, operator: Operator, control: Control) -> ChangedView:
    """Every agent's multiplier becomes the profile's factor for its groups, and agents of a pool group also serve
    the pool's groups. 422 when the profile no longer fits the routing config (changed since it was defined)."""
    try:
        return ChangedView(changed=await control.activate(tenant_id, body.profile, _actor(operator)))
    except ProfileInvalid as exc:
        raise _invalid(exc) from exc
    except ControlError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.post("/surge/deactivate", summary="Switch the surge profile off")
async def deactivate(tenant_id: str, operator: Operator, control: Control) -> ChangedView:
    """Every agent's multiplier goes back to 1 and every agent serves exactly its own groups again."""
    return ChangedView(changed=await control.deactivate(tenant_id, _actor(operator)))


@router.post(
    "/surge/schedules",
    summary="Schedule a surge profile for a time window",
    status_code=201,
    responses={
        **_NO_PROFILE,
        **_answer(422, "`invalid_field`: a field out of bounds, or a window that ends before it starts"),
    },
)
async def schedule(tenant_id: str, body: ScheduleRequest, operator: Operator, control: Control) -> SurgeSchedule:
    """The sweep switches the profile on at `start` and off at `end` (whichever presence replica sweeps first)."""
    try:
        window = SurgeSchedule(profile=body.profile, start_ms=_ms(body.start), end_ms=_ms(body.end))
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    try:
        return await control.schedule(tenant_id, window, _actor(operator))
    except ControlError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.delete(
    "/surge/schedules/{schedule_id}",
    summary="Cancel a schedule",
    responses=_answer(409, "`conflict`: no such schedule, or it is over (done or cancelled)"),
)
async def cancel_schedule(tenant_id: str, schedule_id: Ident, operator: Operator, control: Control) -> SurgeSchedule:
    """A pending window never starts; an active one ends now."""
    try:
        return await control.cancel_schedule(tenant_id, schedule_id, _actor(operator))
    except ControlError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


@router.get("/audit", summary="The audit log of operator controls")
async def audit(
    tenant_id: str, operator: Operator, control: Control, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[AuditEntry]:
    """Newest first."""
    return await control.audit.read(tenant_id, limit)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


OPENAPI_TITLE = "switchboard presence operator API"


def openapi_document() -> dict[str, Any]:
    """The operator API's OpenAPI document (what `docs/operator-api.json` holds)."""
    app = FastAPI(title=OPENAPI_TITLE, version="1", description=__doc__)
    app.include_router(router)
    return app.openapi()


def mount_operator_api(app: FastAPI, control: SurgeControl, grants: list[OperatorGrant]) -> None:
    """Add the operator routes to a service's app."""
    app.state.surge_control = control
    app.state.operator_grants = grants
    app.include_router(router)
    # Bodies nested thousands deep, lone surrogates, NaN: 400 before FastAPI's json.loads (runtime/input_limits.py).
    app.add_middleware(JsonBodyGate)
    install_error_shapes(app)
    app.add_exception_handler(RedisConnectionError, _redis_unavailable)
    app.add_exception_handler(RedisTimeoutError, _redis_unavailable)


async def _redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # Nothing was half-applied that a retry would not finish: every change is one script, audited after it.
    return error_response(503, "presence store unavailable, retry later", {"Retry-After": "5"})
