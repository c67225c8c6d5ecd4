"""The one gate for JSON from outside: size, depth, text, and the codes each refusal maps to. Pure, no I/O."""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from switchboard.runtime.input_limits import (
    HTTP_STATUS,
    WS_CLOSE_CODES,
    InputRefused,
    JsonBodyGate,
    check_text,
    clean_text,
    close_reason,
    parse_json,
    read_limited,
    text_problem,
)

MAX = 64 * 1024


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        ("[" * 5000 + "]" * 5000, "too_deep"),
        ('{"a":' * 40 + "1" + "}" * 40, "too_deep"),
        ("[" * 50_000, "too_deep"),  # not even closed: refused for its depth, never a crash
        ('{"text": "\\ud800"}', "invalid_text"),
        ('{"\\udfff": 1}', "invalid_text"),
        ('["ok", {"t": "a\\u0000b"}]', "invalid_text"),
        (b'{"text": "\xc3\x28"}', "invalid_text"),
        (b"\xff\xfe{\x00}\x00", "invalid_text"),
        ("{not json", "invalid_json"),
        ('{"n": NaN}', "invalid_json"),
        ('{"n": -Infinity}', "invalid_json"),
        ('{"n": ' + "9" * 5000 + "}", "invalid_json"),
        ("", "invalid_json"),
        ("x" * (MAX + 1), "too_large"),
        ("汉" * (MAX // 3 + 1), "too_large"),
        (b"[" + b"1," * MAX + b"1]", "too_large"),
    ],
)
def test_hostile_json_is_refused_with_its_kind(data: str | bytes, kind: str) -> None:
    with pytest.raises(InputRefused) as refused:
        parse_json(data, max_bytes=MAX)
    assert refused.value.kind == kind == refused.value.error_type
    assert refused.value.reason
    assert refused.value.body() == {"error": kind, "detail": refused.value.reason}


def test_depth_limit_counts_nested_containers() -> None:
    value = parse_json("[" * 32 + "]" * 32, max_bytes=MAX)
    for _ in range(31):
        value = value[0]
    assert value == []
    with pytest.raises(InputRefused):
        parse_json("[" * 33 + "]" * 33, max_bytes=MAX)
    assert parse_json('{"a": [{"b": [1]}]}', max_bytes=MAX, max_depth=4) == {"a": [{"b": [1]}]}
    with pytest.raises(InputRefused, match="deeper than 3"):
        parse_json('{"a": [{"b": [1]}]}', max_bytes=MAX, max_depth=3)


def test_ordinary_messages_pass_unchanged() -> None:
    body = '{"type": "message", "text": "这件有M码吗？\\n😀 tab\\there", "n": [1, 2.5, true, null]}'
    assert parse_json(body, max_bytes=MAX) == {
        "type": "message",
        "text": "这件有M码吗？\n😀 tab\there",
        "n": [1, 2.5, True, None],
    }
    assert parse_json(body.encode(), max_bytes=MAX) == parse_json(body, max_bytes=MAX)
    # A valid surrogate pair is one character, not a lone surrogate.
    assert parse_json('"\\ud83d\\ude00"', max_bytes=MAX) == "😀"


def test_codes_of_each_kind() -> None:
    assert WS_CLOSE_CODES == {"too_large": 1009, "too_deep": 1007, "invalid_json": 1007, "invalid_text": 1007}
    assert HTTP_STATUS["too_large"] == 413 and HTTP_STATUS["invalid_json"] == HTTP_STATUS["too_deep"] == 400
    refused = InputRefused("x", "too_large")
    assert (refused.close_code, refused.status) == (1009, 413)


def test_close_reasons_fit_a_close_frame() -> None:
    assert close_reason("short") == "short"
    assert len(close_reason("x" * 500).encode()) == 123
    assert close_reason("汉" * 100) == "汉" * 41  # never half a character


def test_text_problems_name_the_character() -> None:
    assert text_problem("fine\tline\r\n") is None
    assert text_problem("a\ud800") == "text contains a lone surrogate (U+D800)"
    assert text_problem("\x1b[31m") == "text contains a control character (U+001B)"
    with pytest.raises(InputRefused, match="`tenant`"):
        check_text("shop\x00", "tenant")


def test_clean_text_keeps_text_and_defuses_the_rest() -> None:
    assert clean_text("退货\t申请\r\n😀") == "退货\t申请\r\n😀"
    assert clean_text("a\ud800b\udfff") == "a\ufffdb\ufffd"
    assert clean_text("\ud83d\ude00") == "😀"  # a pair that arrived as two escapes is one character
    assert clean_text("bell\x07 nul\x00 esc\x1b[2J del\x7f") == "bell nul esc[2J del"


def test_a_deep_document_is_refused_quickly() -> None:
    started = time.perf_counter()
    for _ in range(20):
        with pytest.raises(InputRefused):
            parse_json("[" * 100_000 + "]" * 100_000, max_bytes=256 * 1024)
    assert time.perf_counter() - started < 2.0


def test_a_streamed_body_is_cut_at_the_limit() -> None:
    chunks = [b"a" * 1000] * 100
    seen: list[int] = []

    async def receive() -> MutableMapping[str, Any]:
        seen.append(1)
        return {"type": "http.request", "body": chunks[len(seen) - 1], "more_body": len(seen) < len(chunks)}

    with pytest.raises(InputRefused) as refused:
        asyncio.run(read_limited(receive, 4500))
    assert refused.value.kind == "too_large" and len(seen) == 5
    seen.clear()
    assert len(asyncio.run(read_limited(receive, 200_000))) == 100_000


class Login(BaseModel):
    """A body FastAPI reads as JSON."""

    tenant_id: str


def _gated_app() -> FastAPI:
    app = FastAPI()

    @app.post("/login")
    async def login(body: Login) -> dict[str, str]:
        return {"tenant_id": body.tenant_id}

    app.add_middleware(JsonBodyGate, max_bytes=4096)
    return app


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (b"[" * 2000 + b"]" * 2000, 400, "too_deep"),
        (b'{"tenant_id": "\\ud800"}', 400, "invalid_text"),
        (b'{"tenant_id": "a", "n": NaN}', 400, "invalid_json"),
        (b'{"tenant_id": "' + b"x" * 5000 + b'"}', 413, "too_large"),
    ],
)
def test_the_body_gate_answers_before_fastapi_parses(body: bytes, status: int, kind: str) -> None:
    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=_gated_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://gate") as http:
            return await http.post("/login", content=body, headers={"content-type": "application/json"})

    answer = asyncio.run(post())
    assert (answer.status_code, answer.json()["error"]) == (status, kind)
    assert answer.json()["detail"]


def test_the_body_gate_lets_good_and_schema_invalid_bodies_through() -> None:
    async def post(body: bytes, content_type: str | None) -> httpx.Response:
        transport = httpx.ASGITransport(app=_gated_app())
        headers = {"content-type": content_type} if content_type else {}
        async with httpx.AsyncClient(transport=transport, base_url="http://gate") as http:
            return await http.post("/login", content=body, headers=headers)

    assert asyncio.run(post(b'{"tenant_id": "shop-a"}', "application/json")).json() == {"tenant_id": "shop-a"}
    assert asyncio.run(post(b'{"tenant": 1}', "application/json")).status_code == 422
    assert asyncio.run(post(b"[" * 2000, None)).status_code == 400  # no content type: refused all the same
