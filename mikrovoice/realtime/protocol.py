"""OpenAI Realtime GA events, sans-IO: JSON text in, typed events out; intents in, JSON text out.

Theory of operation. ``parse_server_event`` turns one WebSocket text message into one typed
event (unknown types become ``Unrecognised``; garbage raises ``RealtimeProtocolError``). The
``client_*`` functions build the client events of research/openai-realtime.md section 1.4.
``ResponseGate`` enforces the one hard rule of the protocol: only one response may write to the
default conversation at a time. Callers ask the gate for responses; the gate releases
``response.create`` only when the conversation is idle, and re-queues a request the server
refused with ``conversation_already_has_active_response``.
This file imports only the standard library; it never touches a socket or a clock.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


class RealtimeProtocolError(Exception):
    """A server message that is not a valid Realtime event."""


# --------------------------------------------------------------------------- server events


@dataclass(frozen=True)
class SessionCreated:
    session: JSON


@dataclass(frozen=True)
class SessionUpdated:
    session: JSON


@dataclass(frozen=True)
class ResponseCreated:
    response_id: str
    metadata: dict[str, str]


@dataclass(frozen=True)
class ResponseDone:
    response_id: str
    status: str
    metadata: dict[str, str]
    function_calls: tuple[FunctionCall, ...] = ()


@dataclass(frozen=True)
class AudioDelta:
    response_id: str
    item_id: str
    audio: bytes  # G.711 mu-law


@dataclass(frozen=True)
class TranscriptDelta:
    response_id: str
    item_id: str
    delta: str


@dataclass(frozen=True)
class TranscriptDone:
    response_id: str
    item_id: str
    transcript: str


@dataclass(frozen=True)
class FunctionCall:
    """A completed ``function_call`` item (``response.output_item.done`` with status completed)."""

    response_id: str
    item_id: str
    call_id: str
    name: str
    arguments: str  # a JSON string, exactly as the model wrote it


@dataclass(frozen=True)
class SpeechStarted:
    audio_start_ms: int
    item_id: str


@dataclass(frozen=True)
class SpeechStopped:
    audio_end_ms: int
    item_id: str


@dataclass(frozen=True)
class InputTranscript:
    item_id: str
    transcript: str


@dataclass(frozen=True)
class ServerError:
    code: str
    message: str
    event_id: str | None  # the client event_id that caused it, when the server says


@dataclass(frozen=True)
class Unrecognised:
    """A well-formed event this client has no use for (rate_limits.updated, item.added, ...)."""

    type: str


ServerEvent = (
    SessionCreated
    | SessionUpdated
    | ResponseCreated
    | ResponseDone
    | AudioDelta
    | TranscriptDelta
    | TranscriptDone
    | FunctionCall
    | SpeechStarted
    | SpeechStopped
    | InputTranscript
    | ServerError
    | Unrecognised
)


def _str(event: JSON, key: str) -> str:
    value = event.get(key)
    if not isinstance(value, str):
        raise RealtimeProtocolError(f"{event.get('type')}: field {key!r} missing or not a string")
    return value


def _metadata(response: JSON) -> dict[str, str]:
    metadata = response.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise RealtimeProtocolError("response.metadata is not an object")
    return {str(k): str(v) for k, v in metadata.items()}


def _function_call(response_id: str, item: JSON) -> FunctionCall:
    return FunctionCall(response_id, _str(item, "id"), _str(item, "call_id"), _str(item, "name"), _str(item, "arguments"))


def parse_server_event(text: str | bytes) -> ServerEvent:
    try:
        event = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RealtimeProtocolError(f"not JSON: {str(text)[:80]!r}") from exc
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise RealtimeProtocolError(f"not a Realtime event (no 'type'): {str(text)[:80]!r}")
    kind = event["type"]
    try:
        return _parse(kind, event)
    except (KeyError, TypeError, AttributeError) as exc:
        raise RealtimeProtocolError(f"{kind}: malformed event ({exc!r})") from exc


def _parse(kind: str, event: JSON) -> ServerEvent:
    if kind == "session.created":
        return SessionCreated(event["session"])
    if kind == "session.updated":
        return SessionUpdated(event["session"])
    if kind == "response.created":
        response = event["response"]
        return ResponseCreated(_str(response, "id"), _metadata(response))
    if kind == "response.done":
        response = event["response"]
        calls = tuple(
            _function_call(response["id"], item)
            for item in response.get("output") or ()
            if item.get("type") == "function_call" and item.get("status") == "completed"
        )
        return ResponseDone(_str(response, "id"), _str(response, "status"), _metadata(response), calls)
    if kind == "response.output_audio.delta":
        try:
            audio = base64.b64decode(_str(event, "delta"), validate=True)
        except binascii.Error as exc:
            raise RealtimeProtocolError("response.output_audio.delta: delta is not base64") from exc
        return AudioDelta(_str(event, "response_id"), _str(event, "item_id"), audio)
    if kind == "response.output_audio_transcript.delta":
        return TranscriptDelta(_str(event, "response_id"), _str(event, "item_id"), _str(event, "delta"))
    if kind == "response.output_audio_transcript.done":
        return TranscriptDone(_str(event, "response_id"), _str(event, "item_id"), _str(event, "transcript"))
    if kind == "response.output_item.done":
        item = event["item"]
        if item.get("type") == "function_call" and item.get("status") == "completed":
            return _function_call(_str(event, "response_id"), item)
        return Unrecognised(kind)
    if kind == "input_audio_buffer.speech_started":
        return SpeechStarted(int(event["audio_start_ms"]), _str(event, "item_id"))
    if kind == "input_audio_buffer.speech_stopped":
        return SpeechStopped(int(event["audio_end_ms"]), _str(event, "item_id"))
    if kind == "conversation.item.input_audio_transcription.completed":
        return InputTranscript(_str(event, "item_id"), _str(event, "transcript"))
    if kind == "error":
        error = event["error"]
        return ServerError(str(error.get("code") or error.get("type")), str(error.get("message")), error.get("event_id"))
    return Unrecognised(kind)


# --------------------------------------------------------------------------- client events

_event_ids = itertools.count(1)


def _event_id(prefix: str) -> str:
    return f"{prefix}_{next(_event_ids)}"


def encode_client_event(event: JSON) -> str:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: JSON


@dataclass(frozen=True)
class SessionSettings:
    model: str
    instructions: str
    voice: str
    tools: tuple[ToolSpec, ...]
    vad_threshold: float = 0.5
    vad_prefix_padding_ms: int = 300
    vad_silence_ms: int = 500
    transcription_model: str | None = "gpt-4o-transcribe"
    language: str = "es"


def client_session_update(settings: SessionSettings) -> JSON:
    audio_input: JSON = {
        "format": {"type": "audio/pcmu"},
        "turn_detection": {
            "type": "server_vad",
            "threshold": settings.vad_threshold,
            "prefix_padding_ms": settings.vad_prefix_padding_ms,
            "silence_duration_ms": settings.vad_silence_ms,
            "create_response": True,
            "interrupt_response": True,
        },
    }
    if settings.transcription_model:
        audio_input["transcription"] = {"model": settings.transcription_model, "language": settings.language}
    return {
        "type": "session.update",
        "event_id": _event_id("su"),
        "session": {
            "type": "realtime",
            "model": settings.model,
            "output_modalities": ["audio"],
            "instructions": settings.instructions,
            "audio": {
                "input": audio_input,
                "output": {"format": {"type": "audio/pcmu"}, "voice": settings.voice},
            },
            "tools": [
                {"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters}
                for t in settings.tools
            ],
            "tool_choice": "auto",
        },
    }


def client_append_audio(ulaw: bytes) -> JSON:
    return {"type": "input_audio_buffer.append", "audio": base64.b64encode(ulaw).decode("ascii")}


def client_tool_output(call_id: str, output: str) -> JSON:
    return {
        "type": "conversation.item.create",
        "event_id": _event_id("fco"),
        "item": {"type": "function_call_output", "call_id": call_id, "output": output},
    }


def client_truncate(item_id: str, audio_end_ms: int) -> JSON:
    return {
        "type": "conversation.item.truncate",
        "event_id": _event_id("tr"),
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": audio_end_ms,
    }


def client_response_create(kind: str, instructions: str | None = None, tool_choice: str | None = None) -> JSON:
    response: JSON = {"metadata": {"kind": kind}}
    if instructions is not None:
        response["instructions"] = instructions
    if tool_choice is not None:
        response["tool_choice"] = tool_choice
    return {"type": "response.create", "event_id": _event_id("rc"), "response": response}


# --------------------------------------------------------------------------- response gate


def renew_event_id(create: JSON) -> JSON:
    """The same client event under a fresh ``event_id`` (to send again what the server refused)."""
    prefix = str(create.get("event_id", "rc")).split("_", 1)[0]
    return {**create, "event_id": _event_id(prefix)}


def _kind(create: JSON) -> str:
    return str(create["response"]["metadata"]["kind"])


@dataclass
class ResponseGate:
    """Serialises ``response.create``: at most one response in the default conversation.

    States: idle; *requested* (our create is on the wire, no ``response.created`` yet); *active*
    (a response, ours or one server VAD started, is writing). While ``held`` (the caller is
    speaking) nothing is released. A second progress request while one is pending is dropped.
    Every method returns the client events to send now, in order; creates the server refused
    (other than "a response is already active", which is retried by itself) are handed over
    once through ``take_refused()`` so that the session decides whether to ask again.
    """

    queue: deque[JSON] = field(default_factory=deque)
    requested: JSON | None = None
    active_id: str | None = None
    active_kind: str | None = None
    held: bool = False
    refused: list[tuple[JSON, ServerError]] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return self.requested is not None or self.active_id is not None

    @property
    def waiting(self) -> bool:
        """We want the model to say something and it has not started yet."""
        return bool(self.queue) or self.requested is not None

    def holds(self, kind: str) -> bool:
        """A response of this kind is queued, on the wire, or being spoken."""
        return (
            any(_kind(c) == kind for c in self.queue)
            or (self.requested is not None and _kind(self.requested) == kind)
            or (self.active_id is not None and self.active_kind == kind)
        )

    def request(self, create: JSON) -> list[JSON]:
        if _kind(create) == "progress" and self.holds("progress"):
            return []
        self.queue.append(create)
        return self._release()

    def hold(self, held: bool) -> list[JSON]:
        self.held = held
        return self._release()

    def on_created(self, event: ResponseCreated) -> list[JSON]:
        self.active_id = event.response_id
        self.active_kind = event.metadata.get("kind")
        if self.requested is not None and event.metadata.get("kind") == _kind(self.requested):
            self.requested = None
        return []

    def on_done(self, event: ResponseDone) -> list[JSON]:
        if self.active_id in (event.response_id, "unknown"):
            self.active_id = self.active_kind = None
        return self._release()

    def on_error(self, event: ServerError) -> list[JSON]:
        """An error about our create on the wire (its ``event_id``, or none at all: real servers
        have sent it as null) refuses it. "Already has an active response" puts it back at the
        head of the queue for after the next done; any other reason hands it to ``take_refused``."""
        if self.requested is None or event.event_id not in (None, self.requested.get("event_id")):
            return []
        refused, self.requested = self.requested, None
        if event.code == "conversation_already_has_active_response":
            self.queue.appendleft(renew_event_id(refused))
            if self.active_id is None:
                self.active_id = "unknown"  # the server says one is active; its done will free us
        else:
            self.refused.append((refused, event))
        return self._release()

    def take_refused(self) -> list[tuple[JSON, ServerError]]:
        refused, self.refused = self.refused, []
        return refused

    def cancel_kind(self, kind: str) -> None:
        """Drop queued (not yet sent) requests of one kind, e.g. progress once the result is in."""
        self.queue = deque(c for c in self.queue if _kind(c) != kind)

    def _release(self) -> list[JSON]:
        if self.busy or self.held or not self.queue:
            return []
        self.requested = self.queue.popleft()
        return [self.requested]
