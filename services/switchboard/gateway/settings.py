"""Gateway settings (env prefix `SB_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from switchboard.runtime.settings import ServiceSettings
from switchboard.state.operators import OperatorGrant

_REPO_ROOT = Path(__file__).resolve().parents[3]


class GatewaySettings(ServiceSettings):
    """What one gateway replica reads from its environment."""

    service_name: str = "gateway"
    # HS256 secret shared by every replica. No default: when unset, a random one is made at start-up, which only
    # works for a single replica (tokens from one replica fail on another) and is logged as a warning.
    jwt_secret: SecretStr | None = None
    token_ttl_s: int = 900
    # The dev roster: tenants, agents and their dev passwords (see config/agents/dev-agents.yaml).
    agents_file: Path = _REPO_ROOT / "config" / "agents" / "dev-agents.yaml"
    # Browser origins allowed to open /desk. Native desktops send no Origin header and are allowed.
    allowed_origins: list[str] = Field(
        default_factory=lambda: [
            "http://localhost:8080",
            "http://127.0.0.1:8080",
            "http://localhost:3000",
            "http://127.0.0.1:3000",
        ]
    )
    # SIGTERM: desk sockets are closed with 1012 in even steps over this window, at least `desk_drain_min_rate` a
    # second, so the other replicas take the reconnects gradually (gateway/drain.py). 0 closes them all at once.
    # terminationGracePeriodSeconds must cover the preStop sleep, this window and shutdown_grace_s.
    desk_drain_s: float = 10.0
    desk_drain_min_rate: float = 100.0
    # The first frame (auth) must arrive within this many seconds.
    auth_timeout_s: float = 5.0
    # Frames waiting to be written to one socket; when full the gateway stops reading that agent's outbox.
    send_queue_max: int = 256
    # A socket whose queue stays full this long is closed with 4010 (the outbox keeps its events).
    slow_close_s: float = 60.0
    # Client frames larger than this close the socket with 1009 (the HTTP server refuses them before buffering).
    max_frame_bytes: int = 64 * 1024
    http_ws_max_bytes: int = 64 * 1024
    # Desk frames are small JSON; zlib state per socket (~40 KiB) would more than double memory per desktop.
    http_ws_deflate: bool = False
    # Client commands per second (token bucket) and the bucket's size.
    command_rate: float = 20.0
    command_burst: int = 40
    # Outbox reads: entries per XRANGE, sockets per pipelined round trip.
    outbox_batch: int = 100
    pump_sockets_per_round: int = 500
    # Acked events beyond this margin are folded into the desk view and trimmed from the outbox, once a desk has
    # acked `trim_every` events since its last trim. A trim reads, folds and rewrites the whole view (every open
    # conversation with its latest messages), so trimming rarely is cheaper per event: at 100 it was about a tenth
    # of the gateway's CPU in the benchmark; an outbox holds at most margin + every acked events.
    trim_margin: int = 100
    trim_every: int = 500
    # Every so often each socket's seq counter and session epoch are compared with Redis (two commands per socket,
    # pipelined), so a notification lost without a pub/sub reconnect delays an event by at most this long, and a
    # fenced session whose "session:<epoch>" notification was lost is closed within it.
    reconcile_interval_s: float = 30.0
    # After Redis lost a connected desk's session, the gateway logs it in again on its behalf; while presence has not
    # rebuilt the agent it retries (with backoff) this long, then closes the socket 4012. A new socket waits as long
    # before it is refused 4005 while presence's state of the tenant is being rebuilt (docs/state.md).
    relogin_wait_s: float = 20.0
    # Redis connections of the replica; connects beyond that wait for a free one (bursts of reconnects).
    redis_connections: int = 64
    # RLIMIT_NOFILE raised to this at start (one descriptor per desktop socket).
    max_open_files: int = 65536
    # Descriptors kept for the replica's own connections (Redis, Kafka, HTTP): desk sockets beyond the open-files
    # limit less this are closed 1013 at once, so a full replica still reaches Redis for the desks it holds.
    fd_reserve: int = Field(default=256, ge=16)
    # Recent messages per conversation kept in the snapshot.
    snapshot_messages: int = 20
    # Queue stats of the connected agents' groups are pushed this often (0 = never); each (tenant, group) is read
    # once per tick. The longest wait is taken over the first `queue_stats_head` conversations in line per channel.
    queue_stats_interval_s: float = 5.0
    queue_stats_head: int = 10
    # Agents' group lists are re-read this often (operators change them live); new sockets are read at once.
    queue_stats_groups_refresh_s: float = 30.0
    # Per-shop desk settings: UI language, response-time target, wrap-up codes, quick replies (docs/desk-config.md).
    desk_config_dir: Path = _REPO_ROOT / "config" / "desk"
    # The built desk and board pages (web/, `make pages`); missing pages answer 503 with how to build them.
    pages_dir: Path = _REPO_ROOT / "web" / "dist"
    # Supervisors use operator tokens (same format as presence's SB_OPERATOR_TOKENS); the board checks them here.
    operator_tokens: list[OperatorGrant] = Field(default_factory=list)
    # Presence's HTTP base; the board's surge and capacity controls are forwarded to its operator API.
    presence_url: str | None = None
    # The routing config the router reads (for each tenant's service-level target on the board).
    routing_config_dir: Path = _REPO_ROOT / "config" / "routing"
    # Response figures' "today" is the shop's local day: minutes east of UTC (China: 480).
    response_day_utc_offset_min: int = 480
    # The board's figures: sampled this often, kept for `board_history_s`, service level over `board_sl_window_s`.
    board_sample_s: float = 5.0
    board_history_s: float = 1800.0
    board_sl_window_s: float = 900.0
