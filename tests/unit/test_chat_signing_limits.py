"""HMAC signatures, widget tokens, the connection token bucket and tenant settings of the chat adapter."""

from __future__ import annotations

import json
from pathlib import Path

from switchboard.chat.settings import ChatSettings
from switchboard.chat.signing import verify_widget_token, widget_token
from switchboard.runtime.buckets import TokenBucket
from switchboard.runtime.signing import sign_body, signed_headers, verify_body

SECRET = b"s3cret"


def test_a_signed_body_verifies_and_any_change_does_not() -> None:
    body = b'{"text":"hi"}'
    headers = signed_headers(SECRET, 1_000, body)
    assert headers["X-SB-Signature"] == sign_body(SECRET, 1_000, body)
    ts, sig = headers["X-SB-Timestamp"], headers["X-SB-Signature"]
    assert verify_body(SECRET, ts, sig, body, now=1_010, tolerance_s=300) is None
    assert "match" in (verify_body(SECRET, ts, sig, body + b" ", now=1_010, tolerance_s=300) or "")
    assert "match" in (verify_body(b"other", ts, sig, body, now=1_010, tolerance_s=300) or "")
    assert "match" in (verify_body(SECRET, "1001", sig, body, now=1_010, tolerance_s=300) or "")
    assert "from now" in (verify_body(SECRET, ts, sig, body, now=2_000, tolerance_s=300) or "")
    assert "missing" in (verify_body(SECRET, None, sig, body, now=1_010, tolerance_s=300) or "")
    assert "unix" in (verify_body(SECRET, "soon", sig, body, now=1_010, tolerance_s=300) or "")


def test_widget_tokens_are_per_customer_and_per_secret() -> None:
    token = widget_token(SECRET, "c-1")
    assert verify_widget_token(SECRET, "c-1", token)
    assert not verify_widget_token(SECRET, "c-2", token)
    assert not verify_widget_token(b"other", "c-1", token)


def test_a_widget_token_with_an_expiry_works_until_then() -> None:
    token = widget_token(SECRET, "c-1", expires=2_000)
    assert token != widget_token(SECRET, "c-1")
    assert verify_widget_token(SECRET, "c-1", token, expires=2_000, now=1_999)
    assert not verify_widget_token(SECRET, "c-1", token, expires=2_000, now=2_001)
    assert not verify_widget_token(SECRET, "c-1", token, expires=9_999, now=1_999), "the expiry is signed"


def test_the_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.seconds_to_next() == 0.5
    now[0] = 0.5
    assert bucket.take() and not bucket.take()
    now[0] = 100.0
    assert sum(bucket.take() for _ in range(10)) == 3


def test_tenants_come_from_a_file_and_the_environment_wins(tmp_path: Path) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text("tenants:\n  shop-a: {secret: from-file, callback_url: 'http://a/cb'}\n  shop-c: {secret: c}\n")
    settings = ChatSettings(
        chat_tenants_file=path,
        chat_tenant_secrets={"shop-a": "from-env", "shop-b": "b"},  # type: ignore[dict-item]
        chat_tenant_callbacks={"shop-b": "http://b/cb"},
    )
    tenants = settings.tenants()
    assert sorted(tenants) == ["shop-a", "shop-b", "shop-c"]
    assert tenants["shop-a"].secret == b"from-env" and tenants["shop-a"].callback_url == "http://a/cb"
    assert tenants["shop-b"].callback_url == "http://b/cb" and tenants["shop-c"].callback_url == ""
    json_path = tmp_path / "tenants.json"
    json_path.write_text(json.dumps({"tenants": {"shop-j": {"secret": "j"}}}))
    assert list(ChatSettings(chat_tenants_file=json_path).tenants()) == ["shop-j"]


def test_secrets_are_read_from_the_environment_and_never_printed(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SB_CHAT_TENANT_SECRETS", '{"shop-a": "very-secret"}')
    settings = ChatSettings()
    assert settings.tenants()["shop-a"].secret == b"very-secret"
    assert "very-secret" not in repr(settings)
