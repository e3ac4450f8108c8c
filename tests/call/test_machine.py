"""CallMachine: the event table per (conversation × link) configuration, the commands each
transition hands out, reconnects with backoff, hang-up from anywhere, and a property test."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mikrovoice.call.auth import Gatekeeper
from mikrovoice.call.machine import (
    CONVERSATION_STATES,
    EVENTS,
    LINK_STATES,
    Admit,
    AnswerTurn,
    AskReport,
    BargeIn,
    CallMachine,
    CallMachineError,
    CancelQuery,
    Command,
    Connect,
    DeliverResult,
    EndCall,
    Greet,
    PlayHold,
    Reconnect,
    Recycle,
    RefuseToolCall,
    RepeatAnswer,
    SayFarewell,
    SayHumanContact,
    SayReconnected,
    SpeakPreamble,
    SpeakProgress,
    StartQuery,
    ToolCall,
    ToolResult,
)
from mikrovoice.config import AuthSettings, Operator

CALL = ToolCall("call_1", "trafico_sfp", {"routers": ["152.1"]})
SAME = ToolCall("call_2", "trafico_sfp", {"routers": ["152.1"]})  # the same query, called again
OTHER = ToolCall("call_3", "trafico_sfp", {"routers": ["152.2"]})  # a different query
BAD = ToolCall("call_4", "dispositivos_activos", {}, problem="falta 'router'")
CANCEL = ToolCall("call_5", "cancelar_consulta", {}, cancels=True)
RESULT = ToolResult(CALL, {"ok": 1}, ok=True)

# The data each event carries in the table (a task always sends these).
DATA: dict[str, dict[str, Any]] = {
    "tool_called": {"call": CALL},
    "query_finished": {"result": RESULT},
    "link_down": {"reason": "drop"},
    "link_failed": {"reason": "refused"},
    "caller_speech": {"speech_ms": 800, "greeting_ms": 2500},
    "dtmf": {"digit": "#"},
    "hangup": {"reason": "caller hung up"},
    "abort": {"reason": "bad input"},
}

# How to reach each configuration (conversation, link); farewell and ended have no link state.
PATHS: dict[tuple[str, str | None], list[str]] = {
    ("greeting", "connecting"): [],
    ("greeting", "up"): ["link_up"],
    ("listening", "up"): ["link_up", "greeting_done"],
    ("announcing", "up"): ["link_up", "greeting_done", "tool_called"],
    ("querying", "up"): ["link_up", "greeting_done", "tool_called", "turn_done"],
    ("reporting", "up"): ["link_up", "greeting_done", "tool_called", "turn_done", "query_finished"],
    ("greeting", "reconnecting"): ["link_up", "link_down"],
    ("listening", "reconnecting"): ["link_up", "greeting_done", "link_down"],
    ("announcing", "reconnecting"): ["link_up", "greeting_done", "tool_called", "link_down"],
    ("querying", "reconnecting"): ["link_up", "greeting_done", "tool_called", "turn_done", "link_down"],
    ("reporting", "reconnecting"): ["link_up", "greeting_done", "tool_called", "turn_done", "query_finished",
                                    "link_down"],
    ("listening", "recycling"): ["link_up", "greeting_done", "recycle_due"],
    ("farewell", None): ["link_up", "link_failed"],
    ("ended", None): ["hangup"],
}
LIVE = [config for config in PATHS if config[1] is not None]


def admitted(m: CallMachine) -> CallMachine:
    """An open line ([auth] require = "open", the default): ``start`` admits the call at once."""
    assert m.handle("start", now=0.0) is True
    assert m.take_commands() == [Admit(None, "open"), Connect()]
    return m


def machine_in(conversation: str, link: str | None, **kwargs: Any) -> CallMachine:
    m = admitted(CallMachine("test", **kwargs))
    for event in PATHS[(conversation, link)]:
        assert m.handle(event, **DATA.get(event, {})) is True
    m.take_commands()
    assert (m.state, m.link_state) == (conversation, link)
    return m


def configuration(m: CallMachine) -> set[str]:
    return {s.id for s in m.configuration}


class Refusal:
    """Matches a RefuseToolCall of ``call`` whose reason starts with ``prefix``."""

    def __init__(self, call: ToolCall, prefix: str) -> None:
        self.call, self.prefix = call, prefix

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, RefuseToolCall) and other.call == self.call
                and other.reason.startswith(self.prefix))

    def __repr__(self) -> str:
        return f"Refusal({self.call.call_id}, {self.prefix!r}...)"


IGNORED, IMPOSSIBLE = "ignored", "impossible"
Outcome = str | tuple[str, str | None, list[Any]]  # ignored / impossible / (conversation, link, commands)

FIRST_RECONNECT = Reconnect(1, 0.5, "drop")
SECOND_RECONNECT = Reconnect(2, 1.0, "drop")
FAREWELL: Outcome = ("farewell", None, [SayFarewell("refused")])
HANGUP: Outcome = ("ended", None, [EndCall("caller hung up", by_caller=True)])
ABORT: Outcome = ("ended", None, [EndCall("bad input", by_caller=False)])
SHUTDOWN: Outcome = ("farewell", None, [SayFarewell("shutdown: the service is stopping", prompt="shutdown")])


def _row(conversation: str, link: str, **outcomes: Outcome) -> dict[str, Outcome]:
    """A live configuration's row: the end events are the same everywhere in ``call``."""
    defaults: dict[str, Outcome] = {"link_failed": FAREWELL, "farewell_done": IMPOSSIBLE, "hangup": HANGUP,
                                    "abort": ABORT,
                                    # The caller's side: the same in every live configuration.
                                    "caller_speech": (conversation, link, [BargeIn()]),
                                    "dtmf": (conversation, link, [RepeatAnswer()]),
                                    # Admission is over; a stopping service says goodbye.
                                    "start": IMPOSSIBLE, "pin_entered": IMPOSSIBLE, "pin_timeout": IMPOSSIBLE,
                                    "refusal_done": IMPOSSIBLE, "shutdown": SHUTDOWN}
    row = {**defaults, **outcomes}
    assert set(row) == set(EVENTS) - ({"link_up"} if link == "up" else set()), (conversation, link)
    return row


# Each configuration's reaction to each event. A link_up while the link is up is left out: the
# session raises it once per configured session (it checks session.updated once).
TABLE: dict[tuple[str, str | None], dict[str, Outcome]] = {
    ("greeting", "connecting"): _row(
        "greeting", "connecting",
        link_up=("greeting", "up", [Greet()]),  # the greeting waits for a configured session
        greeting_done=("listening", "connecting", []),
        turn_done=IGNORED,
        tool_called=("announcing", "connecting", [StartQuery(CALL)]),
        progress_due=IMPOSSIBLE, progress_done=IGNORED, query_finished=IMPOSSIBLE, report_done=IMPOSSIBLE,
        link_down=("greeting", "reconnecting", [FIRST_RECONNECT]),
        recycle_due=IGNORED,
    ),
    ("greeting", "up"): _row(
        "greeting", "up",
        greeting_done=("listening", "up", []),
        turn_done=IGNORED,
        tool_called=("announcing", "up", [StartQuery(CALL)]),
        progress_due=IMPOSSIBLE, progress_done=IGNORED, query_finished=IMPOSSIBLE, report_done=IMPOSSIBLE,
        link_down=("greeting", "reconnecting", [FIRST_RECONNECT]),
        recycle_due=IGNORED,
    ),
    ("listening", "up"): _row(
        "listening", "up",
        greeting_done=IGNORED,
        turn_done=IGNORED,
        tool_called=("announcing", "up", [StartQuery(CALL)]),
        progress_due=IMPOSSIBLE, progress_done=IGNORED, query_finished=IMPOSSIBLE, report_done=IMPOSSIBLE,
        link_down=("listening", "reconnecting", [FIRST_RECONNECT]),
        recycle_due=("listening", "recycling", [Recycle()]),
    ),
    ("announcing", "up"): _row(
        "announcing", "up",
        greeting_done=IGNORED,
        turn_done=("querying", "up", []),
        tool_called=("announcing", "up", [Refusal(CALL, "duplicate")]),
        progress_due=IGNORED, progress_done=IGNORED,
        query_finished=("announcing", "up", []),  # kept until the announcement ends
        report_done=("querying", "up", []),
        link_down=("announcing", "reconnecting", [FIRST_RECONNECT, PlayHold()]),
        recycle_due=IGNORED,
    ),
    ("querying", "up"): _row(
        "querying", "up",
        greeting_done=IGNORED,
        turn_done=IGNORED,
        tool_called=("querying", "up", [Refusal(CALL, "duplicate")]),
        progress_due=("querying", "up", [SpeakProgress(CALL)]),
        progress_done=IGNORED,
        query_finished=("reporting", "up", [DeliverResult(RESULT)]),
        report_done=IMPOSSIBLE,
        link_down=("querying", "reconnecting", [FIRST_RECONNECT, PlayHold()]),
        recycle_due=IGNORED,
    ),
    ("reporting", "up"): _row(
        "reporting", "up",
        greeting_done=IGNORED,
        turn_done=IGNORED,
        tool_called=("announcing", "up", [StartQuery(CALL)]),
        progress_due=IGNORED, progress_done=IGNORED, query_finished=IMPOSSIBLE,
        report_done=("listening", "up", []),
        link_down=("reporting", "reconnecting", [FIRST_RECONNECT]),
        recycle_due=IGNORED,
    ),
    ("greeting", "reconnecting"): _row(
        "greeting", "reconnecting",
        link_up=("greeting", "up", [Greet()]),  # the greeting died with the old session: again
        greeting_done=("listening", "reconnecting", []),
        turn_done=IGNORED,
        tool_called=("announcing", "reconnecting", [StartQuery(CALL)]),
        progress_due=IMPOSSIBLE, progress_done=IGNORED, query_finished=IMPOSSIBLE, report_done=IMPOSSIBLE,
        link_down=("greeting", "reconnecting", [SECOND_RECONNECT]),
        recycle_due=IGNORED,
    ),
    ("listening", "reconnecting"): _row(
        "listening", "reconnecting",
        link_up=("listening", "up", []),  # the session replays the caller's audio of the gap
        greeting_done=IGNORED,
        turn_done=IGNORED,
        tool_called=("announcing", "reconnecting", [StartQuery(CALL)]),
        progress_due=IMPOSSIBLE, progress_done=IGNORED, query_finished=IMPOSSIBLE, report_done=IMPOSSIBLE,
        link_down=("listening", "reconnecting", [SECOND_RECONNECT]),
        recycle_due=IGNORED,
    ),
    ("announcing", "reconnecting"): _row(
        "announcing", "reconnecting",
        link_up=("querying", "up", []),  # the announcement died: the query goes on
        greeting_done=IGNORED,
        turn_done=("querying", "reconnecting", []),
        tool_called=("announcing", "reconnecting", [Refusal(CALL, "duplicate")]),
        # no model to speak: the recorded hold prompt
        progress_due=("announcing", "reconnecting", [PlayHold()]), progress_done=IGNORED,
        query_finished=("announcing", "reconnecting", []),
        report_done=("querying", "reconnecting", []),
        link_down=("announcing", "reconnecting", [SECOND_RECONNECT]),
        recycle_due=IGNORED,
    ),
    ("querying", "reconnecting"): _row(
        "querying", "reconnecting",
        link_up=("querying", "up", []),
        greeting_done=IGNORED,
        turn_done=IGNORED,
        tool_called=("querying", "reconnecting", [Refusal(CALL, "duplicate")]),
        progress_due=("querying", "reconnecting", [PlayHold()]),  # no model to speak: the recorded prompt
        progress_done=IGNORED,
        query_finished=("reporting", "reconnecting", [DeliverResult(RESULT)]),  # the query outlives the link
        report_done=IMPOSSIBLE,
        link_down=("querying", "reconnecting", [SECOND_RECONNECT]),
        recycle_due=IGNORED,
    ),
    ("reporting", "reconnecting"): _row(
        "reporting", "reconnecting",
        link_up=("reporting", "up", [AskReport(RESULT)]),  # the report died with the old session
        greeting_done=IGNORED,
        turn_done=IGNORED,
        tool_called=("announcing", "reconnecting", [StartQuery(CALL)]),
        progress_due=IGNORED, progress_done=IGNORED, query_finished=IMPOSSIBLE,
        report_done=("listening", "reconnecting", []),
        link_down=("reporting", "reconnecting", [SECOND_RECONNECT]),
        recycle_due=IGNORED,
    ),
    ("listening", "recycling"): _row(
        "listening", "recycling",
        link_up=("listening", "up", []),  # nothing died with the old session: no greeting, no report
        greeting_done=IGNORED,
        turn_done=IGNORED,
        tool_called=("announcing", "recycling", [StartQuery(CALL)]),
        progress_due=IMPOSSIBLE, progress_done=IGNORED, query_finished=IMPOSSIBLE, report_done=IMPOSSIBLE,
        link_down=("listening", "reconnecting", [FIRST_RECONNECT]),  # the count restarted when it was up
        recycle_due=IGNORED,
    ),
    # The model is gone: everything it might still send is moot; the apology's end, or the caller, ends.
    ("farewell", None): {
        **{event: IGNORED for event in EVENTS},
        "farewell_done": ("ended", None, [EndCall("refused", by_caller=False)]),
        "hangup": HANGUP,
        "abort": ABORT,
    },
    ("ended", None): {event: IGNORED for event in EVENTS},
}

def _table_cases() -> list[Any]:
    cases = []
    for (conversation, link), row in TABLE.items():
        for event, outcome in row.items():
            cases.append(pytest.param(conversation, link, event, outcome,
                                      id=f"{conversation}/{link}-{event}"))
    return cases


def test_the_table_covers_every_configuration_and_event() -> None:
    assert set(TABLE) == set(PATHS)
    for (conversation, link), row in TABLE.items():
        assert set(row) == set(EVENTS) - ({"link_up"} if link == "up" else set()), (conversation, link)


@pytest.mark.parametrize("conversation, link, event, outcome", _table_cases())
def test_event_table(conversation: str, link: str | None, event: str, outcome: Outcome) -> None:
    m = machine_in(conversation, link)
    before, trace, link_trace = configuration(m), list(m.trace), list(m.link_trace)
    if outcome == IMPOSSIBLE:
        with pytest.raises(CallMachineError, match=f"can't handle event '{event}' in state '{conversation}'"):
            m.handle(event, **DATA.get(event, {}))
    elif outcome == IGNORED:
        assert m.handle(event, **DATA.get(event, {})) is False
    else:
        target, target_link, commands = outcome
        assert m.handle(event, **DATA.get(event, {})) is True
        assert (m.state, m.link_state) == (target, target_link)
        assert m.take_commands() == commands
        return
    assert configuration(m) == before and m.trace == trace and m.link_trace == link_trace
    assert m.take_commands() == []


@pytest.mark.parametrize("conversation", ["greeting", "announcing", "querying", "reporting"])
def test_recycle_due_changes_nothing_unless_listening_with_the_link_up(conversation: str) -> None:
    m = machine_in(conversation, "up")
    before = configuration(m)
    m.handle("recycle_due")
    assert configuration(m) == before and m.take_commands() == []


def test_the_machine_starts_authorising_then_greets_and_connects_once_admitted() -> None:
    m = CallMachine("start")
    assert configuration(m) == {"authorising"} and m.take_commands() == [] and not m.wants_comfort
    admitted(m)
    assert configuration(m) == {"call", "conversation", "greeting", "link", "connecting"}
    assert m.trace == ["authorising", "greeting"] and m.link_trace == ["connecting"]
    assert m.wants_comfort  # until the model session is up, the caller hears comfort audio


@pytest.mark.parametrize("conversation, link", [config for config in PATHS if config[0] != "ended"])
@pytest.mark.parametrize("event", ["hangup", "abort"])
def test_the_call_can_end_from_anywhere(conversation: str, link: str | None, event: str) -> None:
    m = machine_in(conversation, link)
    assert m.handle(event, reason="why") is True
    assert m.state == "ended" and m.link_state is None and m.is_terminated
    assert configuration(m) == {"ended"} and m.trace[-1] == "ended"
    assert m.take_commands() == [EndCall("why", by_caller=event == "hangup")]
    for after in EVENTS:  # after the end everything is ignored and nothing is handed out
        assert m.handle(after, **DATA.get(after, {})) is False
    assert m.take_commands() == [] and m.state == "ended"


def test_the_end_reason_defaults_to_the_event() -> None:
    m = machine_in("listening", "up")
    m.handle("abort")
    assert m.take_commands() == [EndCall("abort")] and m.end_reason == "abort"


# -- the happy path ----------------------------------------------------------------------------


def test_the_seed_call_hands_out_the_right_commands() -> None:
    m = admitted(CallMachine("seed"))
    m.handle("link_up")
    assert m.take_commands() == [Greet()]
    m.handle("greeting_done")
    m.handle("tool_called", call=CALL)
    assert m.take_commands() == [StartQuery(CALL)] and m.wants_comfort
    m.handle("turn_done")
    m.handle("progress_due")
    m.handle("progress_due")
    assert m.take_commands() == [SpeakProgress(CALL), SpeakProgress(CALL)] and m.progress_updates == 2
    m.handle("tool_called", call=BAD)
    assert m.take_commands() == [RefuseToolCall(BAD, "falta 'router'")]  # the problem is the reason
    m.handle("query_finished", result=RESULT)
    assert m.take_commands() == [DeliverResult(RESULT)]
    m.handle("report_done")
    assert m.state == "listening" and m.current_call is None and m.result is None and not m.wants_comfort
    assert m.trace == ["authorising", "greeting", "listening", "announcing", "querying", "reporting", "listening"]
    assert m.link_trace == ["connecting", "up"] and m.take_commands() == []


def test_a_fast_result_waits_for_the_announcement_to_end() -> None:
    m = machine_in("announcing", "up")
    m.handle("query_finished", result=RESULT)
    assert m.state == "announcing" and m.take_commands() == []
    m.handle("turn_done")
    assert m.state == "reporting" and m.take_commands() == [DeliverResult(RESULT)]


def test_a_new_query_from_reporting_is_the_one_that_runs() -> None:
    m = machine_in("reporting", "up")
    m.handle("tool_called", call=OTHER)
    m.handle("turn_done")
    m.handle("progress_due")
    assert m.take_commands() == [StartQuery(OTHER), SpeakProgress(OTHER)]
    assert m.current_call == OTHER and m.result is None


@pytest.mark.parametrize("event", ["turn_done", "report_done"])
def test_a_silent_tool_call_asks_for_a_preamble(event: str) -> None:
    m = machine_in("announcing", "up")
    m.handle(event, spoke=False)
    assert m.state == "querying"
    assert m.take_commands() == ([SpeakPreamble(CALL)] if event == "turn_done" else [])


def test_a_spoken_announcement_needs_no_preamble() -> None:
    m = machine_in("announcing", "up")
    m.handle("turn_done", spoke=True)
    assert m.state == "querying" and m.take_commands() == []


def test_no_preamble_when_the_result_is_already_there() -> None:
    m = machine_in("announcing", "up")
    m.handle("query_finished", result=RESULT)
    m.handle("turn_done", spoke=False)
    assert m.state == "reporting" and m.take_commands() == [DeliverResult(RESULT)]


# -- tool calls: refusals and cancels -------------------------------------------------------------


@pytest.mark.parametrize("conversation", ["announcing", "querying"])
def test_the_same_query_again_is_a_duplicate_and_another_is_busy(conversation: str) -> None:
    m = machine_in(conversation, "up")
    m.handle("tool_called", call=SAME)
    m.handle("tool_called", call=OTHER)
    m.handle("tool_called", call=BAD)
    duplicate, busy, bad = m.take_commands()
    assert duplicate == Refusal(SAME, "duplicate: this same query (trafico_sfp) is already running")
    assert busy == Refusal(OTHER, "busy: the query trafico_sfp is still running")
    assert bad == RefuseToolCall(BAD, "falta 'router'")
    assert m.state == conversation and m.current_call == CALL  # the running query is untouched


@pytest.mark.parametrize("conversation", ["greeting", "listening", "reporting"])
def test_an_invalid_tool_call_is_refused_and_nothing_runs(conversation: str) -> None:
    m = machine_in(conversation, "up")
    m.handle("tool_called", call=BAD)
    assert m.state == conversation and m.take_commands() == [RefuseToolCall(BAD, "falta 'router'")]


@pytest.mark.parametrize("conversation", ["greeting", "listening", "reporting"])
def test_a_cancel_while_nothing_runs_is_refused(conversation: str) -> None:
    m = machine_in(conversation, "up")
    m.handle("tool_called", call=CANCEL)
    assert m.state == conversation
    assert m.take_commands() == [RefuseToolCall(CANCEL, "no query is running: nothing to cancel")]


@pytest.mark.parametrize("conversation, link", [("announcing", "up"), ("querying", "up"),
                                                ("querying", "reconnecting")])
def test_a_cancel_stops_the_running_query(conversation: str, link: str) -> None:
    m = machine_in(conversation, link)
    m.handle("tool_called", call=CANCEL)
    assert (m.state, m.link_state) == ("listening", link)
    assert m.take_commands() == [CancelQuery(CALL, CANCEL)]
    assert m.current_call is None and m.result is None
    with pytest.raises(CallMachineError):  # no query any more: no progress for it
        m.handle("progress_due")
    m.handle("tool_called", call=OTHER)  # and a new one may start
    assert m.take_commands() == [StartQuery(OTHER)] and m.state == "announcing"


def test_a_cancel_after_the_result_came_in_drops_it() -> None:
    m = machine_in("announcing", "up")
    m.handle("query_finished", result=RESULT)
    m.handle("tool_called", call=CANCEL)
    assert m.state == "listening" and m.take_commands() == [CancelQuery(CALL, CANCEL)] and m.result is None


def test_a_cancel_with_a_problem_is_refused_with_the_problem() -> None:
    broken = ToolCall("call_6", "cancelar_consulta", {"x": 1}, problem="argumento desconocido", cancels=True)
    m = machine_in("querying", "up")
    m.handle("tool_called", call=broken)
    assert m.state == "querying" and m.take_commands() == [RefuseToolCall(broken, "argumento desconocido")]


# -- the link: reconnects, backoff, recycling, farewell --------------------------------------------


def test_reconnects_back_off_doubling_up_to_the_cap_then_say_farewell() -> None:
    m = machine_in("listening", "up", max_reconnects=5)
    for _ in range(5):
        assert m.handle("link_down", reason="drop") is True
    assert m.state == "listening" and m.link_state == "reconnecting" and m.wants_comfort
    assert [(c.attempt, c.delay_s) for c in m.take_commands() if isinstance(c, Reconnect)] == [
        (1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0)]
    m.handle("link_down", reason="drop")
    assert m.state == "farewell" and m.link_state is None
    farewell = SayFarewell("model unreachable after 5 reconnect attempt(s): drop")
    assert m.take_commands() == [farewell]
    m.handle("farewell_done")
    assert m.is_terminated and m.take_commands() == [EndCall(farewell.reason, by_caller=False)]


def test_backoff_follows_the_constructor() -> None:
    m = machine_in("listening", "up", max_reconnects=6, backoff_s=1.0, backoff_max_s=3.0)
    for _ in range(4):
        m.handle("link_down")
    assert m.take_commands() == [Reconnect(1, 1.0, "model link lost"), Reconnect(2, 2.0, "model link lost"),
                                 Reconnect(3, 3.0, "model link lost"), Reconnect(4, 3.0, "model link lost")]


def test_the_default_is_four_attempts() -> None:
    m = machine_in("querying", "up")
    for _ in range(4):
        m.handle("link_down", reason="drop")
    # four attempts; the first drop in a query also plays the hold prompt
    assert m.link_state == "reconnecting" and len(m.take_commands()) == 4 + 1
    m.handle("link_down", reason="drop")
    assert m.state == "farewell"
    assert m.take_commands() == [SayFarewell("model unreachable after 4 reconnect attempt(s): drop")]


def test_the_count_restarts_once_the_link_is_up_again() -> None:
    m = machine_in("listening", "up", max_reconnects=2)
    m.handle("link_down", reason="drop")
    m.handle("link_down", reason="drop")
    m.handle("link_up")
    assert m.link_state == "up" and m.reconnects == 0
    m.handle("link_down", reason="drop")
    m.handle("link_down", reason="drop")
    assert m.link_state == "reconnecting"  # two more attempts, not farewell
    assert m.take_commands() == [FIRST_RECONNECT, SECOND_RECONNECT, FIRST_RECONNECT, SECOND_RECONNECT]
    assert m.reconnects_total == 4
    m.handle("link_down", reason="drop")
    assert m.state == "farewell"


def test_a_first_connection_that_fails_is_retried() -> None:
    m = admitted(CallMachine("t"))
    m.handle("link_down", reason="connect refused")
    assert m.link_state == "reconnecting" and m.take_commands() == [Reconnect(1, 0.5, "connect refused")]
    m.handle("link_up")
    assert m.take_commands() == [Greet()]


def test_no_reconnects_allowed_means_farewell_at_the_first_drop() -> None:
    m = machine_in("listening", "up", max_reconnects=0)
    m.handle("link_down", reason="drop")
    assert m.state == "farewell"
    assert m.take_commands() == [SayFarewell("model unreachable after 0 reconnect attempt(s): drop")]


@pytest.mark.parametrize("conversation, link", LIVE)
def test_out_of_attempts_says_farewell_from_anywhere_in_the_call(conversation: str, link: str) -> None:
    m = machine_in(conversation, link, max_reconnects=1)
    m.handle("link_down", reason="drop")  # from reconnecting this is the second attempt: over the max
    if link != "reconnecting":
        hold = [PlayHold()] if conversation in ("announcing", "querying") else []
        assert m.link_state == "reconnecting" and m.take_commands() == [FIRST_RECONNECT, *hold]
        m.handle("link_down", reason="drop")
    assert m.state == "farewell" and configuration(m) == {"farewell"}
    commands = m.take_commands()
    assert commands == [SayFarewell("model unreachable after 1 reconnect attempt(s): drop")]
    assert m.handle("link_up") is False and m.handle("tool_called", call=CALL) is False
    m.handle("farewell_done")
    assert m.take_commands() == [EndCall(commands[0].reason)] and m.is_terminated


@pytest.mark.parametrize("conversation, link", LIVE)
def test_a_failed_link_says_farewell_at_once(conversation: str, link: str) -> None:
    m = machine_in(conversation, link)
    m.handle("link_failed", reason="key refused")
    assert m.state == "farewell" and m.take_commands() == [SayFarewell("key refused")]
    m.handle("farewell_done")
    assert m.take_commands() == [EndCall("key refused", by_caller=False)]
    assert m.trace[-2:] == ["farewell", "ended"]


def test_the_greeting_is_asked_again_after_a_reconnect() -> None:
    m = admitted(CallMachine("t"))
    for event in ("link_up", "link_down", "link_down", "link_up"):
        m.handle(event)
    assert m.take_commands() == [Greet(), Reconnect(1, 0.5, "model link lost"),
                                 Reconnect(2, 1.0, "model link lost"), Greet()]
    m.handle("greeting_done")
    assert m.state == "listening"


def test_a_query_runs_through_a_reconnect_and_the_report_is_asked_again() -> None:
    m = machine_in("querying", "up")
    m.handle("link_down", reason="drop")
    m.handle("progress_due")  # no model can speak it: the recorded hold prompt
    m.handle("query_finished", result=RESULT)
    assert (m.state, m.link_state) == ("reporting", "reconnecting")
    m.handle("link_up")
    assert m.take_commands() == [FIRST_RECONNECT, PlayHold(), PlayHold(), DeliverResult(RESULT), AskReport(RESULT)]
    m.handle("report_done")
    assert (m.state, m.link_state) == ("listening", "up") and m.result is None


def test_a_report_cut_by_a_drop_is_asked_again() -> None:
    m = machine_in("reporting", "up")
    m.handle("link_down")
    m.handle("link_down")
    m.handle("link_up")
    assert [c for c in m.take_commands() if not isinstance(c, Reconnect)] == [AskReport(RESULT)]
    assert m.state == "reporting"


def test_an_announcement_cut_by_a_drop_goes_on_querying_or_reports() -> None:
    m = machine_in("announcing", "reconnecting")
    m.handle("link_up")
    assert m.state == "querying" and m.take_commands() == []
    m = machine_in("announcing", "reconnecting")
    m.handle("query_finished", result=RESULT)
    assert m.take_commands() == []
    m.handle("link_up")
    assert (m.state, m.link_state) == ("reporting", "up") and m.take_commands() == [DeliverResult(RESULT)]


def test_a_recycle_waits_for_a_quiet_line_and_replaces_the_session() -> None:
    m = machine_in("listening", "up")
    m.handle("recycle_due")
    assert m.link_state == "recycling" and m.take_commands() == [Recycle()] and m.wants_comfort
    m.handle("link_up")
    assert (m.state, m.link_state) == ("listening", "up") and m.take_commands() == []
    assert m.link_trace == ["connecting", "up", "recycling", "up"]


def test_a_recycle_that_fails_reconnects() -> None:
    m = machine_in("listening", "recycling", max_reconnects=1)
    m.handle("link_down", reason="drop")
    assert m.link_state == "reconnecting" and m.take_commands() == [FIRST_RECONNECT]
    m.handle("link_down", reason="drop")
    assert m.state == "farewell"


@pytest.mark.parametrize("conversation, link", [*PATHS])
def test_comfort_fills_the_waits(conversation: str, link: str | None) -> None:
    m = machine_in(conversation, link)
    if conversation == "greeting":  # a caller waiting for a model that is not there yet
        waiting = link != "up"
    else:
        waiting = conversation in ("announcing", "querying", "reporting") or link in ("reconnecting", "recycling")
    assert m.wants_comfort is waiting


def test_unknown_event_is_a_bug() -> None:
    with pytest.raises(CallMachineError, match="unknown call event"):
        CallMachine().handle("dance")


@pytest.mark.parametrize("conversation, event", [("listening", "tool_called"), ("querying", "query_finished")])
def test_an_event_without_its_data_is_a_bug_not_silence(conversation: str, event: str) -> None:
    m = machine_in(conversation, "up")
    with pytest.raises((TypeError, AssertionError, CallMachineError)):
        m.handle(event)


# -- the property: whatever the order of events, the chart stays consistent -------------------------

TOOL_CALLS = [CALL, SAME, OTHER, BAD, CANCEL]
RESULTS = [RESULT, ToolResult(OTHER, {"error": "timeout"}, ok=False)]


def _data(event: str) -> st.SearchStrategy[dict[str, Any]]:
    reasons = st.sampled_from(["", "r"])
    if event == "tool_called":
        return st.fixed_dictionaries({"call": st.sampled_from(TOOL_CALLS)})
    if event == "query_finished":
        return st.fixed_dictionaries({"result": st.sampled_from(RESULTS)})
    if event == "turn_done":
        return st.one_of(st.just({}), st.fixed_dictionaries({"spoke": st.booleans()}))
    if event in ("link_down", "link_failed", "hangup", "abort"):
        return st.fixed_dictionaries({"reason": reasons})
    if event == "start":
        return st.fixed_dictionaries({"now": st.just(0.0), "busy": st.booleans()})
    if event == "pin_entered":
        return st.fixed_dictionaries({"pin": st.sampled_from(["", "123456", "654321"])})
    return st.just({})


# The ends are drawn rarely, so that streams get deep into the call before it ends.
ENDING = ("link_failed", "farewell_done", "hangup", "abort")
WEIGHTED = [event for event in EVENTS for _ in range(1 if event in ENDING else 5)]
EVENT_STREAMS = st.lists(st.sampled_from(WEIGHTED).flatmap(lambda e: st.tuples(st.just(e), _data(e))), min_size=10, max_size=80)


class RaisingCallMachine(CallMachine):
    """The same chart, but an exception in a callback propagates instead of being swallowed."""

    catch_errors_as_events = False


PIN_AUTH = AuthSettings(require="pin", configured=True, attempts=2,
                        operators=(Operator("Ana", pin="123456"),))


@settings(max_examples=250, deadline=None)
@given(events=EVENT_STREAMS, max_reconnects=st.integers(0, 5),
       machine_class=st.sampled_from([CallMachine, RaisingCallMachine]),
       auth=st.sampled_from([AuthSettings(), PIN_AUTH]))
def test_random_event_streams_keep_the_chart_consistent(
        events: list[tuple[str, dict[str, Any]]], max_reconnects: int, machine_class: type[CallMachine],
        auth: AuthSettings) -> None:
    events = [("start", {"now": 0.0}), *events]  # the session always starts a call first
    m = machine_class("prop", max_reconnects=max_reconnects, gatekeeper=Gatekeeper(auth))
    handed_out: list[Command] = []
    attempts = 0  # the model of the link: reconnect attempts since it was last up
    for event, data in events:
        before, trace, link_trace = configuration(m), list(m.trace), list(m.link_trace)
        state, link = m.state, m.link_state
        try:
            acted = m.handle(event, **data)
        except CallMachineError:
            acted = None
        commands = m.take_commands()
        handed_out += commands
        if acted is not True:  # impossible or ignored: nothing moves, nothing is handed out
            assert configuration(m) == before and commands == []
            assert m.trace == trace and m.link_trace == link_trace
        if state == "ended":
            assert acted is False  # ended is terminal: everything is ignored
        active = configuration(m)
        if m.state in CONVERSATION_STATES:  # in call: one state in each region, in step with the traces
            assert len(active & set(CONVERSATION_STATES)) == 1 and len(active & set(LINK_STATES)) == 1
            assert {"call", "conversation", "link"} <= active and len(active) == 5
            assert m.trace[-1] == m.state and m.link_trace[-1] == m.link_state
            assert (m.state in ("greeting", "listening")) == (m.current_call is None)
            assert m.state != "reporting" or m.result is not None
        else:  # authorising, refusing, farewell or ended: nothing of the call is there
            assert active == {m.state} and m.link_state is None and m.trace[-1] == m.state
        live = state in CONVERSATION_STATES
        if live and event in ("hangup", "abort"):
            assert m.state == "ended" and commands == [EndCall(data["reason"] or event, by_caller=event == "hangup")]
        if live and event == "link_failed":
            assert m.state == "farewell" and commands == [SayFarewell(data["reason"] or "model link lost")]
        if live and event == "link_up" and link != "up":
            attempts = 0
            assert m.link_state == "up" and (Greet() in commands) == (state == "greeting")
        if live and event == "link_down":
            if attempts == max_reconnects:
                assert m.state == "farewell" and len(commands) == 1 and isinstance(commands[0], SayFarewell)
            else:
                attempts += 1
                delay = min(4.0, 0.5 * 2 ** (attempts - 1))
                # the first drop while a query runs also plays the hold prompt
                hold = [PlayHold()] if link != "reconnecting" and state in ("announcing", "querying") else []
                assert commands == [Reconnect(attempts, delay, data["reason"] or "model link lost"), *hold]
                assert m.link_state == "reconnecting" and m.state == state
        if event == "recycle_due":
            assert (Recycle() in commands) == ((state, link) == ("listening", "up"))
        if any(isinstance(c, Greet) for c in commands):
            assert event == "link_up" and m.state == "greeting"
    ends = [c for c in handed_out if isinstance(c, EndCall)]
    farewells = [c for c in handed_out if isinstance(c, SayFarewell)]
    assert len(ends) == (1 if m.state == "ended" else 0)
    assert len(farewells) == (1 if "farewell" in m.trace else 0)
    if ends:
        assert handed_out[-1] is ends[0] and m.is_terminated  # nothing after the end
    if farewells:  # after the apology only the end
        assert all(isinstance(c, EndCall) for c in handed_out[handed_out.index(farewells[0]) + 1:])
    assert m.trace[0] == "authorising" and m.trace.count("ended") <= 1 and m.trace.count("farewell") <= 1
    # Admission: one Admit at most, and the model is connected only after it, once.
    admits = [i for i, c in enumerate(handed_out) if isinstance(c, Admit)]
    connects = [i for i, c in enumerate(handed_out) if isinstance(c, Connect)]
    assert len(admits) <= 1 and len(connects) == len(admits) and admits <= connects
    assert bool(admits) == ("greeting" in m.trace)
    if auth.require == "pin" and admits:  # admitted only by the right PIN
        assert handed_out[admits[0]] == Admit(auth.operators[0], "pin") and m.operator == auth.operators[0]
    assert m.pin_attempts <= auth.attempts


def test_back_after_a_gap_longer_than_the_kept_audio_the_caller_is_asked_to_repeat() -> None:
    m = machine_in("listening", "up")
    m.handle("link_down", reason="drop")
    m.handle("link_up", audio_lost=True)
    assert m.take_commands() == [FIRST_RECONNECT, SayReconnected()]
    m.handle("recycle_due")  # a recycle is not a drop: nothing was lost
    m.handle("link_up", audio_lost=True)
    assert m.take_commands() == [Recycle()]


def test_back_after_a_drop_a_replayed_question_without_answer_gets_one() -> None:
    m = machine_in("listening", "up")
    m.handle("link_down", reason="drop")
    m.handle("link_up", turn_unanswered=True)
    assert m.take_commands() == [FIRST_RECONNECT, AnswerTurn()]
    m.handle("recycle_due")  # after a recycle nothing is re-asked: the old session answered
    m.handle("link_up", turn_unanswered=True)
    assert m.take_commands() == [Recycle()]


@pytest.mark.parametrize("conversation, link", LIVE)
def test_short_speech_never_cuts_the_assistant(conversation: str, link: str) -> None:
    m = machine_in(conversation, link, min_speech_ms=500)
    before = configuration(m)
    assert m.handle("caller_speech", speech_ms=480, greeting_ms=9000) is False
    assert m.handle("caller_speech", speech_ms=500, greeting_ms=9000) is True
    assert m.take_commands() == [BargeIn()] and configuration(m) == before and m.barge_ins == 1


@pytest.mark.parametrize("link", ["connecting", "up", "reconnecting"])
def test_the_start_of_the_greeting_is_protected(link: str) -> None:
    m = machine_in("greeting", link, greeting_protect_ms=2000)
    assert m.handle("caller_speech", speech_ms=5000, greeting_ms=None) is False  # not playing yet
    assert m.handle("caller_speech", speech_ms=5000, greeting_ms=1999) is False
    assert m.handle("caller_speech", speech_ms=5000, greeting_ms=2000) is True
    assert m.take_commands() == [BargeIn()]
    # Protection is the greeting's only: once listening, speech cuts at once.
    m.handle("greeting_done")
    assert m.handle("caller_speech", speech_ms=600, greeting_ms=None) is True


@pytest.mark.parametrize("conversation, link", LIVE)
def test_digits(conversation: str, link: str) -> None:
    m = machine_in(conversation, link, repeat_digit="*", human_digit="9")
    assert m.handle("dtmf", digit="#") is False and m.handle("dtmf", digit="X") is False
    assert m.handle("dtmf", digit="*") is True
    assert m.take_commands() == [RepeatAnswer()]  # never a barge-in: an answer may be on its way
    assert m.handle("dtmf", digit="9") is True
    assert m.take_commands() == [SayHumanContact()]
    assert (m.state, m.link_state) == (conversation, link)
