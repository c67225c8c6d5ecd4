"""The one gate for JSON from outside: size, nesting depth, valid UTF-8 text, and the answer each refusal gets.

Every socket and endpoint that reads JSON from outside goes through `parse_json` (websocket frames, webhook bodies,
operator API bodies), so a body nested thousands deep (which makes `json.loads` raise RecursionError, or makes the
code after it recurse), an escaped lone surrogate (`"\\ud800"`, valid JSON that no UTF-8 encoder, Redis key or
protobuf string takes) or a body of megabytes is refused where it enters, with the same kind everywhere:

| kind | what | websocket close | HTTP |
|---|---|---|---|
| `too_large` | over the byte limit of the socket or endpoint | 1009 | 413 |
| `too_deep` | arrays/objects nested deeper than `max_depth` (32) | 1007 | 400 |
| `invalid_json` | not JSON (or `NaN`/`Infinity`, which JSON does not have) | 1007 | 400 |
| `invalid_text` | not UTF-8, a lone surrogate, or a control character other than tab/CR/LF in a string | 1007 | 400 |

A schema error after parsing answers 422. HTTP bodies of refusals are `{"error": "<kind>", "detail": "..."}`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from switchboard.runtime.errors import InvalidRecord

TOO_LARGE: Final = "too_large"
TOO_DEEP: Final = "too_deep"
INVALID_JSON: Final = "invalid_json"
INVALID_TEXT: Final = "invalid_text"
# A field missing or outside its bounds: the DLQ error type and the `error` of an HTTP 422 alike.
INVALID_FIELD: Final = "invalid_field"
KINDS: Final = (TOO_LARGE, TOO_DEEP, INVALID_JSON, INVALID_TEXT)

DEFAULT_MAX_DEPTH: Final = 32

# RFC 6455: 1007 "data inconsistent with the type of the message", 1009 "message too big", 1008 "policy".
WS_CLOSE_INVALID: Final = 1007
WS_CLOSE_POLICY: Final = 1008
WS_CLOSE_TOO_LARGE: Final = 1009
WS_CLOSE_CODES: Final[dict[str, int]] = {
    TOO_LARGE: WS_CLOSE_TOO_LARGE,
    TOO_DEEP: WS_CLOSE_INVALID,
    INVALID_JSON: WS_CLOSE_INVALID,
    INVALID_TEXT: WS_CLOSE_INVALID,
}
HTTP_STATUS: Final[dict[str, int]] = {
    TOO_LARGE: 413,
    TOO_DEEP: 400,
    INVALID_JSON: 400,
    INVALID_TEXT: 400,
    INVALID_FIELD: 422,
}

# Lone surrogates (only reachable through `\ud800` escapes once the bytes were valid UTF-8) and C0 controls except
# tab, LF and CR: NUL and friends end up in logs, Redis keys and agents' screens.
_BAD_TEXT = re.compile(r"[\ud800-\udfff\x00-\x08\x0b\x0c\x0e-\x1f]")


class InputRefused(InvalidRecord):
    """Input refused before it was looked at: `kind` is one of KINDS (also its DLQ `error_type`)."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason, kind)
        self.kind = kind

    @property
    def close_code(self) -> int:
        """The websocket close code of this refusal."""
        return WS_CLOSE_CODES.get(self.kind, WS_CLOSE_INVALID)

    @property
    def status(self) -> int:
        """The HTTP status of this refusal."""
        return HTTP_STATUS.get(self.kind, 400)

    def body(self) -> dict[str, str]:
        """The documented HTTP error body."""
        return error_body(self.kind, self.reason)


def close_reason(text: str) -> str:
    """`text` cut to what a websocket close frame carries (123 bytes of UTF-8): a longer one fails the close."""
    cut = text.encode("utf-8", "replace")[:123]
    return cut.decode("utf-8", "ignore")


def error_body(kind: str, detail: str) -> dict[str, str]:
    """`{"error": kind, "detail": detail}`: the one shape of an HTTP refusal."""
    return {"error": kind, "detail": detail}


def parse_json(data: str | bytes, *, max_bytes: int, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode JSON from outside, or raise InputRefused (too_large, too_deep, invalid_json, invalid_text)."""
    text = _as_text(data, max_bytes)
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError as exc:
        # The C decoder guards its recursion: "[[[[…" thousands deep raises here instead of crashing.
        raise InputRefused(f"JSON is nested deeper than {max_depth} levels", TOO_DEEP) from exc
    except ValueError as exc:
        raise InputRefused(f"not JSON: {exc}", INVALID_JSON) from exc
    _check_tree(value, max_depth)
    return value


def text_problem(value: str) -> str | None:
    """Why a string cannot be taken as text (a lone surrogate or a control character), or None when it can."""
    found = _BAD_TEXT.search(value)
    if found is None:
        return None
    char = found.group()
    what = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
    return f"text contains {what} (U+{ord(char):04X})"


def check_text(value: str, name: str = "text") -> str:
    """`value` when it is clean text; InputRefused(invalid_text) naming the field otherwise."""
    problem = text_problem(value)
    if problem is not None:
        raise InputRefused(f"`{name}`: {problem}", INVALID_TEXT)
    return value


_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(value: str) -> str:
    """Text made safe to store where refusing is no option (a mail already taken apart): valid surrogate pairs
    joined, lone surrogates replaced by U+FFFD, control characters other than tab/CR/LF dropped."""
    if _BAD_TEXT.search(value) is None and "\x7f" not in value:
        return value
    joined = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return _CONTROLS.sub("", joined)


def _as_text(data: str | bytes, max_bytes: int) -> str:
    if isinstance(data, str):
        # Counted as UTF-8 would send it; surrogatepass so a lone surrogate is measured, then refused below.
        if len(data) > max_bytes or len(data.encode("utf-8", "surrogatepass")) > max_bytes:
            raise InputRefused(f"body is larger than {max_bytes} bytes", TOO_LARGE)
        return data
    if len(data) > max_bytes:
        raise InputRefused(f"body is larger than {max_bytes} bytes", TOO_LARGE)
    try:
        # Strict UTF-8: json.loads(bytes) would also guess UTF-16/32, which no client of ours sends.
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputRefused(f"body is not UTF-8 (byte {exc.start})", INVALID_TEXT) from exc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_tree(value: Any, max_depth: int) -> None:
    """Nesting within max_depth and every key and string clean text; iterative, so depth costs no stack."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            check_text(item, "string")
            continue
        if not isinstance(item, dict | list):
            continue
        if depth >= max_depth:
            raise InputRefused(f"JSON is nested deeper than {max_depth} levels", TOO_DEEP)
        if isinstance(item, dict):
            for key, child in item.items():
                check_text(key, "key")
                stack.append((child, depth + 1))
        else:
            stack.extend((child, depth + 1) for child in item)


Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


async def read_limited(receive: Receive, max_bytes: int) -> bytes:
    """An ASGI request body, refused (too_large) as soon as it passes `max_bytes`, before it is all in memory."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if len(body) > max_bytes:
            raise InputRefused(f"body is larger than {max_bytes} bytes", TOO_LARGE)
        if not message.get("more_body", False):
            break
    return bytes(body)


Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Message, Receive, Send], Awaitable[None]]
DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024


class JsonBodyGate:
    """ASGI middleware: a JSON request body passes `parse_json` before the app reads it.

    FastAPI parses a JSON body with `json.loads` before any handler or dependency runs, so a body nested thousands
    deep raised RecursionError there (a 500), and a lone surrogate reached the handler. With this in front such a
    body is answered 400/413 with the documented error shape. For apps whose routes take pydantic bodies (the
    operator API, the gateway's login and board); endpoints that read their body themselves (webhooks that write
    DLQ records) call parse_json and stay outside it.
    """

    def __init__(self, app: App, max_bytes: int = DEFAULT_MAX_BODY_BYTES, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH") or not _json_request(scope):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_limited(receive, self.max_bytes)
            if body.strip():
                parse_json(body, max_bytes=self.max_bytes, max_depth=self.max_depth)
        except InputRefused as refused:
            await _answer(send, refused.status, refused.body())
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _json_request(scope: Message) -> bool:
    """A request FastAPI would read as JSON: content type JSON (or +json), or none at all."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return bool(media == b"application/json" or media.endswith(b"+json"))
    return True


async def _answer(send: Send, status: int, body: dict[str, str]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
