"""The service behind a real Asterisk 23.4.1 over AudioSocket: the dialplan app and the channel driver.

All calls run at once in one Asterisk (see conftest.py and scenarios.py); each test asserts on one
call's result: what the caller heard (MixMonitor ``r()``, decoded with the tone voice), the
service's log records of that call, and the Asterisk log lines of its channels.
"""

from __future__ import annotations

import logging
import re
import time

import numpy as np
import pytest

from tests.interop.calls import MARK, CallResult
from tests.interop.scenarios import (
    DEVICES_ANSWER,
    GREETING,
    NOC_PROMPT,
    QUESTIONS,
    SFP_ACK,
    SILENT_S,
    Run,
    stops_at_the_barge_in,
)

INTEROP_CALLS = ("app", "dial_slin", "dial_ulaw", "dial_alaw", "silent", "dtmf", "hangup_mid_query", "service_hangs_up",
         "fallback_down", "fallback_up", "fallback_refused", "barge_app")
ANSWERING = ("app", "dial_slin", "dial_ulaw", "dial_alaw")  # greeting, one question, its answer, the caller hangs up


def call(interop: Run, name: str) -> CallResult:
    result = interop.results.get(name)
    assert result is not None, f"call {name} was not placed\n{interop.asterisk_tail()}"
    return result


def ran(result: CallResult) -> None:
    assert result.error is None, f"the call's script failed{result.explain()}"


def service_problems(result: CallResult) -> list[str]:
    return [f"{r.levelname} {r.getMessage()}" for r in result.service_records
            if r.levelno >= logging.ERROR or r.exc_info or "Traceback" in r.getMessage()]


def asterisk_lines(result: CallResult, *needles: str) -> list[str]:
    return [line for line in result.asterisk_log if any(n in line for n in needles)]


def field_of(result: CallResult, event: str, key: str) -> list[object]:
    return [getattr(r, "fields", {}).get(key) for r in result.service_records if getattr(r, "event", "") == event]


def asterisk_time(line: str) -> float:
    """Epoch seconds of an Asterisk log line (``[%F %T.%3q]``, local time)."""
    stamp = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3})\]", line)
    assert stamp is not None, line
    return time.mktime(time.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S")) + int(stamp.group(2)) / 1000


# ------------------------------------------------------------------ a, b, c: greeting, question, answer


@pytest.mark.parametrize("name", ANSWERING)
def test_the_caller_hears_the_greeting_and_the_answer(interop: Run, name: str) -> None:
    result = call(interop, name)
    ran(result)
    assert result.heard_matching(GREETING), f"no greeting heard{result.explain()}"
    answers = result.heard_matching(DEVICES_ANSWER)
    assert answers, f"no answer heard{result.explain()}"
    assert answers[0][0] > result.heard_matching(GREETING)[0][1]


@pytest.mark.parametrize("name", ANSWERING)
def test_the_service_heard_the_question_and_queried_the_router(interop: Run, name: str) -> None:
    result = call(interop, name)
    assert QUESTIONS["devices"] in field_of(result, "caller.said", "text"), f"question not understood{result.explain()}"
    assert field_of(result, "query.finished", "answered") == [1], result.explain()


@pytest.mark.parametrize("name", ANSWERING + ("silent",))
def test_a_caller_hang_up_is_clean_on_both_sides(interop: Run, name: str) -> None:
    result = call(interop, name)
    assert field_of(result, "call.ended", "reason") == ["caller hung up"], result.explain()
    assert service_problems(result) == [], result.explain()
    assert asterisk_lines(result, "ERROR[") == [], result.explain()
    assert result.marks("caller-hangup"), result.explain()


def hang_up_warning(line: str) -> bool:
    """The one warning app_audiosocket.c logs when the caller hangs up. It waits on the channel and
    our socket together (L176): the hang-up reads as a NULL frame from the channel (L183: "Failed
    to receive frame from channel"), unless our next frame is what woke it, and writing that frame
    into the hung-up channel fails first (L212: "Failed to forward frame from AudioSocket server
    ... to channel"). Which one wins is a race of a few ms."""
    return "Failed to receive frame from channel" in line or "Failed to forward frame from AudioSocket server" in line


@pytest.mark.parametrize("name", ("app", "silent"))
def test_the_app_ends_with_the_channel_when_the_caller_hangs_up(interop: Run, name: str) -> None:
    """AudioSocket() returns -1 when its channel hangs up: the dialplan does not go on after it,
    and app_audiosocket logs one warning about the channel (on every caller hang-up)."""
    result = call(interop, name)
    assert asterisk_lines(result, f"Executing [bot_{name}@test:5] AudioSocket(", result.uuid or "?"), result.explain()
    warnings = asterisk_lines(result, "WARNING[")
    assert len(warnings) == 1 and hang_up_warning(warnings[0]), result.explain()
    assert not result.marks("app-returned"), result.explain()
    assert asterisk_lines(result, f"Spawn extension (test, bot_{name}, 5) exited non-zero"), result.explain()


@pytest.mark.parametrize("name", ("dial_slin", "dial_ulaw", "dial_alaw"))
def test_the_audiosocket_channel_is_bridged_to_the_caller(interop: Run, name: str) -> None:
    result = call(interop, name)
    channel = f"AudioSocket/127.0.0.1:{interop.ports['main']}-{result.uuid}"
    assert asterisk_lines(result, f"{channel} answered Local/bot_{name}@"), result.explain()
    assert asterisk_lines(result, f"Channel {channel} joined 'simple_bridge'"), result.explain()
    assert asterisk_lines(result, f"Channel {channel} left 'simple_bridge'"), result.explain()
    assert asterisk_lines(result, "WARNING[") == [], result.explain()


# ------------------------------------------------------------------ c: G.711 mislabelled as slin


@pytest.mark.parametrize("name, law", [("dial_ulaw", "mu-law"), ("dial_alaw", "A-law")])
def test_g711_under_the_slin_kind_is_detected_within_a_second(interop: Run, name: str, law: str) -> None:
    """``Dial(AudioSocket/...c(ulaw))`` (or ``c(alaw)``) sends 160-byte G.711 frames as kind 0x10.
    The caller sends nothing until it asks (``Wait()``), so the first frames are the question's."""
    result = call(interop, name)
    mislabelled = [r for r in result.service_records if "mislabelled" in getattr(r, "event", "")]
    assert mislabelled, f"no 'mislabelled' event{result.explain()}"
    message = mislabelled[0].getMessage()
    assert mislabelled[0].levelno == logging.WARNING and "c(slin)" in message and law in message, result.explain()
    first_frames = asterisk_time(result.marks("play-start devices")[0])
    assert mislabelled[0].created - first_frames < 1.5, result.explain()


# ------------------------------------------------------------------ d: a silent caller


def test_a_silent_caller_keeps_the_call_up(interop: Run) -> None:
    result = call(interop, "silent")
    ran(result)
    assert result.heard_matching(GREETING), result.explain()
    assert result.extra.get("up_after_silence") is True, result.explain()
    silent_from = result.step("silent from here")[0]
    silence_over = result.step("silence over")[0]
    assert silence_over - silent_from >= SILENT_S - 0.1, result.explain()
    assert asterisk_lines(result, "Reached timeout") == [], result.explain()
    assert service_problems(result) == [], result.explain()


def test_the_service_fills_the_silence_of_a_silent_caller(interop: Run) -> None:
    """What the caller heard has no hole: the service sends frames all along (else the app's
    2 s timer would end the call); MixMonitor's r() is as long as the call."""
    result = call(interop, "silent")
    heard_s = len(result.heard) / 16000
    assert heard_s >= SILENT_S + 2.0, result.explain()


# ------------------------------------------------------------------ e: DTMF


def test_dtmf_digits_reach_the_service(interop: Run) -> None:
    result = call(interop, "dtmf")
    digits = [getattr(r, "fields", {}).get("digit") for r in result.service_records if "dtmf" in getattr(r, "event", "")]
    assert "0" in digits and "#" in digits, f"dtmf events: {digits}{result.explain()}"
    assert asterisk_lines(result, "DTMF end '0' received on Local/bot_dtmf@"), result.explain()
    assert asterisk_lines(result, "DTMF end '#' received on Local/bot_dtmf@"), result.explain()


def test_zero_is_answered_with_how_to_reach_a_human(interop: Run) -> None:
    result = call(interop, "dtmf")
    zero_at, hash_at = result.extra.get("zero_at"), result.extra.get("hash_at")
    assert zero_at is not None and hash_at is not None, result.explain()
    after_zero = [u for u in result.utterances if zero_at <= u[0] < hash_at]
    assert after_zero, f"the caller heard nothing after pressing 0{result.explain()}"
    events = [getattr(r, "event", "") for r in result.service_records]
    assert any("dtmf" in e and e != "call.dtmf" for e in events), f"no dtmf action logged: {events}{result.explain()}"


def test_hash_repeats_the_last_answer(interop: Run) -> None:
    result = call(interop, "dtmf")
    ran(result)
    hash_at = result.extra["hash_at"]
    answers = result.heard_matching(DEVICES_ANSWER)
    assert len(answers) >= 2 and answers[-1][0] >= hash_at - 0.5, result.explain()
    assert answers[-1][2] == answers[0][2], result.explain()


# ------------------------------------------------------------------ f: the caller hangs up mid-query


def test_a_hang_up_mid_query_cancels_the_query(interop: Run) -> None:
    result = call(interop, "hangup_mid_query")
    ran(result)
    assert field_of(result, "query.started", "tool") == ["trafico_interfaces"], result.explain()
    assert field_of(result, "call.ended", "reason") == ["caller hung up"], result.explain()
    assert "querying > ended" in str(field_of(result, "call.ended", "states")[0]), result.explain()
    record = next(c for c in interop.stats["main"].calls if c.call_id == result.call_id)
    assert record.queries and record.queries[0].cancelled and not record.queries[0].timed_out, result.explain()
    assert service_problems(result) == [], result.explain()


def test_a_hang_up_mid_query_ends_the_call_at_once(interop: Run) -> None:
    result = call(interop, "hangup_mid_query")
    hangup = asterisk_time(result.marks("caller-hangup")[0])
    ended = next(r for r in result.service_records if getattr(r, "event", "") == "call.ended")
    assert ended.created - hangup < 1.0, result.explain()  # not when the slowest router answers (24 s)


def test_a_hang_up_mid_query_ends_the_audiosocket_session(interop: Run) -> None:
    result = call(interop, "hangup_mid_query")
    warnings = asterisk_lines(result, "WARNING[", "ERROR[")
    assert len(warnings) == 1 and hang_up_warning(warnings[0]), result.explain()
    assert "'Local/bot_hangup_mid_query@" in warnings[0], result.explain()
    assert asterisk_lines(result, "Spawn extension (test, bot_hangup_mid_query, 5) exited non-zero"), result.explain()


# ------------------------------------------------------------------ g: the service hangs up


def test_the_caller_hears_the_apology(interop: Run) -> None:
    """The apology is a recorded prompt (no tone voice): measure its energy, not its words."""
    result = call(interop, "service_hangs_up")
    ran(result)
    pcm = np.frombuffer(result.heard[: len(result.heard) // 320 * 320], "<i2").reshape(-1, 160).astype(np.float64)
    loud = np.sqrt((pcm * pcm).mean(axis=1)) > 300
    assert loud.sum() * 0.02 >= 3.0, f"{loud.sum() * 0.02:.2f} s of sound heard{result.explain()}"


def test_the_service_hangs_up_after_its_apology(interop: Run) -> None:
    result = call(interop, "service_hangs_up")
    assert field_of(result, "call.farewell", "reason"), result.explain()
    reason = str(field_of(result, "call.ended", "reason")[0])
    assert "401" in reason and "refused" in reason, result.explain()
    assert not [r for r in result.service_records if r.exc_info], result.explain()


def test_the_app_returns_0_and_the_dialplan_goes_on(interop: Run) -> None:
    result = call(interop, "service_hangs_up")
    assert result.marks("app-returned"), f"the dialplan did not go on after AudioSocket(){result.explain()}"
    assert asterisk_lines(result, "Setting global variable 'AS_RETURNED_service_hangs_up' to 'yes'"), result.explain()
    assert result.marks("bot-end"), result.explain()
    assert asterisk_lines(result, "WARNING[", "ERROR[") == [], result.explain()
    assert not result.marks("caller-hangup"), result.explain()  # the caller did not hang up: we did


# ------------------------------------------------------------------ h: the dialplan's fallback (TryExec)
#
# Answer(), TryExec(AudioSocket(...)), GotoIf($["${TRYSTATUS}" = "SUCCESS"]?done), the fallback
# (a Verbose mark standing for Dial(PJSIP/oncall), then Playback of a prompt), (done)Hangup(); one
# more mark logs TRYSTATUS right after TryExec. Priorities: 4 Answer, 5 TryExec, 6 the TRYSTATUS
# mark, 7 GotoIf, 8 the fallback mark, 9 Playback, 10 (done) Hangup.


def test_the_fallback_is_heard_when_nothing_listens(interop: Run) -> None:
    result = call(interop, "fallback_down")
    ran(result)
    assert result.texts == [NOC_PROMPT], result.explain()
    assert interop.record(result) is None, result.explain()  # no service saw the call


def test_a_refused_connection_fails_at_once_with_trystatus_failed(interop: Run) -> None:
    """AudioSocket() returns -1 (res_audiosocket's connect fails); TryExec says FAILED and sets no
    TRYVALUE (app_exec knows only TRYSTATUS: ${TRYVALUE} is empty)."""
    result = call(interop, "fallback_down")
    port = interop.ports["down"]
    tried = [line for line in asterisk_lines(result, "Executing [bot_fallback_down@test:5] TryExec(")
             if f"AudioSocket({result.uuid},127.0.0.1:{port})" in line]
    assert len(tried) == 1, result.explain()
    problems = asterisk_lines(result, "WARNING[", "ERROR[")
    assert [re.sub(r"^\[[^]]*\] (\w+)\[\d+\]\[C-[0-9a-f]+\] ", r"\1 ", line) for line in problems] == [
        f"WARNING res_audiosocket.c: Connecting to '127.0.0.1:{port}' failed for url '127.0.0.1:{port}': Connection refused",
        "ERROR res_audiosocket.c: Failed to connect to AudioSocket service",
    ], result.explain()
    status = result.marks("tryexec")
    assert len(status) == 1 and status[0].endswith("TRYSTATUS=FAILED"), result.explain()
    assert asterisk_time(status[0]) - asterisk_time(tried[0]) < 0.5, result.explain()  # refused: no 2 s timeout
    fallback = result.marks("fallback")
    assert len(fallback) == 1 and fallback[0].endswith(f"{MARK} fallback_down fallback FAILED "), result.explain()
    assert asterisk_lines(result, "Executing [bot_fallback_down@test:9] Playback("), result.explain()


def test_the_fallback_is_not_taken_when_the_service_answers(interop: Run) -> None:
    """The service up, the caller asks, hears the answer and hangs up: AudioSocket() returns -1
    (the channel is gone), TryExec returns 0, and the pbx stops on the hang-up: nothing after
    TryExec runs (no TRYSTATUS mark, no fallback)."""
    result = call(interop, "fallback_up")
    ran(result)
    assert result.heard_matching(GREETING) and result.heard_matching(DEVICES_ANSWER), result.explain()
    assert field_of(result, "call.ended", "reason") == ["caller hung up"], result.explain()
    assert result.marks("caller-hangup"), result.explain()
    assert not result.marks("tryexec") and not result.marks("fallback"), result.explain()
    after = [line for n in range(6, 13) for line in asterisk_lines(result, f"Executing [bot_fallback_up@test:{n}]")]
    assert after == [], result.explain()
    warnings = asterisk_lines(result, "WARNING[", "ERROR[")
    assert len(warnings) == 1 and hang_up_warning(warnings[0]), result.explain()


def test_the_fallback_is_not_taken_when_the_service_hangs_up(interop: Run) -> None:
    """The model refuses: the caller hears the apology, the service hangs up, AudioSocket()
    returns 0: TRYSTATUS=SUCCESS, and GotoIf skips the fallback (as this dialplan asks)."""
    result = call(interop, "fallback_refused")
    ran(result)
    assert "401" in str(field_of(result, "call.ended", "reason")), result.explain()
    status = result.marks("tryexec")
    assert len(status) == 1 and status[0].endswith("TRYSTATUS=SUCCESS"), result.explain()
    goto = asterisk_lines(result, "Executing [bot_fallback_refused@test:7] GotoIf(")
    assert len(goto) == 1 and goto[0].endswith('"1?done") in new stack'), result.explain()
    assert asterisk_lines(result, "Executing [bot_fallback_refused@test:10] Hangup("), result.explain()
    assert not result.marks("fallback"), result.explain()
    assert asterisk_lines(result, "WARNING[", "ERROR[") == [], result.explain()


def test_the_main_app_call_takes_no_fallback(interop: Run) -> None:
    result = call(interop, "app")
    assert not result.marks("fallback"), result.explain()


# ------------------------------------------------------------------ i: barge-in over the app
#
# ~1 s after the devices answer begins, the caller asks for the SFP traffic over it (2.6 s).


def test_the_caller_cuts_the_answer(interop: Run) -> None:
    result = call(interop, "barge_app")
    ran(result)
    record = interop.record(result)
    assert record is not None and len(record.barge_ins) == 1, result.explain()
    _, item, heard_ms = record.barge_ins[0]
    assert heard_ms > 0 and heard_ms % 20 == 0, f"{record.barge_ins}{result.explain()}"  # whole 20 ms frames
    logged = [getattr(r, "fields", {}) for r in result.service_records if getattr(r, "event", "") == "call.barge_in"]
    assert logged == [{"item": item, "heard_ms": heard_ms}], result.explain()
    assert not result.heard_matching(DEVICES_ANSWER), result.explain()  # never heard whole
    assert QUESTIONS["barge"] in field_of(result, "caller.said", "text"), result.explain()
    assert result.heard_matching(SFP_ACK), result.explain()  # the new question is answered


def test_what_the_caller_hears_stops_at_the_barge_in(interop: Run) -> None:
    """On the recording's time base (see BargeTimeline): the caller spoke over the answer, the
    answer stops within 0.3 s of the service's barge-in, and what the caller heard of it is
    what the service says it heard (AudioSocket: what was written was heard)."""
    result = call(interop, "barge_app")
    timeline, heard_s, shown = stops_at_the_barge_in(interop, result)
    assert abs(timeline.heard_s - heard_s) <= 0.06, shown


def test_no_call_logged_a_traceback(interop: Run) -> None:
    crashed = [r for r in interop.service_log.records if r.exc_info or "crashed" in getattr(r, "event", "")]
    assert crashed == [], interop.service_log.lines(crashed)
    # The one expected ERROR: fallback_down's "Failed to connect to AudioSocket service".
    expected = set(interop.results["fallback_down"].asterisk_log) if "fallback_down" in interop.results else set()
    errors = [line for line in interop.asterisk.log_lines() if "ERROR[" in line and line not in expected] \
        if interop.asterisk else []
    assert errors == [], "\n".join(errors[-20:])

