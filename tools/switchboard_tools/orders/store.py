"""Orders and customers from a YAML or JSON file: `{"orders": [{tenant_id, order_id, customer_id, status, ...}],
"customers": [{tenant_id, email, phone, member_tier}]}` (customers optional)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from switchboard.intake.customers import ContactKind, contact_key

_M = TypeVar("_M", bound=BaseModel)

STATUSES = (
    "unpaid",
    "paid",
    "shipped",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "refunding",
    "refunded",
    "cancelled",
)


class Order(BaseModel):
    """One order as the interface answers it (docs/order-lookup.md); empty strings where a field does not apply."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: str = Field(min_length=1)
    order_id: str = Field(min_length=1)
    customer_id: str = ""
    status: str = Field(min_length=1)
    carrier: str = ""
    tracking_number: str = ""
    eta: str = ""
    paid_at: str = ""
    shipped_at: str = ""
    item: str = ""
    # When the order was placed (ISO 8601): the customer's latest order is the one placed last.
    placed_at: str = ""


class Customer(BaseModel):
    """A shop's customer as the customer lookup knows them (docs/customer-lookup.md): contacts and tier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: str = Field(min_length=1)
    email: str = ""
    phone: str = ""
    # "" for a known customer without membership.
    member_tier: str = ""


class OrderFileError(ValueError):
    """The order file cannot be read; the message names the file and the entry."""


class OrderBook:
    """Orders by (tenant, order id) and each customer's latest order."""

    def __init__(self, orders: Iterable[Order], customers: Iterable[Customer] = ()) -> None:
        self._by_id: dict[tuple[str, str], Order] = {}
        self._latest: dict[tuple[str, str], Order] = {}
        # (tenant, "email"|"phone", contact as the lookup sends it) -> customer
        self._customers: dict[tuple[str, str, str], Customer] = {}
        for customer in customers:
            if customer.email:
                self._customers[(customer.tenant_id, "email", contact_key("email", customer.email))] = customer
            if customer.phone:
                self._customers[(customer.tenant_id, "phone", contact_key("phone", customer.phone))] = customer
        for order in orders:
            self._by_id[(order.tenant_id, order.order_id)] = order
            if order.customer_id:
                key = (order.tenant_id, order.customer_id)
                known = self._latest.get(key)
                if known is None or order.placed_at >= known.placed_at:
                    self._latest[key] = order

    def __len__(self) -> int:
        return len(self._by_id)

    def order(self, tenant_id: str, order_id: str) -> Order | None:
        """The tenant's order of that id (another tenant's order is not found)."""
        return self._by_id.get((tenant_id, order_id))

    def latest(self, tenant_id: str, customer_id: str) -> Order | None:
        """The customer's most recently placed order with the tenant."""
        return self._latest.get((tenant_id, customer_id))

    def customer(self, tenant_id: str, kind: ContactKind, contact: str) -> Customer | None:
        """The tenant's customer with this e-mail address or phone number (another tenant's is not found)."""
        return self._customers.get((tenant_id, kind, contact_key(kind, contact))) if contact else None


def parse_orders(data: Any, source: str) -> OrderBook:
    """Validate the file's content (a mapping with `orders` and optionally `customers`, or a list of orders)."""
    rows = data.get("orders") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise OrderFileError(f"{source}: expected a list of orders under `orders`")
    customers = (data.get("customers") or []) if isinstance(data, dict) else []
    if not isinstance(customers, list):
        raise OrderFileError(f"{source}: expected a list of customers under `customers`")
    return OrderBook(_entries(Order, rows, "orders", source), _entries(Customer, customers, "customers", source))


def _entries(model: type[_M], rows: list[Any], section: str, source: str) -> list[_M]:
    entries = []
    for i, row in enumerate(rows):
        try:
            entries.append(model.model_validate(row))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(entry)"
            raise OrderFileError(f"{source}: {section}.{i}.{where}: {first['msg']}") from exc
    return entries


def load_orders(path: Path) -> OrderBook:
    """Read an order file (`.json`, else YAML)."""
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return parse_orders(data, str(path))
