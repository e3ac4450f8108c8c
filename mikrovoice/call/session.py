"""CallSession: one phone call, driven by Trio tasks in one nursery, decided by CallMachine.

Tasks of a call (all in the call's nursery; when the call ends, all of them have ended):
- ``Playout.run``: paced audio to Asterisk, silence from the first moment;
- ``_link``: the model link (``RealtimeLink.run``); its end is the ``link_lost`` event;
- ``_audio_in``: Asterisk frames -> mu-law -> ``input_audio_buffer.append``; EOF is ``hangup``;
- ``_feed_clock``: the caller's audio goes to the model in chunks (``ModelFeed``); when Asterisk
  sends nothing (a silent phone), silence keeps the model's audio clock running, so that its
  server VAD can end the caller's turn;
- ``_model_events``: typed model events -> playout, response gate, machine events;
- ``_query`` (one per tool call): the fan-out inside a cancel scope whose deadline is the
  query timeout, with a progress ticker and the seed's "Consultando... (10s)" log ticker as
  children, so the caller's hang-up (nursery cancel), the deadline, or the model going away
  (``SayFarewell``) stops all of it.
Every observation becomes ``self.handle(event)``, which feeds the machine and carries out its
commands synchronously: no task can interleave between a transition and its effects.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import trio

from mikrovoice.call.machine import (
    CallMachine,
    CallMachineError,
    Command,
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
from mikrovoice.call.progress import ProgressPolicy, QuietClock
from mikrovoice.call.prompts import Prompts
from mikrovoice.config import Settings
from mikrovoice.logs import call_id as call_id_var
from mikrovoice.logs import event
from mikrovoice.net import Dialer, open_tcp
from mikrovoice.realtime import protocol as rt
from mikrovoice.realtime.link import RealtimeLink
from mikrovoice.routeros.fleet import FanOut
from mikrovoice.telephony import g711
from mikrovoice.telephony.audiosocket import (
    Audio,
    AudioSocketProtocolError,
    CallId,
    Dtmf,
    ErrorMessage,
    Hangup,
    encode,
)
from mikrovoice.telephony.inbound import ModelFeed
from mikrovoice.telephony.server import AudioSocketStream, Playout
from mikrovoice.tools import NocTools

log = logging.getLogger("mikrovoice.call")

UUID_TIMEOUT_S = 5.0
LINK_CLOSE_S = 2.0
#: After this many responses in a row refused by the model (errors other than "busy"), the model
#: is treated as unavailable: the caller hears the apology and the call ends.
MAX_REFUSALS = 3
_DONE_EVENTS = {"greeting": "greeting_done", "progress": "progress_done", "report": "report_done"}
_FAREWELL_ITEM = "prompt:model_unavailable"


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
    output_sent_at: float | None = None


@dataclass
class CallRecord:
    """What one call did, for stats, the demo summary, timelines and the simulations' invariants."""

    call_id: str = "-"
    started_at: float = 0.0
    states: list[str] = field(default_factory=list)
    state_times: list[tuple[float, str]] = field(default_factory=list)
    queries: list[QueryRecord] = field(default_factory=list)
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    progress_updates: int = 0
    model_connected_at: float | None = None
    model_link_drop: str | None = None
    model_link_lost_at: float | None = None
    end_reason: str | None = None
    ended: bool = False
    ended_at: float = 0.0
    finished: trio.Event = field(default_factory=trio.Event)


class CallSession:
    def __init__(
        self, settings: Settings, tools: NocTools, stream: trio.abc.Stream, dial: Dialer = open_tcp,
        prompts: Prompts | None = None,
    ) -> None:
        self.settings = settings
        self.tools = tools
        self.dial = dial
        self.prompts = prompts or Prompts.load(settings)
        self.asterisk = AudioSocketStream(stream)
        self.record = CallRecord(started_at=trio.current_time())
        self.policy = ProgressPolicy(settings.progress_silence_s, settings.progress_lead_s)
        self.gate = rt.ResponseGate()
        self.responses: dict[str, str] = {}  # response id -> kind
        self.handled_calls: set[str] = set()
        self.caller_speaking = False
        self.fan: FanOut | None = None
        self._query_scope: trio.CancelScope | None = None
        self._refusals_in_a_row = 0
        self._created_at: dict[str, float] = {}  # response kind -> when one of that kind last started
        self._we_hang_up = False

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> CallRecord:
        try:
            first = await self._first_message()
        except AudioSocketProtocolError as exc:
            event(log, "call.rejected", level=logging.WARNING, error=str(exc))
            first = None
        if first is None:
            await self.asterisk.stream.aclose()
            self.record.end_reason = "no call: the connection did not start with a UUID"
            self._finish()
            return self.record
        self.record.call_id = str(first)
        call_id_var.set(self.record.call_id)
        self.machine = CallMachine(self.record.call_id)
        self.record.states = self.machine.trace
        self.record.state_times.append((trio.current_time(), self.machine.current_state_value))
        self.quiet = QuietClock()
        self.feed = ModelFeed(trio.current_time(), chunk_s=self.settings.model_audio_chunk_ms / 1000)
        self.playout = Playout(on_speaking_change=lambda speaking: self._refresh_quiet())
        self.link = RealtimeLink(
            self.settings.realtime_endpoint,
            self.settings.api_key,
            ping_interval_s=self.settings.ping_interval_s,
            pong_timeout_s=self.settings.pong_timeout_s,
            connect_timeout_s=self.settings.connect_timeout_s,
            dial=self.dial,
        )
        event(log, "call.started")
        try:
            async with trio.open_nursery() as outer:
                events_send, events_recv = trio.open_memory_channel[rt.ServerEvent](256)
                self.link.send(rt.client_session_update(self._session_settings()))
                outer.start_soon(self._link, events_send)
                # Everything but the link lives in ``work``: EndCall cancels it at once (the query
                # included); then the link gets a graceful WebSocket close, bounded in time.
                async with trio.open_nursery() as work:
                    self.nursery = work
                    work.start_soon(self.playout.run, self._send_to_asterisk)
                    self._execute(self.machine.take_commands())  # the greeting, queued behind session.update
                    work.start_soon(self._model_events, events_recv)
                    work.start_soon(self._audio_in)
                    work.start_soon(self._feed_clock)
                with trio.move_on_after(LINK_CLOSE_S):
                    await self.link.aclose()
                outer.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                if self._we_hang_up:
                    await self._send_to_asterisk(encode(Hangup()))
                await self.asterisk.stream.aclose()
            self.record.progress_updates = self.machine.progress_updates
            self._finish()
            event(log, "call.ended", reason=self.record.end_reason, states=" > ".join(self.machine.trace),
                  dropped_audio_frames=self.link.dropped_audio)
        return self.record

    def _finish(self) -> None:
        self.record.ended = True
        self.record.ended_at = trio.current_time()
        self.record.finished.set()

    async def _first_message(self) -> uuid.UUID | None:
        with trio.move_on_after(UUID_TIMEOUT_S):
            message = await self.asterisk.receive()
            if isinstance(message, CallId):
                return message.value
            if isinstance(message, Hangup):
                event(log, "call.no_uuid", level=logging.WARNING,
                      error="connection closed before the UUID (is the channel answered before AudioSocket()?)")
                return None
            raise AudioSocketProtocolError(f"expected the UUID first, got {message}")
        event(log, "call.no_uuid", level=logging.WARNING, error=f"no UUID within {UUID_TIMEOUT_S:g} s")
        return None

    def _session_settings(self) -> rt.SessionSettings:
        return rt.SessionSettings(
            model=self.settings.model,
            instructions=self.settings.phrases.instructions,
            voice=self.settings.voice,
            tools=self.tools.specs,
        )

    async def _send_to_asterisk(self, data: bytes) -> None:
        """The playout's writes, then our 0x00 after the playout has stopped: never two at once."""
        try:
            await self.asterisk.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.handle("hangup", reason="the AudioSocket connection broke")

    # ------------------------------------------------------------------ the one place events go

    def handle(self, name: str, **data: Any) -> None:
        if self.machine.is_terminated:
            return
        before = self.machine.current_state_value
        try:
            self.machine.handle(name, **data)
        except CallMachineError as exc:
            event(log, "call.bug", level=logging.ERROR, error=str(exc))
            self.machine.handle("abort", reason=f"internal error: {exc}")
        after = self.machine.current_state_value
        if after != before:
            self.record.state_times.append((trio.current_time(), after))
            event(log, "call.state", state=after, via=name)
        self._execute(self.machine.take_commands())
        if after != before and not self.machine.is_terminated:
            self._refresh_quiet()

    def _execute(self, commands: list[Command]) -> None:
        phrases = self.settings.phrases
        for command in commands:
            if isinstance(command, Greet):
                instructions = phrases.greeting_instructions.format(greeting=phrases.greeting)
                self._request_response(rt.client_response_create("greeting", instructions, tool_choice="none"))
            elif isinstance(command, StartQuery):
                self.gate.cancel_kind("greeting")
                self.nursery.start_soon(self._query, command.call)
            elif isinstance(command, RefuseToolCall):
                event(log, "tool.refused", tool=command.call.name, call=command.call.call_id, reason=command.reason)
                self._send_tool_output(command.call.call_id, {"error": command.reason})
                self._request_response(rt.client_response_create("refusal"))
            elif isinstance(command, SpeakProgress):
                fan = self.fan
                assert fan is not None
                phrase = self.policy.phrase(phrases, fan.answered, fan.failed, fan.total, fan.pending)
                event(log, "query.progress_spoken", phrase=phrase, answered=fan.answered, failed=fan.failed,
                      total=fan.total)
                instructions = phrases.progress_instructions.format(phrase=phrase)
                self._request_response(rt.client_response_create("progress", instructions, tool_choice="none"))
            elif isinstance(command, DeliverResult):
                self._send_tool_output(command.result.call.call_id, command.result.output)
                self.gate.cancel_kind("progress")
                self._request_response(rt.client_response_create("report", phrases.report_instructions))
            elif isinstance(command, SayFarewell):
                self._say_farewell(command.reason)
            elif isinstance(command, EndCall):
                self.record.end_reason = command.reason
                self._we_hang_up = not command.by_caller
                self.nursery.cancel_scope.cancel()

    def _send_tool_output(self, call_id: str, output: dict[str, Any]) -> None:
        self.link.send(rt.client_tool_output(call_id, json.dumps(output, ensure_ascii=False)))
        for record in self.record.tool_calls:
            if record.call_id == call_id:
                record.output_sent_at = trio.current_time()

    def _say_farewell(self, reason: str) -> None:
        """The model is gone: stop the query, play the recorded apology; ``farewell_done`` when heard.

        What the model already said and we hold is played first: it may be the answer."""
        if self._query_scope is not None:
            self._query_scope.cancel()
        self.gate = rt.ResponseGate()  # nothing more will be asked of this link
        self.link.watching = False
        self.playout.enqueue(_FAREWELL_ITEM, self.prompts.model_unavailable)
        self.playout.end_item(_FAREWELL_ITEM)
        event(log, "call.farewell", reason=reason, prompt=self.settings.phrases.model_unavailable)
        self.nursery.start_soon(self._farewell_done)

    async def _farewell_done(self) -> None:
        await self.playout.wait_played()
        self.handle("farewell_done")

    def _request_response(self, create: rt.JSON) -> None:
        if self.machine.current_state_value not in ("farewell", "ended"):
            self._send_gated(self.gate.request(create))

    def _send_gated(self, released: list[rt.JSON]) -> None:
        """Send what the response gate released, ask again for what it refused, refresh the line."""
        for client_event in released:
            self.link.send(client_event)
        for refused, error in self.gate.take_refused():
            self._refusals_in_a_row += 1
            kind = refused["response"]["metadata"]["kind"]
            event(log, "model.refused_response", level=logging.WARNING, kind=kind, code=error.code,
                  in_a_row=self._refusals_in_a_row)
            if self._refusals_in_a_row >= MAX_REFUSALS:
                self.handle("link_lost", reason=f"the model refused {MAX_REFUSALS} responses in a row ({error.code})")
                return
            if kind != "progress":  # the progress ticker asks again by itself
                self.nursery.start_soon(self._ask_again, refused, trio.current_time())
        self._refresh_quiet()

    async def _ask_again(self, refused: rt.JSON, refused_at: float) -> None:
        """Ask again for a refused response, unless one of its kind started meanwhile: an error
        without an event_id may have been about something else, and the create went through."""
        await trio.sleep(self.policy.retry_s)
        if self._created_at.get(refused["response"]["metadata"]["kind"], -1.0) < refused_at:
            self._request_response(rt.renew_event_id(refused))

    def _refresh_quiet(self) -> None:
        self.quiet.update(self.playout.speaking or self.caller_speaking)
        self.link.watching = self.machine.current_state_value in ("announcing", "querying") or self.gate.waiting
        self.quiet.poke()

    # ------------------------------------------------------------------ tasks

    async def _link(self, events_send: trio.MemorySendChannel[rt.ServerEvent]) -> None:
        async with events_send:
            closed = await self.link.run(events_send)
        if not self.machine.is_terminated:
            self.record.model_link_drop = closed.reason
            self.record.model_link_lost_at = trio.current_time()
            event(log, "model.link_lost", level=logging.ERROR, reason=closed.reason)
            self.handle("link_lost", reason=f"model link lost: {closed.reason}")

    async def _audio_in(self) -> None:
        while True:
            try:
                message = await self.asterisk.receive()
            except AudioSocketProtocolError as exc:
                event(log, "call.bad_audiosocket", level=logging.ERROR, error=str(exc))
                self.handle("abort", reason=f"AudioSocket protocol error: {exc}")
                return
            if isinstance(message, Audio):
                if message.kind != 0x10:
                    event(log, "call.bad_audiosocket", level=logging.ERROR, error=f"audio at {message.sample_rate} Hz; use the dialplan app or c(slin)")
                    self.handle("abort", reason="AudioSocket audio is not 8 kHz slin")
                    return
                for chunk in self.feed.caller_audio(g711.slin_to_ulaw(message.payload), trio.current_time()):
                    self.link.send(rt.client_append_audio(chunk))
            elif isinstance(message, Hangup):
                self.handle("hangup", reason="caller hung up")
                return
            elif isinstance(message, Dtmf):
                event(log, "call.dtmf", digit=message.digit)
            elif isinstance(message, ErrorMessage):
                event(log, "call.asterisk_error", level=logging.WARNING, code=message.code.hex())

    async def _feed_clock(self) -> None:
        """Send what waited a whole chunk, and silence when Asterisk sends nothing (a silent caller)."""
        while True:
            await trio.sleep_until(self.feed.next_due())
            for chunk in self.feed.tick(trio.current_time()):
                self.link.send(rt.client_append_audio(chunk))

    async def _model_events(self, events: trio.MemoryReceiveChannel[rt.ServerEvent]) -> None:
        async for server_event in events:
            self._on_model_event(server_event)

    def _on_model_event(self, e: rt.ServerEvent) -> None:
        if self.machine.current_state_value in ("farewell", "ended"):
            return  # the model is gone; what it had still in flight is moot
        if isinstance(e, rt.AudioDelta):
            self.playout.enqueue(e.item_id, g711.ulaw_to_slin(e.audio))
        elif isinstance(e, rt.ResponseCreated):
            self._refusals_in_a_row = 0
            self.responses[e.response_id] = e.metadata.get("kind", "turn")
            self._created_at[self.responses[e.response_id]] = trio.current_time()
            self._send_gated(self.gate.on_created(e))
        elif isinstance(e, rt.TranscriptDone):
            self.playout.end_item(e.item_id)
            event(log, "model.said", kind=self.responses.get(e.response_id, "turn"), text=e.transcript)
        elif isinstance(e, rt.FunctionCall):
            self._on_function_call(e)
        elif isinstance(e, rt.ResponseDone):
            for call in e.function_calls:  # normally already seen in response.output_item.done
                self._on_function_call(call)
            self._send_gated(self.gate.on_done(e))
            kind = self.responses.pop(e.response_id, "turn")
            self.handle(_DONE_EVENTS.get(kind, "turn_done"))
        elif isinstance(e, rt.SpeechStarted):
            self.caller_speaking = True
            for truncation in self.playout.flush():
                event(log, "call.barge_in", item=truncation.item_id, heard_ms=truncation.played_ms)
                self.link.send(rt.client_truncate(truncation.item_id, truncation.played_ms))
            self._send_gated(self.gate.hold(True))
        elif isinstance(e, rt.SpeechStopped):
            self.caller_speaking = False
            self._send_gated(self.gate.hold(False))
        elif isinstance(e, rt.InputTranscript):
            event(log, "caller.said", text=e.transcript)
        elif isinstance(e, rt.ServerError):
            event(log, "model.error", level=logging.WARNING, code=e.code, message=e.message, event_id=e.event_id)
            self._send_gated(self.gate.on_error(e))
        elif isinstance(e, rt.SessionUpdated):
            event(log, "model.session_updated")
        elif isinstance(e, rt.SessionCreated):
            self.record.model_connected_at = trio.current_time()

    def _on_function_call(self, e: rt.FunctionCall) -> None:
        if e.call_id in self.handled_calls:
            return
        self.handled_calls.add(e.call_id)
        call = self.tools.parse_call(e.call_id, e.name, e.arguments)
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
                    with trio.move_on_after(timeout) as deadline:
                        await self.tools.run(call, fan)
                    helpers.cancel_scope.cancel()
        finally:
            self._query_scope = None
            record.ended_at = trio.current_time()
            record.duration_s = record.ended_at - record.started_at
            record.answered = len(fan.results)
            record.timed_out = deadline is not None and deadline.cancelled_caught
            record.cancelled = not record.timed_out and len(fan.pending) > 0
            record.per_router = _router_records(fan, record)
        if record.cancelled:
            event(log, "query.cancelled", tool=call.name, elapsed_s=round(record.duration_s, 2), answered=fan.answered)
            return
        output = self.tools.report(call, fan, timeout if record.timed_out else None)
        event(log, "query.finished", tool=call.name, elapsed_s=round(record.duration_s, 2), answered=fan.answered,
              failed=fan.failed, timed_out=record.timed_out)
        self.handle("query_finished", result=ToolResult(call, output, ok=not fan.errors and not record.timed_out))

    async def _progress_ticker(self) -> None:
        """Raise ``progress_due`` whenever the line has been quiet for the policy's silence.

        If the update is not heard (the machine was not ready for it, the model refused it or
        answered without a sound), it is asked for again ``retry_s`` later, still on the same quiet.
        """
        while True:
            quiet_since = await self.quiet.wait_quiet()
            with trio.move_on_at(self.policy.due_at(quiet_since)):
                await self.quiet.wait_busy()
                continue  # somebody spoke: start over
            self.handle("progress_due")
            while self.quiet.since == quiet_since and self.gate.holds("progress"):
                await self.quiet.changed()  # the model is on it
            if self.quiet.since == quiet_since:
                with trio.move_on_after(self.policy.retry_s):
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
        if name in fan.results:
            outcome, error = "ok", ""
        elif name in fan.errors:
            error = fan.errors[name]
            outcome = "timeout" if error.startswith("no answer within") else "error"
        else:
            outcome, error, ended = ("cancelled" if started is not None else "queued"), "", query.ended_at
        records.append(RouterRecord(name, started, ended, outcome, error))
    return records
