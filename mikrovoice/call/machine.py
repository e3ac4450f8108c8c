"""The call machine: the states of one phone call, as a sync python-statemachine ``StateMachine``.

Theory of operation. Everything that decides what a call does next lives here; nothing here
does I/O, owns a timer or awaits. Trio tasks in the call's nursery (``call.session``) turn what
they observe into events (``machine.handle("tool_called", call=...)``); the machine transitions
and appends ``Command`` objects to ``machine.outbox``; the session drains the outbox and carries
the commands out. Every event a task can raise is, in each state, either a transition (maybe an
internal one that only acts) or listed in ``IGNORED``; anything else is a bug and raises
``CallMachineError`` ("can't handle event X in state Y"), like h11 does.
Async callbacks are forbidden here: they would switch the library to its asyncio engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from statemachine import State, StateMachine


class CallMachineError(Exception):
    """An event arrived that the call cannot be in a position to receive: a bug, never input."""


@dataclass(frozen=True)
class ToolCall:
    call_id: str
    name: str
    arguments: dict[str, Any]
    problem: str | None = None  # why the call cannot run (unknown tool, bad arguments), or None


@dataclass(frozen=True)
class ToolResult:
    call: ToolCall
    output: dict[str, Any]  # what the model is told, JSON-serialisable
    ok: bool


# Commands: what the machine asks its session to do.
@dataclass(frozen=True)
class Greet:
    pass


@dataclass(frozen=True)
class StartQuery:
    call: ToolCall


@dataclass(frozen=True)
class RefuseToolCall:
    call: ToolCall
    reason: str


@dataclass(frozen=True)
class SpeakProgress:
    call: ToolCall


@dataclass(frozen=True)
class DeliverResult:
    result: ToolResult


@dataclass(frozen=True)
class SayFarewell:
    """The model is gone: stop the query, play the recorded apology, then hang up."""

    reason: str


@dataclass(frozen=True)
class EndCall:
    reason: str
    by_caller: bool = False  # the caller hung up: nothing to send; otherwise we hang up (0x00)


Command = Greet | StartQuery | RefuseToolCall | SpeakProgress | DeliverResult | SayFarewell | EndCall

#: Every event the call's tasks can raise.
EVENTS = (
    "greeting_done",  # the greeting response is done
    "turn_done",  # a response server VAD started (the model answering the caller) is done
    "tool_called",  # the model completed a function_call item
    "progress_due",  # the progress policy says the caller has waited long enough in silence
    "progress_done",  # a progress response is done
    "query_finished",  # the query's cancel scope closed: result, partial result or error
    "report_done",  # the response that reports the result is done
    "hangup",  # the caller hung up (AudioSocket EOF)
    "link_lost",  # the model link died (or never came up)
    "farewell_done",  # the recorded apology has been played
    "abort",  # a peer sent input the call cannot go on with
)


class CallMachine(StateMachine):
    greeting = State("greeting", initial=True)
    listening = State("listening")
    announcing = State("announcing")
    querying = State("querying")
    reporting = State("reporting")
    farewell = State("farewell")
    ended = State("ended", final=True)

    greeting_done = greeting.to(listening)
    tool_called = (
        greeting.to(announcing, cond="call_is_valid", on="start_query")
        | listening.to(announcing, cond="call_is_valid", on="start_query")
        | reporting.to(announcing, cond="call_is_valid", on="start_query")
        | greeting.to.itself(internal=True, on="refuse_invalid")
        | listening.to.itself(internal=True, on="refuse_invalid")
        | reporting.to.itself(internal=True, on="refuse_invalid")
        | announcing.to.itself(internal=True, on="refuse_busy")
        | querying.to.itself(internal=True, on="refuse_busy")
    )
    turn_done = announcing.to(reporting, cond="result_ready") | announcing.to(querying)
    report_done = (
        reporting.to(listening)
        | announcing.to(reporting, cond="result_ready")
        | announcing.to(querying)
    )
    progress_due = querying.to.itself(internal=True, on="speak_progress")
    query_finished = querying.to(reporting) | announcing.to.itself(internal=True)
    link_lost = (
        greeting.to(farewell) | listening.to(farewell) | announcing.to(farewell) | querying.to(farewell)
        | reporting.to(farewell)
    )
    farewell_done = farewell.to(ended)
    hangup = (
        greeting.to(ended) | listening.to(ended) | announcing.to(ended) | querying.to(ended) | reporting.to(ended)
        | farewell.to(ended)
    )
    abort = (
        greeting.to(ended) | listening.to(ended) | announcing.to(ended) | querying.to(ended) | reporting.to(ended)
        | farewell.to(ended)
    )

    #: Events that, in a state, are expected and change nothing.
    IGNORED: dict[str, frozenset[str]] = {
        # The caller spoke before our greeting got its turn: server VAD answered first.
        "greeting": frozenset({"turn_done"}),
        # The model answered the caller without calling a tool.
        "listening": frozenset({"turn_done"}),
        # The tool-call response is still speaking its preamble; no progress over it.
        "announcing": frozenset({"progress_due"}),
        # The caller spoke during the query and the model answered; a progress update ended.
        "querying": frozenset({"turn_done", "progress_done"}),
        # A progress update or a VAD turn that was playing when the result came in ended.
        "reporting": frozenset({"turn_done", "progress_done"}),
        # The model is gone; whatever it had sent before is moot, and the query was cancelled.
        "farewell": frozenset(set(EVENTS) - {"farewell_done", "hangup", "abort"}),
        "ended": frozenset(EVENTS),
    }

    def __init__(self, call_id: str = "-") -> None:
        self.call_id = call_id
        self.outbox: list[Command] = []
        self.trace: list[str] = []
        self.current_call: ToolCall | None = None
        self.result: ToolResult | None = None
        self.end_reason: str | None = None
        self.progress_updates = 0
        super().__init__()

    # -- the one entry point for tasks --------------------------------------------------------

    def handle(self, event: str, **data: Any) -> bool:
        """Apply one event; return False when it is explicitly ignored in the current state."""
        if event not in EVENTS:
            raise CallMachineError(f"unknown call event {event!r}")
        state = self.current_state_value
        if event in self.IGNORED[state]:
            return False
        if event not in {e.id for e in self.allowed_events}:
            raise CallMachineError(f"can't handle event {event!r} in state {state!r} (call {self.call_id})")
        self.send(event, **data)
        return True

    def take_commands(self) -> list[Command]:
        commands, self.outbox = self.outbox, []
        return commands

    # -- guards --------------------------------------------------------------------------------

    def call_is_valid(self, call: ToolCall) -> bool:
        return call.problem is None

    def result_ready(self) -> bool:
        return self.result is not None

    # -- actions: record and hand work to the session; never block ------------------------------

    def on_enter_state(self, target: State) -> None:
        self.trace.append(target.id)

    def on_enter_greeting(self) -> None:
        self.outbox.append(Greet())

    def start_query(self, call: ToolCall) -> None:
        self.current_call, self.result = call, None
        self.outbox.append(StartQuery(call))

    def refuse_invalid(self, call: ToolCall) -> None:
        self.outbox.append(RefuseToolCall(call, call.problem or "invalid call"))

    def refuse_busy(self, call: ToolCall) -> None:
        running = self.current_call.name if self.current_call else "?"
        self.outbox.append(RefuseToolCall(call, f"busy: the query {running} is still running; wait for its result"))

    def speak_progress(self) -> None:
        assert self.current_call is not None
        self.progress_updates += 1
        self.outbox.append(SpeakProgress(self.current_call))

    def on_query_finished(self, result: ToolResult) -> None:
        self.result = result

    def on_enter_reporting(self) -> None:
        assert self.result is not None
        self.outbox.append(DeliverResult(self.result))

    def on_exit_reporting(self) -> None:
        self.result = None

    def on_enter_farewell(self, reason: str = "") -> None:
        self.end_reason = reason or "model link lost"
        self.outbox.append(SayFarewell(self.end_reason))

    def on_enter_ended(self, event: str, reason: str = "") -> None:
        if event != "farewell_done":
            self.end_reason = reason or event
        assert self.end_reason is not None
        self.outbox.append(EndCall(self.end_reason, by_caller=event == "hangup"))
