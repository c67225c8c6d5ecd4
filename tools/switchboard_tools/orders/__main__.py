"""python -m switchboard_tools.orders --file ORDERS [--host H] [--port P] [--latency-ms N]"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import uvicorn

from switchboard_tools.orders.app import order_app
from switchboard_tools.orders.store import load_orders

# The sample orders of the dev shops (shop-a, shop-b, tmall-flagship).
DEV_ORDERS = Path(__file__).resolve().parents[3] / "config" / "orders" / "dev-orders.yaml"


def main(argv: list[str] | None = None) -> None:
    """Serve the order-lookup interface from a file until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m switchboard_tools.orders", description=__doc__)
    parser.add_argument("--file", type=Path, default=Path(os.environ.get("SB_ORDERS_FILE", DEV_ORDERS)))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SB_HTTP_PORT", "8095")))
    parser.add_argument("--latency-ms", type=float, default=0.0, help="answer every lookup after this long")
    args = parser.parse_args(argv)
    book = load_orders(args.file)
    print(f"order service: {len(book)} orders from {args.file} on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(order_app(book, args.latency_ms / 1000), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
