"""Caller authorisation: the policy (``call.auth``), the chart's admission states, and whole calls.

The whole calls run the real service between the simulators over loopback sockets, on Trio's
virtual clock: the caller types its PIN as DTMF (AudioSocket 0x03 messages or chan_websocket's
DTMF), the service plays its recorded prompts, and no model session exists until the caller is
admitted (the simulated model counts its sessions).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from mikrovoice.call.auth import Gatekeeper, PinPad, allows, same_number
from mikrovoice.call.machine import Admit, AskPin, CallMachine, Connect, EndCall, Refuse, SayFarewell
from mikrovoice.config import AuthSettings, Operator, Settings
from mikrovoice.demo import DEMO_FLEET, SEED_QUESTIONS
from mikrovoice.service import (
    CallService,
    ServiceStats,
    serve_calls,
    serve_websocket_calls,
    start_simulated_peers,
)
from mikrovoice.sim.asterisk import AsteriskCaller, CallerScript, CallReport, Line, Question
from mikrovoice.sim.realtime import SimModelConfig

ANA = Operator("Ana", numbers=("+573001234567",), pin="123456")
LUIS = Operator("Luis", numbers=("3109876543",), pin="654321", tools=("listar_routers", "estado_routers"))


def auth(require: str = "pin", **kwargs: object) -> AuthSettings:
    return replace(AuthSettings(require=require, configured=True, operators=(ANA, LUIS)), **kwargs)


# -- the policy ------------------------------------------------------------------------------------


@pytest.mark.parametrize("a, b, same", [
    ("+573001234567", "3001234567", True),  # how Colombian trunks present a mobile: three ways
    ("573001234567", "3001234567", True),
    ("3001234567", "3001234568", False),
    ("1234", "1234", True),
    ("91234", "1234", False),  # short numbers (extensions) must match whole
    (None, "3001234567", False),
    ("", "", False),
])
def test_numbers_match_on_their_digits_or_their_last_ten(a: str | None, b: str, same: bool) -> None:
    assert same_number(a, b) is same


@pytest.mark.parametrize("require, caller, expected", [
    ("open", None, "pass"),
    ("pin", "3001234567", "pin"),  # a known number still needs the PIN
    ("caller_id", "3001234567", "pass"),
    ("caller_id", "3005550000", "refused"),
    ("caller_id", None, "refused"),  # AudioSocket tells no number: nobody is known
    ("caller_id_or_pin", "3001234567", "pass"),
    ("caller_id_or_pin", None, "pin"),
    ("caller_id_and_pin", "3001234567", "pin"),
    ("caller_id_and_pin", "3005550000", "refused"),
])
def test_admission_by_mode(require: str, caller: str | None, expected: str) -> None:
    admission = Gatekeeper(auth(require)).admit(caller, now=0.0)
    got = "refused" if admission.refused else "pin" if admission.ask_pin else "pass"
    assert got == expected


def test_with_caller_id_and_pin_the_pin_must_be_the_callers_own() -> None:
    gate = Gatekeeper(auth("caller_id_and_pin"))
    assert gate.check_pin("3001234567", "123456") == ANA
    assert gate.check_pin("3001234567", "654321") is None  # Luis's PIN from Ana's phone
    assert Gatekeeper(auth("pin")).check_pin(None, "654321") == LUIS


def test_a_number_that_fails_often_is_locked_out_then_forgiven() -> None:
    gate = Gatekeeper(auth("pin", lockout_after=2, lockout_s=600.0))
    gate.failed("3005550000", now=0.0)
    assert gate.admit("3005550000", now=1.0).ask_pin
    gate.failed("3005550000", now=100.0)
    assert gate.admit("3005550000", now=101.0).refused == "locked_out"
    assert gate.admit("3001234567", now=101.0).ask_pin  # another number is not affected
    assert gate.admit("3005550000", now=701.0).ask_pin  # lockout_s after the last failure
    gate.failed("3005550000", now=2000.0)  # the old strikes are forgiven: one strike only
    assert gate.admit("3005550000", now=2001.0).ask_pin


def test_tools_per_operator() -> None:
    assert allows(None, "ping") and allows(ANA, "ping")
    assert allows(LUIS, "estado_routers") and not allows(LUIS, "ping")


@given(st.text(alphabet="0123456789*#ABCD", max_size=30), st.integers(4, 12))
def test_the_pin_pad_returns_what_was_typed_since_the_last_star(keys: str, length: int) -> None:
    pad, pins, typed = PinPad(length), [], ""
    for key in keys:
        if key == "*":
            typed = ""
        elif key.isdigit():
            typed += key
        pin = pad.press(key)
        if pin is not None:
            pins.append(pin)
            assert pin == typed and (len(pin) == length or key == "#")
            typed = ""
    assert pad.entered == len(typed)
    assert "" not in pins  # a lone "#" (the one after a complete PIN) submits nothing


# -- the chart -------------------------------------------------------------------------------------


def test_a_wrong_pin_is_asked_again_then_the_right_one_admits() -> None:
    m = CallMachine("t", gatekeeper=Gatekeeper(auth("pin")), caller_id="3005550000")
    m.handle("start", now=0.0)
    assert m.take_commands() == [AskPin()] and m.state == "authorising"
    m.handle("pin_entered", pin="111111", now=5.0)
    assert m.take_commands() == [AskPin(again=True, why="wrong_pin")]
    m.handle("pin_timeout", now=20.0)
    assert m.take_commands() == [AskPin(again=True, why="timeout")]
    m.handle("pin_entered", pin="654321", now=30.0)
    assert m.take_commands() == [Admit(LUIS, "pin"), Connect()] and m.operator == LUIS
    assert m.trace == ["authorising", "greeting"] and m.link_state == "connecting"


def test_out_of_attempts_the_caller_is_refused_and_the_number_gets_a_strike() -> None:
    gate = Gatekeeper(auth("pin", attempts=2, lockout_after=1))
    m = CallMachine("t", gatekeeper=gate, caller_id="3005550000")
    m.handle("start", now=0.0)
    m.handle("pin_entered", pin="1", now=1.0)
    m.handle("pin_entered", pin="2", now=2.0)
    assert m.take_commands() == [AskPin(), AskPin(again=True, why="wrong_pin"), Refuse("out_of_attempts", "auth_refused")]
    assert m.state == "refusing" and m.pin_attempts == 2
    m.handle("pin_entered", pin="123456", now=3.0)  # too late: ignored
    m.handle("refusal_done")
    assert m.take_commands() == [EndCall("refused: no valid PIN in 2 attempt(s)")]
    # The next call from that number is turned away without a PIN request.
    again = CallMachine("t2", gatekeeper=gate, caller_id="3005550000")
    again.handle("start", now=10.0)
    assert again.take_commands() == [Refuse("locked_out", "auth_refused")]


def test_busy_comes_before_authorisation() -> None:
    m = CallMachine("t", gatekeeper=Gatekeeper(auth("caller_id")), caller_id="3001234567")
    m.handle("start", now=0.0, busy=True)
    assert m.take_commands() == [Refuse("busy", "busy")] and m.end_reason.startswith("busy")


def test_a_shutdown_while_authorising_says_goodbye() -> None:
    m = CallMachine("t", gatekeeper=Gatekeeper(auth("pin")))
    m.handle("start", now=0.0)
    m.take_commands()
    m.handle("shutdown")
    assert m.take_commands() == [SayFarewell("shutdown: the service is stopping", prompt="shutdown")]


# -- whole calls -----------------------------------------------------------------------------------


async def _call(settings: Settings, script: CallerScript, *, model: SimModelConfig | None = None,
                calls: int = 1, service_out: list[CallService] | None = None) -> tuple[list[CallReport], ServiceStats, int]:
    """``calls`` callers with this script, one after the other; returns their reports, the service's
    stats and how many model sessions the simulated model saw."""
    stats = ServiceStats()
    seen: list[dict[str, Any]] = []
    model = replace(model or SimModelConfig(), transcript=seen.append)
    reports = []
    async with trio.open_nursery() as nursery:
        settings = await start_simulated_peers(nursery, replace(settings, listen=("127.0.0.1", 0)), DEMO_FLEET,
                                               model_config=model)
        service = CallService(settings, stats)
        if service_out is not None:
            service_out.append(service)
        port = await nursery.start(partial(serve_calls, settings, service=service))
        ws_port = None
        if settings.websocket_listen is not None:
            ws_port = await nursery.start(partial(serve_websocket_calls, settings, service=service))
        for _ in range(calls):
            target = ws_port if script.line.transport == "websocket" else port
            assert target is not None
            reports.append(await AsteriskCaller(script).call("127.0.0.1", target))
            with trio.fail_after(30):
                await stats.calls[-1].finished.wait()
        nursery.cancel_scope.cancel()
    TRANSCRIPT[:] = seen
    return reports, stats, len({entry["session"] for entry in seen})


#: The simulated model's transcript of the last ``_call``: every event in and out, per session.
TRANSCRIPT: list[dict[str, Any]] = []


def offered_tools() -> set[str]:
    updates = [e["event"] for e in TRANSCRIPT if e["dir"] == "in" and (e["event"] or {}).get("type") == "session.update"]
    return {tool["name"] for tool in updates[-1]["session"]["tools"]}


QUESTION = SEED_QUESTIONS[0]


async def test_the_right_pin_admits_and_the_call_goes_on(autojump_clock: trio.testing.MockClock,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mikrovoice")
    reports, stats, sessions = await _call(Settings(auth=auth("pin")), CallerScript((QUESTION,), pins=("123456",)))
    call = stats.calls[0]
    assert reports[0].questions[0].answered and call.operator == "Ana" and call.pin_attempts == 1
    assert call.states[:3] == ["authorising", "greeting", "listening"] and sessions == 1
    assert call.model_connected_at is not None and call.model_connected_at >= reports[0].dtmf[5][0]  # the 6th digit
    assert call.outcome == "completed"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "123456" not in text and "auth.result result=accepted by=pin operator=Ana" in text
    # The PIN's keys are not kept as the call's digits (the "#" after a whole PIN is the repeat key).
    assert [digit for _, digit in call.digits] == ["#"]


async def test_wrong_pins_are_refused_politely_and_no_model_session_is_opened(
        autojump_clock: trio.testing.MockClock) -> None:
    script = CallerScript((QUESTION,), pins=("000000", "111111", "222222"), greeting_timeout_s=20)
    reports, stats, sessions = await _call(Settings(auth=auth("pin")), script)
    call = stats.calls[0]
    assert sessions == 0 and call.model_connected_at is None  # nobody paid for this caller
    assert call.states == ["authorising", "refusing", "ended"] and call.outcome == "auth_refused"
    assert call.end_reason == "refused: no valid PIN in 3 attempt(s)" and call.pin_attempts == 3
    assert reports[0].server_hung_up_at is not None and not any(q.answered for q in reports[0].questions)
    # The caller heard the request, two "wrong PIN" prompts and the refusal: all recordings.
    assert len(reports[0].sound) >= 4  # (recordings are heard as sound; only the simulators' tone speech decodes)


async def test_a_silent_caller_times_out_after_the_allowed_attempts(autojump_clock: trio.testing.MockClock) -> None:
    settings = Settings(auth=auth("pin", attempts=2, digit_timeout_s=5.0))
    reports, stats, sessions = await _call(settings, CallerScript((QUESTION,), greeting_timeout_s=60))
    call = stats.calls[0]
    assert call.states == ["authorising", "refusing", "ended"] and sessions == 0
    # request (5.1 s) + 5 s, wrong-PIN prompt (4.5 s) + 5 s, refusal (7.1 s): about 27 s, then hung up
    assert 25 < call.ended_at - call.started_at < 30


async def test_a_locked_out_number_is_refused_without_a_pin_request(autojump_clock: trio.testing.MockClock) -> None:
    settings = Settings(auth=auth("pin", attempts=1, lockout_after=2), websocket_listen=("127.0.0.1", 0))
    script = CallerScript((QUESTION,), pins=("999999",), greeting_timeout_s=15,
                          line=Line("websocket", control="json", caller_id="3005550000"))
    reports, stats, sessions = await _call(settings, script, calls=3)
    assert [c.end_reason for c in stats.calls] == ["refused: no valid PIN in 1 attempt(s)"] * 2 + [
        "refused: locked_out"]
    assert stats.calls[2].pin_attempts == 0 and sessions == 0


async def test_an_operator_number_over_chan_websocket_needs_no_pin(autojump_clock: trio.testing.MockClock) -> None:
    settings = Settings(auth=auth("caller_id_or_pin"), websocket_listen=("127.0.0.1", 0))
    script = CallerScript((QUESTION,), line=Line("websocket", control="json", caller_id="573001234567"))
    reports, stats, _ = await _call(settings, script)
    assert reports[0].questions[0].answered and stats.calls[0].operator == "Ana"
    assert stats.calls[0].states[:2] == ["authorising", "greeting"]


async def test_a_tool_outside_the_operators_permissions_is_neither_offered_nor_run(
        autojump_clock: trio.testing.MockClock) -> None:
    reports, stats, _ = await _call(Settings(auth=auth("pin")), CallerScript((QUESTION,), pins=("654321",)))
    call = stats.calls[0]
    assert call.operator == "Luis"
    assert offered_tools() == {"listar_routers", "estado_routers", "cancelar_consulta"}
    # The scripted model calls the seed's tool all the same (as a model that invents a tool would):
    # refused, clearly, and no router is asked.
    assert call.tool_calls and all("no tiene permiso" in t.problem for t in call.tool_calls if t.name != "listar_routers")
    assert call.queries == []


async def test_over_max_calls_the_caller_hears_busy(autojump_clock: trio.testing.MockClock) -> None:
    settings = Settings(max_calls=1)
    stats = ServiceStats()
    async with trio.open_nursery() as nursery:
        settings = await start_simulated_peers(nursery, replace(settings, listen=("127.0.0.1", 0)), DEMO_FLEET)
        port = await nursery.start(serve_calls, settings, stats)
        first = AsteriskCaller(CallerScript((Question(QUESTION.text, QUESTION.expect),)))
        nursery.start_soon(first.call, "127.0.0.1", port)
        await trio.sleep(1.0)
        second = await AsteriskCaller(CallerScript((QUESTION,), greeting_timeout_s=10)).call("127.0.0.1", port)
        with trio.fail_after(60):
            for call in stats.calls:
                await call.finished.wait()
        nursery.cancel_scope.cancel()
    busy = stats.calls[1]
    assert busy.states == ["authorising", "refusing", "ended"] and busy.outcome == "busy"
    assert second.server_hung_up_at is not None and busy.model_connected_at is None
    assert stats.calls[0].outcome == "completed"


async def test_the_dialplan_can_pass_the_number_to_audiosocket_in_the_uuid(
        autojump_clock: trio.testing.MockClock) -> None:
    """AudioSocket carries no caller number: the documented dialplan writes it, zero-padded, in the
    UUID's last group (the first four stay random, so the call id stays unique)."""
    settings = Settings(auth=auth("caller_id"), audiosocket_caller_in_uuid=True)
    script = CallerScript((QUESTION,), line=Line(caller_id="+573001234567", caller_in_uuid=True))
    reports, stats, _ = await _call(settings, script)
    call = stats.calls[0]
    assert call.call_id.endswith("-573001234567") and call.caller_id == "573001234567"
    assert reports[0].questions[0].answered and call.operator == "Ana"
    # Without the option, the same UUID is only an id: the number is not taken from it.
    reports, stats, _ = await _call(replace(settings, audiosocket_caller_in_uuid=False), script)
    assert stats.calls[0].states == ["authorising", "refusing", "ended"] and stats.calls[0].caller_id is None


def test_only_an_all_digit_last_group_is_a_number() -> None:
    import uuid

    from mikrovoice.telephony.audiosocket_leg import caller_from_uuid

    assert caller_from_uuid(uuid.UUID("0b4a1c2e-5f6d-4e7a-8b9c-003001234567")) == "3001234567"
    assert caller_from_uuid(uuid.UUID("0b4a1c2e-5f6d-4e7a-8b9c-0d1e2f3a4b5c")) is None  # a plain UUID()
    assert caller_from_uuid(uuid.UUID("0b4a1c2e-5f6d-4e7a-8b9c-000000000000")) is None
