"""Log lines are PII-masked as they are written, and carry no query string (uvicorn's websocket line)."""

from __future__ import annotations

import json
import logging

from switchboard.runtime.logs import JsonFormatter


def _line(record: logging.LogRecord) -> dict[str, object]:
    text = JsonFormatter().format(record)
    assert "13812341234" not in text and "110101199003071234" not in text
    parsed: dict[str, object] = json.loads(text)
    return parsed


def test_uvicorn_websocket_line_keeps_the_path_without_token_or_customer() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:50000", "/chat/v1/ws?tenant=shop-a&customer=13812341234&token=deadbeefcafe&expires=99"),
        None,
    )
    line = _line(record)
    assert line["event"] == '127.0.0.1:50000 - "WebSocket /chat/v1/ws" [accepted]'


def test_event_fields_and_tracebacks_are_masked() -> None:
    try:
        raise ValueError("customer 138 1234 1234 refused")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord("switchboard.chat", logging.WARNING, __file__, 1, "chat_refused", None, exc_info)
    record.fields = {  # what EventLogger attaches
        "customer_id": "13812341234",
        "reason": "身份证 110101 19900307 1234",
        "ids": ["一三八一二三四一二三四", 7],
        "nested": {"to": "li.na@example.com"},
        "number": 13812341234,
        "since_ms": 1765075210123,
    }
    line = _line(record)
    assert line["customer_id"] == "138****1234"
    assert line["reason"] == "身份证 110101********1234"
    assert line["ids"] == ["138****1234", 7]
    assert line["nested"] == {"to": "l***@example.com"}
    assert line["number"] == "138****1234" and line["since_ms"] == 1765075210123
    assert "138****1234" in str(line["exception"])
