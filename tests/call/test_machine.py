"""CallMachine: the event table, the commands each transition hands out, and hang-up from anywhere."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mikrovoice.call.machine import (
    EVENTS,
    CallMachine,
    CallMachineError,
    DeliverResult,
    EndCall,
    Greet,
    RefuseToolCall,
    SayFarewell,
    SpeakProgress,
    StartQuery,
    ToolCall,
    ToolResult,
)

CALL = ToolCall("call_1", "trafico_sfp", {"routers": ["152.1"]})
BAD = ToolCall("call_2", "dispositivos_activos", {}, problem="falta 'router'")
RESULT = ToolResult(CALL, {"ok": 1}, ok=True)
DATA = {"tool_called": {"call": CALL}, "query_finished": {"result": RESULT}}


def machine_in(state: str) -> CallMachine:
    m = CallMachine("test")
    path = {
        "greeting": [],
        "listening": ["greeting_done"],
        "announcing": ["greeting_done", "tool_called"],
        "querying": ["greeting_done", "tool_called", "turn_done"],
        "reporting": ["greeting_done", "tool_called", "turn_done", "query_finished"],
        "farewell": ["link_lost"],
        "ended": ["hangup"],
    }[state]
    for event in path:
        m.handle(event, **DATA.get(event, {}))
    m.take_commands()
    assert m.current_state_value == state
    return m


# Each state's reaction to each event: a target state, "ignored", or "impossible".
TABLE = {
    "greeting": {"greeting_done": "listening", "turn_done": "ignored", "tool_called": "announcing",
                 "progress_due": "impossible", "progress_done": "impossible", "query_finished": "impossible",
                 "report_done": "impossible", "link_lost": "farewell", "farewell_done": "impossible"},
    "listening": {"greeting_done": "impossible", "turn_done": "ignored", "tool_called": "announcing",
                  "progress_due": "impossible", "progress_done": "impossible", "query_finished": "impossible",
                  "report_done": "impossible", "link_lost": "farewell", "farewell_done": "impossible"},
    "announcing": {"greeting_done": "impossible", "turn_done": "querying", "tool_called": "announcing",
                   "progress_due": "ignored", "progress_done": "impossible", "query_finished": "announcing",
                   "report_done": "querying", "link_lost": "farewell", "farewell_done": "impossible"},
    "querying": {"greeting_done": "impossible", "turn_done": "ignored", "tool_called": "querying",
                 "progress_due": "querying", "progress_done": "ignored", "query_finished": "reporting",
                 "report_done": "impossible", "link_lost": "farewell", "farewell_done": "impossible"},
    "reporting": {"greeting_done": "impossible", "turn_done": "ignored", "tool_called": "announcing",
                  "progress_due": "impossible", "progress_done": "ignored", "query_finished": "impossible",
                  "report_done": "listening", "link_lost": "farewell", "farewell_done": "impossible"},
    # The model is gone: everything it might still have sent is moot; only the apology's end counts.
    "farewell": {"greeting_done": "ignored", "turn_done": "ignored", "tool_called": "ignored",
                 "progress_due": "ignored", "progress_done": "ignored", "query_finished": "ignored",
                 "report_done": "ignored", "link_lost": "ignored", "farewell_done": "ended"},
}


@pytest.mark.parametrize("state, event", [(s, e) for s, row in TABLE.items() for e in row])
def test_event_table(state: str, event: str) -> None:
    m = machine_in(state)
    expected = TABLE[state][event]
    if expected == "impossible":
        with pytest.raises(CallMachineError, match=f"can't handle event '{event}' in state '{state}'"):
            m.handle(event, **DATA.get(event, {}))
        assert m.current_state_value == state
    elif expected == "ignored":
        assert m.handle(event, **DATA.get(event, {})) is False
        assert m.current_state_value == state and m.take_commands() == []
    else:
        assert m.handle(event, **DATA.get(event, {})) is True
        assert m.current_state_value == expected


@pytest.mark.parametrize("state", ["greeting", "listening", "announcing", "querying", "reporting", "farewell"])
@pytest.mark.parametrize("event", ["hangup", "abort"])
def test_every_live_state_can_end(state: str, event: str) -> None:
    m = machine_in(state)
    m.handle(event, reason="why")
    assert m.current_state_value == "ended" and m.is_terminated
    assert m.take_commands() == [EndCall("why", by_caller=event == "hangup")]
    assert all(m.handle(e) is False for e in EVENTS)  # after the end, everything is ignored


@pytest.mark.parametrize("state", ["greeting", "listening", "announcing", "querying", "reporting"])
def test_losing_the_model_plays_the_apology_then_hangs_up(state: str) -> None:
    m = machine_in(state)
    m.handle("link_lost", reason="model link lost: no pong")
    assert m.current_state_value == "farewell"
    assert m.take_commands() == [SayFarewell("model link lost: no pong")]
    m.handle("farewell_done")
    assert m.is_terminated and m.take_commands() == [EndCall("model link lost: no pong", by_caller=False)]


def test_the_seed_call_hands_out_the_right_commands() -> None:
    m = CallMachine("seed")
    assert m.take_commands() == [Greet()]
    m.handle("greeting_done")
    m.handle("tool_called", call=CALL)
    assert m.take_commands() == [StartQuery(CALL)]
    m.handle("turn_done")
    m.handle("progress_due")
    m.handle("progress_due")
    assert m.take_commands() == [SpeakProgress(CALL), SpeakProgress(CALL)] and m.progress_updates == 2
    m.handle("tool_called", call=BAD)
    assert isinstance(m.take_commands()[0], RefuseToolCall)  # busy: one query at a time
    m.handle("query_finished", result=RESULT)
    assert m.take_commands() == [DeliverResult(RESULT)]
    m.handle("report_done")
    assert m.trace == ["greeting", "listening", "announcing", "querying", "reporting", "listening"]


def test_a_fast_result_waits_for_the_announcement_to_end() -> None:
    m = machine_in("announcing")
    m.handle("query_finished", result=RESULT)
    assert m.current_state_value == "announcing" and m.take_commands() == []
    m.handle("turn_done")
    assert m.current_state_value == "reporting" and m.take_commands() == [DeliverResult(RESULT)]


def test_invalid_tool_call_is_refused_and_nothing_runs() -> None:
    m = machine_in("listening")
    m.handle("tool_called", call=BAD)
    assert m.current_state_value == "listening"
    assert m.take_commands() == [RefuseToolCall(BAD, "falta 'router'")]


def test_unknown_event_is_a_bug() -> None:
    with pytest.raises(CallMachineError, match="unknown call event"):
        CallMachine().handle("dance")


@given(st.lists(st.sampled_from(EVENTS), max_size=40))
def test_random_event_streams_only_transition_ignore_or_raise(events: list[str]) -> None:
    m = CallMachine("prop")
    for event in events:
        before = m.current_state_value
        try:
            m.handle(event, **DATA.get(event, {}), reason="r")
        except CallMachineError:
            assert m.current_state_value == before
        assert m.current_state_value in {"greeting", "listening", "announcing", "querying", "reporting",
                                         "farewell", "ended"}
        if event in ("hangup", "abort"):
            assert m.is_terminated
        if event == "link_lost" and before != "ended":
            assert m.current_state_value == "farewell"
    assert m.trace[0] == "greeting" and m.trace.count("ended") <= 1
