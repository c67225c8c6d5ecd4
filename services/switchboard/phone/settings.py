"""Settings of the phone adapter (env prefix `SB_`, e.g. SB_PHONE_DIRECTORY)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from switchboard.intake.customers import CustomerLookupSettings

# The dev directory is found relative to the repository root, so `switchboard up` needs no config.
DEV_DIRECTORY = Path(__file__).resolve().parents[3] / "config" / "phone" / "dev-numbers.yaml"


class PhoneSettings(CustomerLookupSettings):
    """What the phone adapter reads from its environment."""

    service_name: str = "phone"
    # Tenants, their dialled numbers and API keys (YAML, see config/phone/dev-numbers.yaml).
    phone_directory: Path = DEV_DIRECTORY
    # A final segment that arrives ahead of a missing predecessor waits this long for it before it is written
    # anyway (the gap is then skipped and a predecessor that still comes is marked out_of_order).
    phone_reorder_window_s: float = 1.5
    phone_max_body_bytes: int = 256 * 1024
    phone_max_frame_bytes: int = 64 * 1024
    phone_max_document_bytes: int = 2 * 1024 * 1024
    phone_max_items: int = 500
    phone_max_text_chars: int = 4000
    # Frames of one websocket handled at once; the socket is not read further while this many are in flight.
    phone_ws_inflight_frames: int = 32
    # Malformed frames (not JSON, too deep, bad text, invalid items) one websocket may send: each spends a token
    # of this bucket; one with none left closes the socket 1008 (no DLQ record), as a widget's strikes do.
    phone_ws_refused_per_s: float = 20.0
    phone_ws_refused_burst: int = 200
    # How long a call's state (conversation, caller, next seq) is kept after its last event.
    phone_call_ttl_s: int = 2 * 24 * 3600
    retry_after_s: int = 1
    # Secret key of callers' customer ids (HMAC of tenant and number). Empty: an unkeyed hash, fine for
    # development, reversible by anyone holding records who tries every mobile number; set it in production.
    phone_customer_id_key: str = ""
    # Announcements for waiting callers (announce.py), while the tenant's surge profile has
    # `customer_updates.phone`: the estimated wait is the router's (state/figures.py); before it wrote one for
    # the queue, position times this. Language: the call's (zh/en; a third language hears English), else this.
    phone_seconds_per_queue_position: float = 60.0
    phone_announcement_default_language: Literal["zh", "en"] = "zh"
