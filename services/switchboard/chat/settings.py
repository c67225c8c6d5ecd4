"""Settings of the chat adapter (env prefix `SB_`, chat-only settings named `chat_*`).

Tenants (shops) come from `SB_CHAT_TENANT_SECRETS` / `SB_CHAT_TENANT_CALLBACKS` (JSON objects keyed by tenant) and
from `SB_CHAT_TENANTS_FILE`, a YAML or JSON file `{tenants: {shop-a: {secret: ..., callback_url: ...}}}`; the
environment wins over the file. A tenant without a secret is unknown: its webhooks and widgets are refused.
With neither set, the development tenants of `config/chat/dev-tenants.yaml` are used (and a warning is logged).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr

from switchboard.runtime.logs import get_logger
from switchboard.runtime.settings import ServiceSettings

log = get_logger(__name__)

DEV_TENANTS = Path(__file__).resolve().parents[3] / "config" / "chat" / "dev-tenants.yaml"


@dataclass(frozen=True)
class Tenant:
    """What the chat adapter knows of one shop."""

    tenant_id: str
    secret: bytes = field(repr=False)
    callback_url: str = ""


class ChatSettings(ServiceSettings):
    """Everything the chat adapter reads from its environment."""

    service_name: str = "chat"
    chat_tenant_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    chat_tenant_callbacks: dict[str, str] = Field(default_factory=dict)
    chat_tenants_file: Path | None = None
    # Widget: a customer proves who they are with a token the shop's backend signs (see docs/chat-widget.md).
    chat_widget_auth: bool = True
    # Refuse widget tokens without an `expires` (recommended once every shop's backend sends one).
    chat_widget_token_expiry_required: bool = False
    chat_max_frame_bytes: int = 16 * 1024
    # Frames up to chat_max_frame_bytes are taken; bigger ones up to this get a `too_large` error frame and a close
    # with 1009; anything bigger is never buffered: the server (uvicorn) closes the socket with 1009 at once.
    http_ws_max_bytes: int = 256 * 1024
    chat_max_text_chars: int = 2000
    chat_max_url_chars: int = 2048
    # Per connection: a token bucket; per customer (all connections, all replicas): messages per window.
    chat_conn_rate_per_s: float = 5.0
    chat_conn_burst: int = 10
    chat_customer_rate_per_window: int = 30
    chat_customer_rate_window_s: int = 10
    # A connection that keeps flooding after this many refusals in a row is closed (1008).
    chat_rate_strikes_to_close: int = 20
    # Sockets one customer may hold on one replica (tabs, devices); one more is closed with 1008.
    chat_max_sockets_per_customer: int = 5
    # Widget sockets one replica holds at most; one more is closed 1013 "server at its socket limit, retry later"
    # (the widget reconnects with backoff, maybe to another replica). Each socket costs memory and a little CPU,
    # no Redis connection: those are shared (SB_REDIS_MAX_CONNECTIONS).
    chat_max_sockets: int = Field(default=20_000, ge=1)
    # Webhook: body limit, and how far a signed timestamp may be from now (replayed event ids are kept twice as long).
    chat_max_body_bytes: int = 64 * 1024
    chat_signature_tolerance_s: int = 300
    chat_retry_after_s: int = 2
    # An open conversation id lives this long after the customer's last message unless closed before.
    chat_conversation_ttl_s: int = 7 * 24 * 3600
    # `queue` frames (position, estimated wait) without a surge profile in force: on, as before surge profiles
    # existed (widgets rely on them). False: only while the tenant's profile has `customer_updates.chat`.
    chat_queue_frames_always: bool = True
    # The estimated wait is the router's (state/figures.py, per group and channel); before it wrote one for the
    # queue, position times this (a shop's average handle time per agent slot).
    chat_seconds_per_queue_position: float = 30.0
    # How often a replica looks up its waiting customers' places in the router's queues (0 turns it off).
    chat_queue_refresh_s: float = 5.0
    # A changed estimate alone is sent again once it moved this far from the one last sent (the router rewrites
    # its estimate every sweep; a customer needs no frame for every second).
    chat_queue_wait_change_s: float = 15.0
    chat_callback_timeout_s: float = 5.0
    chat_callback_attempts: int = 3

    def tenants(self) -> dict[str, Tenant]:
        """Every configured tenant, the file overlaid by the environment."""
        secrets: dict[str, str] = {}
        callbacks: dict[str, str] = {}
        path = self.chat_tenants_file
        if path is None and not self.chat_tenant_secrets and DEV_TENANTS.exists():
            log.warning("chat_dev_tenants", path=str(DEV_TENANTS), hint="set SB_CHAT_TENANTS_FILE in production")
            path = DEV_TENANTS
        if path is not None:
            for tenant_id, entry in _read_tenants_file(path).items():
                if entry.get("secret"):
                    secrets[tenant_id] = str(entry["secret"])
                if entry.get("callback_url"):
                    callbacks[tenant_id] = str(entry["callback_url"])
        secrets.update({k: v.get_secret_value() for k, v in self.chat_tenant_secrets.items()})
        callbacks.update(self.chat_tenant_callbacks)
        return {
            tenant_id: Tenant(tenant_id, secret.encode(), callbacks.get(tenant_id, ""))
            for tenant_id, secret in secrets.items()
            if secret
        }


def _read_tenants_file(path: Path) -> dict[str, dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    tenants = (data or {}).get("tenants", {})
    if not isinstance(tenants, dict):
        raise ValueError(f"{path}: `tenants` must be a mapping of tenant id to {{secret, callback_url}}")
    return {str(k): dict(v or {}) for k, v in tenants.items()}
