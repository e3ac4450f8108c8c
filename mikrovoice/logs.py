"""Structured logging with the call id on every line.

``call_id`` is a ContextVar: set once where a call starts, it is inherited by every Trio task
that call starts (Trio copies the context into child tasks), so no function passes it around.
``event(logger, name, **fields)`` logs ``name k=v ...`` and keeps the fields on the record for
machine consumers (the demo timeline). Never pass secrets as fields: nothing here can redact them.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from typing import Any, TextIO

call_id: ContextVar[str] = ContextVar("call_id", default="-")


class CallIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call_id"):
            record.call_id = call_id.get()
        if not hasattr(record, "event"):
            record.event = ""
            record.fields = {}
        return True


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return json.dumps(text, ensure_ascii=False) if (" " in text or not text) else text


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event: ``name`` plus ``key=value`` fields."""
    if not logger.isEnabledFor(level):
        return
    message = " ".join([name] + [f"{k}={_value(v)}" for k, v in fields.items()])
    logger.log(level, message, extra={"event": name, "fields": fields}, stacklevel=2)


def configure(level: int = logging.INFO, stream: TextIO | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(CallIdFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s call=%(call_id)s %(name)s: %(message)s")
    )
    root = logging.getLogger("mikrovoice")
    root.addHandler(handler)
    root.setLevel(level)
    return handler
