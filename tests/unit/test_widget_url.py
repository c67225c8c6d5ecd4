"""`switchboard widget-url`: a signed widget URL whose claims the chat adapter accepts."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from switchboard.chat.facts import TrustedFacts, decode_claims
from switchboard.chat.signing import verify_widget_token
from switchboard_tools.cli import main
from switchboard_tools.stack.widget_url import widget_url

SECRET = b"dev-secret"


def test_the_url_carries_a_token_that_vouches_for_the_claims_until_it_expires() -> None:
    url = widget_url("http://127.0.0.1:8081", "shop-a", "buyer 1", SECRET, {"member_tier": "88VIP"}, 900, 1_000.0)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("ws", "127.0.0.1:8081", "/chat/v1/ws")
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert (q["tenant"], q["customer"], q["expires"]) == ("shop-a", "buyer 1", "1900")
    assert verify_widget_token(SECRET, "buyer 1", q["token"], 1900, 1_000.0, q["claims"])
    assert decode_claims(q["claims"]) == TrustedFacts("widget_token", member_tier="88VIP")
    plain = {k: v[0] for k, v in parse_qs(urlsplit(widget_url("https://c", "s", "c", SECRET, {}, 60, 0)).query).items()}
    assert "claims" not in plain and verify_widget_token(SECRET, "c", plain["token"], 60, 0)


def test_the_command_prints_the_url_of_a_dev_shop_and_refuses_unknown_claims(
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["widget-url", "--tenant", "tmall-flagship", "--customer", "b-1", "--chat", "http://127.0.0.1:9"]
    assert main([*base, "--claim", "member_tier=88VIP"]) == 0
    assert "claims=" in capsys.readouterr().out
    assert main([*base, "--claim", "vip=yes"]) == 2
    assert "unknown widget claims" in capsys.readouterr().out
    assert main(["widget-url", "--tenant", "nope", "--customer", "b-1"]) == 2
