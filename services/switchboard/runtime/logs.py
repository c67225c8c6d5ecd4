"""Structured JSON logs: one line per event, with the service, instance and the event's own fields.

Every line is PII-masked as it is written (runtime/pii.py: the event text, every string field, the traceback),
and query strings are cut from the paths libraries log (uvicorn's websocket line carries the widget's token and
customer id in its query): no log line holds a phone number, an ID card number or a token in the clear.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from switchboard.runtime.pii import mask_pii

_SERVICE: dict[str, str] = {}
# A path followed by its query string, as uvicorn logs a request line (`"WebSocket /chat/v1/ws?tenant=…"`).
_QUERY = re.compile(r"(/[^\s?\"']*)\?[^\s\"']*")


def _masked(value: Any) -> Any:
    """Strings masked, in lists and mappings too, and integers that read as a phone or ID card number."""
    if isinstance(value, str):
        return mask_pii(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 10**10:
        text = str(value)
        masked = mask_pii(text)
        return value if masked == text else masked
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(v) for v in value]
    return value


def _masked_text(value: object) -> str:
    """A field that is no JSON value, as masked text."""
    return mask_pii(str(value))


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record with its structured fields."""
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": mask_pii(_QUERY.sub(r"\1", record.getMessage())),
            **_SERVICE,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(_masked(fields))
        if record.exc_info:
            entry["exception"] = mask_pii(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=_masked_text)


def configure_logging(service: str, instance: str, level: str = "INFO") -> None:
    """Send every logger's records to stderr as JSON lines."""
    _SERVICE.update(service=service, instance=instance)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt at error level; one line per event is enough.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


class EventLogger:
    """A logger whose calls name an event and attach fields: `log.info("routed", agent_id=a, group=g)`."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def _log(self, level: int, event: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, extra={"fields": fields}, exc_info=exc_info)

    def debug(self, event: str, **fields: Any) -> None:
        """Log at debug level."""
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        """Log at info level."""
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Log at warning level."""
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        """Log at error level."""
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """Log at error level with the current exception's traceback."""
        self._log(logging.ERROR, event, fields, exc_info=True)


def get_logger(name: str) -> EventLogger:
    """The structured logger for a module."""
    return EventLogger(name)
