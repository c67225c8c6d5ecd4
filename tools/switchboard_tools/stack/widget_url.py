"""`switchboard widget-url`: the widget websocket URL a shop's backend would hand a logged-in customer, signed
with the tenant's chat secret, optionally vouching for claims (docs/chat-widget.md), for trying the local stack.

    switchboard widget-url --tenant tmall-flagship --customer buyer-1 --claim member_tier=88VIP
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlencode

from switchboard.chat.facts import encode_claims
from switchboard.chat.settings import ChatSettings
from switchboard.chat.signing import widget_token
from switchboard_tools.stack.kafka import ROOT

COMMAND = "widget-url"


def widget_url(
    chat_base: str, tenant: str, customer: str, secret: bytes, claims: Mapping[str, str], ttl_s: int, now: float
) -> str:
    """`ws(s)://.../chat/v1/ws?...` for the customer: a token expiring in `ttl_s`, with the claims if any."""
    expires = int(now) + ttl_s
    encoded = encode_claims(claims) if claims else ""
    params = {"tenant": tenant, "customer": customer, "expires": str(expires)}
    if encoded:
        params["claims"] = encoded
    params["token"] = widget_token(secret, customer, expires, encoded)
    base = chat_base.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return f"{base}/chat/v1/ws?{urlencode(params)}"


def _stack_chat_base() -> str:
    """The chat adapter of the running `switchboard up` (its endpoints.json), else the default port."""
    endpoints = Path(os.environ.get("SB_RUN_DIR", ROOT / ".run" / "stack")) / "endpoints.json"
    if endpoints.is_file():
        chat = json.loads(endpoints.read_text()).get("services", {}).get("chat")
        if chat:
            return str(chat["http"])
    return "http://127.0.0.1:8080"


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `widget-url` to the `switchboard` command."""
    parser = sub.add_parser(COMMAND, help="print a signed widget URL for a customer (claims optional)")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--customer", required=True)
    parser.add_argument(
        "--claim", action="append", default=[], metavar="NAME=VALUE", help="e.g. member_tier=88VIP (repeatable)"
    )
    parser.add_argument("--ttl-s", type=int, default=900, help="the token's lifetime (default 15 minutes)")
    parser.add_argument("--chat", default=None, help="the chat adapter's base URL (default: the running stack's)")


def run_subcommand(args: argparse.Namespace) -> int:
    """Print the URL; 2 for an unknown tenant or a malformed claim."""
    tenant = ChatSettings().tenants().get(args.tenant)
    if tenant is None:
        print(f"unknown chat tenant {args.tenant!r} (config/chat/dev-tenants.yaml or SB_CHAT_TENANT_SECRETS)")
        return 2
    claims: dict[str, str] = {}
    for claim in args.claim:
        name, sep, value = claim.partition("=")
        if not sep:
            print(f"--claim {claim!r}: expected NAME=VALUE")
            return 2
        claims[name.strip()] = value.strip()
    try:
        url = widget_url(
            args.chat or _stack_chat_base(), args.tenant, args.customer, tenant.secret, claims, args.ttl_s, time.time()
        )
    except ValueError as exc:
        print(str(exc))
        return 2
    print(url)
    return 0
