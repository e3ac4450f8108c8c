"""Caller authorisation through a real Asterisk 23.4.1: PINs typed as DTMF, and caller numbers.

Each policy has a service of its own (``scenarios.AUTH_SERVICES``, each with its own simulated
model); the calls run with all the others (conftest.py). The caller types as a phone does:
``SendDTMF(<keys>)`` on its half of the Local pair once it has heard the recorded prompt whole;
Asterisk hands each digit to AudioSocket as a 0x03 message. The numbers are presented the way a
trunk presents them: the call is placed with ``CallerID:`` (a call file), so that
``CALLERID(num)`` is the number on the service's side from its first priority.
"""

from __future__ import annotations

import logging
import re

import pytest

from mikrovoice.call.prompts import Prompts
from mikrovoice.config import Settings
from tests.interop.calls import PROMPT_GAP_S, PROMPT_RMS, CallResult, speech_spans
from tests.interop.scenarios import (
    ANA_NUMBER,
    AUTH_ATTEMPTS,
    DEVICES_ANSWER,
    GREETING,
    PIN,
    PLANS,
    QUESTIONS,
    STRANGER_NUMBER,
    WRONG_PIN,
    Run,
)

INTEROP_CALLS = ("auth_pin", "auth_wrong_pin", "auth_uuid", "auth_uuid_stranger", "auth_ws")


def placed(interop: Run, name: str) -> CallResult:
    service = PLANS[name].service
    if service in interop.service_errors:
        pytest.fail(f"the service {service} did not start:\n{interop.service_errors[service]}", pytrace=False)
    result = interop.results.get(name)
    assert result is not None, f"call {name} was not placed\n{interop.asterisk_tail()}"
    return result


def ran(result: CallResult) -> None:
    assert result.error is None, f"the call's script failed{result.explain()}"


def events(result: CallResult, name: str) -> list[dict[str, object]]:
    return [dict(getattr(r, "fields", {})) for r in result.service_records if getattr(r, "event", "") == name]


def ended(result: CallResult) -> dict[str, object]:
    found = events(result, "call.ended")
    assert len(found) == 1, result.explain()
    return found[0]


def asterisk_lines(result: CallResult, *needles: str) -> list[str]:
    return [line for line in result.asterisk_log if any(n in line for n in needles)]


def executed(result: CallResult, app: str) -> list[str]:
    """The arguments Asterisk ran ``app`` with on the bot half, after substitution."""
    pattern = re.compile(rf'Executing \[bot_{result.name}@test:\d+\] {app}\("[^"]*;2", "(.*)"\) in new stack')
    return [m.group(1) for line in result.asterisk_log if (m := pattern.search(line))]


def sound_s(pcm: bytes) -> float:
    """Seconds of sound (recorded prompts included) in ``pcm``."""
    return sum(b - a for a, b in speech_spans(pcm, PROMPT_RMS, 0.0))


@pytest.fixture(scope="module")
def prompts() -> Prompts:
    return Prompts.load(Settings())


def prompt_s(pcm: bytes) -> float:
    """Where a recorded prompt's sound ends (its own trailing quiet left out)."""
    return speech_spans(pcm, PROMPT_RMS, PROMPT_GAP_S)[-1][1]


# ------------------------------------------------------------------ AudioSocket, the right PIN


@pytest.fixture(scope="module")
def pin_call(interop: Run) -> CallResult:
    return placed(interop, "auth_pin")


def test_the_right_pin_admits_the_caller_as_its_operator(interop: Run, pin_call: CallResult) -> None:
    ran(pin_call)
    record = interop.record(pin_call)
    assert record is not None and record.operator == "Ana" and record.pin_attempts == 1, pin_call.explain()
    assert events(pin_call, "auth.result") == [{"result": "accepted", "by": "pin", "operator": "Ana", "attempt": 1}], \
        pin_call.explain()
    summary = ended(pin_call)
    assert str(summary["states"]).startswith("authorising > greeting > listening"), pin_call.explain()
    assert summary["reason"] == "caller hung up" and summary["operator"] == "Ana", pin_call.explain()
    assert [e["prompt"] for e in events(pin_call, "call.prompt")] == ["pin_request"], pin_call.explain()


def test_the_pin_request_is_heard_whole_then_the_pin_is_typed(pin_call: CallResult, prompts: Prompts) -> None:
    """The caller waited for the whole request (~5.1 s), then SendDTMF(<PIN>#): seven keys, each
    handed to the bot half (and its AudioSocket()) once, in order. (Measured on 23.4.1: SendDTMF's
    defaults are 100 ms per key and 250 ms between keys; the seven took 2.56 s.)"""
    ran(pin_call)
    (start, end), = pin_call.extra["prompts"]
    assert abs((end - start) - prompt_s(prompts.pin_request)) < 0.2, pin_call.explain()
    received = [m.group(1) for line in pin_call.asterisk_log
                if (m := re.search(r"DTMF end '(.)' received on Local/bot_auth_pin@\S+;2", line))]
    assert received == list(PIN + "#"), f"{received}{pin_call.explain()}"


def test_each_pin_digit_reaches_the_service_and_none_is_logged(interop: Run, pin_call: CallResult) -> None:
    """Six digits while authorising (logged as "*"), then "#" after the admission: the repeat key,
    the only digit the call keeps (nothing to repeat yet)."""
    dtmf = events(pin_call, "call.dtmf")
    assert dtmf[:6] == [{"digit": "*", "state": "authorising"}] * 6, pin_call.explain()
    assert [d["digit"] for d in dtmf[6:]] == ["#"] and dtmf[6]["state"] != "authorising", pin_call.explain()
    record = interop.record(pin_call)
    assert record is not None and [digit for _, digit in record.digits] == ["#"], pin_call.explain()
    assert events(pin_call, "call.dtmf_repeat") == [{"outcome": "nothing to repeat yet"}], pin_call.explain()


def test_no_pin_appears_in_the_service_log(interop: Run) -> None:
    """Not the PIN, not the wrong one, in any record of the run (message or fields), and no key
    pressed while authorising is logged as itself."""
    for record in interop.service_log.records:
        text = record.getMessage() + repr(getattr(record, "fields", {}))
        assert PIN not in text and WRONG_PIN not in text, interop.service_log.format(record)
    typed = [r for r in interop.service_log.records
             if getattr(r, "event", "") == "call.dtmf" and getattr(r, "fields", {}).get("state") == "authorising"]
    assert len(typed) >= 2 * len(WRONG_PIN) + len(PIN), interop.service_log.lines(typed)
    assert {getattr(r, "fields", {}).get("digit") for r in typed} == {"*"}, interop.service_log.lines(typed)


def test_the_model_session_opens_only_after_the_admission(interop: Run, pin_call: CallResult) -> None:
    accepted = [r for r in pin_call.service_records if getattr(r, "event", "") == "auth.result"]
    connected = [r for r in pin_call.service_records if getattr(r, "event", "") == "model.connected"]
    assert len(accepted) == 1 and len(connected) == 1, pin_call.explain()
    assert connected[0].created >= accepted[0].created, pin_call.explain()
    assert len(interop.ledgers["auth_pin"].sessions) == 1, pin_call.explain()


def test_the_admitted_caller_is_answered(interop: Run, pin_call: CallResult) -> None:
    ran(pin_call)
    greeting = pin_call.heard_matching(GREETING)
    assert greeting and greeting[0][0] > pin_call.extra["prompts"][0][1], pin_call.explain()
    said = [e.get("text") for e in events(pin_call, "caller.said")]
    assert QUESTIONS["devices"] in said, pin_call.explain()
    assert [e.get("answered") for e in events(pin_call, "query.finished")] == [1], pin_call.explain()
    assert pin_call.heard_matching(DEVICES_ANSWER), pin_call.explain()
    assert asterisk_lines(pin_call, "ERROR[") == [], pin_call.explain()


# ------------------------------------------------------------------ AudioSocket, wrong PINs


@pytest.fixture(scope="module")
def wrong_call(interop: Run) -> CallResult:
    return placed(interop, "auth_wrong_pin")


def test_wrong_pins_end_in_the_refusal(interop: Run, wrong_call: CallResult) -> None:
    ran(wrong_call)
    summary = ended(wrong_call)
    assert summary["states"] == "authorising > refusing > ended", wrong_call.explain()
    assert summary["outcome"] == "auth_refused", wrong_call.explain()
    assert summary["reason"] == f"refused: no valid PIN in {AUTH_ATTEMPTS} attempt(s)", wrong_call.explain()
    results = [(e["result"], e.get("attempt")) for e in events(wrong_call, "auth.result")]
    assert results == [("wrong_pin", 1), ("refused", AUTH_ATTEMPTS)], wrong_call.explain()
    record = interop.record(wrong_call)
    assert record is not None and record.operator is None and record.pin_attempts == AUTH_ATTEMPTS, \
        wrong_call.explain()


def test_the_refused_caller_hears_the_refusal_and_the_service_hangs_up(wrong_call: CallResult,
                                                                      prompts: Prompts) -> None:
    """The refusal (~7.1 s) is played whole, then the service hangs up: AudioSocket() returns 0 and
    the dialplan goes on after it; the caller never hung up."""
    ran(wrong_call)
    assert [e["prompt"] for e in events(wrong_call, "call.prompt")] == ["pin_request", "pin_wrong", "auth_refused"], \
        wrong_call.explain()
    after = wrong_call.extra["refusal_from"]
    heard = wrong_call.heard[int(after * 16000) // 320 * 320:]
    assert sound_s(heard) >= 0.9 * sound_s(prompts.auth_refused), wrong_call.explain()
    assert wrong_call.marks("app-returned") and wrong_call.marks("bot-end"), wrong_call.explain()
    assert not wrong_call.marks("caller-hangup"), wrong_call.explain()
    assert asterisk_lines(wrong_call, "WARNING[", "ERROR[") == [], wrong_call.explain()


def test_a_refused_caller_costs_no_model_session(interop: Run, wrong_call: CallResult) -> None:
    record = interop.record(wrong_call)
    assert record is not None and record.model_connected_at is None, wrong_call.explain()
    ledger = interop.ledgers["auth_refuse"]
    assert ledger.sessions == [] and ledger.handshakes == [], wrong_call.explain()
    assert not [e for e in wrong_call.events if e.startswith("model.")], wrong_call.explain()


def test_the_wrong_pin_prompt_is_heard_whole(wrong_call: CallResult, prompts: Prompts) -> None:
    """"Marca tu PIN y luego la tecla numeral": the caller types the PIN and then "#", and then
    hears "El PIN no es correcto. Márcalo otra vez..." whole (4.5 s). (Measured on the real line
    before the fix: a full-length PIN is submitted on its last digit, and the "#" that followed
    350 ms later cut the wrong-PIN prompt after 0.35 s.)"""
    ran(wrong_call)
    request, again = wrong_call.extra["prompts"]
    assert abs((request[1] - request[0]) - prompt_s(prompts.pin_request)) < 0.2, wrong_call.explain()
    assert abs((again[1] - again[0]) - prompt_s(prompts.pin_wrong)) < 0.2, \
        f"the wrong-PIN prompt lasted {again[1] - again[0]:.2f} s{wrong_call.explain()}"


# ------------------------------------------------------------------ AudioSocket, the number in the UUID


@pytest.fixture(scope="module")
def uuid_call(interop: Run) -> CallResult:
    return placed(interop, "auth_uuid")


@pytest.fixture(scope="module")
def stranger_call(interop: Run) -> CallResult:
    return placed(interop, "auth_uuid_stranger")


@pytest.mark.parametrize("name, number", [("auth_uuid", ANA_NUMBER), ("auth_uuid_stranger", STRANGER_NUMBER)])
def test_the_dialplan_writes_the_number_in_the_uuid(interop: Run, name: str, number: str) -> None:
    """``Set(CALLER12=000000000000${FILTER(0123456789,${CALLERID(num)})})`` then
    ``AudioSocket(${CUT(UUID(),-,1-4)}-${CALLER12:-12},...)``: the digits of +57..., padded, the
    last 12, after the first four groups of a fresh UUID; the service's call id is that UUID."""
    result = placed(interop, name)
    digits = number.lstrip("+")
    assert executed(result, "Set")[-1] == f"CALLER12=000000000000{digits}", result.explain()
    args = executed(result, "AudioSocket")
    assert len(args) == 1, result.explain()
    uuid, where = args[0].split(",")
    assert re.fullmatch(rf"[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-{digits}", uuid), result.explain()
    assert where == f"127.0.0.1:{interop.ports['auth_uuid']}", result.explain()
    record = interop.record(result)
    assert record is not None and record.call_id == uuid and record.caller_id == digits, result.explain()


def test_the_number_in_the_uuid_admits_its_operator_without_a_pin(interop: Run, uuid_call: CallResult) -> None:
    ran(uuid_call)
    record = interop.record(uuid_call)
    assert record is not None and record.operator == "Ana" and record.pin_attempts == 0, uuid_call.explain()
    assert events(uuid_call, "auth.result") == [{"result": "accepted", "by": "caller_id", "operator": "Ana",
                                                 "attempt": 0}], uuid_call.explain()
    assert str(ended(uuid_call)["states"]).startswith("authorising > greeting > listening"), uuid_call.explain()
    assert events(uuid_call, "call.prompt") == [], uuid_call.explain()  # no PIN request
    assert uuid_call.heard_matching(GREETING) and uuid_call.heard_matching(DEVICES_ANSWER), uuid_call.explain()
    assert asterisk_lines(uuid_call, "ERROR[") == [], uuid_call.explain()


def test_a_stranger_number_in_the_uuid_is_refused_without_a_pin_request(interop: Run,
                                                                        stranger_call: CallResult) -> None:
    ran(stranger_call)
    summary = ended(stranger_call)
    assert summary["states"] == "authorising > refusing > ended", stranger_call.explain()
    assert [(e["result"], e["reason"]) for e in events(stranger_call, "auth.result")] == [("refused", "not_allowed")], \
        stranger_call.explain()
    assert [e["prompt"] for e in events(stranger_call, "call.prompt")] == ["auth_refused"], stranger_call.explain()
    assert stranger_call.marks("app-returned") and not stranger_call.marks("caller-hangup"), stranger_call.explain()
    assert not [e for e in stranger_call.events if e.startswith("model.")], stranger_call.explain()
    assert len(interop.ledgers["auth_uuid"].sessions) == 1, stranger_call.explain()  # Ana's call's only


# ------------------------------------------------------------------ chan_websocket, the number in MEDIA_START


@pytest.fixture(scope="module")
def ws_call(interop: Run) -> CallResult:
    return placed(interop, "auth_ws")


def test_an_operator_number_over_chan_websocket_needs_no_pin(interop: Run, ws_call: CallResult) -> None:
    """``Set(_MIKROVOICE_CALLER=${CALLERID(num)})`` then ``Dial(WebSocket/.../f(json))``, under
    ``require = "caller_id_or_pin"``: the number is an operator's, no PIN is asked."""
    ran(ws_call)
    record = interop.record(ws_call)
    assert record is not None and record.transport == "websocket", ws_call.explain()
    assert record.caller_id == ANA_NUMBER and record.operator == "Ana", ws_call.explain()
    assert events(ws_call, "auth.result") == [{"result": "accepted", "by": "caller_id", "operator": "Ana",
                                               "attempt": 0}], ws_call.explain()
    assert str(ended(ws_call)["states"]).startswith("authorising > greeting > listening"), ws_call.explain()
    assert events(ws_call, "call.prompt") == [], ws_call.explain()
    assert ws_call.heard_matching(GREETING) and ws_call.heard_matching(DEVICES_ANSWER), ws_call.explain()
    assert not [r for r in ws_call.service_records if r.levelno >= logging.ERROR or r.exc_info], ws_call.explain()
