"""OpenAI Realtime GA events, sans-IO: JSON text in, typed events out; intents in, JSON text out.

Theory of operation. ``parse_server_event`` turns one WebSocket text message into one typed
event (unknown types become ``Unrecognised``; garbage raises ``RealtimeProtocolError``). The
``client_*`` functions build the client events of research/openai-realtime.md section 1.4; every
one carries an ``event_id`` whose prefix says which builder made it (``sent_event_kind``), because
the server's ``error.event_id`` echo is the only way to tell what an error is about.

Three decisions are made here, once, for the session to act on:

- ``check_session_updated``: did the server take the ``session.update`` we sent (audio formats,
  turn detection, voice, tools, model)? A session left at its defaults (24 kHz PCM) cannot
  carry a phone call, and the server may say nothing else about it.
- ``error_effect``: what an ``error`` event means for the call (``ErrorEffect``). "Most errors are
  recoverable and the session will stay open" (SDK ``realtime_error_event.py``): only a few end
  the call or the session, and an unknown code never does.
- ``ResponseGate``: the one hard rule of the protocol, only one response may write to the
  default conversation at a time. Callers ask the gate for responses; the gate releases
  ``response.create`` only when the conversation is idle, re-queues a create the server refused
  with ``conversation_already_has_active_response``, hands other refusals (and our responses that
  ended ``failed``) to the caller, and lets a response the server started by itself *absorb* a
  queued request whose words it will say anyway (see ``ResponseGate``).

Per-response ``instructions`` replace the session's for that response (they do not add to
them), so ``client_response_create(..., session_instructions=...)`` repeats the session's rules
first. Out-of-band responses (``conversation: "none"``) run beside the default conversation; the
gate lets them through untouched.

This file imports only the standard library; it never touches a socket or a clock.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
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


#: Metadata key ``client_response_create`` adds to out-of-band creates: the server echoes metadata
#: on ``response.created``/``response.done``, so the gate can tell such a response from one that
#: writes to the default conversation.
OUT_OF_BAND_KEY = "out_of_band"


@dataclass(frozen=True)
class ResponseCreated:
    response_id: str
    metadata: dict[str, str]

    @property
    def out_of_band(self) -> bool:
        """Created by an out-of-band ``response.create`` of ours (it does not hold the conversation)."""
        return self.metadata.get(OUT_OF_BAND_KEY) == "true"


@dataclass(frozen=True)
class ResponseDone:
    """``response.done``, "always emitted, no matter the final state".

    ``status`` is ``completed``, ``cancelled``, ``failed`` or ``incomplete``. ``reason`` is
    ``status_details.reason``: ``turn_detected`` or ``client_cancelled`` for cancelled,
    ``max_output_tokens`` or ``content_filter`` for incomplete (SDK ``realtime_response_status.py``).
    For ``failed``, ``error_code``/``error_type``/``error_message`` are ``status_details.error``:
    the real service reports e.g. ``model_not_found`` or ``insufficient_quota`` this way, not as an
    ``error`` event (openai/openai-realtime-console#561, jamesrochabrun/SwiftOpenAI#181).
    """

    response_id: str
    status: str
    metadata: dict[str, str]
    function_calls: tuple[FunctionCall, ...] = ()
    reason: str | None = None
    error_code: str | None = None
    error_type: str | None = None
    error_message: str | None = None


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
class ItemAdded:
    """``conversation.item.added``: an item entered the default conversation (ours or the model's).

    For a ``function_call_output`` we sent, it proves the output is in the context of every
    response the server creates after it (server events are sent in the order the server did
    things): ``ResponseGate.on_item_added``.
    """

    item_id: str
    item_type: str
    role: str | None = None
    call_id: str | None = None


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
    """An ``error`` event (SDK ``realtime_error.py``: ``type`` and ``message`` always; ``code``,
    ``param`` and ``event_id`` optional, and real servers send them as null).

    ``code`` falls back to ``type`` when the server gives none (a bare ``server_error``).
    ``event_id`` is the client event it is about, when the server says. Equality is on ``code``,
    ``message`` and ``event_id`` only: ``type`` and ``param`` are detail for logs and for
    ``error_effect``.
    """

    code: str
    message: str
    event_id: str | None  # the client event_id that caused it, when the server says
    type: str = field(default="", compare=False)
    param: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Unrecognised:
    """A well-formed event this client has no use for (rate_limits.updated, item.done, ...)."""

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
    | ItemAdded
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


def _opt_str(obj: Any, key: str) -> str | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


def _object(event: JSON, key: str) -> JSON:
    value = event.get(key)
    if not isinstance(value, dict):
        raise RealtimeProtocolError(f"{event.get('type')}: field {key!r} missing or not an object")
    return value


def _int(event: JSON, key: str) -> int:
    """A whole number of ms; a float that is one (1200.0) is taken, NaN, inf, strings and bools are not."""
    value = event.get(key)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RealtimeProtocolError(f"{event.get('type')}: field {key!r} missing or not an integer: {str(value)[:40]}")
    return value


def _metadata(response: JSON) -> dict[str, str]:
    metadata = response.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise RealtimeProtocolError("response.metadata is not an object")
    return {str(k): str(v) for k, v in metadata.items()}


def _function_call(response_id: str, item: JSON) -> FunctionCall:
    return FunctionCall(response_id, _str(item, "id"), _str(item, "call_id"), _str(item, "name"), _str(item, "arguments"))


def parse_server_event(text: str | bytes) -> ServerEvent:
    """One server message as a typed event; ``RealtimeProtocolError`` for anything else (not JSON,
    nested past the parser's depth, no ``type``, a field missing or of the wrong type)."""
    try:
        event = json.loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise RealtimeProtocolError(f"not JSON: {str(text)[:80]!r} ({type(exc).__name__})") from exc
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise RealtimeProtocolError(f"not a Realtime event (no 'type'): {str(text)[:80]!r}")
    kind = event["type"]
    try:
        return _parse(kind, event)
    except (KeyError, TypeError, AttributeError, ValueError, RecursionError) as exc:
        # Each field is checked by _str/_int/_object; this is the net under a shape not foreseen.
        raise RealtimeProtocolError(f"{kind[:80]}: malformed event ({str(exc)[:200]!r})") from exc


def _response_done(response: JSON) -> ResponseDone:
    response_id = _str(response, "id")
    output = response.get("output") or []
    if not isinstance(output, list):
        raise RealtimeProtocolError("response.done: response.output is not a list")
    calls = tuple(
        _function_call(response_id, item)
        for item in output
        if isinstance(item, dict) and item.get("type") == "function_call" and item.get("status") == "completed"
    )
    details = response.get("status_details")
    error = details.get("error") if isinstance(details, dict) else None
    return ResponseDone(
        response_id, _str(response, "status"), _metadata(response), calls,
        reason=_opt_str(details, "reason"),
        error_code=_opt_str(error, "code"),
        error_type=_opt_str(error, "type"),
        error_message=_opt_str(error, "message"),
    )


def _parse(kind: str, event: JSON) -> ServerEvent:
    if kind == "session.created":
        return SessionCreated(_object(event, "session"))
    if kind == "session.updated":
        return SessionUpdated(_object(event, "session"))
    if kind == "response.created":
        response = _object(event, "response")
        return ResponseCreated(_str(response, "id"), _metadata(response))
    if kind == "response.done":
        return _response_done(_object(event, "response"))
    if kind == "response.output_audio.delta":
        try:
            audio = base64.b64decode(_str(event, "delta"), validate=True)
        except ValueError as exc:  # binascii.Error, or not ASCII at all
            raise RealtimeProtocolError("response.output_audio.delta: delta is not base64") from exc
        return AudioDelta(_str(event, "response_id"), _str(event, "item_id"), audio)
    if kind == "response.output_audio_transcript.delta":
        return TranscriptDelta(_str(event, "response_id"), _str(event, "item_id"), _str(event, "delta"))
    if kind == "response.output_audio_transcript.done":
        return TranscriptDone(_str(event, "response_id"), _str(event, "item_id"), _str(event, "transcript"))
    if kind == "response.output_item.done":
        item = _object(event, "item")
        if item.get("type") == "function_call" and item.get("status") == "completed":
            return _function_call(_str(event, "response_id"), item)
        return Unrecognised(kind)
    if kind == "conversation.item.added":
        item = _object(event, "item")
        return ItemAdded(_str(item, "id"), _str(item, "type"), _opt_str(item, "role"), _opt_str(item, "call_id"))
    if kind == "input_audio_buffer.speech_started":
        return SpeechStarted(_int(event, "audio_start_ms"), _str(event, "item_id"))
    if kind == "input_audio_buffer.speech_stopped":
        return SpeechStopped(_int(event, "audio_end_ms"), _str(event, "item_id"))
    if kind == "conversation.item.input_audio_transcription.completed":
        return InputTranscript(_str(event, "item_id"), _str(event, "transcript"))
    if kind == "error":
        error = event["error"]
        if not isinstance(error, dict):
            raise RealtimeProtocolError("error: field 'error' is not an object")
        error_type = _opt_str(error, "type") or ""
        code = _opt_str(error, "code") or error_type or "unknown_error"
        return ServerError(code, _opt_str(error, "message") or "", _opt_str(error, "event_id"),
                           type=error_type, param=_opt_str(error, "param"))
    return Unrecognised(kind)


# --------------------------------------------------------------------------- client events

_event_ids = itertools.count(1)

#: Event id prefix -> what sent it. ``error.event_id`` names the event an error is about.
_SENT_KINDS = {
    "su": "session.update",
    "ap": "audio.append",
    "clr": "audio.clear",
    "tr": "truncate",
    "rc": "response.create",
    "rx": "response.cancel",
    "fco": "tool_output",
    "sn": "system_note",
    "rp": "replay",
    "it": "item",
}
_ITEM_KINDS = frozenset({"tool_output", "system_note", "replay", "item"})


def _event_id(prefix: str) -> str:
    return f"{prefix}_{next(_event_ids)}"


def sent_event_kind(event_id: str | None) -> str | None:
    """What kind of client event of ours an ``event_id`` names, or None if not one of ours.

    One of: ``session.update``, ``audio.append``, ``audio.clear``, ``truncate``,
    ``response.create``, ``response.cancel``, ``tool_output``, ``system_note``, ``replay``
    (``conversation.Conversation.replay``), ``item`` (other ``client_item_create``).
    """
    if not event_id:
        return None
    prefix, sep, number = event_id.partition("_")
    return _SENT_KINDS.get(prefix) if sep and number.isdigit() else None


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
    #: ``reasoning.effort`` (minimal, low, medium, high, xhigh), sent only to a reasoning model.
    reasoning_effort: str | None = None


_REASONING_MODEL = re.compile(r"gpt-realtime-2(?:\.\d+)?(?:-mini)?(?:-\d{4}-\d{2}-\d{2})?")
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}")


def is_reasoning_model(model: str) -> bool:
    """gpt-realtime-2, gpt-realtime-2.1, gpt-realtime-2.1-mini and their dated snapshots.

    Only those accept ``reasoning`` and ``parallel_tool_calls`` (SDK docstrings: "Only supported
    by reasoning Realtime models such as ``gpt-realtime-2``"). Not gpt-realtime, gpt-realtime-1.5,
    gpt-realtime-mini, nor the snapshot gpt-realtime-2025-08-28.
    """
    return _REASONING_MODEL.fullmatch(model) is not None


def client_session_update(settings: SessionSettings) -> JSON:
    audio_input: JSON = {
        "format": {"type": "audio/pcmu"},
        "turn_detection": {
            "type": "server_vad",
            "threshold": settings.vad_threshold,
            "prefix_padding_ms": settings.vad_prefix_padding_ms,
            "silence_duration_ms": settings.vad_silence_ms,
            "create_response": True,
            # Barge-in is ours: the caller must speak min_speech_ms before the assistant stops
            # ("ajá" and line noise must not cut it), and what is cut is truncated at what the
            # caller heard (call.session._barge_in), so the server must not cancel on its own.
            "interrupt_response": False,
        },
    }
    if settings.transcription_model:
        audio_input["transcription"] = {"model": settings.transcription_model, "language": settings.language}
    session: JSON = {
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
    }
    if settings.reasoning_effort and is_reasoning_model(settings.model):
        session["reasoning"] = {"effort": settings.reasoning_effort}
    return {"type": "session.update", "event_id": _event_id("su"), "session": session}


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _format_name(fmt: Any) -> str:
    if not isinstance(fmt, dict):
        return "nothing"
    return f"{fmt.get('type')}@{fmt['rate']}" if "rate" in fmt else str(fmt.get("type"))


def _same_model(asked: str, got: str) -> bool:
    """The server may name the dated snapshot behind an alias (gpt-realtime -> gpt-realtime-2025-08-28)."""
    return got == asked or (got.startswith(asked) and _DATED.fullmatch(got[len(asked):]) is not None)


def check_session_updated(sent: JSON, session: JSON) -> str | None:
    """What the server's session (``session.updated``'s ``session``) lacks of what we sent, or None.

    ``sent`` is our ``session.update`` event (or its ``session``). Compared, when we sent them:
    the input and output audio format (type, and rate if we gave one), the turn detection type,
    the voice (when the server echoes one), the tool names, and the model (when echoed; a dated
    snapshot of the alias we asked counts as the same). Fields the server adds are ignored.
    The result is one line, the problems joined by "; ".
    """
    want = sent.get("session", sent) if sent.get("type") == "session.update" else sent
    problems: list[str] = []
    for side in ("input", "output"):
        asked = _dig(want, "audio", side, "format")
        if not isinstance(asked, dict):
            continue
        got = _dig(session, "audio", side, "format")
        if (not isinstance(got, dict) or got.get("type") != asked.get("type")
                or ("rate" in asked and got.get("rate") != asked["rate"])):
            problems.append(f"{side} audio is {_format_name(got)}, asked {_format_name(asked)}")
    asked_td = _dig(want, "audio", "input", "turn_detection")
    if isinstance(asked_td, dict) and "type" in asked_td:
        got_td = _dig(session, "audio", "input", "turn_detection")
        got_type = got_td.get("type") if isinstance(got_td, dict) else None
        if got_type != asked_td["type"]:
            problems.append(f"turn detection is {got_type}, asked {asked_td['type']}")
    asked_voice, got_voice = _dig(want, "audio", "output", "voice"), _dig(session, "audio", "output", "voice")
    if isinstance(asked_voice, str) and isinstance(got_voice, str) and got_voice != asked_voice:
        problems.append(f"voice is {got_voice}, asked {asked_voice}")
    if isinstance(want.get("tools"), list):
        asked_tools = sorted(str(t.get("name")) for t in want["tools"] if isinstance(t, dict))
        got_list = session.get("tools")
        got_tools = sorted(str(t.get("name")) for t in got_list if isinstance(t, dict)) if isinstance(got_list, list) else []
        if got_tools != asked_tools:
            problems.append(f"tools are {got_tools}, asked {asked_tools}")
    asked_model, got_model = want.get("model"), session.get("model")
    if isinstance(asked_model, str) and isinstance(got_model, str) and not _same_model(asked_model, got_model):
        problems.append(f"model is {got_model}, asked {asked_model}")
    return "; ".join(problems) or None


def client_append_audio(ulaw: bytes) -> JSON:
    return {"type": "input_audio_buffer.append", "event_id": _event_id("ap"),
            "audio": base64.b64encode(ulaw).decode("ascii")}


def client_input_audio_clear() -> JSON:
    """Drop the caller audio the server holds but has not committed (e.g. noise before a restart)."""
    return {"type": "input_audio_buffer.clear", "event_id": _event_id("clr")}


def client_item_create(item: JSON, prefix: str = "it") -> JSON:
    """``conversation.item.create`` appending ``item``; the server assigns the item id."""
    return {"type": "conversation.item.create", "event_id": _event_id(prefix), "item": item}


def client_tool_output(call_id: str, output: str) -> JSON:
    return client_item_create({"type": "function_call_output", "call_id": call_id, "output": output}, "fco")


def system_message(text: str) -> JSON:
    """A system ``message`` item (``input_text``): context for the model, never spoken by itself."""
    return {"type": "message", "role": "system", "content": [{"type": "input_text", "text": text}]}


def client_system_note(text: str) -> JSON:
    return client_item_create(system_message(text), "sn")


def client_truncate(item_id: str, audio_end_ms: int) -> JSON:
    return {
        "type": "conversation.item.truncate",
        "event_id": _event_id("tr"),
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": audio_end_ms,
    }


MAX_METADATA_KEYS = 16  # "Set of 16 key-value pairs"; keys <= 64 characters, values <= 512


def _check_metadata(metadata: Mapping[str, str]) -> None:
    if len(metadata) > MAX_METADATA_KEYS:
        raise ValueError(f"response metadata has {len(metadata)} keys, at most {MAX_METADATA_KEYS}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"response metadata must map strings to strings: {key!r}: {value!r}")
        if len(key) > 64 or len(value) > 512:
            raise ValueError(f"response metadata {key!r}: key over 64 or value over 512 characters")


def client_response_create(
    kind: str,
    instructions: str | None = None,
    tool_choice: str | None = None,
    *,
    session_instructions: str | None = None,
    out_of_band: bool = False,
    input: Iterable[JSON] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> JSON:
    """``response.create`` of one ``kind`` (``metadata.kind``, echoed on created and done).

    ``instructions`` replace the session's for this response, so with ``session_instructions``
    the response gets the session's rules, a blank line, then ``instructions``. ``out_of_band``
    makes a response outside the default conversation (``conversation: "none"``; it neither
    sees nor writes the conversation unless ``input`` lists items for it) and marks its metadata
    (``OUT_OF_BAND_KEY``). ``metadata`` adds keys (string values; 16 keys at most, ``kind``
    included); ``ValueError`` if they break the server's limits or redefine ours.
    """
    meta: dict[str, str] = {"kind": kind}
    if out_of_band:
        meta[OUT_OF_BAND_KEY] = "true"
    for key, value in (metadata or {}).items():
        if key in meta:
            raise ValueError(f"response metadata key {key!r} is set by client_response_create")
        meta[key] = value
    _check_metadata(meta)
    response: JSON = {"metadata": meta}
    if out_of_band:
        response["conversation"] = "none"
    if input is not None:
        response["input"] = list(input)
    if instructions is not None:
        response["instructions"] = f"{session_instructions}\n\n{instructions}" if session_instructions else instructions
    if tool_choice is not None:
        response["tool_choice"] = tool_choice
    return {"type": "response.create", "event_id": _event_id("rc"), "response": response}


def client_response_cancel(response_id: str | None = None) -> JSON:
    """Cancel a response; without an id, the one in progress in the default conversation.

    Nothing to cancel is an error (``response_cancel_not_active``) that changes nothing."""
    event: JSON = {"type": "response.cancel", "event_id": _event_id("rx")}
    if response_id is not None:
        event["response_id"] = response_id
    return event


# --------------------------------------------------------------------------- errors


class ErrorEffect(Enum):
    """What an ``error`` event means for the call; ``error_effect`` decides.

    - ``FATAL``: the account, key or model cannot serve this call and retrying will not change it
      (``invalid_api_key``, ``insufficient_quota``, ``credit_balance_exhausted``,
      ``billing_hard_limit_reached``, ``account_deactivated``, ``model_not_found``,
      ``unsupported_country_region_territory``, ``beta_api_shape_disabled``; or type
      ``insufficient_quota``). End the call with the apology; do not reconnect.
    - ``SESSION_EXPIRED``: code ``session_expired`` ("Your session hit the maximum duration of 60
      minutes", then close 1001), whatever its event_id: reconnect, ``session.update``, replay
      the conversation.
    - ``SESSION_REFUSED``: the error names a ``session.update`` of ours. The session is not what
      we configured (for the first update: 24 kHz PCM, no tools); end the call cleanly, with the
      error as the reason.
    - ``RESPONSE_BUSY``: ``conversation_already_has_active_response``, with or without event_id.
      ``ResponseGate.on_error`` puts our create back in the queue; nothing else to do.
    - ``RATE_LIMITED``: ``rate_limit_exceeded`` (or a rate-limit type, ``requests``/``tokens``).
      If it was about our create, the gate hands it over through ``take_refused``: ask again after
      ``retry_after_s(error)`` (or a longer delay), counting it toward giving up.
    - ``RESPONSE_REFUSED``: any other error naming our pending ``response.create``, or with a null
      event_id while one is pending (real servers sent null; the SDK marks event_id optional).
      ``take_refused`` hands it over: ask again later, counting toward giving up.
    - ``ITEM_REFUSED``: the error names a ``conversation.item.create`` of ours (tool output, system
      note, replayed history): the model's context lacks it. Log it as an error; a refused tool
      output means the model cannot report that result.
    - ``HARMLESS``: about an event whose failure changes nothing: ``response_cancel_not_active``,
      ``item_truncate_invalid_item_id``, ``item_delete_invalid_item_id``,
      ``item_retrieve_invalid_item_id``, ``item_already_truncated``, ``unsupported_content_type``
      (a truncate of an item without audio), ``input_audio_buffer_commit_empty``, and any error
      naming one of our audio appends, audio clears, truncates or cancels. Log only.

    Unknown codes never end anything: they are classified by the event they name (above), and an
    error that names nothing we wait for is ``HARMLESS`` (log it; the session stays open).
    """

    FATAL = "fatal"
    SESSION_EXPIRED = "session_expired"
    SESSION_REFUSED = "session_refused"
    RESPONSE_BUSY = "response_busy"
    RATE_LIMITED = "rate_limited"
    RESPONSE_REFUSED = "response_refused"
    ITEM_REFUSED = "item_refused"
    HARMLESS = "harmless"


#: Codes no retry can fix. Sources: invalid_api_key, model_not_found and
#: unsupported_country_region_territory as the real handshake refusals (mikrovoice/sim/realtime.py
#: HANDSHAKE_REFUSALS); model_not_found as a failed response.done (openai/openai-realtime-console#561);
#: insufficient_quota and invalid_api_key in failed response.done (jamesrochabrun/SwiftOpenAI#181);
#: credit_balance_exhausted (OpenAI's 429 for a prepaid balance at zero); beta_api_shape_disabled
#: (research notes 1.1, langwatch/scenario#604).
FATAL_CODES = frozenset({
    "invalid_api_key",
    "insufficient_quota",
    "credit_balance_exhausted",
    "billing_hard_limit_reached",
    "account_deactivated",
    "model_not_found",
    "unsupported_country_region_territory",
    "beta_api_shape_disabled",
})
FATAL_TYPES = frozenset({"insufficient_quota"})
SESSION_EXPIRED_CODE = "session_expired"  # livekit/agents#2358, twilio-samples/...#10
BUSY_CODE = "conversation_already_has_active_response"  # openai/openai-agents-python#1466
#: OpenAI's 429 body: {"type": "tokens" | "requests", "code": "rate_limit_exceeded"} (TheR1D/shell_gpt#653).
RATE_LIMIT_CODES = frozenset({"rate_limit_exceeded"})
RATE_LIMIT_TYPES = frozenset({"requests", "tokens"})
#: Errors about a cancel, truncate, delete, retrieve or commit that found nothing to act on:
#: pipecat-ai/pipecat#3795 (response_cancel_not_active), livekit/agents#6158
#: (unsupported_content_type on a truncate), and the benign lists of many Realtime clients.
HARMLESS_CODES = frozenset({
    "response_cancel_not_active",
    "item_truncate_invalid_item_id",
    "item_delete_invalid_item_id",
    "item_retrieve_invalid_item_id",
    "item_already_truncated",
    "unsupported_content_type",
    "input_audio_buffer_commit_empty",
})
_HARMLESS_SENT = frozenset({"audio.append", "audio.clear", "truncate", "response.cancel"})


def error_effect(
    error: ServerError, *, session_update_id: str | None = None, pending_create_id: str | None = None
) -> ErrorEffect:
    """Classify an ``error`` event (see ``ErrorEffect`` for each effect and its codes).

    ``session_update_id``: our last ``session.update`` (any ``su_`` id of ours counts too).
    ``pending_create_id``: our ``response.create`` on the wire (``ResponseGate.pending_create_id``).
    Decided in this order: fatal codes; ``session_expired``; an error naming a session.update;
    "already has an active response"; rate limits; then by the event named (our pending create,
    one of our items, anything else of ours or unknown: harmless); with no event named, a
    harmless code is harmless, else a pending create takes the blame, else harmless.
    """
    if error.code in FATAL_CODES or error.type in FATAL_TYPES:
        return ErrorEffect.FATAL
    if error.code == SESSION_EXPIRED_CODE:
        return ErrorEffect.SESSION_EXPIRED
    sent = sent_event_kind(error.event_id)
    if error.event_id is not None and (error.event_id == session_update_id or sent == "session.update"):
        return ErrorEffect.SESSION_REFUSED
    if error.code == BUSY_CODE:
        return ErrorEffect.RESPONSE_BUSY
    if error.code in RATE_LIMIT_CODES or error.type in RATE_LIMIT_TYPES:
        return ErrorEffect.RATE_LIMITED
    if error.event_id is not None:
        if error.event_id == pending_create_id:
            return ErrorEffect.RESPONSE_REFUSED
        if sent in _ITEM_KINDS:
            return ErrorEffect.ITEM_REFUSED
        return ErrorEffect.HARMLESS
    if error.code in HARMLESS_CODES:
        return ErrorEffect.HARMLESS
    if pending_create_id is not None:
        return ErrorEffect.RESPONSE_REFUSED
    return ErrorEffect.HARMLESS


_RETRY_IN = re.compile(r"try again in\s+((?:\d+(?:\.\d+)?(?:ms|h|m|s))+)", re.IGNORECASE)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def retry_after_s(error: ServerError) -> float | None:
    """The wait a rate-limit message asks for ("Please try again in 1m26.4s", "... in 12ms")."""
    found = _RETRY_IN.search(error.message)
    if found is None:
        return None
    return sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(found.group(1)))


def failure_of(done: ResponseDone) -> ServerError | None:
    """A ``failed`` response.done as the error it carries (event_id None), for ``error_effect``."""
    if done.status != "failed":
        return None
    return ServerError(done.error_code or done.error_type or "response_failed",
                       done.error_message or "response.done with status failed", None,
                       type=done.error_type or "", param=None)


# --------------------------------------------------------------------------- response gate


def renew_event_id(create: JSON) -> JSON:
    """The same client event under a fresh ``event_id`` (to send again what the server refused)."""
    prefix = str(create.get("event_id", "rc")).split("_", 1)[0]
    return {**create, "event_id": _event_id(prefix)}


def _kind(create: JSON) -> str:
    return str(create["response"]["metadata"]["kind"])


def _is_out_of_band(create: JSON) -> bool:
    return bool(create["response"].get("conversation") == "none")


#: ``ResponseGate.kind_of`` for our response the gate cancelled because a response the server
#: started had already absorbed it: play nothing of it, and its ``response.done`` ends nothing.
DUPLICATE = "duplicate"


@dataclass
class _Adoption:
    """A request absorbed by the server's response ``by``; ``on_wire``: its create was sent and the
    server has not answered it yet; ``failure``: ``by`` ended failed, so it was not said."""

    create: JSON
    by: str
    on_wire: bool
    failure: ServerError | None = None


@dataclass
class ResponseGate:
    """Serialises ``response.create``: at most one response in the default conversation.

    States: idle; *requested* (our create is on the wire, no ``response.created`` yet); *active*
    (a response, ours or one the server started, is writing). While ``held`` (the caller is
    speaking) nothing is released. A second progress request while one is pending is dropped.
    Every method returns the client events to send now, in order; creates the server refused
    (other than "a response is already active", which is retried by itself) and our responses
    that ended ``failed`` are handed over once through ``take_refused()`` so that the session
    decides whether to ask again (classify with ``error_effect(error,
    pending_create_id=create["event_id"])``). ``cancelled`` and ``incomplete`` are not refusals.

    Absorption. A response the server starts by itself (no ``metadata.kind``: server VAD after
    the caller spoke, or the server answering a ``function_call_output`` on its own) sees the whole
    conversation, tool outputs included, so it says what a queued request of an *absorbable*
    kind (``absorbable``, e.g. ``{"report"}``) was going to say. At its ``response.created`` such
    requests, queued or on the wire, are dropped and the response takes their kind
    (``kind_of``, ``active_kind``), so its ``response.done`` is reported as, e.g., the report. An
    absorbed create still on the wire is not re-queued when refused as busy; if the server
    accepts it anyway (the other response had already ended), the gate cancels it and marks it
    ``DUPLICATE``: the result is spoken once. If the absorbing response fails, the requests it
    absorbed are handed to ``take_refused`` like our own.

    A request made with ``after_output=call_id`` is absorbed only by a response created after
    the server confirmed that tool output (``on_item_added``): a response created before the
    output arrived cannot say it. Without ``after_output`` any server response absorbs it.

    Out-of-band creates (``conversation: "none"``) pass through ``request`` at once and never
    occupy the conversation.
    """

    queue: deque[JSON] = field(default_factory=deque)
    requested: JSON | None = None
    active_id: str | None = None
    active_kind: str | None = None
    held: bool = False
    refused: list[tuple[JSON, ServerError]] = field(default_factory=list)
    absorbable: frozenset[str] = frozenset()
    #: response id -> kind it is reported as (ours, absorbed, DUPLICATE)
    _kinds: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    #: response id -> our create that made it (until its done)
    _ours: dict[str, JSON] = field(default_factory=dict, init=False, repr=False)
    _adoptions: list[_Adoption] = field(default_factory=list, init=False, repr=False)
    #: create event_id -> the tool call_id whose output it needs in context
    _after: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    #: call_ids whose output the server confirmed (conversation.item.added)
    _outputs: set[str] = field(default_factory=set, init=False, repr=False)
    #: event_ids of creates on the wire whose kind was cancelled: not asked again if refused
    _dropped: set[str] = field(default_factory=set, init=False, repr=False)

    @property
    def busy(self) -> bool:
        return self.requested is not None or self.active_id is not None or any(a.on_wire for a in self._adoptions)

    @property
    def waiting(self) -> bool:
        """We want the model to say something and it has not started yet."""
        return bool(self.queue) or self.requested is not None

    @property
    def pending_create_id(self) -> str | None:
        """The event_id of our create on the wire (for ``error_effect``)."""
        return str(self.requested["event_id"]) if self.requested is not None else None

    def holds(self, kind: str) -> bool:
        """A response of this kind is queued, on the wire, or being spoken."""
        return (
            any(_kind(c) == kind for c in self.queue)
            or (self.requested is not None and _kind(self.requested) == kind)
            or (self.active_id is not None and self.active_kind == kind)
        )

    def kind_of(self, response_id: str) -> str | None:
        """The kind a response is reported as: its ``metadata.kind``, the kind it absorbed, or
        ``DUPLICATE``; None for a response the server started that absorbed nothing."""
        return self._kinds.get(response_id)

    def request(self, create: JSON, *, after_output: str | None = None) -> list[JSON]:
        if _is_out_of_band(create):
            return [create]
        if _kind(create) == "progress" and self.holds("progress"):
            return []
        if after_output is not None:
            self._after[str(create["event_id"])] = after_output
        self.queue.append(create)
        return self._release()

    def hold(self, held: bool) -> list[JSON]:
        self.held = held
        return self._release()

    def on_item_added(self, event: ItemAdded) -> list[JSON]:
        if event.item_type == "function_call_output" and event.call_id is not None:
            self._outputs.add(event.call_id)
        return []

    def on_created(self, event: ResponseCreated) -> list[JSON]:
        rid, kind = event.response_id, event.metadata.get("kind")
        if event.out_of_band:
            if kind is not None:
                self._kinds[rid] = kind
            return []
        if kind is None:
            kind = self._absorb(rid)
        elif self.requested is not None and kind == _kind(self.requested):
            self._ours[rid], self.requested = self.requested, None
            self._after.pop(str(self._ours[rid]["event_id"]), None)
            self._dropped.discard(str(self._ours[rid]["event_id"]))
        else:
            late = next((a for a in self._adoptions if a.on_wire and _kind(a.create) == kind), None)
            if late is not None:  # an absorbed create the server accepted after all
                self._adoptions.remove(late)
                if late.failure is None:
                    self._kinds[rid] = self.active_kind = DUPLICATE
                    self.active_id = rid
                    return [client_response_cancel(rid)]
                self._ours[rid] = late.create
        if kind is not None:
            self._kinds[rid] = kind
        self.active_id, self.active_kind = rid, kind
        return []

    def _absorb(self, response_id: str) -> str | None:
        if not self.absorbable:
            return None
        adopted: list[_Adoption] = []
        if self.requested is not None and self._absorbs(self.requested):
            adopted.append(_Adoption(self.requested, response_id, on_wire=True))
            self.requested = None
        for create in [c for c in self.queue if self._absorbs(c)]:
            self.queue.remove(create)
            adopted.append(_Adoption(create, response_id, on_wire=False))
        for adoption in adopted:
            self._after.pop(str(adoption.create["event_id"]), None)
        self._adoptions.extend(adopted)
        return _kind(adopted[0].create) if adopted else None

    def _absorbs(self, create: JSON) -> bool:
        needs = self._after.get(str(create["event_id"]))
        return _kind(create) in self.absorbable and (needs is None or needs in self._outputs)

    def on_done(self, event: ResponseDone) -> list[JSON]:
        rid = event.response_id
        if self.active_id in (rid, "unknown"):
            self.active_id = self.active_kind = None
        failure = failure_of(event)
        create = self._ours.pop(rid, None)
        if create is not None and failure is not None:
            self.refused.append((create, _about(failure, create)))
        for adoption in [a for a in self._adoptions if a.by == rid]:
            if failure is None:
                if not adoption.on_wire:
                    self._adoptions.remove(adoption)  # said by the response that absorbed it
            elif adoption.on_wire:
                adoption.failure = failure  # settled when the server answers its create
            else:
                self._adoptions.remove(adoption)
                self.refused.append((adoption.create, _about(failure, adoption.create)))
        return self._release()

    def on_error(self, event: ServerError) -> list[JSON]:
        """An error about our create on the wire (its ``event_id``, or none at all: real servers
        have sent it as null) refuses it. "Already has an active response" puts it back at the
        head of the queue for after the next done; any other reason hands it to ``take_refused``.
        An error with no event_id refuses it only if ``error_effect`` blames the pending create
        (not for a harmless code such as ``response_cancel_not_active``). A busy refusal of an
        absorbed create is dropped: the response that absorbed it says its words."""
        effect = error_effect(event, pending_create_id=self.pending_create_id)
        if effect is ErrorEffect.SESSION_EXPIRED:
            return []  # the session is over; on_new_session re-queues what was on the wire
        blamed = (ErrorEffect.RESPONSE_BUSY, ErrorEffect.RESPONSE_REFUSED, ErrorEffect.RATE_LIMITED)
        if self.requested is not None and (
            event.event_id == self.requested.get("event_id") or (event.event_id is None and effect in blamed)
        ):
            refused, self.requested = self.requested, None
            if str(refused["event_id"]) in self._dropped:
                self._dropped.discard(str(refused["event_id"]))  # its kind was cancelled meanwhile
            elif effect is ErrorEffect.RESPONSE_BUSY:
                self.queue.appendleft(self._renew(refused))
                if self.active_id is None:
                    self.active_id = "unknown"  # the server says one is active; its done will free us
            else:
                self.refused.append((refused, event))
            return self._release()
        adoption = next((a for a in self._adoptions if a.on_wire and (
            event.event_id == a.create.get("event_id") or (event.event_id is None and effect in blamed))), None)
        if adoption is not None:
            self._adoptions.remove(adoption)
            if adoption.failure is not None:  # the response that absorbed it failed: not said
                self.refused.append((adoption.create, _about(adoption.failure, adoption.create)))
        return self._release()

    def take_refused(self) -> list[tuple[JSON, ServerError]]:
        refused, self.refused = self.refused, []
        return refused

    def cancel_kind(self, kind: str) -> None:
        """Drop queued requests of one kind, e.g. progress once the result is in. A create of that
        kind already on the wire is not asked again if the server refuses it (it may still be
        accepted: that cannot be undone here)."""
        if self.requested is not None and _kind(self.requested) == kind:
            self._dropped.add(str(self.requested["event_id"]))
        for create in self.queue:
            if _kind(create) == kind:
                self._after.pop(str(create["event_id"]), None)
        self.queue = deque(c for c in self.queue if _kind(c) != kind)

    def on_new_session(self) -> list[JSON]:
        """The link was replaced by a new, empty session: call after sending its ``session.update``
        and the replayed conversation. The create on the wire is asked again (first in the queue);
        the response in progress and what it absorbed are forgotten (read ``active_id`` and
        ``active_kind`` before, to ask again for what it was saying); tool outputs must be
        confirmed again by the new session."""
        if self.requested is not None and str(self.requested["event_id"]) not in self._dropped:
            self.queue.appendleft(self._renew(self.requested))
        self.requested = None
        self.active_id = self.active_kind = None
        self._ours.clear()
        self._adoptions.clear()
        self._outputs.clear()
        self._dropped.clear()
        return self._release()

    def _renew(self, create: JSON) -> JSON:
        renewed = renew_event_id(create)
        needs = self._after.pop(str(create["event_id"]), None)
        if needs is not None:
            self._after[str(renewed["event_id"])] = needs
        return renewed

    def _release(self) -> list[JSON]:
        if self.busy or self.held or not self.queue:
            return []
        self.requested = self.queue.popleft()
        return [self.requested]


def _about(error: ServerError, create: JSON) -> ServerError:
    """A failure re-addressed to the create it defeated (so ``error_effect`` can name it)."""
    return ServerError(error.code, error.message, str(create["event_id"]), type=error.type, param=error.param)
