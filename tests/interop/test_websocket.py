"""The service behind a real Asterisk 23.4.1 over chan_websocket (``Dial(WebSocket/mikrovoice/c(slin))``).

Asterisk dials ``ws://127.0.0.1:PORT/media`` (websocket_client.conf ``[mikrovoice]``,
``connection_type = per_call_config``, ``protocols = media``), sends ``MEDIA_START ...`` and then one
BINARY message per 20 ms frame while the caller makes sound (none while it is silent), and DTMF as
``DTMF_END digit:# ...``. The listener is ``mikrovoice.service.serve_websocket_calls``; it is
imported only when this module's call is placed (scenarios.start_websocket_service).
"""

from __future__ import annotations

import logging

import pytest

from tests.interop.calls import CallResult
from tests.interop.scenarios import (
    DEVICES_ANSWER,
    GREETING,
    QUESTIONS,
    SFP_ACK,
    Run,
    barge_timeline,
    stops_at_the_barge_in,
)

INTEROP_CALLS = ("websocket", "barge_ws")


def placed(interop: Run, name: str) -> CallResult:
    if interop.websocket_error is not None:
        pytest.fail(f"the chan_websocket listener did not start:\n{interop.websocket_error}", pytrace=False)
    result = interop.results.get(name)
    assert result is not None, interop.asterisk_tail()
    return result


@pytest.fixture(scope="module")
def ws_call(interop: Run) -> CallResult:
    return placed(interop, "websocket")


@pytest.fixture(scope="module")
def barge_call(interop: Run) -> CallResult:
    """``Dial(WebSocket/mikrovoice/c(slin)f(json))``: JSON control messages; MEDIA_START carries
    MIKROVOICE_CALLER (set with ``_`` on the dialling channel), the service's ``caller_id``."""
    return placed(interop, "barge_ws")


def test_the_caller_hears_the_greeting_and_the_answer(ws_call: CallResult) -> None:
    assert ws_call.heard_matching(GREETING), f"no greeting heard{ws_call.explain()}"
    assert ws_call.heard_matching(DEVICES_ANSWER), f"no answer heard{ws_call.explain()}"
    said = [getattr(r, "fields", {}).get("text") for r in ws_call.service_records if getattr(r, "event", "") == "caller.said"]
    assert QUESTIONS["devices"] in said, ws_call.explain()


def test_asterisk_dialled_the_service(ws_call: CallResult) -> None:
    assert [line for line in ws_call.asterisk_log if "WebSocket/mikrovoice/" in line and " answered Local/bot_websocket@" in line], \
        ws_call.explain()
    assert [line for line in ws_call.asterisk_log if "ERROR[" in line] == [], ws_call.explain()


def test_dtmf_over_websocket_repeats_the_answer(ws_call: CallResult) -> None:
    digits = [getattr(r, "fields", {}).get("digit") for r in ws_call.service_records if "dtmf" in getattr(r, "event", "")]
    assert "#" in digits, f"dtmf events: {digits}{ws_call.explain()}"
    answers = ws_call.heard_matching(DEVICES_ANSWER)
    assert len(answers) >= 2 and answers[-1][0] >= ws_call.extra["hash_at"] - 0.5, ws_call.explain()


def test_the_call_ends_cleanly(ws_call: CallResult) -> None:
    assert ws_call.error is None, f"the call's script failed{ws_call.explain()}"
    ended = [getattr(r, "fields", {}).get("reason") for r in ws_call.service_records if getattr(r, "event", "") == "call.ended"]
    assert len(ended) == 1 and str(ended[0]).startswith("caller hung up"), ws_call.explain()
    assert not [r for r in ws_call.service_records if r.levelno >= logging.ERROR or r.exc_info], ws_call.explain()


# ------------------------------------------------------------------ barge-in
#
# ~1 s after the devices answer begins, the caller asks for the SFP traffic over it (2.6 s).


def test_the_json_call_is_named_by_its_channel_variable(interop: Run, barge_call: CallResult) -> None:
    record = interop.record(barge_call)
    assert record is not None and record.caller_id == "barge_ws" and record.transport == "websocket", \
        barge_call.explain()


def test_the_caller_cuts_the_answer(interop: Run, barge_call: CallResult) -> None:
    """What the caller heard of the cut item is what MEDIA_MARK_PROCESSED confirmed: the item's
    frames in the 100 ms batches (BATCH_FRAMES) whose marks came back. Batches are cut from the
    run of sound that began with the ack, and the answer follows the ack at once (its query took
    less than the ack lasts): its first batch is shared with the ack's last frames. So heard_ms is
    the answer's share of that batch plus whole 100 ms (a multiple of 100 only when an item starts
    a batch)."""
    assert barge_call.error is None, f"the call's script failed{barge_call.explain()}"
    record = interop.record(barge_call)
    assert record is not None and len(record.barge_ins) == 1, barge_call.explain()
    _, item, heard_ms = record.barge_ins[0]
    timeline = barge_timeline(interop, barge_call)
    first_share_ms = (-timeline.answer_offset_frames % 5) * 20
    assert heard_ms > first_share_ms and (heard_ms - first_share_ms) % 100 == 0, \
        f"{record.barge_ins} {timeline} first batch: {first_share_ms} ms{barge_call.explain()}"
    logged = [getattr(r, "fields", {}) for r in barge_call.service_records if getattr(r, "event", "") == "call.barge_in"]
    assert logged == [{"item": item, "heard_ms": heard_ms}], barge_call.explain()
    assert not barge_call.heard_matching(DEVICES_ANSWER), barge_call.explain()  # never heard whole
    said = [getattr(r, "fields", {}).get("text") for r in barge_call.service_records if getattr(r, "event", "") == "caller.said"]
    assert QUESTIONS["barge"] in said, barge_call.explain()
    assert barge_call.heard_matching(SFP_ACK), barge_call.explain()  # the new question is answered


def test_what_the_caller_hears_stops_at_the_barge_in(interop: Run, barge_call: CallResult) -> None:
    """On the recording's time base (see BargeTimeline): the answer stops within 0.3 s of the
    service's barge-in (FLUSH_MEDIA drops what Asterisk had queued), and the service's heard
    position is never ahead of what the caller heard, and at most one batch and the marks' way
    back behind it."""
    timeline, heard_s, shown = stops_at_the_barge_in(interop, barge_call)
    assert -0.02 <= timeline.heard_s - heard_s <= 0.2, shown
