"""Issue 7 in the simulations: every way Asterisk can reach the service, barge-in at the heard
position, short speech, DTMF and chan_websocket's flow control; and each new invariant catching
the failure it exists for (the product broken on purpose, one way at a time)."""

from dataclasses import replace

import pytest

from mikrovoice.call import session as call_session
from mikrovoice.sim import brain
from mikrovoice.sim.asterisk import Line
from mikrovoice.simulation import invariants
from mikrovoice.simulation.scenario import Ask, Backchannel, BargeIn, Digit, Scenario
from mikrovoice.simulation.world import CallObservation, simulate_call
from mikrovoice.telephony import websocket_leg
from tests.simulation.test_invariants import SETTINGS, fleet

#: 152.1 answers its three prints (leases, ARP, radio clients) in 0.1 s each: the devices query ends
#: before the caller's interjections below, as in the seed's call.
TWO_QUESTIONS = Scenario(asks=(Ask("devices", ("152.1",)), Ask("sfp_all")), routers=fleet(**{"152_1": (0.1, None)}),
                         silence="no_frames")

LINES = {
    "the AudioSocket() app": Line(),
    "Dial(AudioSocket) with c(slin16)": Line(mode="dial", codec="slin16"),
    "Dial(AudioSocket) with c(slin44)": Line(mode="dial", codec="slin44"),
    "Dial(AudioSocket) without c(slin): mu-law as slin": Line(mode="dial", codec="ulaw"),
    "Dial(AudioSocket) without c(slin): A-law as slin": Line(mode="dial", codec="alaw"),
    "chan_websocket, c(alaw)": Line("websocket", codec="alaw"),
    "chan_websocket, plain text": Line("websocket"),
    "chan_websocket, json, ulaw": Line("websocket", control="json", codec="ulaw"),
    "chan_websocket, slin16 (resampled both ways)": Line("websocket", codec="slin16"),
    "chan_websocket, audio before MEDIA_START": Line("websocket", early_frames=3),
}


def events(obs: CallObservation, name: str) -> list[dict[str, object]]:
    return [line.fields for line in obs.logs if line.event == name]


@pytest.mark.parametrize("name", list(LINES))
def test_every_line_carries_the_seed_call(name: str) -> None:
    line = LINES[name]
    obs = simulate_call(replace(TWO_QUESTIONS, line=line), SETTINGS)
    assert invariants.check(obs) == {}
    assert [q.answered for q in obs.caller.questions] == [True, True]
    assert obs.record is not None and obs.record.transport == line.transport
    mislabelled = events(obs, "call.audiosocket_mislabelled")
    if line.codec in ("ulaw", "alaw") and line.transport == "audiosocket":
        (warning,) = mislabelled
        assert "c(slin)" in str(warning["hint"]) and ("A-law" in str(warning["hint"])) == (line.codec == "alaw")
    else:
        assert mislabelled == []
    if line.control == "json":
        assert obs.record.caller_id == line.caller_id  # from MEDIA_START's channel variables
    if line.transport == "websocket":
        assert 0 < obs.caller.max_queue_frames <= websocket_leg.LEAD_FRAMES
        assert obs.caller.ignored_commands == []


@pytest.mark.parametrize("line", [Line(), Line("websocket")], ids=["audiosocket", "websocket"])
def test_a_barge_in_truncates_at_what_the_caller_heard(line: Line) -> None:
    obs = simulate_call(replace(TWO_QUESTIONS, line=line, interjections=(BargeIn(0, 1.0),)), SETTINGS)
    assert invariants.check(obs) == {}
    assert obs.record is not None
    cut = [(t, item, ms) for t, item, ms in obs.record.barge_ins if ms > 0]
    assert len(cut) == 1
    t, item, heard_ms = cut[0]
    # The heard position is counted in the transport's grain: frames written (AudioSocket),
    # 100 ms batches whose marks came back (chan_websocket).
    assert heard_ms % (100 if line.transport == "websocket" else 20) == 0
    assert {"item": item, "heard_ms": heard_ms} in events(obs, "call.barge_in")
    assert obs.ledger.sessions[0].errors == []  # the model took the truncation (never past the audio)
    if line.transport == "websocket":
        assert obs.caller.flushes == 1


def test_an_aja_over_the_answer_cuts_nothing() -> None:
    # Question 1's answer plays from about 3.7 s after it was asked, question 2's from 4 s.
    obs = simulate_call(replace(TWO_QUESTIONS, interjections=(Backchannel(0, 5.0, "ajá"), Backchannel(1, 6.0, "sí"))),
                        SETTINGS)
    assert invariants.check(obs) == {}
    assert obs.record is not None and obs.record.barge_ins == []
    assert len([h for h in obs.caller.heard if brain.ANSWER_DEVICES.search(h.text)]) == 1


@pytest.mark.parametrize("line", [Line(), Line("websocket", control="json")], ids=["audiosocket", "websocket"])
def test_digits(line: Line) -> None:
    presses = (Digit(0, 25.0, "#"), Digit(1, 1.0, "0"), Digit(1, 2.0, "X"), Digit(1, 3.0, "b"), Digit(1, 3.5, "7"))
    obs = simulate_call(replace(TWO_QUESTIONS, line=line, interjections=presses), SETTINGS)
    assert invariants.check(obs) == {}
    record = obs.record
    assert record is not None
    assert sorted(d for _, d in record.digits) == sorted(["#", "0", "X", "B", "7"])  # "b" from SIP INFO is B
    assert record.repeats == 1 and record.human_contacts == 1
    answers = [h.text for h in obs.caller.heard if brain.ANSWER_DEVICES.search(h.text) or brain.ANSWER_SFP.search(h.text)]
    assert len(answers) == 3 and answers[-1] in answers[:-1]  # the last answer again, the same words
    assert any(SETTINGS.phrases.human_contact[:30] in h.text for h in obs.caller.heard)


# ---------------------------------------------------------------- the invariants catch their failure


def test_speech_that_is_too_short_is_caught_cutting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(call_session.CallMachine, "long_speech", lambda self, speech_ms=0: True)
    found = invariants.check(simulate_call(replace(TWO_QUESTIONS, interjections=(Backchannel(0, 5.0, "ajá"),)),
                                           SETTINGS))
    assert "short_speech_cuts_nothing" in found and "«ajá»" in found["short_speech_cuts_nothing"][0]


def test_a_heard_position_counted_as_sent_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # The classic bug: what was sent to Asterisk counted as heard. With 2 s queued ahead of the
    # caller, the truncation claims up to 2 s the caller never heard.
    real = websocket_leg.WebSocketLeg.barge_in

    def as_sent(self: websocket_leg.WebSocketLeg, playout: call_session.Playout) -> list[object]:
        return [replace(t, played_ms=playout.played_ms(t.item_id)) for t in real(self, playout)]

    monkeypatch.setattr(websocket_leg, "LEAD_FRAMES", 100)
    monkeypatch.setattr(websocket_leg.WebSocketLeg, "barge_in", as_sent)
    obs = simulate_call(replace(TWO_QUESTIONS, line=Line("websocket"), interjections=(BargeIn(0, 1.0),)), SETTINGS)
    found = invariants.check(obs)
    assert "barge_in_heard" in found and "the caller had heard" in found["barge_in_heard"][0]


def test_filling_asterisks_queue_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(websocket_leg, "BATCH_FRAMES", 150)  # 48 kB messages: under the 64 kB limit
    monkeypatch.setattr(websocket_leg, "LEAD_FRAMES", 2000)
    obs = simulate_call(replace(TWO_QUESTIONS, line=Line("websocket")), SETTINGS)
    found = invariants.check(obs)
    assert "flow_control" in found and "MEDIA_XOFF" in found["flow_control"][0]


def test_a_digit_left_unanswered_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(call_session.CallSession, "_repeat_answer", lambda self: None)
    obs = simulate_call(replace(TWO_QUESTIONS, interjections=(Digit(0, 11.5, "#"),)), SETTINGS)
    found = invariants.check(obs)
    assert "digits_answered" in found and "did not hear the last answer again" in found["digits_answered"][0]


@pytest.mark.parametrize("line", [Line(), Line("websocket")], ids=["audiosocket", "websocket"])
def test_a_line_that_sends_nothing_while_the_call_is_idle_is_ended(line: Line) -> None:
    # The caller listens to the greeting and says nothing, on a line that sends no frames: after
    # inactivity_timeout_s of an idle call the service ends it (a dead or broken peer looks the
    # same). A line that sends its noise is alive, and is kept until the caller hangs up.
    silent = Scenario(asks=(Ask("devices", ("152.1",), pause_s=300.0),), routers=fleet(), silence="no_frames",
                      hangup_at_s=200.0, line=line)
    obs = simulate_call(silent, SETTINGS)
    assert obs.record is not None and obs.record.end_reason == "nothing from Asterisk for 120 s"
    (inactive,) = events(obs, "call.inactive")
    greeting_end = obs.caller.heard[0].end
    assert obs.t(obs.record.ended_at) == pytest.approx(obs.t(greeting_end) + 120.0, abs=1.0)
    alive = simulate_call(replace(silent, silence="noise"), SETTINGS)
    assert alive.record is not None and alive.record.end_reason.startswith("caller hung up")
    assert obs.t(alive.record.ended_at) == pytest.approx(200.0, abs=0.1)


def test_an_asterisk_that_never_returns_marks_still_hears_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    # An Asterisk without MARK_MEDIA (before 20.18/22.8/23.2), or one that lost the marks: our
    # audio must not stop at the 300 ms lead; the batches count as played by the clock.
    from mikrovoice.telephony import chan_websocket as cw

    real = cw.MediaQueue.command

    def no_marks(self: cw.MediaQueue, command: object) -> list[object]:
        return [] if isinstance(command, cw.MarkMedia) else real(self, command)  # type: ignore[arg-type]

    monkeypatch.setattr(cw.MediaQueue, "command", no_marks)
    obs = simulate_call(replace(TWO_QUESTIONS, line=Line("websocket")), SETTINGS)
    assert [q.answered for q in obs.caller.questions] == [True, True]
    assert len(events(obs, "call.websocket_no_marks")) == 1
