"""A small order service of switchboard's own: the order-lookup interface (docs/order-lookup.md) served from a file.

The shop's own order system implements that interface in production; the dev stack (`switchboard up`) and the load
test run this one instead, over `config/orders/dev-orders.yaml` or a generated file.

    python -m switchboard_tools.orders --file config/orders/dev-orders.yaml --port 8095
"""

from switchboard_tools.orders.app import OrderServer, order_app
from switchboard_tools.orders.store import Order, OrderBook, load_orders

__all__ = ["Order", "OrderBook", "OrderServer", "load_orders", "order_app"]
