"""The order-lookup interface (docs/order-lookup.md) and the customer-lookup interface (docs/customer-lookup.md)
over an OrderBook, and a server to run them in-process."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

import uvicorn
from fastapi import Body, FastAPI, Query
from fastapi.responses import JSONResponse

from switchboard.intake.customers import ContactKind
from switchboard_tools.orders.store import Order, OrderBook

_CONTACT_KINDS: dict[str, ContactKind] = {"email": "email", "phone": "phone"}
# Every lookup is scoped to one shop: another shop's order is "not found".
TenantId = Annotated[str, Query(min_length=1, max_length=128)]


def _found(order: Order | None) -> JSONResponse:
    if order is None:
        return JSONResponse({"error": "not_found"}, status_code=404)
    return JSONResponse(order.model_dump(exclude={"placed_at"}))


def order_app(book: OrderBook, latency_s: float = 0.0) -> FastAPI:
    """The interfaces: an order by id, a customer's latest order, a customer's tier by contact (all scoped to
    `tenant_id`), /healthz, /readyz.

    `latency_s`: every lookup answers after this long (load tests model a slow order system with it).
    """
    app = FastAPI(title="switchboard dev order service", docs_url=None, redoc_url=None)

    @app.get("/v1/orders/{order_id}")
    async def get_order(order_id: str, tenant_id: TenantId) -> JSONResponse:
        if latency_s:
            await asyncio.sleep(latency_s)
        return _found(book.order(tenant_id, order_id))

    @app.get("/v1/customers/{customer_id}/orders/latest")
    async def latest_order(customer_id: str, tenant_id: TenantId) -> JSONResponse:
        if latency_s:
            await asyncio.sleep(latency_s)
        return _found(book.latest(tenant_id, customer_id))

    @app.post("/v1/customers/lookup")
    async def customer_lookup(tenant_id: TenantId, body: Annotated[dict[str, Any], Body()]) -> JSONResponse:
        if latency_s:
            await asyncio.sleep(latency_s)
        if body.get("tenant_id", tenant_id) != tenant_id:
            return JSONResponse({"error": "tenant_mismatch"}, status_code=422)
        kind = _CONTACT_KINDS.get(str(body.get("channel", "")))
        if kind is None:
            return JSONResponse({"error": "channel must be email or phone"}, status_code=422)
        customer = book.customer(tenant_id, kind, str(body.get(kind, "")))
        if customer is None:
            return JSONResponse({"error": "not_found"}, status_code=404)
        return JSONResponse({"member_tier": customer.member_tier})

    @app.get("/healthz")
    @app.get("/readyz")
    async def healthz() -> dict[str, int]:
        return {"orders": len(book)}

    return app


class OrderServer:
    """The order service on a loopback port inside the current event loop (tests, load test)."""

    def __init__(self, book: OrderBook, port: int, host: str = "127.0.0.1", latency_s: float = 0.0) -> None:
        config = uvicorn.Config(order_app(book, latency_s), host=host, port=port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None
        self.url = f"http://{host}:{port}"

    async def start(self) -> None:
        """Serve until `stop`; returns once the port accepts connections."""
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Close the port (connections in flight are cut)."""
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
