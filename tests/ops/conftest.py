"""Fixtures of the ops tests: a JSON (or text) log capture through ``logs.configure``, undone after."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator

import pytest

from mikrovoice import logs

Capture = Callable[..., io.StringIO]


@pytest.fixture
def log_capture() -> Iterator[Capture]:
    """``log_capture(level, fmt, worker)`` configures the ``mikrovoice`` loggers to a StringIO it returns."""
    root = logging.getLogger("mikrovoice")
    level = root.level
    handlers: list[logging.Handler] = []

    def capture(level: int = logging.INFO, fmt: str = "json", worker: int | None = None) -> io.StringIO:
        stream = io.StringIO()
        handlers.append(logs.configure(level, stream=stream, fmt=fmt, worker=worker))
        return stream

    yield capture
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(level)
