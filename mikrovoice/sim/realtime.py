"""A simulated OpenAI Realtime (GA) server over a real WebSocket, with a scripted model.

Serves ``/v1/realtime``. Faithful to research/openai-realtime.md: Bearer auth (401 without it),
the beta header refused (``beta_api_shape_disabled``, close 4000), ``session.created`` first,
``session.update`` validated (``session.type``, GA keys only, known audio formats),
server VAD on the audio it receives (energy, threshold/prefix/silence as configured),
``conversation_already_has_active_response`` when a second response would write to the
conversation, barge-in cancelling the active response (``turn_detected``), GA response events
(``response.output_audio.delta`` in PCMU, transcript deltas, function calls) faster than real
time. It pings its client every ``ping_interval_s`` and closes the connection of a client that
has not answered within ``pong_timeout_s``: the failure that killed the old system's calls.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from mikrovoice.logs import event
from mikrovoice.sim import voice
from mikrovoice.sim.brain import ScriptedModel
from mikrovoice.telephony import g711

log = logging.getLogger("mikrovoice.sim.model")

_SESSION_KEYS = {"type", "model", "output_modalities", "instructions", "audio", "tools", "tool_choice",
                 "max_output_tokens", "truncation", "tracing", "prompt", "include"}
_FORMATS = {"audio/pcm", "audio/pcmu", "audio/pcma"}
_CHUNK_BYTES = 800  # 100 ms of PCMU per audio delta
_FIRST_AUDIO_S = 0.35  # model latency before the first delta
_CHUNK_INTERVAL_S = 0.025  # 100 ms of audio every 25 ms: 4x real time, like the real service


@dataclass(frozen=True)
class SimModelConfig:
    # A ping every 5 s that must be answered within 20 s: any client that stops reading for
    # 25 s or more is dropped, as the old system was after its 27 s router query.
    ping_interval_s: float = 5.0
    pong_timeout_s: float = 20.0
    api_key: str | None = None  # when set, only this key is accepted


class _Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_sim{self.n:06d}"


class ClientError(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


@dataclass
class _Response:
    id: str
    metadata: dict[str, str]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    output: list[dict[str, Any]] = field(default_factory=list)
    cancel_reason: str | None = None


class SimRealtimeSession:
    def __init__(self, ws: WebSocketConnection, config: SimModelConfig, model: ScriptedModel) -> None:
        self.ws = ws
        self.config = config
        self.model = model
        self.ids = _Ids()
        self.session: dict[str, Any] = {
            "type": "realtime", "object": "realtime.session", "id": self.ids("sess"), "model": "gpt-realtime",
            "output_modalities": ["audio"], "instructions": "", "tools": [], "tool_choice": "auto",
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": 24000},
                          "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                             "silence_duration_ms": 500, "create_response": True,
                                             "interrupt_response": True}},
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"},
            },
        }
        self.active: _Response | None = None
        self.pending_calls: dict[str, str] = {}  # call_id -> tool name, awaiting output
        self.new_outputs: list[tuple[str, str]] = []
        self.user_text: str | None = None
        self.items: dict[str, int] = {}  # assistant audio item -> ms of audio
        self._input = bytearray()
        self._input_ms = 0
        self._speech: bytearray | None = None
        self._speech_item = ""
        self._speech_start_ms = 0
        self._silent_ms = 0
        self._history = bytearray()  # recent input, for the prefix padding
        self._send_lock = trio.Lock()

    async def send(self, payload: dict[str, Any]) -> None:
        payload = {"type": payload.pop("type"), "event_id": self.ids("event"), **payload}
        async with self._send_lock:
            await self.ws.send_message(json.dumps(payload, ensure_ascii=False))

    async def error(self, exc: ClientError, event_id: str | None) -> None:
        event(log, "sim.model.client_error", level=logging.WARNING, code=exc.code, message=exc.message)
        await self.send({"type": "error", "error": {"type": "invalid_request_error", "code": exc.code,
                                                     "message": exc.message, "param": exc.param, "event_id": event_id}})

    async def run(self) -> None:
        await self.send({"type": "session.created", "session": self.session})
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            nursery.start_soon(self._pinger)
            try:
                while True:
                    message = await self.ws.get_message()
                    await self._on_client_message(message)
            except ConnectionClosed:
                pass
            nursery.cancel_scope.cancel()

    async def _pinger(self) -> None:
        while True:
            await trio.sleep(self.config.ping_interval_s)
            with trio.move_on_after(self.config.pong_timeout_s) as waited:
                await self.ws.ping()
            if waited.cancelled_caught:
                event(log, "sim.model.ping_timeout", level=logging.WARNING, timeout_s=self.config.pong_timeout_s)
                await self.ws.aclose(code=1011, reason="keepalive ping timeout")
                self.nursery.cancel_scope.cancel()
                return

    # ------------------------------------------------------------------ client events

    async def _on_client_message(self, message: str | bytes) -> None:
        event_id = None
        try:
            try:
                payload = json.loads(message)
            except ValueError:
                raise ClientError("invalid_json", "We could not parse the JSON body of your request.") from None
            if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
                raise ClientError("invalid_event", "The event must be a JSON object with a 'type'.")
            event_id = payload.get("event_id")
            handler = getattr(self, "_on_" + payload["type"].replace(".", "_"), None)
            if handler is None:
                raise ClientError("invalid_value", f"Invalid value: '{payload['type']}'. Supported values are the client events of the GA Realtime API.", "type")
            await handler(payload)
        except ClientError as exc:
            await self.error(exc, event_id)

    async def _on_session_update(self, payload: dict[str, Any]) -> None:
        session = payload.get("session")
        if not isinstance(session, dict):
            raise ClientError("missing_required_parameter", "Missing required parameter: 'session'.", "session")
        if session.get("type") != "realtime":
            raise ClientError("missing_required_parameter", "Missing required parameter: 'session.type'.", "session.type")
        unknown = set(session) - _SESSION_KEYS
        if unknown:
            name = sorted(unknown)[0]
            raise ClientError("unknown_parameter", f"Unknown parameter: 'session.{name}'.", f"session.{name}")
        for direction in ("input", "output"):
            fmt = session.get("audio", {}).get(direction, {}).get("format")
            if fmt is not None and fmt.get("type") not in _FORMATS:
                raise ClientError("invalid_value", f"Invalid value: '{fmt.get('type')}'.", f"session.audio.{direction}.format.type")
        for key, value in session.items():
            if key == "audio":
                for direction, conf in value.items():
                    self.session["audio"].setdefault(direction, {}).update(conf)
            else:
                self.session[key] = value
        await self.send({"type": "session.updated", "session": self.session})

    async def _on_input_audio_buffer_append(self, payload: dict[str, Any]) -> None:
        try:
            audio = base64.b64decode(payload.get("audio", ""), validate=True)
        except (binascii.Error, TypeError):
            raise ClientError("invalid_value", "Invalid 'audio': not base64.", "audio") from None
        await self._vad(audio)

    async def _on_input_audio_buffer_clear(self, payload: dict[str, Any]) -> None:
        self._speech = None
        await self.send({"type": "input_audio_buffer.cleared"})

    async def _on_conversation_item_create(self, payload: dict[str, Any]) -> None:
        item = payload.get("item")
        if not isinstance(item, dict):
            raise ClientError("missing_required_parameter", "Missing required parameter: 'item'.", "item")
        item = {"id": self.ids("item"), "object": "realtime.item", "status": "completed", **item}
        if item.get("type") == "function_call_output":
            call_id = item.get("call_id")
            if call_id not in self.pending_calls:
                raise ClientError("invalid_value", f"No function call with call_id '{call_id}' is awaiting output.", "item.call_id")
            if not isinstance(item.get("output"), str):
                raise ClientError("invalid_type", "Invalid type for 'item.output': expected a string.", "item.output")
            self.new_outputs.append((self.pending_calls.pop(call_id), item["output"]))
        await self.send({"type": "conversation.item.added", "item": item})
        await self.send({"type": "conversation.item.done", "item": item})

    async def _on_conversation_item_truncate(self, payload: dict[str, Any]) -> None:
        item_id, end_ms = payload.get("item_id"), payload.get("audio_end_ms")
        if item_id not in self.items:
            raise ClientError("invalid_value", f"Item '{item_id}' has no assistant audio.", "item_id")
        if not isinstance(end_ms, int) or not 0 <= end_ms <= self.items[item_id]:
            raise ClientError("invalid_value", f"audio_end_ms {end_ms} is past the item's {self.items[item_id]} ms.", "audio_end_ms")
        await self.send({"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0, "audio_end_ms": end_ms})

    async def _on_response_create(self, payload: dict[str, Any]) -> None:
        if self.active is not None:
            raise ClientError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self.active.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        params = payload.get("response") or {}
        self._start_response(params.get("instructions"), params.get("metadata") or {})

    async def _on_response_cancel(self, payload: dict[str, Any]) -> None:
        if self.active is None:
            raise ClientError("response_cancel_not_active", "Cancellation failed: no active response found.")
        self.active.cancel_reason = "client_cancelled"
        self.active.scope.cancel()

    # ------------------------------------------------------------------ server VAD

    def _vad_settings(self) -> dict[str, Any] | None:
        detection: dict[str, Any] | None = self.session["audio"]["input"].get("turn_detection")
        return detection

    async def _vad(self, audio: bytes) -> None:
        self._input += audio
        detection = self._vad_settings()
        while len(self._input) >= 160:
            block = bytes(self._input[:160])
            del self._input[:160]
            start_ms = self._input_ms
            self._input_ms += 20
            self._history = (self._history + block)[-8000:]
            if detection is None:
                continue
            loud = voice.block_rms(g711.ulaw_to_slin(block)) >= voice.SPEECH_RMS * 2 * float(detection.get("threshold", 0.5))
            if self._speech is None:
                if loud:
                    await self._speech_started(detection, start_ms, block)
            else:
                self._speech += block
                self._silent_ms = 0 if loud else self._silent_ms + 20
                if self._silent_ms >= int(detection.get("silence_duration_ms", 500)):
                    await self._speech_stopped(detection)

    async def _speech_started(self, detection: dict[str, Any], start_ms: int, block: bytes) -> None:
        prefix_blocks = int(detection.get("prefix_padding_ms", 300)) // 20
        prefix = bytes(self._history[-160 * (prefix_blocks + 1) : -160]) if prefix_blocks else b""
        self._speech = bytearray(prefix + block)
        self._speech_item = self.ids("item")
        self._speech_start_ms = start_ms
        self._silent_ms = 0
        await self.send({"type": "input_audio_buffer.speech_started", "audio_start_ms": start_ms, "item_id": self._speech_item})
        if self.active is not None and detection.get("interrupt_response", True):
            self.active.cancel_reason = "turn_detected"
            self.active.scope.cancel()

    async def _speech_stopped(self, detection: dict[str, Any]) -> None:
        assert self._speech is not None
        audio, self._speech = bytes(self._speech), None
        item_id = self._speech_item
        await self.send({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": self._input_ms, "item_id": item_id})
        await self.send({"type": "input_audio_buffer.committed", "previous_item_id": None, "item_id": item_id})
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
                "content": [{"type": "input_audio", "transcript": None}]}
        await self.send({"type": "conversation.item.added", "item": item})
        await self.send({"type": "conversation.item.done", "item": item})
        try:
            text = voice.hear(g711.ulaw_to_slin(audio))
        except voice.UnintelligibleSpeech as exc:
            text = None
            await self.send({"type": "conversation.item.input_audio_transcription.failed", "item_id": item_id,
                             "content_index": 0, "error": {"type": "transcription_error", "message": str(exc)}})
        else:
            await self.send({"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id,
                             "content_index": 0, "transcript": text})
        event(log, "sim.model.heard", text=text or "(unintelligible)")
        self.user_text = text
        if detection.get("create_response", True) and self.active is None:
            self._start_response(None, {})

    # ------------------------------------------------------------------ responses

    def _start_response(self, instructions: str | None, metadata: dict[str, str]) -> None:
        response = _Response(self.ids("resp"), {str(k): str(v) for k, v in metadata.items()})
        self.active = response
        turn = self.model.decide(
            user_text=self.user_text, tool_outputs=self.new_outputs, instructions=instructions,
            call_pending=bool(self.pending_calls),
        )
        self.user_text, self.new_outputs = None, []
        self.nursery.start_soon(self._respond, response, turn)

    async def _respond(self, response: _Response, turn: Any) -> None:
        status = "completed"
        await self.send({"type": "response.created", "response": self._response_body(response, "in_progress")})
        await self.send({"type": "rate_limits.updated", "rate_limits": [
            {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
            {"name": "tokens", "limit": 400000, "remaining": 398000, "reset_seconds": 0.3}]})
        with response.scope:
            await trio.sleep(_FIRST_AUDIO_S)
            if turn.text:
                await self._speak(response, turn.text)
            if turn.call is not None:
                await self._call(response, *turn.call)
        if response.scope.cancelled_caught:
            status = "cancelled"
        self.active = None
        body = self._response_body(response, status)
        if status == "cancelled":
            body["status_details"] = {"type": "cancelled", "reason": response.cancel_reason or "client_cancelled"}
        await self.send({"type": "response.done", "response": body})

    def _response_body(self, response: _Response, status: str) -> dict[str, Any]:
        return {"object": "realtime.response", "id": response.id, "status": status, "output": response.output,
                "metadata": response.metadata or None, "conversation_id": "conv_sim",
                "output_modalities": ["audio"], "status_details": None}

    async def _speak(self, response: _Response, text: str) -> None:
        item = {"id": self.ids("item"), "object": "realtime.item", "type": "message", "role": "assistant",
                "status": "in_progress", "content": []}
        response.output.append(item)
        index = len(response.output) - 1
        common = {"response_id": response.id, "item_id": item["id"], "output_index": index, "content_index": 0}
        await self.send({"type": "response.output_item.added", "response_id": response.id, "output_index": index, "item": dict(item)})
        await self.send({"type": "response.content_part.added", **common, "part": {"type": "audio", "transcript": ""}})
        audio = g711.slin_to_ulaw(voice.speak(text))
        words = text.split(" ")
        chunks = math.ceil(len(audio) / _CHUNK_BYTES)
        self.items[item["id"]] = 0
        sent_words = 0
        for i in range(chunks):
            chunk = audio[i * _CHUNK_BYTES : (i + 1) * _CHUNK_BYTES]
            await self.send({"type": "response.output_audio.delta", **common, "delta": base64.b64encode(chunk).decode()})
            self.items[item["id"]] += len(chunk) // 8
            upto = round(len(words) * (i + 1) / chunks)
            if upto > sent_words:
                await self.send({"type": "response.output_audio_transcript.delta", **common,
                                 "delta": " ".join(words[sent_words:upto]) + (" " if upto < len(words) else "")})
                sent_words = upto
            await trio.sleep(_CHUNK_INTERVAL_S)
        await self.send({"type": "response.output_audio.done", **common})
        await self.send({"type": "response.output_audio_transcript.done", **common, "transcript": text})
        item.update(status="completed", content=[{"type": "output_audio", "transcript": text}])
        await self.send({"type": "response.content_part.done", **common, "part": {"type": "audio", "transcript": text}})
        await self.send({"type": "response.output_item.done", "response_id": response.id, "output_index": index, "item": item})
        event(log, "sim.model.said", text=text, kind=response.metadata.get("kind", "turn"))

    async def _call(self, response: _Response, name: str, arguments: dict[str, Any]) -> None:
        call_id = self.ids("call")
        args = json.dumps(arguments, ensure_ascii=False)
        item = {"id": self.ids("item"), "object": "realtime.item", "type": "function_call", "status": "in_progress",
                "name": name, "call_id": call_id, "arguments": ""}
        response.output.append(item)
        index = len(response.output) - 1
        await self.send({"type": "response.output_item.added", "response_id": response.id, "output_index": index, "item": dict(item)})
        common = {"response_id": response.id, "item_id": item["id"], "output_index": index, "call_id": call_id}
        await self.send({"type": "response.function_call_arguments.delta", **common, "delta": args})
        await self.send({"type": "response.function_call_arguments.done", **common, "name": name, "arguments": args})
        item.update(status="completed", arguments=args)
        self.pending_calls[call_id] = name
        await self.send({"type": "response.output_item.done", "response_id": response.id, "output_index": index, "item": item})
        event(log, "sim.model.called", tool=name, arguments=args)


async def serve_model(
    host: str, port: int, config: SimModelConfig = SimModelConfig(),
    *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the simulated Realtime API on ``ws://host:port/v1/realtime``.

    ``started()`` hands back trio-websocket's ``WebSocketServer`` (its ``.port`` is the port).
    """

    async def handler(request: WebSocketRequest) -> None:
        if not request.path.startswith("/v1/realtime"):
            await request.reject(404, body=b'{"error":{"message":"Not found"}}')
            return
        headers = {k.lower(): v for k, v in request.headers}
        auth = headers.get(b"authorization", b"")
        if not auth.startswith(b"Bearer ") or len(auth) <= 7 or (
            config.api_key is not None and auth[7:] != config.api_key.encode()
        ):
            await request.reject(401, body=b'{"error":{"type":"invalid_request_error","code":"invalid_api_key",'
                                            b'"message":"Incorrect API key provided."}}')
            return
        ws = await request.accept()
        if headers.get(b"openai-beta", b"").startswith(b"realtime"):
            await ws.send_message(json.dumps({"type": "error", "event_id": "event_beta", "error": {
                "type": "invalid_request_error", "code": "beta_api_shape_disabled",
                "message": "The beta Realtime API shape is disabled; remove the OpenAI-Beta header."}}))
            await ws.aclose(code=4000, reason="beta_api_shape_disabled")
            return
        try:
            await SimRealtimeSession(ws, config, ScriptedModel()).run()
        except ConnectionClosed:
            pass

    await serve_websocket(handler, host, port, None, max_message_size=16 * 1024 * 1024,
                          message_queue_size=64, disconnect_timeout=2, task_status=task_status)
