"""CallSession: one phone call, driven by Trio tasks in one nursery, decided by CallMachine.

Tasks of a call (all in the call's nursery; when the call ends, all of them have ended):
- admission (``authorising``): the caller's digits go to a ``PinPad`` (``call.auth``) and
  ``_pin_timer`` raises ``pin_timeout``; the prompts are recordings, and no model session exists
  until the machine says ``Connect``;
- ``leg.play``: the playout's audio to Asterisk at the transport's pace (``telephony.leg``:
  AudioSocket or chan_websocket; the call does not know which), comfort audio in the silences;
- ``_run_link`` (one per model session): ``RealtimeLink.run``; its end is ``link_down`` (worth a
  reconnect) or ``link_failed`` (the key, the account or the session was refused);
- ``_model_events`` (one per model session): typed model events -> playout, response gate,
  conversation ledger, machine events; events of a retired session are dropped;
- ``_audio_in``: the leg's events: caller audio (8 kHz mu-law) -> ``input_audio_buffer.append``,
  and how long the caller has been loud (barge-in: ``caller_speech``); DTMF -> ``dtmf``; the
  leg's end -> ``hangup`` (or ``abort`` for a broken peer);
- ``_feed_clock``: the caller's audio goes to the model in chunks (``ModelFeed``); when Asterisk
  sends nothing (a silent phone), silence keeps the model's audio clock running, so that its
  server VAD can end the caller's turn;
- ``_recycle_clock``: a model session older than ``session_recycle_s`` raises ``recycle_due``
  at quiet moments until the machine takes it;
- ``_query`` (one per tool call): the fan-out inside a cancel scope whose deadline is the
  query timeout, with a progress ticker and the seed's "Consultando... (10s)" log ticker as
  children. It lives in the call's nursery, not the model session's: a reconnect does not stop
  it, and its result goes to whichever session is up when it arrives. The caller's hang-up
  (nursery cancel), the deadline, the cancel tool, or the model going away (``SayFarewell``)
  stops all of it.
Every observation becomes ``self.handle(event)``, which feeds the machine and carries out its
commands synchronously: no task can interleave between a transition and its effects. The
session decides nothing the machine can decide: it moves bytes and time.
"""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import trio
from trio_websocket import ConnectionClosed

from mikrovoice.call.auth import Gatekeeper, PinPad, allows
from mikrovoice.call.comfort import ComfortAudio
from mikrovoice.call.machine import (
    Admit,
    AnswerTurn,
    AskPin,
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
    Refuse,
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
from mikrovoice.call.progress import ProgressPolicy, QuietClock
from mikrovoice.call.prompts import Prompts
from mikrovoice.config import Operator, Settings
from mikrovoice.logs import call_id as call_id_var
from mikrovoice.logs import event
from mikrovoice.net import Dialer, open_tcp
from mikrovoice.realtime import protocol as rt
from mikrovoice.realtime.conversation import Conversation
from mikrovoice.realtime.link import LinkClosed, RealtimeLink
from mikrovoice.routeros.errors import Reason
from mikrovoice.routeros.fanout import UNKNOWN, FanOut
from mikrovoice.telephony import g711
from mikrovoice.telephony.inbound import ModelFeed
from mikrovoice.telephony.leg import CallerAudio, CallerLeg, Digit, LegEnded, PeerStalled
from mikrovoice.telephony.server import Playout
from mikrovoice.tools import CANCEL_QUERY, NocTools

log = logging.getLogger("mikrovoice.call")

LINK_CLOSE_S = 2.0
#: After this many responses in a row refused by the model (errors other than "busy"), the model
#: is treated as unavailable: the caller hears the apology and the call ends.
MAX_REFUSALS = 3
_DONE_EVENTS = {"greeting": "greeting_done", "progress": "progress_done", "preamble": "progress_done",
                "human": "progress_done",  # a scripted line: its end changes nothing
                "report": "report_done"}
#: A response refused for a rate limit is asked for again after this (others: the policy's retry_s).
RATE_LIMIT_RETRY_S = 2.0
#: A refused response is asked for again after at most this, whatever the server said.
MAX_RETRY_S = 30.0
#: After the caller's turn ends, server VAD answers it within this (else it let the turn go).
TURN_RESPONSE_S = 2.0
#: Caller audio kept to be heard again by a new model session after a drop.
CALLER_AUDIO_KEPT_S = 10.0
#: A turn's audio starts this long before the server's speech_started reaches us (its VAD prefix
#: padding, our chunking, the network).
TURN_LEAD_S = 1.0
#: How often a session due for recycling looks for a quiet moment.
RECYCLE_POLL_S = 1.0
#: The caller's loudness counted for a barge-in starts this long before server VAD's speech_started
#: reaches us (its detection and our chunking delay it).
SPEECH_LEAD_S = 0.5
_FAREWELL_ITEM = "prompt:model_unavailable"
_HOLD_ITEM = "prompt:connection_hold"


@dataclass
class RouterRecord:
    name: str
    started_at: float | None
    ended_at: float | None
    outcome: str  # "ok", "error", "timeout", "cancelled" (the query ended first), "queued" (never started)
    error: str = ""


@dataclass
class QueryRecord:
    tool: str
    started_at: float
    call_id: str = ""
    ended_at: float | None = None
    duration_s: float = 0.0
    timed_out: bool = False
    cancelled: bool = False  # the call ended, or the model went away, before the query finished
    routers: int = 0
    answered: int = 0
    per_router: list[RouterRecord] = field(default_factory=list)


@dataclass
class ToolCallRecord:
    call_id: str
    name: str
    arguments: str
    received_at: float
    problem: str = ""
    result_ready_at: float | None = None  # the query's result was ready (it may wait for a free line)
    output_sent_at: float | None = None


@dataclass
class CallRecord:
    """What one call did, for stats, the demo summary, timelines and the simulations' invariants."""

    call_id: str = "-"
    started_at: float = 0.0
    states: list[str] = field(default_factory=list)  # the conversation's, then farewell/ended
    link_states: list[str] = field(default_factory=list)  # the model link's: connecting, up, reconnecting...
    state_times: list[tuple[float, str]] = field(default_factory=list)
    queries: list[QueryRecord] = field(default_factory=list)
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    progress_updates: int = 0
    model_connected_at: float | None = None
    model_link_drop: str | None = None  # the last drop's reason
    model_link_lost_at: float | None = None  # when the model was given up (farewell), if it was
    model_link_drops: list[tuple[float, str]] = field(default_factory=list)  # every drop: when, why
    reconnects: int = 0  # model sessions opened after a drop
    recycles: int = 0  # model sessions replaced before OpenAI's 60-minute limit
    dropped_audio_chunks: int = 0  # caller audio older than max_audio_lag_ms when its turn came
    comfort_frames: int = 0
    cut_by_drop: list[float] = field(default_factory=list)  # when a dying session's unfinished speech was cut
    transport: str = "-"  # "audiosocket" or "websocket"
    caller_id: str | None = None  # when the transport tells it (chan_websocket's CALLERID(num))
    barge_ins: list[tuple[float, str, int]] = field(default_factory=list)  # when, item, ms the caller heard of it
    digits: list[tuple[float, str]] = field(default_factory=list)  # DTMF the caller pressed: when, which
    repeats: int = 0  # answers played again for the repeat digit
    human_contacts: int = 0  # times the caller was told how to reach a human
    operator: str | None = None  # who the caller proved to be ([auth]); None: an open line or not admitted
    pin_attempts: int = 0
    dead_air_max_s: float = 0.0  # the longest silence the caller heard while waiting for us
    late_frames: int = 0  # playout frames sent late (the event loop was slow)
    outcome: str = ""  # completed, caller_hung_up, model_unavailable, auth_refused, busy, shutdown, error
    end_reason: str | None = None
    ended: bool = False
    ended_at: float = 0.0
    finished: trio.Event = field(default_factory=trio.Event)


class CallSession:
    def __init__(
        self, settings: Settings, tools: NocTools, leg: CallerLeg, dial: Dialer = open_tcp,
        prompts: Prompts | None = None, gatekeeper: Gatekeeper | None = None, busy: bool = False,
    ) -> None:
        self.settings = settings
        self.gatekeeper = gatekeeper or Gatekeeper(settings.auth)
        self.busy = busy  # the service is at max_calls: this call is told so and ended
        self.operator: Operator | None = None
        self.pinpad = PinPad(settings.auth.pin_length)
        self._pin_deadline: float | None = None
        self._pin_scope: trio.CancelScope | None = None
        self._pin_wait: trio.CancelScope | None = None  # the digit timeout, once the prompt has played
        self.tools = tools
        self.dial = dial
        self.prompts = prompts or Prompts.load(settings)
        self.leg = leg
        self.record = CallRecord(started_at=trio.current_time())
        self.gate = self._new_gate()
        self.conversation = Conversation()
        self.handled_calls: set[str] = set()
        self._responses_with_audio: set[str] = set()
        self.caller_speaking = False
        self.fan: FanOut | None = None
        self._query_deadline: float | None = None  # when the running question's own deadline falls
        self.link: RealtimeLink | None = None
        self._link_up_at: float | None = None
        self._session_update: rt.JSON | None = None  # the session.update sent on the current link
        self._session_checked = False
        self._pending_result: ToolResult | None = None  # a result waiting for the line to be free
        self._query_scope: trio.CancelScope | None = None
        self._query_cancelled_by: ToolCall | None = None
        self._refusals_in_a_row = 0
        self._created_at: dict[str, float] = {}  # response kind -> when one of that kind last started
        self._we_hang_up = False
        self._leg_closed = False
        self._hold_items = 0
        self._caller_audio: deque[tuple[float, bytes]] = deque()  # (sent at, mu-law chunk)
        self._turn_open_since: float | None = None  # the caller began a turn no response has answered yet
        self._link_lost_at: float | None = None
        self._audio_lost = False  # the caller audio of the last gap was more than we keep
        # The order of things, to know after a drop what the replay holds unanswered: a counter,
        # since several happen at the same instant (a response issues a call, we refuse it, the
        # response completes).
        self._order = itertools.count(1)
        self._created_order: dict[str, int] = {}  # response id -> when it was created
        self._turn_ended = 0  # the caller's last turn ended (speech_stopped)
        self._output_given = 0  # the last tool output we gave the model
        self._answered = 0  # creation order of the last completed response, or the last tool call
        self._turn_awaiting_response = False  # the caller's turn ended; server VAD's answer is not created yet
        self._open_responses: dict[str, str] = {}  # created, not done: response id -> kind
        self._transcribed: set[str] = set()  # of those, the ones whose audio we hold whole
        self._finished_items: set[str] = set()  # output items whose audio we hold whole
        # Barge-in: when the caller's current turn began (server VAD), their loud ms since, and
        # whether this turn has already cut the assistant.
        self._loudness: deque[tuple[float, int]] = deque()  # (received at, loud ms in that audio)
        self._speech_started_at: float | None = None
        self._barged_this_turn = False
        self._greeting_audio_at: float | None = None  # the greeting's first audio reached the playout
        # DTMF repeat: the audio of answers, per output item, and the last one said whole.
        self._item_audio: dict[str, bytearray] = {}
        self._last_answer: bytes | None = None
        self._human_pending = False  # the human digit was pressed; its phrase waits for a free line
        self._asterisk_heard_at = self._busy_at = trio.current_time()  # the inactivity watch

    def _new_gate(self) -> rt.ResponseGate:
        # A response the server starts by itself after our function_call_output sees the result:
        # it is the report; ours is dropped, so the result is spoken once.
        return rt.ResponseGate(absorbable=frozenset({"report"}))

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> CallRecord:
        start = await self.leg.start()
        if start is None:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self.leg.aclose()
            self.record.end_reason = "no call: the connection did not start a call"
            self._finish()
            return self.record
        # chan_websocket's ids may both be empty: a call still needs an id of its own for its logs
        self.record.call_id = start.call_id or f"anon-{uuid.uuid4()}"
        self.record.transport = self.leg.transport
        self.record.caller_id = start.caller_id
        call_id_var.set(self.record.call_id)
        settings = self.settings
        self.machine = CallMachine(
            self.record.call_id, max_reconnects=settings.reconnect_attempts, backoff_s=settings.reconnect_backoff_s,
            backoff_max_s=settings.reconnect_backoff_max_s, min_speech_ms=settings.min_speech_ms,
            greeting_protect_ms=settings.greeting_protect_ms, repeat_digit=settings.dtmf_repeat,
            human_digit=settings.dtmf_human, gatekeeper=self.gatekeeper, caller_id=start.caller_id,
        )
        self.record.states = self.machine.trace
        self.record.link_states = self.machine.link_trace
        self.record.state_times.append((trio.current_time(), self.machine.state))
        self.quiet = QuietClock()
        self.feed = ModelFeed(trio.current_time(), chunk_s=settings.model_audio_chunk_ms / 1000)
        self.playout = Playout(on_speaking_change=lambda speaking: self._refresh_quiet())
        self.playout.comfort = ComfortAudio.from_settings(settings)
        event(log, "call.started", transport=self.leg.transport, caller=start.caller_id or "-")
        try:
            async with trio.open_nursery() as outer:
                self._link_nursery = outer
                # Everything but the model links lives in ``work``: EndCall cancels it at once (the
                # query included); then the link gets a graceful WebSocket close, bounded in time.
                async with trio.open_nursery() as work:
                    self.nursery = work
                    work.start_soon(self._play)
                    self.handle("start", now=trio.current_time(), busy=self.busy)  # admission, then Connect
                    work.start_soon(self._audio_in)
                    work.start_soon(self._feed_clock)
                    work.start_soon(self._recycle_clock)
                    work.start_soon(self._inactivity_watch)
                await self._close_leg()  # the caller's side first: it does not wait for the model's close
                if self.link is not None:
                    with trio.move_on_after(LINK_CLOSE_S):
                        await self.link.aclose()
                outer.cancel_scope.cancel()
        finally:
            await self._close_leg()
            record = self.record
            record.progress_updates = self.machine.progress_updates
            record.comfort_frames = self.playout.comfort_frames
            record.dead_air_max_s = self.playout.dead_air_max_s
            record.late_frames = self.playout.late_frames
            record.pin_attempts = self.machine.pin_attempts
            record.outcome = self._outcome()
            self._finish()
            event(log, "call.ended", reason=record.end_reason, outcome=record.outcome,
                  duration_s=round(record.ended_at - record.started_at, 2), states=" > ".join(self.machine.trace),
                  link=" > ".join(self.machine.link_trace), reconnects=record.reconnects,
                  dropped_audio_chunks=record.dropped_audio_chunks, dead_air_max_s=record.dead_air_max_s,
                  late_frames=record.late_frames, operator=record.operator or "-")
        return self.record

    async def _close_leg(self) -> None:
        """Hang up if we end the call, then close the connection to Asterisk (once; bounded)."""
        if self._leg_closed:
            return
        self._leg_closed = True
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            if self._we_hang_up:
                try:
                    await self.leg.hang_up()
                except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionClosed):
                    pass  # the caller's side went first
            await self.leg.aclose()

    def _outcome(self) -> str:
        """How the call ended, in one word (the calls_total metric's label)."""
        reason, trace = self.record.end_reason or "", self.machine.trace
        if reason.startswith("busy"):
            return "busy"
        if "refusing" in trace:
            return "auth_refused"
        if reason.startswith("shutdown"):
            return "shutdown"
        if "farewell" in trace:
            return "model_unavailable"
        if not self._we_hang_up:  # the caller hung up: done, or tired of waiting for us
            return "completed" if len(trace) > 1 and trace[-2] == "listening" else "caller_hung_up"
        return "error"

    def _finish(self) -> None:
        self.record.ended = True
        self.record.ended_at = trio.current_time()
        self.record.finished.set()

    def _session_settings(self) -> rt.SessionSettings:
        return rt.SessionSettings(
            model=self.settings.model,
            instructions=self.settings.phrases.instructions,
            voice=self.settings.voice,
            tools=tuple(spec for spec in self.tools.specs
                        if allows(self.operator, spec.name) or spec.name == CANCEL_QUERY.name),
            reasoning_effort=self.settings.reasoning_effort,
        )

    async def _play(self) -> None:
        """The playout to Asterisk; if the connection breaks, the caller is gone."""
        try:
            await self.leg.play(self.playout)
        except PeerStalled as exc:  # a peer that does not read must not hold the call forever
            event(log, "call.bad_peer", level=logging.ERROR, transport=self.leg.transport, error=str(exc))
            self.handle("abort", reason=str(exc))
            return
        self.handle("hangup", reason="the connection to Asterisk broke")

    # ------------------------------------------------------------------ the model session

    def _open_link(self, resume: bool) -> None:
        """A new model session: configure it, replay the conversation if resuming, and serve it.

        The session counts as up (``link_up``) only once its ``session.updated`` has been checked."""
        settings = self.settings
        link = RealtimeLink(
            settings.realtime_endpoint, settings.api_key,
            ping_interval_s=settings.ping_interval_s, pong_timeout_s=settings.pong_timeout_s,
            connect_timeout_s=settings.connect_timeout_s, max_audio_lag_s=settings.max_audio_lag_ms / 1000,
            dial=self.dial,
        )
        # Always watched: a dead server is found within two seconds, whatever the call is doing
        # (a probe costs one ping after a second without a byte from the server).
        link.watching = True
        self.link = link
        self._session_checked = False
        self.caller_speaking = False  # a new session has heard nothing yet: no turn is open
        self._turn_awaiting_response = False
        self.gate = self._new_gate()
        self._session_update = rt.client_session_update(self._session_settings())
        link.send(self._session_update)
        if resume:
            replay = self.conversation.replay()
            for item in replay:
                link.send(item)
            since = self._unheard_since()
            audio = self._unheard_caller_audio(since)
            self._audio_lost = since is not None and trio.current_time() - since > CALLER_AUDIO_KEPT_S
            for chunk in audio:
                link.send(rt.client_append_audio(chunk))
            event(log, "model.replay", items=len(replay), caller_audio_s=round(len(audio) * self.feed.chunk_s, 1))
        events_send, events_recv = trio.open_memory_channel[rt.ServerEvent](256)
        self._link_nursery.start_soon(self._run_link, link, events_send)
        self.nursery.start_soon(self._model_events, link, events_recv)
        self._refresh_quiet()

    def _retire_link(self) -> None:
        """Close the current session in the background; whatever it still says is ignored."""
        old, self.link = self.link, None
        if old is not None:
            self.record.dropped_audio_chunks += old.dropped_audio
            self._link_nursery.start_soon(old.aclose)

    async def _run_link(self, link: RealtimeLink, events_send: trio.MemorySendChannel[rt.ServerEvent]) -> None:
        async with events_send:
            closed = await link.run(events_send)
        if link is not self.link or self.machine.is_terminated:
            return  # retired on purpose (reconnect, recycle, the call's end)
        self.record.dropped_audio_chunks += link.dropped_audio
        self._link_lost(closed, last_heard=link.last_heard)

    def _link_lost(self, closed: LinkClosed, last_heard: float | None = None) -> None:
        now = trio.current_time()
        # The caller's audio since the server last gave a sign of life may never have been
        # processed: the new session hears it again (see _unheard_caller_audio).
        lost_at = min(now, last_heard) if last_heard is not None else now
        self._link_lost_at = lost_at if self._link_lost_at is None else min(self._link_lost_at, lost_at)
        self.record.model_link_drop = closed.reason
        self.record.model_link_drops.append((now, closed.reason))
        self.link = None
        level = logging.ERROR if closed.fatal else logging.WARNING
        event(log, "model.link_lost", level=level, reason=closed.reason, fatal=closed.fatal)
        self._finish_spoken_responses()
        self.handle("link_failed" if closed.fatal else "link_down", reason=f"model link lost: {closed.reason}")

    def _finish_spoken_responses(self) -> None:
        """The dead session's responses. One whose audio we hold whole (its transcript is done)
        was said, even if its response.done never came: the caller hears it from our playout, and
        its end is raised now, so that the new session is not asked to say it again. One cut off
        mid-stream is cut here too (the caller hears what was already played, not a fragment
        resumed later): the machine asks the new session for it whole."""
        unfinished = [r for r in self._open_responses if r not in self._transcribed]
        if unfinished:
            for truncation in self.playout.flush_items(lambda item: not item.startswith("prompt:")
                                                       and item not in self._finished_items):
                self.record.cut_by_drop.append(trio.current_time())
                event(log, "model.response_cut_by_drop", item=truncation.item_id, heard_ms=truncation.played_ms)
        for response_id in [r for r in self._open_responses if r in self._transcribed]:
            kind = self._open_responses.pop(response_id)
            event(log, "model.response_spoken_before_drop", kind=kind)
            done = _DONE_EVENTS.get(kind, "turn_done")
            self.handle(done, **({"spoke": True} if done == "turn_done" else {}))
        self._open_responses.clear()
        self._transcribed.clear()

    async def _reconnect_after(self, delay_s: float) -> None:
        await trio.sleep(delay_s)
        if self.machine.link_state in ("reconnecting", "recycling"):
            self.record.reconnects += 1
            self._open_link(resume=True)

    def _on_session_updated(self, session: rt.JSON) -> None:
        if self._session_checked:
            return
        assert self._session_update is not None
        problem = rt.check_session_updated(self._session_update, session)
        if problem is not None:
            event(log, "model.session_refused", level=logging.ERROR, problem=problem)
            self._retire_link()
            self.handle("link_failed", reason=f"the model session is not what we asked: {problem}")
            return
        self._session_checked = True
        self._link_up_at = trio.current_time()
        if self.record.model_connected_at is None:
            self.record.model_connected_at = self._link_up_at
        self._refusals_in_a_row = 0
        self._link_lost_at = None  # this session heard whatever the caller said since
        # The replay holds a caller's turn or a tool output (a refusal, a cancellation) that no
        # response created after it completed: the old session died before it could answer.
        unanswered = ((self._turn_open_since is None and self._turn_ended > self._answered)
                      or self._output_given > self._answered)
        self.handle("link_up", audio_lost=self._audio_lost, turn_unanswered=unanswered)
        self._audio_lost = False
        self._deliver_pending()

    # ------------------------------------------------------------------ the one place events go

    def handle(self, name: str, **data: Any) -> None:
        if self.machine.is_terminated:
            return
        before = self.machine.state
        try:
            self.machine.handle(name, **data)
        except CallMachineError as exc:
            event(log, "call.bug", level=logging.ERROR, error=str(exc))
            self.machine.handle("abort", reason=f"internal error: {exc}")
        after = self.machine.state
        if after != before:
            self.record.state_times.append((trio.current_time(), after))
            event(log, "call.state", state=after, via=name, link=self.machine.link_state or "-")
        self._execute(self.machine.take_commands())
        if not self.machine.is_terminated:
            self._refresh_quiet()

    def _execute(self, commands: list[Command]) -> None:
        phrases = self.settings.phrases
        for command in commands:
            if isinstance(command, AskPin | Admit | Refuse):
                self._admission(command)
            elif isinstance(command, Connect):
                self._open_link(resume=False)
            elif isinstance(command, Greet):
                instructions = phrases.greeting_instructions.format(greeting=phrases.greeting)
                self._request_response("greeting", instructions, tool_choice="none")
            elif isinstance(command, StartQuery):
                self.gate.cancel_kind("greeting")
                self.nursery.start_soon(self._query, command.call)
            elif isinstance(command, RefuseToolCall):
                event(log, "tool.refused", tool=command.call.name, call=command.call.call_id, reason=command.reason)
                self._send_tool_output(command.call.call_id, {"error": command.reason})
                self._request_response("refusal")
            elif isinstance(command, SpeakPreamble):
                event(log, "query.preamble", tool=command.call.name, phrase=phrases.preamble)
                instructions = phrases.progress_instructions.format(phrase=phrases.preamble)
                self._request_response("preamble", instructions, tool_choice="none")
            elif isinstance(command, SpeakProgress):
                fan = self.fan
                assert fan is not None
                now = trio.current_time()
                failures = [(o.router, o.reasons[0]) for o in fan.outcomes.values() if o.status == UNKNOWN and o.reasons]
                phrase = self.policy.phrase(phrases, fan.answered, fan.failed, fan.total, fan.pending,
                                            wait_left_s=self._wait_left_s(fan, now), failures=failures)
                event(log, "query.progress_spoken", phrase=phrase, answered=fan.answered, failed=fan.failed,
                      total=fan.total)
                instructions = phrases.progress_instructions.format(phrase=phrase)
                self._request_response("progress", instructions, tool_choice="none")
            elif isinstance(command, AnswerTurn):
                event(log, "model.answer_replayed_turn")
                self._request_response("turn")
            elif isinstance(command, SayReconnected):
                instructions = phrases.say_instructions.format(phrase=phrases.reconnected)
                self._request_response("reconnected", instructions, tool_choice="none")
            elif isinstance(command, PlayHold):
                if self.prompts.connection_hold and not self.playout.speaking and not self.caller_speaking:
                    event(log, "query.hold_prompt", prompt=phrases.connection_hold)
                    self._hold_items += 1
                    item = f"{_HOLD_ITEM}:{self._hold_items}"
                    self.playout.enqueue(item, self.prompts.connection_hold)
                    self.playout.end_item(item)
            elif isinstance(command, DeliverResult):
                self.gate.cancel_kind("progress")
                self.gate.cancel_kind("preamble")
                self._pending_result = command.result
                for record in self.record.tool_calls:
                    if record.call_id == command.result.call.call_id:
                        record.result_ready_at = trio.current_time()
                self._deliver_pending()
            elif isinstance(command, AskReport):
                if self._pending_result is not None:
                    self._deliver_pending()  # the output never reached the model: send it, then ask
                else:  # the output is in the replay; the response that was to say it died
                    self._request_response("report", phrases.report_instructions)
            elif isinstance(command, CancelQuery):
                self._cancel_query(command)
            elif isinstance(command, Reconnect):
                event(log, "model.reconnect", attempt=command.attempt, delay_s=command.delay_s, reason=command.reason)
                self._retire_link()
                self._session_checked = False
                self.gate = self._new_gate()  # what we asked of the dead session is void
                self.nursery.start_soon(self._reconnect_after, command.delay_s)
            elif isinstance(command, Recycle):
                age = trio.current_time() - (self._link_up_at or 0.0)
                event(log, "model.recycle", session_age_s=round(age))
                self.record.recycles += 1
                self._retire_link()
                self._open_link(resume=True)
            elif isinstance(command, SayFarewell):
                self._say_farewell(command.reason, command.prompt)
            elif isinstance(command, BargeIn):
                self._barge_in()
            elif isinstance(command, RepeatAnswer):
                self._repeat_answer()
            elif isinstance(command, SayHumanContact):
                self.record.human_contacts += 1
                event(log, "call.dtmf_human", phrase=phrases.human_contact)
                self._human_pending = True
                self._deliver_pending()
            elif isinstance(command, EndCall):
                self.record.end_reason = command.reason
                self._we_hang_up = not command.by_caller
                self.nursery.cancel_scope.cancel()

    # ------------------------------------------------------------------ admission

    def _admission(self, command: AskPin | Admit | Refuse) -> None:
        """The recorded prompts of authorisation and the PIN timer; the machine decides."""
        attempt = self.machine.pin_attempts
        if isinstance(command, AskPin):
            if command.again:
                event(log, "auth.result", result=command.why, attempt=attempt)
            self.pinpad.clear()
            self._play_prompt("pin_wrong" if command.again else "pin_request")
            self._start_pin_timer()
            return
        self._stop_pin_timer()
        if isinstance(command, Admit):
            self.operator = command.operator
            self.record.operator = command.operator.name if command.operator else None
            if command.by != "open":
                event(log, "auth.result", result="accepted", by=command.by, operator=self.record.operator,
                      attempt=attempt)
            self.playout.flush()  # what is left of a PIN prompt
            return
        if command.reason == "busy":
            event(log, "call.busy", level=logging.WARNING, max_calls=self.settings.max_calls)
        else:
            result = "locked_out" if command.reason == "locked_out" else "refused"
            event(log, "auth.result", level=logging.WARNING, result=result, reason=command.reason, attempt=attempt)
        self._play_prompt(command.prompt)
        self.nursery.start_soon(self._refusal_played)

    def _play_prompt(self, name: str) -> None:
        """One of the recordings played without a model, in place of whatever is playing."""
        self.playout.flush()
        item = f"prompt:{name}:{len(self.machine.trace)}:{self.machine.pin_attempts}"
        self.playout.enqueue(item, getattr(self.prompts, name))
        self.playout.end_item(item)
        event(log, "call.prompt", prompt=name, text=getattr(self.settings.phrases, name))

    async def _refusal_played(self) -> None:
        await self.playout.wait_played()
        self.handle("refusal_done")

    def _start_pin_timer(self) -> None:
        self._stop_pin_timer()
        self._pin_deadline = None
        self._pin_scope = trio.CancelScope()
        self.nursery.start_soon(self._pin_timer, self._pin_scope)

    def _stop_pin_timer(self) -> None:
        if self._pin_scope is not None:
            self._pin_scope.cancel()
        self._pin_scope = self._pin_wait = None

    async def _pin_timer(self, scope: trio.CancelScope) -> None:
        """No digit for ``digit_timeout_s`` after the prompt ended, or since the last digit: what was
        typed is the PIN (none at all: ``pin_timeout``). A digit moves the deadline (``_pin_digit``)."""
        with scope:
            await self.playout.wait_played()
            deadline = self._pin_deadline or trio.current_time() + self.settings.auth.digit_timeout_s
            with trio.move_on_at(deadline) as self._pin_wait:
                await trio.sleep_forever()
            self._pin_scope = self._pin_wait = None
            pin = self.pinpad.flush()
            if pin:
                self.handle("pin_entered", pin=pin, now=trio.current_time())
            else:
                self.handle("pin_timeout", now=trio.current_time())

    def _pin_digit(self, digit: str) -> None:
        """A key pressed while authorising: it cuts the prompt (type-ahead) and goes to the PIN pad."""
        event(log, "call.dtmf", digit="*", state="authorising")  # never a PIN digit in a log
        if digit == "#" and not self.pinpad.entered:
            return  # the "#" after a PIN already complete at its length: it must not cut what follows
        if self.playout.has_speech or self.playout.speaking:
            self.playout.flush()
        deadline = trio.current_time() + self.settings.auth.digit_timeout_s
        if self._pin_wait is not None:
            self._pin_wait.deadline = deadline
        else:
            self._pin_deadline = deadline  # the prompt was still playing
        pin = self.pinpad.press(digit)
        if pin:
            self.handle("pin_entered", pin=pin, now=trio.current_time())

    def shutdown(self) -> None:
        """The service is stopping: say goodbye (the recorded prompt) and end."""
        if getattr(self, "machine", None) is not None:
            self.handle("shutdown")

    # ------------------------------------------------------------------ DTMF

    def _repeat_answer(self) -> None:
        """The repeat digit: the last answer again, as the caller heard it the first time (our
        copy of its audio: no model round trip, the same words)."""
        if self._last_answer is None:
            event(log, "call.dtmf_repeat", outcome="nothing to repeat yet")
            return
        self.record.repeats += 1
        item = f"prompt:repeat:{self.record.repeats}"
        event(log, "call.dtmf_repeat", outcome="repeated", seconds=round(len(self._last_answer) / 16000, 1))
        self.playout.enqueue(item, self._last_answer)
        self.playout.end_item(item)

    @property
    def policy(self) -> ProgressPolicy:
        tool = self.machine.current_call.name if self.machine.current_call else ""
        silence = self.settings.progress_silence_by_tool.get(tool, self.settings.progress_silence_s)
        return ProgressPolicy(silence, self.settings.progress_lead_s)

    def _send_model(self, client_event: rt.JSON) -> None:
        """To the model session that is up; while none is, the machine asks again on ``link_up``."""
        if self.link is not None and self._session_checked:
            self.link.send(client_event)

    def _send_caller_audio(self, chunk: bytes, read_at: float | None = None) -> None:
        """To the model; also kept for a few seconds, so that a new session after a drop hears
        what the caller was saying when the old one died, and what they said meanwhile."""
        now = trio.current_time()
        self._caller_audio.append((now, chunk))
        while self._caller_audio and self._caller_audio[0][0] < now - CALLER_AUDIO_KEPT_S:
            self._caller_audio.popleft()
        if self.link is not None and self._session_checked:
            self.link.send(rt.client_append_audio(chunk), read_at)

    def _unheard_since(self) -> float | None:
        """Since when the model may not have heard the caller whole: their unanswered turn's
        start, or the dead server's last sign of life, whichever came first (None: nothing lost)."""
        starts = [t for t in (self._turn_open_since, self._link_lost_at) if t is not None]
        return min(starts) if starts else None

    def _unheard_caller_audio(self, since: float | None) -> list[bytes]:
        return [] if since is None else [chunk for at, chunk in self._caller_audio if at >= since]

    def _send_tool_output(self, call_id: str, output: dict[str, Any]) -> None:
        text = json.dumps(output, ensure_ascii=False)
        self.conversation.function_output(call_id, text)  # the replay carries it if this session dies
        self._output_given = next(self._order)
        self._send_model(rt.client_tool_output(call_id, text))
        for record in self.record.tool_calls:
            if record.call_id == call_id:
                record.output_sent_at = trio.current_time()

    def _deliver_pending(self) -> None:
        """Hand the result to the session that is up once the line is free: nobody speaking, no
        response open. The late-result rule: an answer the caller is hearing, or asked for, comes
        first, then the result, once (a model given the output during the caller's new question
        answers the result and forgets the question)."""
        result = self._pending_result
        if (result is None and not self._human_pending) or self.link is None or not self._session_checked:
            return
        if self.gate.busy or self.gate.held or self.caller_speaking or self._turn_awaiting_response:
            return  # asked again on every change of the gate and of the line
        if self._human_pending:  # the human digit's phrase, by the same rule; the result after it
            self._human_pending = False
            phrases = self.settings.phrases
            self._request_response("human", phrases.say_instructions.format(phrase=phrases.human_contact),
                                   tool_choice="none")
            return
        assert result is not None
        self._pending_result = None
        self._send_tool_output(result.call.call_id, result.output)
        self._request_response("report", self.settings.phrases.report_instructions, after_output=result.call.call_id)

    async def _turn_response_due(self, turn: int) -> None:
        """A turn server VAD did not answer within TURN_RESPONSE_S (noise it committed and let go)
        holds nothing back any more."""
        await trio.sleep(TURN_RESPONSE_S)
        if self._turn_awaiting_response and self._turn_ended == turn:
            self._turn_awaiting_response = False
            self._deliver_pending()

    def _cancel_query(self, command: CancelQuery) -> None:
        event(log, "query.cancel_requested", tool=command.query.name, call=command.query.call_id)
        self._query_cancelled_by = command.by
        if self._query_scope is not None:
            self._query_scope.cancel()
        self._pending_result = None
        self.gate.cancel_kind("progress")
        self.gate.cancel_kind("preamble")
        self._send_tool_output(command.query.call_id, {"status": "cancelled", "by": "the caller"})
        self._send_tool_output(command.by.call_id, {"ok": True, "cancelled": command.query.name})
        self._request_response("cancel")

    def _say_farewell(self, reason: str, prompt: str = "model_unavailable") -> None:
        """The model is gone: stop the query, play the recorded apology; ``farewell_done`` when heard.

        What the model already said and we hold is played first: it may be the answer."""
        if self._query_scope is not None:
            self._query_scope.cancel()
        self.record.model_link_lost_at = trio.current_time()
        self._retire_link()
        self.gate = self._new_gate()  # nothing more will be asked of the model
        self.playout.comfort_on = False
        if prompt == "shutdown":
            self.playout.flush_items(lambda item: item.startswith("prompt:pin"))
        self.playout.enqueue(_FAREWELL_ITEM, getattr(self.prompts, prompt))
        self.playout.end_item(_FAREWELL_ITEM)
        event(log, "call.farewell", level=logging.WARNING if prompt == "shutdown" else logging.ERROR, reason=reason,
              prompt=getattr(self.settings.phrases, prompt))
        self.nursery.start_soon(self._farewell_done)

    async def _farewell_done(self) -> None:
        await self.playout.wait_played()
        self.handle("farewell_done")

    def _request_response(self, kind: str, instructions: str | None = None, tool_choice: str | None = None,
                          after_output: str | None = None) -> None:
        if self.machine.state in ("farewell", "ended") or self.link is None or not self._session_checked:
            return  # no model session up: the machine asks again for what matters on link_up
        # Per-response instructions replace the session's: ours carry the session's rules first.
        create = rt.client_response_create(
            kind, instructions, tool_choice=tool_choice,
            session_instructions=self.settings.phrases.instructions if instructions is not None else None,
        )
        self._send_gated(self.gate.request(create, after_output=after_output))

    def _send_gated(self, released: list[rt.JSON]) -> None:
        """Send what the response gate released, ask again for what it refused, refresh the line."""
        for client_event in released:
            self._send_model(client_event)
        for refused, error in self.gate.take_refused():
            self._refusals_in_a_row += 1
            kind = refused["response"]["metadata"]["kind"]
            effect = rt.error_effect(error, pending_create_id=refused.get("event_id"))
            event(log, "model.refused_response", level=logging.WARNING, kind=kind, code=error.code,
                  effect=effect.name.lower(), in_a_row=self._refusals_in_a_row)
            if effect is rt.ErrorEffect.FATAL:
                self.handle("link_failed", reason=f"the model cannot serve this call: {error.code}: {error.message}")
                return
            if self._refusals_in_a_row >= MAX_REFUSALS:
                self.handle("link_failed", reason=f"the model refused {MAX_REFUSALS} responses in a row ({error.code})")
                return
            if kind != "progress":  # the progress ticker asks again by itself
                delay = self.policy.retry_s
                if effect is rt.ErrorEffect.RATE_LIMITED:
                    # (a server's "try again in 999...h" must not park the answer forever)
                    delay = min(MAX_RETRY_S, max(RATE_LIMIT_RETRY_S, rt.retry_after_s(error) or 0.0))
                self.nursery.start_soon(self._ask_again, refused, trio.current_time(), delay)
        self._deliver_pending()
        self._refresh_quiet()

    async def _ask_again(self, refused: rt.JSON, refused_at: float, delay_s: float) -> None:
        """Ask again for a refused response, unless one of its kind started meanwhile: an error
        without an event_id may have been about something else, and the create went through."""
        await trio.sleep(delay_s)
        if self.link is None or not self._session_checked or self.machine.state in ("farewell", "ended"):
            return
        if self._created_at.get(refused["response"]["metadata"]["kind"], -1.0) < refused_at:
            self._send_gated(self.gate.request(rt.renew_event_id(refused)))

    def _refresh_quiet(self) -> None:
        if self.machine.is_terminated:
            return
        self._busy_at = trio.current_time()  # something happened: the inactivity clock restarts
        self.quiet.update(self.playout.speaking or self.caller_speaking)
        self.playout.comfort_on = self.machine.wants_comfort and not self.caller_speaking
        self.playout.waiting = not self.caller_speaking and (
            self.machine.state in ("greeting", "announcing", "querying", "reporting") or self._turn_awaiting_response)
        self.quiet.poke()

    # ------------------------------------------------------------------ tasks

    async def _inactivity_watch(self) -> None:
        """Nothing from Asterisk (not a frame, not a digit) for ``inactivity_timeout_s`` while the
        call is idle (listening, nobody speaking, nothing queued): the caller is gone, or the peer
        is dead or broken (it stopped sending after its first message). A silent phone behind
        silence suppression sends nothing too, so the clock runs only while nothing happens."""
        timeout = self.settings.inactivity_timeout_s
        while True:
            await trio.sleep_until(max(self._asterisk_heard_at, self._busy_at) + timeout)
            if self._call_busy():
                self._busy_at = trio.current_time()
                continue
            if trio.current_time() >= max(self._asterisk_heard_at, self._busy_at) + timeout:
                event(log, "call.inactive", level=logging.WARNING, seconds=timeout,
                      error=f"nothing from Asterisk for {timeout:g} s while the call was idle")
                self.handle("abort", reason=f"nothing from Asterisk for {timeout:g} s")
                return

    def _call_busy(self) -> bool:
        return (self.machine.state != "listening" or self.playout.speaking or self.playout.has_speech
                or self.caller_speaking or self.gate.busy)

    async def _audio_in(self) -> None:
        while True:
            leg_event = await self.leg.receive()
            self._asterisk_heard_at = trio.current_time()
            if isinstance(leg_event, CallerAudio):
                now = trio.current_time()
                if leg_event.loud_ms:
                    self._loudness.append((now, leg_event.loud_ms))
                    while self._loudness and self._loudness[0][0] < now - 10.0:
                        self._loudness.popleft()
                for chunk in self.feed.caller_audio(leg_event.ulaw, now):
                    self._send_caller_audio(chunk, leg_event.read_at)
                self.leg.expect_audio(self.feed.frames_to_chunk())
                if leg_event.loud_ms:
                    self._check_barge_in()
            elif isinstance(leg_event, Digit) and self.machine.state == "authorising":
                self._pin_digit(leg_event.digit)
            elif isinstance(leg_event, Digit):
                self.record.digits.append((trio.current_time(), leg_event.digit))
                event(log, "call.dtmf", digit=leg_event.digit, state=self.machine.state)
                self.handle("dtmf", digit=leg_event.digit)
            elif isinstance(leg_event, LegEnded):
                if leg_event.error:
                    event(log, "call.bad_peer", level=logging.ERROR, transport=self.leg.transport,
                          error=leg_event.reason)
                    self.handle("abort", reason=leg_event.reason)
                else:
                    self.handle("hangup", reason=leg_event.reason)
                return

    def _speech_ms(self) -> int:
        """How long the caller has been loud in their current turn (server VAD's speech_started,
        less SPEECH_LEAD_S for its detection delay)."""
        if self._speech_started_at is None:
            return 0
        since = self._speech_started_at - SPEECH_LEAD_S
        return sum(ms for at, ms in self._loudness if at >= since)

    def _check_barge_in(self) -> None:
        """The caller is speaking (server VAD) over the assistant: tell the machine how long, so it
        can decide on a barge-in (min_speech_ms, the greeting's protected start)."""
        if not self.caller_speaking or self._barged_this_turn:
            return
        if not (self.playout.speaking or self.playout.has_speech or self.gate.active_id is not None):
            return  # nothing to cut: the assistant is silent
        greeting_ms = (None if self._greeting_audio_at is None
                       else int((trio.current_time() - self._greeting_audio_at) * 1000))
        before = self.machine.barge_ins
        self.handle("caller_speech", speech_ms=self._speech_ms(), greeting_ms=greeting_ms)
        self._barged_this_turn = self.machine.barge_ins > before

    def _barge_in(self) -> None:
        """Stop the assistant where the caller is: the leg drops what they have not heard (AudioSocket:
        the queue, at once; chan_websocket: FLUSH_MEDIA), the response stops, and each cut item is
        truncated at what the caller heard of it (never past its real length)."""
        now = trio.current_time()
        for truncation in self.leg.barge_in(self.playout):
            self.record.barge_ins.append((now, truncation.item_id, truncation.played_ms))
            event(log, "call.barge_in", item=truncation.item_id, heard_ms=truncation.played_ms)
            if truncation.item_id.startswith("prompt:"):
                continue  # our own recording: the model never said it
            self.conversation.assistant_truncated(truncation.item_id, truncation.played_ms)
            self._send_model(rt.client_truncate(truncation.item_id, truncation.played_ms))
        active = self.gate.active_id
        if active is not None and active != "unknown" and active in self._open_responses:
            self._send_model(rt.client_response_cancel(active))

    async def _feed_clock(self) -> None:
        """Send what waited a whole chunk, and silence when Asterisk sends nothing (a silent caller)."""
        while True:
            await trio.sleep_until(self.feed.next_due())
            for chunk in self.feed.tick(trio.current_time()):
                self._send_caller_audio(chunk)
                self.leg.expect_audio(self.feed.frames_to_chunk())

    async def _recycle_clock(self) -> None:
        """OpenAI ends a session at 60 minutes: past ``session_recycle_s``, offer ``recycle_due``
        every ``RECYCLE_POLL_S``; the machine takes it at a quiet moment."""
        while True:
            up_at = self._link_up_at
            if up_at is None or self.machine.link_state != "up":
                await trio.sleep(RECYCLE_POLL_S)
                continue
            due = up_at + self.settings.session_recycle_s
            if trio.current_time() < due:
                await trio.sleep_until(due)
                continue
            if not (self.gate.busy or self.gate.waiting or self.caller_speaking or self.playout.speaking):
                self.handle("recycle_due")
            await trio.sleep(RECYCLE_POLL_S)

    async def _model_events(self, link: RealtimeLink, events: trio.MemoryReceiveChannel[rt.ServerEvent]) -> None:
        async with events:
            async for server_event in events:
                received_at = None
                if isinstance(server_event, rt.AudioDelta) and link.audio_received_at:
                    received_at = link.audio_received_at.popleft()
                if link is not self.link:
                    continue  # a retired session's leftovers
                self._on_model_event(server_event, received_at)

    def _on_model_event(self, e: rt.ServerEvent, received_at: float | None = None) -> None:
        if self.machine.state in ("farewell", "ended"):
            return  # the model is gone; what it had still in flight is moot
        if isinstance(e, rt.AudioDelta):
            if self.gate.kind_of(e.response_id) == rt.DUPLICATE:
                return  # a second report of the same result, cancelled by the gate: never played
            self._responses_with_audio.add(e.response_id)
            pcm = g711.ulaw_to_slin(e.audio)
            kind = self.gate.kind_of(e.response_id) or "turn"
            if kind == "greeting" and self._greeting_audio_at is None:
                self._greeting_audio_at = trio.current_time()
            if kind in ("turn", "report"):
                self._item_audio.setdefault(e.item_id, bytearray()).extend(pcm)
            self.playout.enqueue(e.item_id, pcm, received_at)
        elif isinstance(e, rt.ResponseCreated):
            self._refusals_in_a_row = 0
            self._turn_awaiting_response = False
            self._created_order[e.response_id] = next(self._order)

            self._send_gated(self.gate.on_created(e))
            kind = self.gate.kind_of(e.response_id) or e.metadata.get("kind", "turn")
            self._created_at[kind] = trio.current_time()
            self._open_responses[e.response_id] = kind
        elif isinstance(e, rt.TranscriptDone):
            self._transcribed.add(e.response_id)
            self._finished_items.add(e.item_id)
            self.playout.end_item(e.item_id)
            answer = self._item_audio.pop(e.item_id, None)
            if answer:
                self._last_answer = bytes(answer)  # what the repeat digit plays again
            self._ledger(self.conversation.assistant_said, e.item_id, e.transcript)
            event(log, "model.said", kind=self.gate.kind_of(e.response_id) or "turn", text=e.transcript)
        elif isinstance(e, rt.FunctionCall):
            self._on_function_call(e)
        elif isinstance(e, rt.ResponseDone):
            if e.status == "completed":
                self._answered = max(self._answered, self._created_order.get(e.response_id, 0))
                if not self.caller_speaking:
                    self._turn_open_since = None  # answered
            for call in e.function_calls:  # normally already seen in response.output_item.done
                self._on_function_call(call)
            kind = self.gate.kind_of(e.response_id) or "turn"
            self._open_responses.pop(e.response_id, None)
            self._transcribed.discard(e.response_id)
            if kind == rt.DUPLICATE:
                self._send_gated(self.gate.on_done(e))
                return
            if e.status != "completed":
                event(log, "model.response_not_completed", level=logging.WARNING, kind=kind, status=e.status,
                      reason=e.reason or "", error=e.error_code or "")
            self._send_gated(self.gate.on_done(e))
            done = _DONE_EVENTS.get(kind, "turn_done")
            spoke = e.response_id in self._responses_with_audio
            self._responses_with_audio.discard(e.response_id)
            if done == "turn_done":
                self.handle(done, spoke=spoke)
            else:
                self.handle(done)
        elif isinstance(e, rt.SpeechStarted):
            self.caller_speaking = True
            if self._turn_open_since is None:
                self._turn_open_since = trio.current_time() - TURN_LEAD_S
            self._speech_started_at = trio.current_time()
            self._barged_this_turn = False
            self.playout.comfort_on = False  # at once: no texture over the caller
            self._send_gated(self.gate.hold(True))
            self._check_barge_in()  # the caller may have been loud long enough already
        elif isinstance(e, rt.SpeechStopped):
            self.caller_speaking = False
            self._speech_started_at = None
            self._turn_ended = next(self._order)
            # Server VAD is about to answer this turn: the result waits for that answer.
            self._turn_awaiting_response = True
            self.nursery.start_soon(self._turn_response_due, self._turn_ended)
            self._send_gated(self.gate.hold(False))
        elif isinstance(e, rt.ItemAdded):
            self._send_gated(self.gate.on_item_added(e))
        elif isinstance(e, rt.InputTranscript):
            self._turn_open_since = None  # the ledger has the caller's words now
            self._ledger(self.conversation.user_said, e.item_id, e.transcript)
            event(log, "caller.said", text=e.transcript)
        elif isinstance(e, rt.ServerError):
            self._on_error(e)
        elif isinstance(e, rt.SessionUpdated):
            self._on_session_updated(e.session)
        elif isinstance(e, rt.SessionCreated):
            event(log, "model.session_created")

    def _ledger(self, record: Callable[[str, str], None], item_id: str, text: str) -> None:
        """Into the conversation ledger; an item id the server already used for the other side is
        its mistake: logged, and the turn is left out of a later replay."""
        try:
            record(item_id, text)
        except ValueError as exc:
            event(log, "model.bad_event", level=logging.WARNING, error=str(exc))

    def _on_error(self, e: rt.ServerError) -> None:
        session_update_id = self._session_update.get("event_id") if self._session_update else None
        effect = rt.error_effect(e, session_update_id=session_update_id, pending_create_id=self.gate.pending_create_id)
        level = logging.INFO if effect is rt.ErrorEffect.HARMLESS else logging.WARNING
        event(log, "model.error", level=level, code=e.code, message=e.message, event_id=e.event_id,
              effect=effect.name.lower())
        if effect is rt.ErrorEffect.SESSION_REFUSED:
            self._retire_link()
            self.handle("link_failed", reason=f"the model refused our session settings: {e.code}: {e.message}")
        elif effect is rt.ErrorEffect.SESSION_EXPIRED:
            self._retire_link()
            self._link_lost(LinkClosed(f"session expired: {e.message}", by_us=False))
        elif effect is rt.ErrorEffect.FATAL:
            self._retire_link()
            self.handle("link_failed", reason=f"the model cannot serve this call: {e.code}: {e.message}")
        else:
            self._send_gated(self.gate.on_error(e))

    def _on_function_call(self, e: rt.FunctionCall) -> None:
        if e.call_id in self.handled_calls:
            return
        self.handled_calls.add(e.call_id)
        self._turn_open_since = None  # the caller's turn is answered by this call (in the ledger)
        self._answered = max(self._answered, self._created_order.get(e.response_id, 0))
        self.conversation.function_called(e.call_id, e.name, e.arguments)
        call = self.tools.parse_call(e.call_id, e.name, e.arguments)
        if call.problem is None and not call.cancels and not allows(self.operator, call.name):
            call = replace(call, problem=f"{self.record.operator or 'este usuario'} no tiene permiso para "
                                         f"usar {call.name}; no lo intentes de nuevo")
        self.record.tool_calls.append(ToolCallRecord(e.call_id, e.name, e.arguments, trio.current_time(),
                                                     call.problem or ""))
        event(log, "tool.called", tool=e.name, call=e.call_id, arguments=e.arguments, problem=call.problem or "")
        self.handle("tool_called", call=call)

    async def _query(self, call: ToolCall) -> None:
        fan = self.fan = self.tools.plan(call)
        record = QueryRecord(call.name, trio.current_time(), call_id=call.call_id, routers=fan.total)
        self.record.queries.append(record)
        timeout = self.settings.query_timeout_s
        event(log, "query.started", tool=call.name, routers=fan.total, timeout_s=timeout)
        self._refresh_quiet()
        deadline: trio.CancelScope | None = None
        try:
            with trio.CancelScope() as self._query_scope:
                async with trio.open_nursery() as helpers:
                    helpers.start_soon(self._progress_ticker)
                    helpers.start_soon(self._query_log_ticker, fan)
                    self._query_deadline = trio.current_time() + timeout
                    with trio.move_on_at(self._query_deadline) as deadline:
                        await self.tools.run(call, fan)
                    helpers.cancel_scope.cancel()
        finally:
            self._query_scope = None
            self._query_deadline = None
            record.ended_at = trio.current_time()
            record.duration_s = record.ended_at - record.started_at
            record.answered = fan.answered
            record.timed_out = deadline is not None and deadline.cancelled_caught
            record.cancelled = not record.timed_out and len(fan.pending) > 0
            record.per_router = _router_records(fan, record)
        if record.cancelled:
            by = "the caller (cancel tool)" if self._query_cancelled_by is not None else "the call's end"
            self._query_cancelled_by = None
            event(log, "query.cancelled", tool=call.name, elapsed_s=round(record.duration_s, 2), answered=fan.answered,
                  by=by)
            return
        output = self.tools.report(call, fan, timeout if record.timed_out else None)
        event(log, "query.finished", tool=call.name, elapsed_s=round(record.duration_s, 2), answered=fan.answered,
              failed=fan.failed, timed_out=record.timed_out)
        self.handle("query_finished", result=ToolResult(call, output, ok=not fan.failed and not record.timed_out))

    def _wait_left_s(self, fan: FanOut, now: float) -> float:
        """At most how long the caller may still wait: the routers' own deadlines, within the question's."""
        left = fan.wait_left_s(now)
        if self._query_deadline is not None:
            left = min(left, max(0.0, self._query_deadline - now))
        return left

    async def _progress_ticker(self) -> None:
        """Raise ``progress_due`` whenever the line has been quiet for the policy's silence.

        If the update is not heard (the machine was not ready for it, the model refused it or
        answered without a sound), it is asked for again ``retry_s`` later, still on the same quiet.
        """
        while True:
            quiet_since = await self.quiet.wait_quiet()
            policy = self.policy
            with trio.move_on_at(policy.due_at(quiet_since)):
                await self.quiet.wait_busy()
                continue  # somebody spoke: start over
            self.handle("progress_due")
            while self.quiet.since == quiet_since and self.gate.holds("progress"):
                await self.quiet.changed()  # the model is on it
            if self.quiet.since == quiet_since:
                with trio.move_on_after(policy.retry_s):
                    await self.quiet.wait_busy()

    async def _query_log_ticker(self, fan: FanOut, every_s: float = 10.0) -> None:
        """The seed's "Consultando... (10s transcurridos)" lines, as structured events."""
        start = trio.current_time()
        while True:
            await trio.sleep(every_s)
            event(log, "query.running", elapsed_s=round(trio.current_time() - start), answered=fan.answered,
                  failed=fan.failed, total=fan.total, pending=",".join(fan.pending[:8]))


def _router_records(fan: FanOut, query: QueryRecord) -> list[RouterRecord]:
    records = []
    for name in fan.routers:
        started, ended = fan.router_started.get(name), fan.router_finished.get(name)
        outcome = fan.outcomes.get(name)
        if outcome is None:
            state, error, ended = ("cancelled" if started is not None else "queued"), "", query.ended_at
        elif outcome.status != UNKNOWN:
            state, error = "ok", "; ".join(outcome.reasons)
        else:
            timed_out = outcome.reason in (Reason.TIMEOUT, Reason.CONNECT_TIMEOUT)
            state, error = ("timeout" if timed_out else "error"), outcome.detail
        records.append(RouterRecord(name, started, ended, state, error))
    return records
