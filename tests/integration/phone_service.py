"""The phone adapter run in-process on a real port for tests, plus builders of the platform's JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from switchboard.phone.adapter import PhoneAdapter
from switchboard.phone.service import build_adapter
from switchboard.phone.settings import PhoneSettings
from switchboard.runtime.service import ServiceRuntime
from switchboard.runtime.settings import ServiceSettings

SHOP_A_KEY = {"X-Api-Key": "dev-phone-shop-a"}
SHOP_B_KEY = {"X-Api-Key": "dev-phone-shop-b"}
SHOP_A_HOTLINE = "400-800-1001"
SHOP_B_HOTLINE = "400-800-2002"
CALLER = "+86 138-1234-5678"


@dataclass
class PhoneService:
    """Where the running adapter answers."""

    http: str
    ws: str
    adapter: PhoneAdapter
    settings: PhoneSettings


@asynccontextmanager
async def running_phone(settings: ServiceSettings, **overrides: Any) -> AsyncIterator[PhoneService]:
    """Serve the phone adapter against the test's topics and keys until the block ends."""
    values = settings.model_dump() | {"service_name": "phone", "phone_reorder_window_s": 3.0} | overrides
    phone_settings = PhoneSettings(**values)
    runtime = ServiceRuntime(phone_settings)
    producer = await runtime.start_producer()
    adapter = build_adapter(phone_settings, producer, runtime)
    async with runtime.serving():
        yield PhoneService(
            http=f"http://127.0.0.1:{runtime.port}",
            ws=f"ws://127.0.0.1:{runtime.port}/v1/phone/stream",
            adapter=adapter,
            settings=phone_settings,
        )


def started(call_id: str, hotline: str = SHOP_A_HOTLINE, caller: str = CALLER, **extra: Any) -> dict[str, Any]:
    """A call.started item."""
    return {"type": "call.started", "call_id": call_id, "caller": caller, "dialled_number": hotline, **extra}


def segment(call_id: str, seq: int, text: str, *, final: bool = True, speaker: str = "customer") -> dict[str, Any]:
    """A segment item; seq n covers [n*1000, n*1000+900] ms."""
    return {
        "type": "segment",
        "call_id": call_id,
        "seq": seq,
        "speaker": speaker,
        "text": text,
        "start_ms": seq * 1000,
        "end_ms": seq * 1000 + 900,
        "confidence": 0.9,
        "final": final,
    }
