"""The call statechart: one phone call as a python-statemachine ``StateChart``.

Theory of operation. Everything that decides what a call does next lives here; nothing here
does I/O, owns a timer or awaits. Trio tasks in the call's nursery (``call.session``) turn what
they observe into events (``machine.handle("tool_called", call=...)``); the chart transitions
and appends ``Command`` objects to ``machine.outbox``; the session drains the outbox and carries
the commands out.

Shape. A call starts in ``authorising``: the caller's number and PIN are checked
(``call.auth``) before any model session exists, so an unauthorised caller costs nothing and
tells the model nothing. Admitted, the call enters ``call``; turned away (wrong PIN too often,
a number not allowed or locked out, or the service at its call limit), it goes to ``refusing``
(a recorded refusal) and ends. While the call is live, two regions run in parallel inside ``call``:

- ``conversation``: greeting, listening, announcing (the model said it will look), querying,
  reporting. It is written in terms of a voice model that speaks, calls tools and finishes
  turns; nothing in it is specific to the OpenAI Realtime wire protocol, so a second backend
  (GPT-Live with client delegation) can raise the same events.
- ``link``: the model link: connecting, up, reconnecting (after a drop, with backoff), and
  recycling (a fresh session before OpenAI's 60-minute limit, at a quiet moment).

``link_up`` is seen by both regions: the link is up, and the conversation asks again for what
died with the old session (the greeting, or the report). A query keeps running through a
reconnect: its lifetime is the call's, not the socket's. Leaving ``call`` ends everything in
it at once: the caller's hang-up and a fatal error go to ``ended`` from one edge, a model that
cannot be reached goes to ``farewell`` (the recorded apology) from one edge.

Every event a task can raise is, in the active states, either a transition (maybe a
targetless one that only acts) or listed in ``IGNORED``; anything else is a bug and raises
``CallMachineError`` ("can't handle event X in state Y"), as h11 does. Async callbacks are
forbidden here: they would switch the library to its asyncio engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from statemachine import State, StateChart

from mikrovoice.call.auth import Gatekeeper
from mikrovoice.config import AuthSettings, Operator


class CallMachineError(Exception):
    """An event arrived that the call cannot be in a position to receive: a bug, never input."""


@dataclass(frozen=True)
class ToolCall:
    call_id: str
    name: str
    arguments: dict[str, Any]
    problem: str | None = None  # why the call cannot run (unknown tool, bad arguments), or None
    cancels: bool = False  # the model asks to cancel the running query ("olvídalo")


@dataclass(frozen=True)
class ToolResult:
    call: ToolCall
    output: dict[str, Any]  # what the model is told, JSON-serialisable
    ok: bool


# Commands: what the machine asks its session to do.
@dataclass(frozen=True)
class AskPin:
    """Play the PIN request (``again``: after a wrong or missing PIN, ``why`` says which) and
    collect digits."""

    again: bool = False
    why: str = ""  # "wrong_pin" or "timeout" when again


@dataclass(frozen=True)
class Admit:
    """The caller may use the assistant (``operator``: who, and their tools; None: open line)."""

    operator: Operator | None
    by: str  # "open", "caller_id" or "pin"


@dataclass(frozen=True)
class Refuse:
    """Turn the caller away: play ``prompt`` ("auth_refused" or "busy"), then ``refusal_done``."""

    reason: str  # "busy", "not_allowed", "locked_out", "out_of_attempts"
    prompt: str


@dataclass(frozen=True)
class Connect:
    """Open the first model session (the call was admitted)."""


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
class SpeakPreamble:
    """The model called a tool without a word: the caller must hear that we are looking."""

    call: ToolCall


@dataclass(frozen=True)
class SpeakProgress:
    call: ToolCall


@dataclass(frozen=True)
class SayReconnected:
    """Back after a drop longer than the caller audio the session keeps, with nothing running:
    what the caller said meanwhile was lost, so the assistant says so and asks them to repeat."""


@dataclass(frozen=True)
class AnswerTurn:
    """Back after a drop: the caller's last words reached the conversation (as text, replayed)
    but no answer did; ask the new session for one."""


@dataclass(frozen=True)
class PlayHold:
    """The caller waits for a query and no model can speak (the link is being re-established):
    play the recorded hold prompt, so that the wait is never a long silence."""


@dataclass(frozen=True)
class DeliverResult:
    result: ToolResult


@dataclass(frozen=True)
class AskReport:
    """The report response died with the old model session: ask the new one (the output is in the replay)."""

    result: ToolResult


@dataclass(frozen=True)
class CancelQuery:
    """Stop the running query; tell the model it was cancelled (``query``) and answer ``by`` (the cancel call)."""

    query: ToolCall
    by: ToolCall


@dataclass(frozen=True)
class Reconnect:
    """Open a new model session after ``delay_s``, configure it and replay the conversation."""

    attempt: int
    delay_s: float
    reason: str


@dataclass(frozen=True)
class Recycle:
    """Replace a healthy model session by a fresh one (same replay), now: the line is quiet."""


@dataclass(frozen=True)
class SayFarewell:
    """The model is gone: stop the query, play the recorded apology, then hang up."""

    reason: str
    prompt: str = "model_unavailable"  # or "shutdown": the service is stopping


@dataclass(frozen=True)
class BargeIn:
    """The caller has spoken over the assistant long enough: stop its speech where the caller is
    (drop what they have not heard, cancel the response, truncate it at what they heard)."""


@dataclass(frozen=True)
class RepeatAnswer:
    """The caller pressed the repeat digit: play the last answer again, as it was said (after
    whatever is playing)."""


@dataclass(frozen=True)
class SayHumanContact:
    """The caller pressed the human digit: say how to reach a person (Phrases.human_contact) at
    the next free moment (after an answer on its way)."""


@dataclass(frozen=True)
class EndCall:
    reason: str
    by_caller: bool = False  # the caller hung up: nothing to send; otherwise we hang up (0x00)


Command = (
    AskPin | Admit | Refuse | Connect | Greet | StartQuery | RefuseToolCall | SpeakPreamble | SpeakProgress | PlayHold | DeliverResult | AskReport
    | CancelQuery | SayReconnected | AnswerTurn
    | Reconnect | Recycle | SayFarewell | EndCall | BargeIn | RepeatAnswer | SayHumanContact
)

#: Every event the call's tasks can raise.
EVENTS = (
    "start",  # the leg started a call: caller_id (None: not told), now, busy (the service is at max_calls)
    "pin_entered",  # the caller completed a PIN (pin, now)
    "pin_timeout",  # no PIN within the digit timeout (now)
    "refusal_done",  # the refusal (or busy) prompt has been played
    "shutdown",  # the service is stopping and the call outlived the grace period
    "link_up",  # a model session is configured (session.updated checked): first, after a reconnect or a recycle;
    # audio_lost=True: the caller's audio of the gap could not all be replayed to it;
    # turn_unanswered=True: the caller's last turn is in the replay as text, with no answer
    "greeting_done",  # the greeting response is done
    "turn_done",  # a response server VAD started (the model answering the caller) is done; spoke=False: silent
    "tool_called",  # the model completed a function_call item
    "progress_due",  # the progress policy says the caller has waited long enough in silence
    "progress_done",  # a progress (or preamble) response is done
    "query_finished",  # the query's cancel scope closed: result, partial result or error
    "report_done",  # the response that reports the result is done
    "link_down",  # the model link dropped or died (or a connection attempt failed): worth reconnecting
    "recycle_due",  # the model session is old and the line is quiet: time for a fresh one
    "link_failed",  # the model cannot serve this call (key refused, session refused, out of attempts...)
    "farewell_done",  # the recorded apology has been played
    "caller_speech",  # the caller speaks (server VAD) over the assistant; speech_ms: how long it has
    # been loud; greeting_ms: how long the greeting has been playing (None: not yet)
    "dtmf",  # the caller pressed a key: digit, normalised (0-9 * # A-D, X for a flash)
    "hangup",  # the caller hung up (AudioSocket EOF, chan_websocket close)
    "abort",  # a peer sent input the call cannot go on with
)

CONVERSATION_STATES = ("greeting", "listening", "announcing", "querying", "reporting")
LINK_STATES = ("connecting", "up", "reconnecting", "recycling")


class CallMachine(StateChart):  # type: ignore[type-arg]  # the model is the chart itself
    #: An exception in a guard or an action is a bug: raise it (the StateChart default would turn
    #: it into an unhandled ``error.execution`` event and carry on silently).
    catch_errors_as_events = False

    class call(State.Parallel):  # noqa: N801  # state ids are the names in statecharts/
        class conversation(State.Compound):  # noqa: N801
            greeting = State("greeting", initial=True)
            listening = State("listening")
            announcing = State("announcing")
            querying = State("querying")
            reporting = State("reporting")

            greeting_done = greeting.to(listening)
            tool_called = (
                greeting.to(announcing, cond="starts_query", on="start_query")
                | listening.to(announcing, cond="starts_query", on="start_query")
                | reporting.to(announcing, cond="starts_query", on="start_query")
                | announcing.to(listening, cond="cancels_query", on="cancel_query")
                | querying.to(listening, cond="cancels_query", on="cancel_query")
                | greeting.to(None, on="refuse_invalid")
                | listening.to(None, on="refuse_invalid")
                | reporting.to(None, on="refuse_invalid")
                | announcing.to(None, on="refuse_busy")
                | querying.to(None, on="refuse_busy")
            )
            turn_done = (
                announcing.to(reporting, cond="result_ready", on="ask_preamble_if_silent")
                | announcing.to(querying, on="ask_preamble_if_silent")
            )
            report_done = (
                reporting.to(listening)
                | announcing.to(reporting, cond="result_ready")
                | announcing.to(querying)
            )
            progress_due = (
                querying.to(None, cond="link_is_up", on="speak_progress")
                | querying.to(None, on="play_hold")
                | announcing.to(None, unless="link_is_up", on="play_hold")
            )
            query_finished = querying.to(reporting) | announcing.to(None)
            link_up = (
                greeting.to(None, on="greet")
                | listening.to(None, cond="back_after_drop", on="say_reconnected")
                | listening.to(None, cond="turn_unanswered", on="answer_turn")
                | announcing.to(reporting, cond="result_ready")
                | announcing.to(querying)
                | reporting.to(None, on="ask_report")
            )

        class link(State.Compound):  # noqa: N801
            connecting = State("connecting", initial=True)
            up = State("up")
            reconnecting = State("reconnecting")
            recycling = State("recycling")

            link_up = connecting.to(up) | reconnecting.to(up) | recycling.to(up)
            link_down = (
                connecting.to(reconnecting, cond="may_reconnect")
                | up.to(reconnecting, cond="may_reconnect")
                | recycling.to(reconnecting, cond="may_reconnect")
                | reconnecting.to(None, cond="may_reconnect", on="reconnect")
            )
            recycle_due = up.to(recycling, cond="quiet_moment")

    authorising = State("authorising", initial=True)
    refusing = State("refusing")
    farewell = State("farewell")
    ended = State("ended", final=True)

    # Admission: the service's limit first, then the [auth] policy; a PIN may take a few tries.
    start = (authorising.to(refusing, cond="turned_away", on="refuse")
             | authorising.to(call, cond="admitted", on="admit")
             | authorising.to(None, on="ask_pin"))
    pin_entered = (authorising.to(call, cond="pin_accepted", on="admit_by_pin")
                   | authorising.to(None, cond="attempts_left", on="ask_pin_again")
                   | authorising.to(refusing, on="refuse_after_attempts"))
    pin_timeout = (authorising.to(None, cond="attempts_left", on="ask_pin_again")
                   | authorising.to(refusing, on="refuse_after_attempts"))
    refusal_done = refusing.to(ended)

    # Out of reconnect attempts: the apology. From anywhere in the live call, one edge each.
    # The caller's side, in every conversation state: speech long enough cuts the assistant (not
    # the protected start of the greeting); the repeat and human digits.
    caller_speech = call.to(None, cond="long_speech", unless="greeting_protected", on="barge_in")  # type: ignore[arg-type]
    dtmf = (call.to(None, cond="repeat_digit", on="repeat_answer")  # type: ignore[arg-type,operator]
            | call.to(None, cond="human_digit", on="say_human"))  # type: ignore[arg-type]

    link_down = call.to(farewell, unless="may_reconnect")
    link_failed = call.to(farewell)
    shutdown = call.to(farewell) | authorising.to(farewell)
    farewell_done = farewell.to(ended)
    hangup = call.to(ended) | farewell.to(ended) | authorising.to(ended) | refusing.to(ended)
    abort = call.to(ended) | farewell.to(ended) | authorising.to(ended) | refusing.to(ended)

    #: Events that, in an (atomic) state, are expected and change nothing.
    IGNORED: dict[str, frozenset[str]] = {
        # Speech too short to cut the assistant ("ajá", noise), or over the protected greeting;
        # a digit that is neither repeat nor human (logged by the session).
        "call": frozenset({"caller_speech", "dtmf"}),
        # No model session yet: its clocks have nothing to say (digits go to the PIN pad).
        "authorising": frozenset({"recycle_due"}),
        # Leaving: a PIN or its timeout that crossed the refusal, the shutdown.
        "refusing": frozenset(set(EVENTS) - {"refusal_done", "hangup", "abort"}),
        # The caller spoke before our greeting got its turn: server VAD answered first.
        "greeting": frozenset({"turn_done", "progress_done", "recycle_due"}),
        # The model answered the caller without calling a tool; a progress update or a cancelled
        # query's last update ended. (And everywhere after the greeting: a greeting response
        # that called a tool, against its tool_choice "none", ends after the call moved on.)
        "listening": frozenset({"turn_done", "progress_done", "recycle_due", "link_up", "greeting_done"}),
        # The tool-call response is still speaking its preamble; no progress over it.
        "announcing": frozenset({"progress_due", "progress_done", "recycle_due", "greeting_done"}),
        # The caller spoke during the query and the model answered; a progress update ended.
        "querying": frozenset({"turn_done", "progress_done", "recycle_due", "link_up", "greeting_done"}),
        # A progress update or a VAD turn that was playing when the result came in ended.
        "reporting": frozenset({"turn_done", "progress_done", "progress_due", "recycle_due", "greeting_done"}),
        # Link region: a recycle is only due while up; otherwise nothing to do.
        "connecting": frozenset({"recycle_due"}),
        "reconnecting": frozenset({"recycle_due"}),
        "recycling": frozenset({"recycle_due"}),
        "up": frozenset(),
        # The model is gone; whatever it had sent before is moot, and the query was cancelled.
        "farewell": frozenset(set(EVENTS) - {"farewell_done", "hangup", "abort"}),
        "ended": frozenset(EVENTS),
    }

    def __init__(self, call_id: str = "-", *, max_reconnects: int = 4, backoff_s: float = 0.5,
                 backoff_max_s: float = 4.0, min_speech_ms: int = 500, greeting_protect_ms: int = 2000,
                 repeat_digit: str = "#", human_digit: str = "0", gatekeeper: Gatekeeper | None = None,
                 caller_id: str | None = None) -> None:
        self.call_id = call_id
        #: The active states' ids, kept between events (the session asks for ``state`` on every
        #: model event and more: at 150 calls, 170 000 times a minute); None: to be computed.
        self._active_cache: frozenset[str] | None = None
        self._handling = False  # inside ``handle``: the configuration is changing, never cache it
        self.gatekeeper = gatekeeper or Gatekeeper(AuthSettings())
        self.caller_id = caller_id
        self.pin_attempts = 0  # PINs entered (or timed out) in this call
        self.operator: Operator | None = None
        self.min_speech_ms = min_speech_ms
        self.greeting_protect_ms = greeting_protect_ms
        self.repeat_key = repeat_digit
        self.human_key = human_digit
        self.barge_ins = 0
        self.max_reconnects = max_reconnects
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.outbox: list[Command] = []
        self.trace: list[str] = []  # conversation states, then farewell/ended
        self.link_trace: list[str] = []
        self.current_call: ToolCall | None = None
        self.result: ToolResult | None = None
        self.end_reason: str | None = None
        self.progress_updates = 0
        self.hold_prompts = 0
        self.reconnects = 0  # attempts made since the link was last up
        self.reconnects_total = 0
        self._dropped = False  # the link dropped since it was last up (a recycle is not a drop)
        super().__init__()

    # -- the one entry point for tasks --------------------------------------------------------

    @property
    def state(self) -> str:
        """The conversation's state while the call is live, else ``farewell`` or ``ended``."""
        for value in ("authorising", *CONVERSATION_STATES, "refusing", "farewell", "ended"):
            if value in self._active:
                return value
        raise CallMachineError(f"no conversation state in {sorted(self._active)}")  # pragma: no cover

    @property
    def link_state(self) -> str | None:
        return next((value for value in LINK_STATES if value in self._active), None)

    @property
    def _active(self) -> frozenset[str]:
        active = self._active_cache
        if active is None:
            active = frozenset(s.id for s in self.configuration)
            if not self._handling:
                self._active_cache = active
        return active

    @property
    def wants_comfort(self) -> bool:
        """Comfort audio fills the silences while the caller waits for us (never over speech:
        the playout only plays it when nobody speaks)."""
        active = self._active
        if "greeting" in active:  # a caller waiting for a model that is not there yet
            return not self.link_is_up()
        return bool(active & {"announcing", "querying", "reporting", "reconnecting", "recycling"})

    def handle(self, event: str, **data: Any) -> bool:
        """Apply one event; return False when it is explicitly ignored in the current state."""
        if event not in EVENTS:
            raise CallMachineError(f"unknown call event {event!r}")
        active = self._active
        if event not in {e.id for e in self.enabled_events(**data)}:  # guards evaluated
            if any(event in self.IGNORED.get(state, frozenset()) for state in active):
                return False
            raise CallMachineError(f"can't handle event {event!r} in state {self.state!r} (call {self.call_id})")
        self._active_cache, self._handling = None, True
        try:
            self.send(event, **data)
        finally:
            self._active_cache, self._handling = None, False
        return True

    def take_commands(self) -> list[Command]:
        commands, self.outbox = self.outbox, []
        return commands

    # -- guards --------------------------------------------------------------------------------

    def admitted(self, now: float = 0.0) -> bool:
        admission = self.gatekeeper.admit(self.caller_id, now)
        return admission.refused is None and not admission.ask_pin

    def turned_away(self, now: float = 0.0, busy: bool = False) -> bool:
        """The service is at its call limit, or the policy refuses this caller before any PIN."""
        return busy or self.gatekeeper.admit(self.caller_id, now).refused is not None

    def pin_accepted(self, pin: str = "") -> bool:
        return self.gatekeeper.check_pin(self.caller_id, pin) is not None

    def attempts_left(self) -> bool:
        """After this failed PIN, may the caller try again?"""
        return self.pin_attempts + 1 < self.gatekeeper.settings.attempts

    def starts_query(self, call: ToolCall) -> bool:
        return call.problem is None and not call.cancels

    def cancels_query(self, call: ToolCall) -> bool:
        return call.problem is None and call.cancels and self.current_call is not None

    def result_ready(self) -> bool:
        return self.result is not None

    def may_reconnect(self) -> bool:
        return self.reconnects < self.max_reconnects

    def back_after_drop(self, audio_lost: bool = False) -> bool:
        """Back after a drop, and the caller may have said something the new session cannot hear
        (the session replays the caller's recent audio; ``audio_lost``: the gap was longer)."""
        return self._dropped and audio_lost

    def turn_unanswered(self, turn_unanswered: bool = False) -> bool:
        return self._dropped and turn_unanswered

    def link_is_up(self) -> bool:
        return "up" in self._active

    def long_speech(self, speech_ms: int = 0) -> bool:
        return speech_ms >= self.min_speech_ms

    def greeting_protected(self, greeting_ms: int | None = None) -> bool:
        """The start of the greeting is the caller's "¿aló?" time: it is not cut then."""
        return "greeting" in self._active and (greeting_ms is None or greeting_ms < self.greeting_protect_ms)

    def repeat_digit(self, digit: str = "") -> bool:
        return digit == self.repeat_key

    def human_digit(self, digit: str = "") -> bool:
        return digit == self.human_key

    def quiet_moment(self) -> bool:
        return "listening" in self._active

    # -- actions: record and hand work to the session; never block ------------------------------

    def on_enter_state(self, target: State) -> None:
        if target.id in LINK_STATES:
            self.link_trace.append(target.id)
        elif target.id in ("authorising", *CONVERSATION_STATES, "refusing", "farewell", "ended"):
            self.trace.append(target.id)

    # admission

    def admit(self, now: float = 0.0) -> None:
        self.operator = self.gatekeeper.admit(self.caller_id, now).operator
        self.outbox.append(Admit(self.operator, "open" if self.gatekeeper.open else "caller_id"))

    def refuse(self, now: float = 0.0, busy: bool = False) -> None:
        if busy:
            self.end_reason = "busy: the service is at its call limit"
            self.outbox.append(Refuse("busy", "busy"))
            return
        reason = self.gatekeeper.admit(self.caller_id, now).refused or "not_allowed"
        self.end_reason = f"refused: {reason}"
        self.outbox.append(Refuse(reason, "auth_refused"))

    def ask_pin(self) -> None:
        self.outbox.append(AskPin())

    def admit_by_pin(self, pin: str = "") -> None:
        self.pin_attempts += 1
        self.operator = self.gatekeeper.check_pin(self.caller_id, pin)
        self.gatekeeper.succeeded(self.caller_id)
        self.outbox.append(Admit(self.operator, "pin"))

    def ask_pin_again(self, event: str) -> None:
        self.pin_attempts += 1
        self.outbox.append(AskPin(again=True, why="timeout" if event == "pin_timeout" else "wrong_pin"))

    def refuse_after_attempts(self, now: float = 0.0) -> None:
        self.pin_attempts += 1
        self.gatekeeper.failed(self.caller_id, now)
        self.end_reason = f"refused: no valid PIN in {self.pin_attempts} attempt(s)"
        self.outbox.append(Refuse("out_of_attempts", "auth_refused"))

    def on_enter_connecting(self) -> None:
        self.outbox.append(Connect())

    def greet(self) -> None:
        self.outbox.append(Greet())

    def start_query(self, call: ToolCall) -> None:
        self.current_call, self.result = call, None
        self.outbox.append(StartQuery(call))

    def cancel_query(self, call: ToolCall) -> None:
        assert self.current_call is not None
        self.outbox.append(CancelQuery(self.current_call, call))
        self.current_call = self.result = None

    def refuse_invalid(self, call: ToolCall) -> None:
        reason = call.problem or "no query is running: nothing to cancel"
        self.outbox.append(RefuseToolCall(call, reason))

    def refuse_busy(self, call: ToolCall) -> None:
        running = self.current_call
        if call.problem is not None:
            reason = call.problem
        elif running is not None and (call.name, call.arguments) == (running.name, running.arguments):
            reason = (f"duplicate: this same query ({running.name}) is already running; its result will be "
                      "given as soon as it arrives. Do not call it again.")
        else:
            reason = (f"busy: the query {running.name if running else '?'} is still running; wait for its result "
                      "or cancel it first")
        self.outbox.append(RefuseToolCall(call, reason))

    def ask_preamble_if_silent(self, spoke: bool = True) -> None:
        if not spoke and self.current_call is not None and self.result is None:
            self.outbox.append(SpeakPreamble(self.current_call))

    def speak_progress(self) -> None:
        assert self.current_call is not None
        self.progress_updates += 1
        self.outbox.append(SpeakProgress(self.current_call))

    def barge_in(self) -> None:
        self.barge_ins += 1
        self.outbox.append(BargeIn())

    # A digit never cuts what is playing (the answer to a question the caller just asked may be
    # on its way): the repeat plays after it, the human contact is said at the next free moment.
    def repeat_answer(self) -> None:
        self.outbox.append(RepeatAnswer())

    def say_human(self) -> None:
        self.outbox.append(SayHumanContact())

    def say_reconnected(self) -> None:
        self.outbox.append(SayReconnected())

    def answer_turn(self) -> None:
        self.outbox.append(AnswerTurn())

    def play_hold(self) -> None:
        self.hold_prompts += 1
        self.outbox.append(PlayHold())

    def ask_report(self) -> None:
        assert self.result is not None
        self.outbox.append(AskReport(self.result))

    def on_query_finished(self, result: ToolResult) -> None:
        self.result = result

    def on_enter_reporting(self) -> None:
        assert self.result is not None
        self.outbox.append(DeliverResult(self.result))

    def on_exit_reporting(self) -> None:
        self.result = None
        self.current_call = None

    # link region

    def on_enter_up(self) -> None:
        self.reconnects = 0
        self._dropped = False

    def on_enter_reconnecting(self, reason: str = "") -> None:
        self._dropped = True
        self.reconnect(reason)
        if self._active & {"announcing", "querying"}:
            self.play_hold()  # a caller waiting for a query hears at once why nothing is said

    def reconnect(self, reason: str = "") -> None:
        self.reconnects += 1
        self.reconnects_total += 1
        delay = min(self.backoff_max_s, self.backoff_s * 2 ** (self.reconnects - 1))
        self.outbox.append(Reconnect(self.reconnects, delay, reason or "model link lost"))

    def on_enter_recycling(self) -> None:
        self.outbox.append(Recycle())

    # the end

    def on_enter_farewell(self, event: str, reason: str = "") -> None:
        if event == "link_down":
            reason = f"model unreachable after {self.reconnects} reconnect attempt(s): {reason or 'link lost'}"
        if event == "shutdown":
            self.end_reason = "shutdown: the service is stopping"
            self.outbox.append(SayFarewell(self.end_reason, prompt="shutdown"))
            return
        self.end_reason = reason or "model link lost"
        self.outbox.append(SayFarewell(self.end_reason))

    def on_enter_ended(self, event: str, reason: str = "") -> None:
        if event not in ("farewell_done", "refusal_done"):
            self.end_reason = reason or event
        assert self.end_reason is not None
        self.outbox.append(EndCall(self.end_reason, by_caller=event == "hangup"))
