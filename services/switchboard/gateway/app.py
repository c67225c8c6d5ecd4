"""The gateway's HTTP surface: POST /login issues desk tokens, /desk is the agent desktop websocket."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from fastapi import FastAPI, HTTPException, WebSocket
from pydantic import BaseModel
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect, WebSocketDisconnected

from switchboard.gateway.commands import DeskCommands
from switchboard.gateway.desk_config import DeskConfig, default_config
from switchboard.gateway.drain import DRAIN_REASON, DeskDrain
from switchboard.gateway.hub import SESSION_PREFIX, DeskHub
from switchboard.gateway.limits import socket_room
from switchboard.gateway.metrics import AUTH_REFUSED, COMMANDS
from switchboard.gateway.protocol import (
    CloseCode,
    Command,
    CommandBucket,
    FrameError,
    Hello,
    error_frame,
    parse_command,
    parse_hello,
    result_frame,
)
from switchboard.gateway.recovery import DeskRecovery
from switchboard.gateway.responses import ResponseTargets
from switchboard.gateway.session import DeskSession
from switchboard.gateway.settings import GatewaySettings
from switchboard.gateway.snapshot import build_snapshot
from switchboard.gateway.tokens import DeskClaims, TokenRefused, issue_token, verify_token
from switchboard.runtime.errors import BrokerUnavailable
from switchboard.runtime.http_errors import ErrorBody, install_error_shapes
from switchboard.runtime.idents import Ident
from switchboard.runtime.input_limits import InputRefused, JsonBodyGate, close_reason
from switchboard.runtime.logs import get_logger
from switchboard.runtime.text import Secret
from switchboard.state.agents import AgentOffline, HeartbeatResult, PresenceStore, StaleSession, UnknownAgent
from switchboard.state.keys import Keys
from switchboard.state.marks import StateMarks
from switchboard.state.responses import agent_scope, day_bucket, read_figures
from switchboard.state.roster import Roster

log = get_logger(__name__)


class LoginRequest(BaseModel):
    """Dev login: an agent of the roster with its password (ids of the one id pattern: a brace or a lone surrogate
    is a 422, never a Redis key)."""

    tenant_id: Ident
    agent_id: Ident
    password: Secret


class LoginResponse(BaseModel):
    """A desk token for the websocket's auth frame."""

    token: str
    token_type: str = "Bearer"
    expires_in: int
    tenant_id: str
    agent_id: str


# The reason of a 1013 close for a desk socket beyond the replica's socket limit.
SOCKET_LIMIT_REASON = "gateway at its socket limit, retry later"


class DeskRoute:
    """The ASGI layer in front of the gateway's app (`Gateway.asgi`): `/desk` websockets go straight to the
    gateway, everything else on to the app.

    A desk socket lives for hours and 20,000 of them share a process: outside the framework (FastAPI, its
    routing, error and exception layers), each idle socket holds that many fewer suspended frames.
    """

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a desk socket, or pass anything else on to the app."""
        if scope["type"] == "websocket" and scope["path"] == "/desk":
            await self.gateway.serve_socket(WebSocket(scope, receive, send))
            return
        await self.app(scope, receive, send)


class Gateway:
    """Everything one gateway replica needs to serve desktops; `install` mounts its routes on an app."""

    def __init__(
        self,
        settings: GatewaySettings,
        secret: str,
        redis: Redis,
        roster: Roster,
        presence: PresenceStore,
        commands: DeskCommands,
        hub: DeskHub,
    ) -> None:
        self.settings = settings
        self.secret = secret
        self.redis = redis
        self.keys = Keys(settings.key_prefix)
        self.roster = roster
        self.presence = presence
        self.commands = commands
        self.hub = hub
        # Per-shop desk settings (config/desk); `assemble` loads them, a tenant without a file gets the defaults.
        self.desk_configs: dict[str, DeskConfig] = {}
        # Response targets from the routing configs and the surge profile in force (`assemble` loads the configs).
        self.response_targets = ResponseTargets(redis, self.keys)
        # On SIGTERM the runtime runs the drain first: desks move to other replicas a few at a time.
        self.drain = DeskDrain(hub, settings.desk_drain_s, settings.desk_drain_min_rate)
        # Desk sockets open now (authenticated or not) and how many the replica takes (limits.socket_room).
        self.open_sockets = 0
        self.socket_limit = socket_room(settings.fd_reserve)
        # Desks whose session or outbox Redis lost are logged in again and re-snapshotted, not closed.
        self.recovery = DeskRecovery(redis, self.keys, presence, hub, settings)
        hub.on_lost = self.recovery.lost
        self.presence_marks = StateMarks(redis, self.keys, "presence", settings.instance_id)

    def desk_config(self, tenant_id: str) -> DeskConfig:
        """The desk config of a tenant."""
        return self.desk_configs.get(tenant_id) or default_config(tenant_id)

    def asgi(self, app: ASGIApp) -> ASGIApp:
        """`app` with the /desk websocket in front of it (what the public port serves)."""
        return DeskRoute(app, self)

    def install(self, app: FastAPI) -> None:
        """Add POST /login to `app` (the /desk websocket is served in front of it: `asgi`)."""
        # JSON bodies (login, board) pass runtime/input_limits before FastAPI reads them: 400/413, never a 500.
        app.add_middleware(JsonBodyGate)

        @app.post(
            "/login",
            response_model=LoginResponse,
            responses={
                401: {"model": ErrorBody, "description": "`unauthorized`: unknown tenant, agent or password"},
                422: {
                    "model": ErrorBody,
                    "description": "`invalid_field`: an id outside the id pattern, a field missing",
                },
            },
        )
        async def login(body: LoginRequest) -> LoginResponse:
            """Issue a short-lived desk token for a configured agent."""
            configured = self.roster.check_login(body.tenant_id, body.agent_id, body.password) is not None
            # Temporary agents (surge helpers added by an operator) are not in the roster file; presence knows them.
            if not configured and not await self.presence.check_temporary_login(
                body.tenant_id, body.agent_id, body.password
            ):
                raise HTTPException(status_code=401, detail="unknown tenant, agent or password")
            token = issue_token(self.secret, body.tenant_id, body.agent_id, self.settings.token_ttl_s)
            return LoginResponse(
                token=token, expires_in=self.settings.token_ttl_s, tenant_id=body.tenant_id, agent_id=body.agent_id
            )

        install_error_shapes(app)

    def stop_sessions(self) -> None:
        """Shutdown, after the drain: tell every desktop still here to reconnect (to another replica) with 1012."""
        for session in list(self.hub.sessions.values()):
            self.hub.spawn(session.close(CloseCode.SERVICE_RESTART, "gateway restarting; reconnect"))

    # --- auth -----------------------------------------------------------------------------------------------------

    async def _refuse(self, websocket: WebSocket, code: CloseCode, reason: str) -> None:
        AUTH_REFUSED.labels(str(int(code))).inc()
        log.info("desk_refused", code=int(code), reason=reason)
        await websocket.close(code=int(code), reason=close_reason(reason))

    async def _authenticate(self, websocket: WebSocket) -> tuple[DeskClaims, Hello] | None:
        """Origin, URL and the first frame; None after closing the socket with the reason."""
        origin = websocket.headers.get("origin")
        await websocket.accept()
        if any(name.lower() in ("token", "access_token", "jwt", "auth") for name in websocket.query_params):
            await self._refuse(websocket, CloseCode.TOKEN_IN_URL, "tokens are not accepted in the URL")
            return None
        # The desk page the gateway serves itself is same-origin: its Origin names the host the socket is on.
        same_origin = origin is not None and origin.split("://", 1)[-1] == websocket.headers.get("host")
        if origin is not None and origin not in self.settings.allowed_origins and not same_origin:
            await self._refuse(websocket, CloseCode.ORIGIN_NOT_ALLOWED, "origin not allowed")
            return None
        try:
            raw = await self._receive_text(websocket, timeout=self.settings.auth_timeout_s)
        except TimeoutError:
            await self._refuse(websocket, CloseCode.AUTH_TIMEOUT, "no auth frame in time")
            return None
        return None if raw is None else await self._check_hello(websocket, raw)

    async def _check_hello(self, websocket: WebSocket, raw: str) -> tuple[DeskClaims, Hello] | None:
        try:
            hello = parse_hello(raw)
            claims = verify_token(self.secret, hello.token)
        except InputRefused as exc:  # nothing is sent before auth: the close code and reason say it
            await self._refuse(websocket, CloseCode(exc.close_code), exc.reason)
            return None
        except FrameError as exc:
            await self._refuse(websocket, CloseCode.PROTOCOL_ERROR, exc.detail)
            return None
        except TokenRefused as exc:
            await self._refuse(websocket, exc.code, exc.reason)
            return None
        # An agent the roster does not list may be a temporary one: presence.login decides (UnknownAgent -> 4005).
        if hello.tenant is not None and hello.tenant != claims.tenant_id:
            await self._refuse(websocket, CloseCode.WRONG_TENANT, "token is not for this tenant")
            return None
        return claims, hello

    async def _receive_text(self, websocket: WebSocket, timeout: float | None = None) -> str | None:
        """The next text frame; None when the peer left or after closing for a bad frame."""
        if timeout is None:
            message = await websocket.receive()
        else:
            async with asyncio.timeout(timeout):
                message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text: str | None = message.get("text")
        if text is None:
            await websocket.close(CloseCode.PROTOCOL_ERROR, "frames must be text (JSON)")
            return None
        if len(text) > self.settings.max_frame_bytes:
            await websocket.close(CloseCode.MESSAGE_TOO_BIG, f"frames are limited to {self.settings.max_frame_bytes}")
            return None
        return text

    # --- the session ----------------------------------------------------------------------------------------------

    async def serve_socket(self, websocket: WebSocket) -> None:
        """One desktop connection, from auth to disconnect; a peer that leaves or a Redis outage ends it quietly."""
        self.open_sockets += 1
        try:
            await self._serve_socket(websocket)
        finally:
            self.open_sockets -= 1

    async def _serve_socket(self, websocket: WebSocket) -> None:
        try:
            if self.open_sockets > self.socket_limit:
                # Full: the descriptors left are the replica's own (Redis, Kafka), or the desks it holds would lose
                # their events. The desk reconnects elsewhere or later.
                await websocket.accept()
                await websocket.close(code=int(CloseCode.TRY_AGAIN_LATER), reason=SOCKET_LIMIT_REASON)
                return
            if self.drain.draining:
                # Not ready any more: the Service sends this desk elsewhere once it reconnects.
                await websocket.accept()
                await websocket.close(code=int(CloseCode.SERVICE_RESTART), reason=DRAIN_REASON)
                return
            auth = await self._authenticate(websocket)
            if auth is None:
                return
            session = await self._open_session(websocket, *auth)
            # What the login and snapshot needed (the hello with its token, the snapshot frame) is not kept for
            # the life of the socket: tens of thousands of them sit idle in one process.
            auth = None
            if session is not None:
                await self._serve_session(websocket, session)
        except (WebSocketDisconnect, WebSocketDisconnected, OSError):
            # Session frames go through DeskSession.send, which ends the session when the peer is gone; this is
            # for the handshake and close frames (OSError covers uvicorn's ClientDisconnected).
            return
        except RedisError as exc:
            log.warning("desk_redis_error", error=repr(exc))
            with contextlib.suppress(Exception):
                await websocket.close(CloseCode.INTERNAL_ERROR, "state unavailable; reconnect shortly")

    async def _open_session(self, websocket: WebSocket, claims: DeskClaims, hello: Hello) -> DeskSession | None:
        """Log the agent in, send the snapshot and register the session; None when the socket was refused or left."""
        tenant, agent = claims.tenant_id, claims.agent_id
        epoch = await self._login(tenant, agent)
        if epoch is None:
            if self.roster.agent(tenant, agent) is None or await self.presence_marks.present(tenant):
                await self._refuse(websocket, CloseCode.WRONG_TENANT, "agent not known in this tenant")
            else:
                await self._refuse(websocket, CloseCode.TRY_AGAIN_LATER, "agents are being restored; reconnect shortly")
            return None
        await self.redis.publish(self.keys.desk_notify(tenant), f"{agent} {SESSION_PREFIX}{epoch}")
        snapshot = await build_snapshot(
            self.redis, self.keys, tenant, agent, hello.resume_after, self.settings.snapshot_messages, epoch
        )

        async def close(code: int, reason: str) -> None:
            await websocket.close(code=code, reason=reason)

        session = DeskSession(tenant, agent, epoch, websocket.send_text, close, self.settings.send_queue_max)
        session.last_sent = session.acked = session.trim_requested = snapshot.as_of_seq
        if not await session.send(snapshot.frame):
            return None  # the desktop left while its snapshot was read
        older = self.hub.register(session)
        if older is not None:
            await older.close(CloseCode.SUPERSEDED, "a newer session of this agent logged in")
        log.info("desk_connected", tenant_id=tenant, agent_id=agent, session_epoch=epoch, resumed=snapshot.resumed)
        return session

    async def _serve_session(self, websocket: WebSocket, session: DeskSession) -> None:
        """The registered session's commands until the socket ends."""
        try:
            await self._command_loop(websocket, session)
        finally:
            self.hub.unregister(session)
            if session.writer is not None:
                session.writer.cancel()
            log.info(
                "desk_disconnected",
                tenant_id=session.tenant_id,
                agent_id=session.agent_id,
                session_epoch=session.session_epoch,
            )

    async def _login(self, tenant: str, agent: str) -> int | None:
        """A new session epoch; None for an agent presence does not know. While presence's state of the tenant is
        being rebuilt (its mark is missing: Redis lost it), an agent of the roster is waited for up to
        SB_RELOGIN_WAIT_S."""
        deadline = time.monotonic() + self.settings.relogin_wait_s
        delay = 0.25
        while True:
            try:
                return await self.presence.login(tenant, agent, gateway_instance=self.settings.instance_id)
            except UnknownAgent:
                if self.roster.agent(tenant, agent) is None or time.monotonic() + delay > deadline:
                    return None
                if await self.presence_marks.present(tenant):
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 4.0)

    async def _command_loop(self, websocket: WebSocket, session: DeskSession) -> None:
        bucket = CommandBucket(self.settings.command_rate, self.settings.command_burst, time.monotonic())
        while not session.closed:
            raw = await self._receive_text(websocket)
            if raw is None:
                return
            try:
                cmd = parse_command(raw)
            except InputRefused as exc:
                # Not JSON text at all (nested too deep, a lone surrogate, a control character): a broken client.
                COMMANDS.labels("unparsed", exc.kind).inc()
                await session.send(error_frame(exc.kind, exc.reason))
                await session.close(CloseCode(exc.close_code), close_reason(exc.reason))
                return
            except FrameError as exc:
                await session.send(error_frame(exc.code, exc.detail, exc.ref))
                # An invalid frame spends a token like a command: a desk that keeps sending garbage is closed as
                # a flood is (4029), not answered for ever.
                if bucket.take(time.monotonic()) < -self.settings.command_burst:
                    await session.close(CloseCode.RATE_LIMITED, "too many commands or invalid frames")
                    return
                continue
            if cmd.type == "ack":
                self.hub.acked(session, cmd.seq)
                continue
            left = bucket.take(time.monotonic())
            if left < -self.settings.command_burst:
                await session.close(CloseCode.RATE_LIMITED, "too many commands")
                return
            if left < 0:
                COMMANDS.labels(cmd.type, "rate_limited").inc()
                await session.send(error_frame("rate_limited", "too many commands; slow down", cmd.ref))
                continue
            await self._dispatch(session, cmd)

    async def _dispatch(self, session: DeskSession, cmd: Command) -> None:
        try:
            fields = await self._run(session, cmd)
        except FrameError as exc:
            COMMANDS.labels(cmd.type, exc.code).inc()
            await session.send(error_frame(exc.code, exc.detail, cmd.ref))
            return
        except (BrokerUnavailable, RedisError):
            COMMANDS.labels(cmd.type, "retry_later").inc()
            await session.send(error_frame("retry_later", "could not record the command; send it again", cmd.ref))
            return
        except StaleSession:
            await session.close(CloseCode.SUPERSEDED, "a newer session of this agent logged in")
            return
        except (AgentOffline, UnknownAgent):
            await session.close(CloseCode.SESSION_ENDED, "the agent is offline; log in again")
            return
        if fields is not None:
            await session.send(result_frame(cmd.ref, **fields))

    async def _run(self, session: DeskSession, cmd: Command) -> dict[str, Any] | None:
        """Do one command; the fields of its result frame, or None to close the session (already closed)."""
        if cmd.type == "reply":
            return {"message_id": await self.commands.reply(session, cmd)}
        if cmd.type in ("typing", "context", "desk_config", "response_stats"):
            return await self._run_desk_aid(session, cmd)
        if cmd.type == "heartbeat":
            return await self._heartbeat(session)
        if cmd.type == "set_status":
            state = await self.presence.set_status(
                session.tenant_id, session.agent_id, cmd.status, "agent", session.session_epoch, cmd.reason
            )
            return {"status": state.status.value}
        return {"epoch": await self.commands.act(session, cmd)}

    async def _heartbeat(self, session: DeskSession) -> dict[str, Any] | None:
        """Record the desk's heartbeat; a session Redis lost is logged in again (None: the socket was closed)."""
        beat = await self.presence.heartbeat(session.tenant_id, session.agent_id, session.session_epoch)
        if beat is HeartbeatResult.STALE_SESSION:
            if session.recovering:
                return {}  # the gateway is logging the desk in again right now
            agent = await self.presence.get_agent(session.tenant_id, session.agent_id)
            if agent is not None and agent.session_epoch > session.session_epoch:
                raise StaleSession(agent.session_epoch)
            # Redis lost the session (the agent is gone or its epoch went back): log in again for the desk
            if not await self.recovery.recover(session):
                return None
        if beat is HeartbeatResult.OFFLINE:
            raise AgentOffline("offline")
        return {}

    async def _run_desk_aid(self, session: DeskSession, cmd: Command) -> dict[str, Any]:
        """typing, context, desk_config and response_stats: what helps the desk without changing ownership."""
        if cmd.type == "typing":
            return {"forwarded": await self.commands.typing(session, cmd)}
        if cmd.type == "context":
            return await self.commands.context(session, cmd)
        if cmd.type == "response_stats":
            return await self._response_stats(session)
        agent = await self.presence.get_agent(session.tenant_id, session.agent_id)
        groups = tuple(agent.groups) if agent is not None else ()
        targets = await self.response_targets.in_force(session.tenant_id)
        return {"config": self.desk_config(session.tenant_id).for_agent(groups, targets.groups())}

    async def _response_stats(self, session: DeskSession) -> dict[str, Any]:
        """The agent's own responses today (the shop's local day): 3-minute rate and average, first responses."""
        now_ms = int(time.time() * 1000)
        scope = agent_scope(session.agent_id)
        day = day_bucket(now_ms, self.settings.response_day_utc_offset_min)
        figures = await read_figures(self.redis, self.keys, session.tenant_id, [scope], [day])
        return {"day": day[1:], "today": figures[scope].as_dict()}
