"""logs: the JSON line format, the text format, and the observer tap."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import pytest
import trio

from mikrovoice import logs
from mikrovoice.logs import event

from .conftest import Capture

log = logging.getLogger("mikrovoice.test")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def lines(text: str) -> list[dict[str, Any]]:
    """Each line as strict JSON (Python's json would take NaN and Infinity)."""
    return [json.loads(line, parse_constant=_no_constants) for line in text.splitlines()]


async def test_json_lines_carry_the_call_id_of_the_task_and_flattened_fields(log_capture: Capture) -> None:
    out = log_capture(logging.DEBUG, "json")

    async def call(call_id: str) -> None:
        logs.call_id.set(call_id)
        event(log, "query.running", elapsed_s=10, answered=9, total=12, pending="152.1,152.7")

    event(log, "service.started", port=9092)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, "c-1")
        nursery.start_soon(call, "c-2")
    log.info("a plain message %d", 7)
    parsed = lines(out.getvalue())
    assert len(parsed) == 4
    outside, *inside, plain = parsed
    assert outside["call"] == "-" and outside["event"] == "service.started" and outside["port"] == 9092
    assert sorted(line["call"] for line in inside) == ["c-1", "c-2"]
    for line in inside:
        assert line["event"] == "query.running"
        assert (line["elapsed_s"], line["answered"], line["total"]) == (10, 9, 12)
        assert line["msg"] == 'query.running elapsed_s=10 answered=9 total=12 pending=152.1,152.7'
        assert line["level"] == "INFO" and line["logger"] == "mikrovoice.test"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])
    assert plain["event"] is None and plain["msg"] == "a plain message 7" and plain["call"] == "-"


def test_a_field_named_like_a_fixed_key_goes_under_fields(log_capture: Capture) -> None:
    out = log_capture(logging.INFO, "json")
    logs.call_id.set("c-9")
    try:
        # session.py logs tool.called with call=<the model's call id>: it must not hide the call's id
        event(log, "tool.called", tool="ping", call="call_abc", level_of_detail=1, msg="x", ts=0, fields=[1])
    finally:
        logs.call_id.set("-")
    (line,) = lines(out.getvalue())
    assert line["call"] == "c-9" and line["event"] == "tool.called" and line["tool"] == "ping"
    assert line["level"] == "INFO" and line["level_of_detail"] == 1
    assert line["fields"] == {"call": "call_abc", "msg": "x", "ts": 0, "fields": [1]}
    assert line["msg"].startswith("tool.called tool=ping call=call_abc")


def test_values_json_cannot_hold_become_strings_and_exceptions_go_under_exc(log_capture: Capture) -> None:
    out = log_capture(logging.INFO, "json")

    class Opaque:
        def __str__(self) -> str:
            return "opaque!"

    event(log, "odd.values", obj=Opaque(), nan=float("nan"), data=b"\x00\xff", nested={1: {2, 3}}, ok=True, none=None)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    odd, failed = lines(out.getvalue())
    assert odd["obj"] == "opaque!" and odd["nan"] == "nan" and odd["data"] == str(b"\x00\xff")
    assert odd["nested"] == {"1": [2, 3]} and odd["ok"] is True and odd["none"] is None
    assert failed["level"] == "ERROR" and failed["event"] is None
    assert "Traceback" in failed["exc"] and "ValueError: boom" in failed["exc"]


def test_the_text_format_is_unchanged(log_capture: Capture) -> None:
    out = log_capture(logging.INFO, "text")
    event(log, "call.started", transport="audiosocket", caller="-")
    event(log, "hidden", level=logging.DEBUG)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO call=- mikrovoice.test: "
                        r"call.started transport=audiosocket caller=-\n", out.getvalue())


def test_a_workers_lines_carry_its_index(log_capture: Capture) -> None:
    text = log_capture(logging.INFO, "text", worker=3)
    event(log, "call.started", transport="audiosocket", caller="-")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO worker=3 call=- mikrovoice.test: "
                        r"call.started transport=audiosocket caller=-\n", text.getvalue())
    out = log_capture(logging.INFO, "json", worker=3)
    event(log, "workers.exited", worker=1)  # a field of that name cannot pass for the line's worker
    (line,) = lines(out.getvalue())
    assert line["worker"] == 3 and line["fields"] == {"worker": 1}
    assert list(line)[:3] == ["ts", "level", "worker"]


def test_without_a_worker_index_a_worker_field_stays_a_field(log_capture: Capture) -> None:
    out = log_capture(logging.INFO, "json")
    event(log, "workers.exited", worker=1, status="exit 0")  # the supervisor's lines
    (line,) = lines(out.getvalue())
    assert line["worker"] == 1 and "fields" not in line


def test_configure_again_replaces_its_handler_and_refuses_unknown_formats(log_capture: Capture) -> None:
    first = log_capture(logging.INFO, "text")
    second = log_capture(logging.INFO, "json")
    event(log, "once")
    assert first.getvalue() == "" and lines(second.getvalue())[0]["event"] == "once"
    with pytest.raises(ValueError, match="unknown log format"):
        logs.configure(fmt="xml")


def test_observers_see_every_event_whatever_the_log_level(log_capture: Capture) -> None:
    out = log_capture(logging.WARNING, "json")
    seen: list[tuple[str, dict[str, Any], int]] = []

    def observer(name: str, fields: Mapping[str, Any], level: int) -> None:
        seen.append((name, dict(fields), level))

    logs.add_observer(observer)
    logs.add_observer(observer)  # once only
    try:
        event(log, "query.finished", tool="ping", elapsed_s=1.5)
        event(log, "model.send", level=logging.DEBUG, type="response.create")
    finally:
        logs.remove_observer(observer)
    event(log, "after.removal")
    assert seen == [("query.finished", {"tool": "ping", "elapsed_s": 1.5}, logging.INFO),
                    ("model.send", {"type": "response.create"}, logging.DEBUG)]
    assert out.getvalue() == ""  # nothing reached the log at WARNING


def test_a_raising_observer_breaks_nothing_and_is_reported_once(log_capture: Capture,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    log_capture(logging.INFO, "json")
    seen: list[str] = []

    def broken(name: str, fields: Mapping[str, Any], level: int) -> None:
        raise RuntimeError("observer bug")

    def healthy(name: str, fields: Mapping[str, Any], level: int) -> None:
        seen.append(name)

    logs.add_observer(broken)
    logs.add_observer(healthy)
    try:
        event(log, "first")
        event(log, "second")
    finally:
        logs.remove_observer(broken)
        logs.remove_observer(healthy)
    assert seen == ["first", "second"]
    reports = [r for r in caplog.records if getattr(r, "event", "") == "logs.observer_failed"]
    assert len(reports) == 1
    (report,) = reports
    assert report.levelno == logging.WARNING and report.exc_info is None
    assert "RuntimeError: observer bug" in report.getMessage() and "broken" in report.getMessage()
    assert [r.getMessage() for r in caplog.records if getattr(r, "event", "") in ("first", "second")] == [
        "first", "second"]


def test_fields_may_be_named_like_the_parameters_of_event(log_capture: Capture) -> None:
    out = log_capture(logging.INFO, "json")
    event(log, "tool.described", name="ping", logger="x")  # logger and name are positional-only
    (line,) = lines(out.getvalue())
    assert line["name"] == "ping" and line["logger"] == "mikrovoice.test" and line["fields"] == {"logger": "x"}
