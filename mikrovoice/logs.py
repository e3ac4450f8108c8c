"""Structured logging with the call id on every line.

``call_id`` is a ContextVar: set once where a call starts, it is inherited by every Trio task
that call starts (Trio copies the context into child tasks), so no function passes it around.
``event(logger, name, **fields)`` logs ``name k=v ...`` and keeps the fields on the record for
machine consumers (the demo timeline, the JSON format). Never pass secrets as fields (API keys,
Authorization headers, router passwords, PINs): nothing here can redact them.

Two line formats (``configure(fmt=...)``):

- ``text``: ``<asctime> <LEVEL> call=<id> <logger>: <message>``;
- ``json``: one object per line: ``ts`` (ISO 8601 UTC, milliseconds), ``level``, ``logger``,
  ``call`` (``-`` outside calls), ``event`` (null for a plain message), ``msg`` (the text
  message), then the event's fields at top level. A field whose name is one of those keys (or
  ``fields``, ``exc``, ``stack``) goes under ``fields`` instead; a value JSON cannot hold is
  written as its ``str``; ``exc`` is the traceback when the record has one.

A worker of ``serve --workers N`` (``configure(worker=i)``) marks each of its lines: ``worker=<i>``
before ``call=`` in text, a ``worker`` key (an integer, after ``level``) in JSON; in that process
an event field named ``worker`` goes under ``fields``. Lines of a single process, or of the
supervisor, carry no such mark (the supervisor's events about a worker have a ``worker`` field).

Observers (``add_observer``) see every ``event()`` as ``(name, fields, level)`` *before* the
logger's level is checked, so metrics count events whatever the log level. An observer that
raises does not break the caller: the failure is logged once per observer, at WARNING.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

call_id: ContextVar[str] = ContextVar("call_id", default="-")

#: ``observer(name, fields, level)``; ``fields`` is the event's own dict: read it, never change it.
Observer = Callable[[str, Mapping[str, Any], int], None]

_observers: list[Observer] = []
_failed_observers: list[Observer] = []  # reported once each (a list: observers need not be hashable)
_log = logging.getLogger("mikrovoice.logs")


class CallIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call_id"):
            record.call_id = call_id.get()
        if not hasattr(record, "event"):
            record.event = ""
            record.fields = {}
        return True


def add_observer(observer: Observer) -> None:
    """Call ``observer(name, fields, level)`` for every ``event()`` from now on, at any log level."""
    if observer not in _observers:
        _observers.append(observer)


def remove_observer(observer: Observer) -> None:
    """Stop calling ``observer`` (no error if it was not added)."""
    if observer in _observers:
        _observers.remove(observer)
    if observer in _failed_observers:
        _failed_observers.remove(observer)


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return json.dumps(text, ensure_ascii=False) if (" " in text or not text) else text


def event(logger: logging.Logger, name: str, /, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event: ``name`` plus ``key=value`` fields."""
    for observer in tuple(_observers):
        try:
            observer(name, fields, level)
        except Exception as exc:  # an observer's bug must not break the call that logs
            if observer not in _failed_observers:
                _failed_observers.append(observer)
                _log.warning("logs.observer_failed observer=%s event=%s error=%s",
                             getattr(observer, "__qualname__", type(observer).__name__), name,
                             _value(f"{type(exc).__name__}: {exc}"),
                             extra={"event": "logs.observer_failed",
                                    "fields": {"observer": getattr(observer, "__qualname__", type(observer).__name__),
                                               "event_name": name, "error": f"{type(exc).__name__}: {exc}"}})
    if not logger.isEnabledFor(level):
        return
    message = " ".join([name] + [f"{k}={_value(v)}" for k, v in fields.items()])
    logger.log(level, message, extra={"event": name, "fields": fields}, stacklevel=2)


#: Keys of every JSON line; a field of the same name goes under "fields".
FIXED_KEYS = frozenset({"ts", "level", "logger", "call", "event", "msg", "fields", "exc", "stack"})


def _jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as something ``json.dumps`` writes as strict JSON (no NaN, no crash)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth < 8:
        if isinstance(value, Mapping):
            return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [_jsonable(v, depth + 1) for v in value]
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the line
        return f"<unprintable {type(value).__name__}>"


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring); ``worker``: the process's index under
    ``serve --workers``, written on every line."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker
        self.fixed_keys = FIXED_KEYS if worker is None else FIXED_KEYS | {"worker"}

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, Any] = {
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "level": record.levelname,
        }
        if self.worker is not None:
            line["worker"] = self.worker
        line.update({
            "logger": record.name,
            "call": getattr(record, "call_id", None) or call_id.get(),
            "event": getattr(record, "event", None) or None,
            "msg": record.getMessage(),
        })
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            clashing: dict[str, Any] = {}
            for key, value in fields.items():
                key = str(key)
                if key in self.fixed_keys:
                    clashing[key] = _jsonable(value)
                else:
                    line[key] = _jsonable(value)
            if clashing:
                line["fields"] = clashing
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, allow_nan=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s call=%(call_id)s %(name)s: %(message)s"


def text_format(worker: int | None = None) -> str:
    """The text line format; a worker's lines say ``worker=<i>`` before the call id."""
    return TEXT_FORMAT if worker is None else TEXT_FORMAT.replace(" call=", f" worker={worker} call=", 1)

_installed: logging.Handler | None = None


def configure(level: int = logging.INFO, stream: TextIO | None = None,
              fmt: Literal["text", "json"] | str = "text", worker: int | None = None) -> logging.Handler:
    """Log the ``mikrovoice`` loggers at ``level`` to ``stream`` (stderr), as ``text`` or ``json``;
    ``worker``: this process is worker ``worker`` of ``serve --workers`` and every line says so.

    Called again, it replaces the handler it installed before. Returns the handler."""
    global _installed
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r}: use 'text' or 'json'")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(CallIdFilter())
    handler.setFormatter(JsonFormatter(worker) if fmt == "json" else logging.Formatter(text_format(worker)))
    root = logging.getLogger("mikrovoice")
    if _installed is not None:
        root.removeHandler(_installed)
    root.addHandler(handler)
    root.setLevel(level)
    _installed = handler
    return handler
