"""A simulated OpenAI Realtime (GA) server over a real WebSocket, with a scripted model.

Serves ``/v1/realtime``. Faithful to research/openai-realtime.md and to the GA event shapes of
the ``openai`` SDK (``openai.types.realtime``; tests/sim/test_realtime_sim_conformance.py holds
the simulator to them, both ways):

- the handshake: Bearer auth (401 without it), the beta header refused after the upgrade
  (``beta_api_shape_disabled``, close 4000); ``session.created`` first, with the real defaults;
- client events validated as the SDK's types (``RealtimeClientEventParam`` and the
  ``item_reference`` form of ``response.create``) with unknown keys forbidden, plus the checks
  the server makes on values (ranges, ``session.type``, one output modality, base64 audio);
  every frame that is not a valid event (not JSON, binary, no ``type``, unknown ``type``, a
  malformed field) gets one ``error`` event (``invalid_request_error``; ``event_id`` echoed
  when the client sent one, ``param`` naming the field) and the session goes on;
- audio formats as negotiated by the last accepted ``session.update``: PCM16 24 kHz
  (``audio/pcm``, the default), G.711 mu-law (``audio/pcmu``) or A-law (``audio/pcma``), both
  ways; a ``response.create`` may choose the format of its own output;
- server VAD on the input audio (energy; threshold, prefix padding and silence as configured),
  input transcription events when transcription is configured;
- the conversation: ``conversation.item.added``/``.done`` for client items and for response
  output items (``previous_item_id`` as placed), delete, retrieve (with the audio), truncate;
- one response at a time in the default conversation (``conversation_already_has_active_response``),
  out-of-band responses (``conversation: "none"``, with or without an ``input`` of items and
  ``item_reference``s) beside it; barge-in cancels the active response (``turn_detected``),
  ``response.cancel`` too (``client_cancelled``), and a cancelled response still closes what it
  had opened (``.done`` events carrying what was generated so far, items ``incomplete``);
- GA response events (``response.output_audio.delta``, transcript deltas, function calls),
  faster than real time; the session expires after ``SimModelConfig.max_session_s`` (an
  ``error`` ``session_expired``, then close 1001).

It pings its client every ``ping_interval_s`` and closes the connection of a client that has
not answered within ``pong_timeout_s``: the failure that killed the old system's calls.

Whatever the client does, the server survives it: a peer that hangs up, at any moment, ends
its own session and nothing else. Only a bug in the simulator itself ends a session
abnormally, and then only that one (``sim.model.crashed`` and ``SessionLog.crashes``).

``serve_model_stream`` serves one connection from any Trio byte stream (a TCP connection or an
in-memory stream, on the real or a virtual clock: it only waits through Trio). ``serve_model``
is the TCP listener built on it. ``SimModelConfig.faults`` (``ModelFaults``, also written as
``--fault`` specs: ``parse_faults``) injects the failures of the real service; a
``ModelLedger`` records what every session did, for checking invariants after a simulated
call; ``SimModelConfig.transcript`` receives every event in and out (``TranscriptFile``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, wrap_server_stream
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from mikrovoice.logs import event
from mikrovoice.sim import voice
from mikrovoice.sim.brain import History, ScriptedModel, Turn
from mikrovoice.telephony import g711

log = logging.getLogger("mikrovoice.sim.model")

_FIRST_AUDIO_S = 0.35  # model latency before the first delta
_CHUNK_MS = 100  # audio per delta
_CHUNK_INTERVAL_S = 0.025  # 100 ms of audio every 25 ms: 4x real time, like the real service
_TEXT_INTERVAL_S = 0.02  # between text deltas of a text-only response
MAX_MESSAGE = 16 * 1024 * 1024
CONNECT_TIMEOUT_S = 60.0  # for the client's HTTP upgrade request (trio-websocket's default)
DISCONNECT_TIMEOUT_S = 2.0  # for the WebSocket close handshake once a session is over
MAX_SESSION_S = 3600.0  # "The maximum duration of a Realtime session is 60 minutes"
_MAX_UNCOMMITTED_BLOCKS = 6000  # 120 s of input audio kept for input_audio_buffer.commit
_SLIN_BLOCK = 320  # 20 ms of 8 kHz 16-bit audio: what VAD and the tone-voice decoder work on
_RECENT_BYTES = 16000  # the last second of input (8 kHz PCM): the most prefix padding there is

#: What the real service says when it refuses the WebSocket handshake: status -> (type, code, message).
HANDSHAKE_REFUSALS: dict[int, tuple[str, str | None, str]] = {
    401: ("invalid_request_error", "invalid_api_key",
          "Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com/account/api-keys."),
    403: ("request_forbidden", "unsupported_country_region_territory", "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found",
          "The model `{model}` does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded",
          "Rate limit reached for {model} in organization org-simulated on requests per min (RPM): Limit 5000, "
          "Used 5000, Requested 1. Please try again in 12ms. Visit https://platform.openai.com/account/rate-limits "
          "to learn more."),
    500: ("server_error", "server_error", "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The server is overloaded or not ready yet."),
}
SERVER_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")


@dataclass(frozen=True)
class ModelFaults:
    """Failures of the real service, injected on purpose. Times count from the WebSocket accept,
    in every session. All off by default. ``parse_faults`` builds one from ``--fault`` specs."""

    handshake_status: int | None = None  # refuse the upgrade with this HTTP status and the real body
    stall_handshake: bool = False  # accept TCP, never answer the upgrade (read and discard until closed)
    drop_after_s: float | None = None  # then close the TCP connection abruptly (no close frame)
    silent_after_s: float | None = None  # then go dead: no events, no pongs, nothing read
    refuse_creates: frozenset[int] = frozenset()  # the k-th response.create (1-based) gets a server_error
    refusal_echoes_event_id: bool = True  # that error carries the create's event_id (else null)
    spurious_error_after_s: float | None = None  # then one unprompted invalid_request_error, and carry on
    #: drop (as ``drop_after_s``) right after sending the n-th server event of this type, or on
    #: receiving the n-th client event of this type: ("response.done", 2)
    drop_on: tuple[str, int] | None = None
    deaf_pings_after_s: float | None = None  # then answer no more pings (no pongs); events flow as before
    #: the k-th session.update (1-based) is refused as the real server refuses a bad voice
    #: (invalid_request_error, invalid_value, param session.audio.output.voice); the session keeps its config
    refuse_session_updates: frozenset[int] = frozenset()
    refuse_every_session_update: bool = False  # every session.update is refused so
    errors_at: tuple[tuple[float, str], ...] = ()  # (time, error code): an unprompted error event, and carry on
    expire_after_s: float | None = None  # the session expires then (before max_session_s): session_expired, close 1001
    respond_after_output: bool = False  # a function_call_output item starts a response, no response.create needed


@dataclass(frozen=True)
class SimModelConfig:
    # A ping every 5 s that must be answered within 20 s: any client that stops reading for
    # 25 s or more is dropped, as the old system was after its 27 s router query.
    ping_interval_s: float = 5.0
    pong_timeout_s: float = 20.0
    api_key: str | None = None  # when set, only this key is accepted
    faults: ModelFaults = ModelFaults()
    max_session_s: float = MAX_SESSION_S  # then session_expired and close 1001, as the real service
    #: called with every event a session receives and sends: {"t": seconds since the accept,
    #: "session": the session id, "dir": "in" | "out", "event": the event (None for a frame
    #: that is not a JSON value, whose text is then under "raw")}; ``TranscriptFile`` writes them
    transcript: Callable[[dict[str, Any]], None] | None = None
    #: False: ``transcript`` receives only the events the session receives ("in"), which spares
    #: re-reading every event it sends (an audio delta every 25 ms) for a reader that skips them
    transcript_out: bool = True


# --------------------------------------------------------------------------- fault specs


class FaultSpecError(ValueError):
    """A ``--fault`` spec that does not parse; the message says why, in one line."""


_SECONDS = re.compile(r"\d+(\.\d*)?|\.\d+")


def _seconds(name: str, value: str) -> float:
    if not _SECONDS.fullmatch(value.strip()):
        raise FaultSpecError(f"{name} needs seconds (a number >= 0), e.g. {name}=12.5; got {value!r}")
    return float(value)


def _counts(name: str, value: str) -> frozenset[int]:
    try:
        counts = frozenset(int(k) for k in value.split(","))
    except ValueError:
        counts = frozenset({0})
    if not counts or min(counts) < 1:
        raise FaultSpecError(f"{name} needs counts >= 1 separated by commas, e.g. {name}=1,3; got {value!r}")
    return counts


def parse_faults(specs: Sequence[str], base: ModelFaults = ModelFaults()) -> ModelFaults:
    """``ModelFaults`` from ``--fault`` specs; raises ``FaultSpecError``. The syntax (T: seconds
    since the session's accept, K: a 1-based count), as ``mikrovoice sim model --help`` says it:
    ``handshake=STATUS``, ``stall-handshake``, ``drop-at=T``, ``drop-on=EVENT[#K]``,
    ``silent-at=T``, ``deaf-pings[=T]``, ``refuse-session-update[=K[,K...]]``,
    ``refuse-create=K[,K...]``, ``error-at=T:CODE`` (repeatable), ``expire-at=T``,
    ``respond-after-output``."""
    fields: dict[str, Any] = {}
    errors_at: list[tuple[float, str]] = list(base.errors_at)
    for spec in specs:
        name, has_value, value = spec.strip().partition("=")
        if name in ("stall-handshake", "respond-after-output") and has_value:
            raise FaultSpecError(f"{name} takes no value; got {spec!r}")
        if name in ("handshake", "drop-at", "drop-on", "silent-at", "refuse-create", "error-at", "expire-at") and not value:
            raise FaultSpecError(f"{name} needs a value ({name}=...); see --help")
        if name == "handshake":
            if not value.isdigit() or not 400 <= int(value) <= 599:
                raise FaultSpecError(f"handshake needs an HTTP error status 400..599, e.g. handshake=401; got {value!r}")
            fields["handshake_status"] = int(value)
        elif name == "stall-handshake":
            fields["stall_handshake"] = True
        elif name == "drop-at":
            fields["drop_after_s"] = _seconds(name, value)
        elif name == "drop-on":
            kind, _, count = value.partition("#")
            if kind not in _CLIENT_EVENT_TYPES and kind not in SERVER_EVENT_TYPES:
                raise FaultSpecError(f"drop-on needs a Realtime event type, e.g. drop-on=response.done#2; got {kind!r}")
            if count and (not count.isdigit() or int(count) < 1):
                raise FaultSpecError(f"drop-on needs a count >= 1 after '#', e.g. drop-on=response.done#2; got {count!r}")
            fields["drop_on"] = (kind, int(count) if count else 1)
        elif name == "silent-at":
            fields["silent_after_s"] = _seconds(name, value)
        elif name == "deaf-pings":
            fields["deaf_pings_after_s"] = _seconds(name, value) if has_value else 0.0
        elif name == "refuse-session-update":
            if has_value:
                fields["refuse_session_updates"] = _counts(name, value)
            else:
                fields["refuse_every_session_update"] = True
        elif name == "refuse-create":
            fields["refuse_creates"] = _counts(name, value)
        elif name == "error-at":
            at, _, code = value.partition(":")
            if not re.fullmatch(r"[a-z0-9_]+", code):
                raise FaultSpecError(f"error-at needs T:CODE, e.g. error-at=30:server_error; got {value!r}")
            errors_at.append((_seconds(name, at), code))
        elif name == "expire-at":
            fields["expire_after_s"] = _seconds(name, value)
        elif name == "respond-after-output":
            fields["respond_after_output"] = True
        else:
            raise FaultSpecError(f"unknown fault {name!r}; known: " + ", ".join(FAULT_NAMES))
    fields["errors_at"] = tuple(sorted(errors_at))
    return replace(base, **fields)


#: The fault names ``parse_faults`` knows.
FAULT_NAMES = ("handshake", "stall-handshake", "drop-at", "drop-on", "silent-at", "deaf-pings",
                "refuse-session-update", "refuse-create", "error-at", "expire-at", "respond-after-output")


# --------------------------------------------------------------------------- transcripts


def _audio_bytes(b64: str) -> int:
    return len(b64) * 3 // 4 - b64[-2:].count("=") if b64 else 0


def abbreviate_audio(value: Any) -> Any:
    """A copy of an event with every base64 audio payload (``audio`` fields, audio ``delta``s)
    replaced by ``"<N bytes base64>"``, N the size of the audio it carried."""
    if isinstance(value, list):
        return [abbreviate_audio(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        audio = key == "audio" or (key == "delta" and value.get("type") == "response.output_audio.delta")
        out[key] = f"<{_audio_bytes(item)} bytes base64>" if audio and isinstance(item, str) else abbreviate_audio(item)
    return out


class TranscriptFile:
    """``SimModelConfig.transcript`` that writes JSON lines to a file, audio abbreviated
    (``abbreviate_audio``) unless ``full_audio``. A write that fails is logged once, not raised."""

    def __init__(self, path: str | Path, full_audio: bool = False) -> None:
        self.path = Path(path)
        self.full_audio = full_audio
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")
        self._failed = False

    def __call__(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        if not self.full_audio:
            record = {**record, "event": abbreviate_audio(record.get("event"))}
        try:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._file.flush()
        except (OSError, ValueError) as exc:
            if not self._failed:
                self._failed = True
                event(log, "sim.model.transcript_failed", level=logging.ERROR, path=str(self.path), error=repr(exc))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# --------------------------------------------------------------------------- the ledger


@dataclass
class FunctionCallLog:
    name: str
    arguments: str  # the JSON string the model wrote
    issued_at: float
    outputs: list[float] = field(default_factory=list)  # when a function_call_output for it arrived


@dataclass
class CreateLog:
    at: float
    kind: str | None  # response.metadata.kind
    event_id: str | None
    outcome: str  # "started", "refused" (fault: server_error) or "rejected" (an error such as an active response)
    response_id: str | None = None


@dataclass
class ResponseLog:
    response_id: str
    kind: str | None  # metadata kind; None for a response server VAD started
    trigger: str  # "create", "vad" or "output" (ModelFaults.respond_after_output)
    created_at: float
    out_of_band: bool = False
    done_at: float | None = None
    status: str | None = None  # "completed" or "cancelled"; None if no response.done was sent
    reason: str | None = None  # for cancelled: "turn_detected" or "client_cancelled"
    text: str = ""  # what the model set out to say


@dataclass
class ErrorLog:
    at: float
    code: str | None
    event_id: str | None  # the client event it answers (error.event_id), None if unprompted


@dataclass
class RejectedOutputLog:
    at: float
    call_id: Any
    code: str


@dataclass
class SessionLog:
    number: int  # 1-based, in order of accept
    started_at: float
    ended_at: float | None = None
    end_reason: str | None = None  # see END_REASONS
    close_code: int | None = None  # the WebSocket close code the session ended with, when there was one
    silenced_at: float | None = None
    calls: dict[str, FunctionCallLog] = field(default_factory=dict)  # call_id -> the model's function call
    creates: list[CreateLog] = field(default_factory=list)
    responses: dict[str, ResponseLog] = field(default_factory=dict)  # in creation order
    errors: list[ErrorLog] = field(default_factory=list)
    rejected_outputs: list[RejectedOutputLog] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    session_id: str = ""  # the session's "sess_..." id
    #: call_id -> a function_call item the client put in (a replay into a new session), with its outputs
    client_calls: dict[str, FunctionCallLog] = field(default_factory=dict)
    session_updates: int = 0  # session.update events accepted
    refused_session_updates: int = 0  # ... and refused by ModelFaults


#: ``SessionLog.end_reason`` values.
END_REASONS = (
    "client_closed",  # the client's close frame
    "connection_lost",  # the TCP connection ended without a close frame
    "dropped_by_fault",  # ModelFaults.drop_after_s or drop_on
    "ping_timeout",  # the client did not answer a ping in time; the server closed
    "beta_refused",  # the client sent the beta header
    "expired",  # max_session_s or ModelFaults.expire_after_s: session_expired, close 1001
    "crashed",  # a simulator bug (see crashes)
    "server_shutdown",  # the server was cancelled
)


@dataclass
class HandshakeLog:
    at: float
    outcome: str  # "refused", "stalled" or "timed_out"
    status: int | None  # the HTTP status of a refusal
    reason: str  # "fault", "path", "auth", "no_request", "client_gone"


@dataclass
class ModelLedger:
    """What a server's sessions did, one ``SessionLog`` each; cheap (nothing per audio frame)."""

    sessions: list[SessionLog] = field(default_factory=list)
    handshakes: list[HandshakeLog] = field(default_factory=list)  # upgrades refused, stalled or timed out
    crashes: list[str] = field(default_factory=list)  # simulator bugs outside any session (handshake)

    def all_crashes(self) -> list[str]:
        return self.crashes + [crash for session in self.sessions for crash in session.crashes]


# --------------------------------------------------------------------------- validation


class ClientError(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


Check = Callable[[Any, str], Any]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _bad_type(param: str, expected: str, value: Any) -> ClientError:
    return ClientError("invalid_type", f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.", param)


def _missing(param: str) -> ClientError:
    return ClientError("missing_required_parameter", f"Missing required parameter: '{param}'.", param)


def _invalid(param: str, value: Any, allowed: str = "") -> ClientError:
    shown = value if isinstance(value, str) else json.dumps(value)
    return ClientError("invalid_value", f"Invalid value: '{shown[:100]}'.{' ' + allowed if allowed else ''}", param)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _obj(value: Any, param: str, keys: set[str] | frozenset[str] | None = None) -> dict[str, Any]:
    """``value`` must be an object (with only ``keys``, if given); ``param`` "" is the event itself."""
    if not isinstance(value, dict):
        raise _bad_type(param or "event", "an object", value)
    if keys is not None:
        unknown = sorted(set(value) - keys)
        if unknown:
            name = _join(param, unknown[0])
            raise ClientError("unknown_parameter", f"Unknown parameter: '{name}'.", name)
    return value


def _str(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise _bad_type(param, "a string", value)
    return value


def _int(value: Any, param: str, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad_type(param, "an integer", value)
    if low is not None and value < low:
        raise ClientError("integer_below_min_value", f"Invalid '{param}': integer below minimum value. Expected a value >= {low}, but got {value} instead.", param)
    if high is not None and value > high:
        raise ClientError("integer_above_max_value", f"Invalid '{param}': integer above maximum value. Expected a value <= {high}, but got {value} instead.", param)
    return value


def _num(value: Any, param: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad_type(param, "a number", value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ClientError("decimal_out_of_range", f"Invalid '{param}': {value} is not between {low:g} and {high:g}.", param)
    return float(value)


def _bool(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise _bad_type(param, "a boolean", value)
    return value


def _enum(value: Any, param: str, allowed: tuple[str, ...]) -> str:
    _str(value, param)
    if value not in allowed:
        raise _invalid(param, value, "Supported values are: " + ", ".join(f"'{a}'" for a in allowed) + ".")
    return str(value)


def _required(obj: dict[str, Any], key: str, prefix: str) -> Any:
    if key not in obj:
        raise _missing(_join(prefix, key))
    return obj[key]


# Combinators: each builds a Check (value, param) -> None that raises ClientError. The schemas
# below mirror the SDK's TypedDicts (openai.types.realtime.*Param), with "Required" keys required
# and the other keys optional; null only where the SDK says Optional (and for noise_reduction and
# transcription, whose docstrings say "can be set to null"). Where the real server checks more
# than the types (a range, one output modality, a tool's name), it says so.


def _string(value: Any, param: str) -> None:
    _str(value, param)


def _boolean(value: Any, param: str) -> None:
    _bool(value, param)


def _anything(value: Any, param: str) -> None:
    """Any JSON value (the SDK's ``object``)."""


def _json_object(value: Any, param: str) -> None:
    _obj(value, param)


def _integer(low: int | None = None, high: int | None = None) -> Check:
    return lambda value, param: _int(value, param, low, high)


def _number(low: float | None = None, high: float | None = None) -> Check:
    return lambda value, param: _num(value, param, low, high)


def _literal(*allowed: str) -> Check:
    return lambda value, param: _enum(value, param, allowed)


def _int_literal(allowed: int) -> Check:
    def check(value: Any, param: str) -> None:
        if _int(value, param) != allowed:
            raise _invalid(param, value, f"Supported values are: {allowed}.")

    return check


def _nullable(check: Check) -> Check:
    return lambda value, param: None if value is None else check(value, param)


def _array(check: Check) -> Check:
    def checker(value: Any, param: str) -> None:
        if not isinstance(value, list):
            raise _bad_type(param, "an array", value)
        for i, item in enumerate(value):
            check(item, f"{param}[{i}]")

    return checker


def _map(check: Check) -> Check:
    def checker(value: Any, param: str) -> None:
        for key, item in _obj(value, param).items():
            check(item, f"{param}.{key}")

    return checker


def _fields(required: dict[str, Check] | None = None, optional: dict[str, Check] | None = None) -> Check:
    """An object with these keys and no others: unknown keys first, then missing ones, then values."""
    required, optional = required or {}, optional or {}
    checks = {**optional, **required}
    keys = frozenset(checks)

    def check(value: Any, param: str) -> None:
        obj = _obj(value, param, keys)
        for key in required:
            _required(obj, key, param)
        for key, item in obj.items():
            checks[key](item, _join(param, key))

    return check


def _tagged(variants: dict[str, Check], default: str | None = None, key: str = "type") -> Check:
    """An object whose ``type`` picks its schema (``default`` when it has none)."""
    allowed = tuple(variants)

    def check(value: Any, param: str) -> None:
        obj = _obj(value, param)
        if key not in obj and default is not None:
            variants[default](obj, param)
            return
        variants[_enum(_required(obj, key, param), _join(param, key), allowed)](obj, param)

    return check


_KINDS = {"string": str, "array": list, "object": dict}


def _one_of(**checks: Check) -> Check:
    """By the JSON kind of the value: string=, integer=, array=, object=."""
    expected = " or ".join({"string": "a string", "integer": "an integer", "array": "an array",
                            "object": "an object"}[k] for k in checks)

    def check(value: Any, param: str) -> None:
        for kind, sub in checks.items():
            if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
                sub(value, param)
                return
            if kind in _KINDS and isinstance(value, _KINDS[kind]):
                sub(value, param)
                return
        raise _bad_type(param, f"one of {expected}", value)

    return check


def _base64(value: Any, param: str) -> None:
    _decode_base64(_str(value, param), param)


def _decode_base64(value: str, param: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ClientError("invalid_value", f"Invalid '{param}': not valid base64.", param) from None


def _check_metadata(value: Any, param: str) -> None:
    if value is None:
        return
    metadata = _obj(value, param)
    if len(metadata) > 16:
        raise ClientError("invalid_value", f"Invalid '{param}': too many keys (at most 16).", param)
    for key, item in metadata.items():
        if len(key) > 64:
            raise ClientError("invalid_value", f"Invalid '{param}': key longer than 64 characters.", param)
        if len(_str(item, f"{param}.{key}")) > 512:
            raise ClientError("string_above_max_length", f"Invalid '{param}.{key}': longer than 512 characters.", f"{param}.{key}")


def _check_modalities(value: Any, param: str) -> None:
    _array(_literal("audio", "text"))(value, param)
    if len(value) != 1:  # the server's rule; the SDK's type allows any list
        raise _invalid(param, value, "Supported values are: ['audio'] and ['text'].")


_ITEM_META: dict[str, Check] = {
    "id": _string, "object": _literal("realtime.item"), "status": _literal("completed", "incomplete", "in_progress"),
}
_CONTENT_TYPES = {"user": ("input_text", "input_audio", "input_image"), "system": ("input_text",),
                  # "Cannot add assistant audio" (the server; the SDK's type allows output_audio)
                  "assistant": ("output_text",)}
_CONTENT_FIELDS: dict[str, dict[str, Check]] = {
    "user": {"type": _string, "text": _string, "audio": _base64, "transcript": _string, "image_url": _string,
             "detail": _literal("auto", "low", "high")},
    "system": {"type": _string, "text": _string},
    "assistant": {"type": _string, "text": _string, "audio": _string, "transcript": _string},
}


def _content(role: str) -> Check:
    fields = _fields(optional=_CONTENT_FIELDS[role])

    def check(value: Any, param: str) -> None:
        fields(value, param)
        # The server wants a part's type, and the text of a text part (optional in the SDK's type).
        kind = _enum(_required(value, "type", param), f"{param}.type", _CONTENT_TYPES[role])
        if kind in ("input_text", "output_text"):
            _required(value, "text", param)
        if kind == "input_audio":
            _required(value, "audio", param)

    return check


def _message(value: Any, param: str) -> None:
    item = _obj(value, param, frozenset({"type", "role", "content", *_ITEM_META}))
    role = _enum(_required(item, "role", param), f"{param}.role", ("user", "assistant", "system"))
    _fields({"type": _string, "role": _string, "content": _array(_content(role))}, _ITEM_META)(item, param)


_MCP_ERROR = _tagged({
    "protocol_error": _fields({"code": _integer(), "message": _string, "type": _string}),
    "tool_execution_error": _fields({"message": _string, "type": _string}),
    "http_error": _fields({"code": _integer(), "message": _string, "type": _string}),
})
_ITEMS: dict[str, Check] = {
    "message": _message,
    "function_call": _fields({"type": _string, "name": _string, "arguments": _string}, {**_ITEM_META, "call_id": _string}),
    "function_call_output": _fields({"type": _string, "call_id": _string, "output": _string}, _ITEM_META),
    "mcp_approval_response": _fields({"type": _string, "id": _string, "approval_request_id": _string, "approve": _boolean},
                                     {"reason": _nullable(_string)}),
    "mcp_list_tools": _fields({"type": _string, "server_label": _string, "tools": _array(_fields(
        {"input_schema": _anything, "name": _string},
        {"annotations": _nullable(_anything), "description": _nullable(_string)}))}, {"id": _string}),
    "mcp_call": _fields({"type": _string, "id": _string, "arguments": _string, "name": _string, "server_label": _string},
                        {"approval_request_id": _nullable(_string), "error": _nullable(_MCP_ERROR),
                         "output": _nullable(_string)}),
    "mcp_approval_request": _fields({"type": _string, "id": _string, "arguments": _string, "name": _string,
                                     "server_label": _string}),
}
_ITEM = _tagged(_ITEMS)
_INPUT_ITEM = _tagged({**_ITEMS, "item_reference": _fields({"type": _string, "id": _string})})

_FORMAT = _tagged({  # the server wants the type (the SDK's type has it optional)
    "audio/pcm": _fields({"type": _string}, {"rate": _int_literal(24000)}),
    "audio/pcmu": _fields({"type": _string}),
    "audio/pcma": _fields({"type": _string}),
})
_VOICE = _one_of(string=_string, object=_fields({"id": _string}))
_TURN_DETECTION = _nullable(_tagged({
    "server_vad": _fields({"type": _string}, {
        "threshold": _number(0.0, 1.0), "prefix_padding_ms": _integer(0, 10_000), "silence_duration_ms": _integer(0, 10_000),
        "idle_timeout_ms": _nullable(_integer(5_000, 30_000)), "create_response": _boolean, "interrupt_response": _boolean}),
    "semantic_vad": _fields({"type": _string}, {
        "eagerness": _literal("low", "medium", "high", "auto"), "create_response": _boolean, "interrupt_response": _boolean}),
}))
_TRANSCRIPTION = _nullable(_fields(optional={
    "model": _string, "language": _string, "languages": _array(_string), "prompt": _string, "keywords": _array(_string),
    "delay": _literal("minimal", "low", "medium", "high", "xhigh")}))
_AUDIO = _fields(optional={
    "input": _fields(optional={
        "format": _FORMAT, "transcription": _TRANSCRIPTION, "turn_detection": _TURN_DETECTION,
        "noise_reduction": _nullable(_fields(optional={"type": _literal("near_field", "far_field"), "strength": _number()})),
    }),
    "output": _fields(optional={"format": _FORMAT, "voice": _VOICE, "speed": _number(0.25, 1.5)}),
})
_TOOL_FILTER = _fields(optional={"read_only": _boolean, "tool_names": _array(_string)})
_MCP_TOOL = _fields({"type": _string, "server_label": _string}, {
    "allowed_callers": _nullable(_array(_literal("direct", "programmatic"))),
    "allowed_tools": _nullable(_one_of(array=_array(_string), object=_TOOL_FILTER)),
    "authorization": _string,
    "connector_id": _literal("connector_dropbox", "connector_gmail", "connector_googlecalendar", "connector_googledrive",
                             "connector_microsoftteams", "connector_outlookcalendar", "connector_outlookemail",
                             "connector_sharepoint"),
    "defer_loading": _boolean,
    "headers": _nullable(_map(_string)),
    "require_approval": _nullable(_one_of(string=_literal("always", "never"),
                                          object=_fields(optional={"always": _TOOL_FILTER, "never": _TOOL_FILTER}))),
    "server_description": _string, "server_url": _string, "tunnel_id": _string,
})
_FUNCTION_TOOL_FIELDS = _fields(optional={"type": _string, "name": _string, "description": _string,
                                          "parameters": _json_object})


def _function_tool(value: Any, param: str) -> None:
    _FUNCTION_TOOL_FIELDS(value, param)
    _required(value, "name", param)  # the server needs the name (optional in the SDK's type)


_TOOL = _tagged({"function": _function_tool, "mcp": _MCP_TOOL}, default="function")
_TOOL_CHOICE = _one_of(string=_literal("none", "auto", "required"), object=_tagged({
    "function": _fields({"type": _string, "name": _string}),
    "mcp": _fields({"type": _string, "server_label": _string}, {"name": _nullable(_string)}),
}))
_MAX_OUTPUT_TOKENS = _one_of(integer=_integer(1, 4096), string=_literal("inf"))
_CACHE_BREAKPOINT = _fields({"mode": _literal("explicit")}, {"ttl": _literal("30m", "12h")})
_PROMPT = _nullable(_fields({"id": _string}, {
    "version": _nullable(_string),
    "variables": _nullable(_map(_one_of(string=_string, object=_tagged({
        "input_text": _fields({"type": _string, "text": _string}, {"prompt_cache_breakpoint": _CACHE_BREAKPOINT}),
        "input_image": _fields({"type": _string, "detail": _literal("low", "high", "auto", "original")},
                               {"file_id": _nullable(_string), "image_url": _nullable(_string),
                                "prompt_cache_breakpoint": _CACHE_BREAKPOINT}),
        "input_file": _fields({"type": _string}, {"detail": _literal("auto", "low", "high"), "file_data": _string,
                                                  "file_id": _nullable(_string), "file_url": _string, "filename": _string,
                                                  "prompt_cache_breakpoint": _CACHE_BREAKPOINT}),
    })))),
}))
_REASONING = _fields(optional={"effort": _literal("minimal", "low", "medium", "high", "xhigh")})
_SESSION = _fields({"type": _literal("realtime")}, {  # a realtime session cannot become a transcription one
    "model": _string, "instructions": _string, "output_modalities": _check_modalities, "audio": _AUDIO,
    "tools": _array(_TOOL), "tool_choice": _TOOL_CHOICE, "max_output_tokens": _MAX_OUTPUT_TOKENS,
    "parallel_tool_calls": _boolean, "reasoning": _REASONING, "prompt": _PROMPT,
    "include": _array(_literal("item.input_audio_transcription.logprobs")),
    "tracing": _nullable(_one_of(string=_literal("auto"), object=_fields(optional={
        "group_id": _string, "metadata": _anything, "workflow_name": _string}))),
    "truncation": _one_of(string=_literal("auto", "disabled"), object=_fields(
        {"type": _literal("retention_ratio"), "retention_ratio": _number(0.0, 1.0)},
        {"token_limits": _fields(optional={"post_instructions": _integer(0)})})),
})
_RESPONSE = _fields(optional={
    "conversation": _literal("auto", "none"),  # the server's values (the SDK's type is any string)
    "input": _array(_INPUT_ITEM), "instructions": _string, "metadata": _check_metadata,
    "output_modalities": _check_modalities,
    "audio": _fields(optional={"output": _fields(optional={"format": _FORMAT, "voice": _VOICE})}),
    "tools": _array(_TOOL), "tool_choice": _TOOL_CHOICE, "max_output_tokens": _MAX_OUTPUT_TOKENS,
    "parallel_tool_calls": _boolean, "reasoning": _REASONING, "prompt": _PROMPT,
})


def _event(required: dict[str, Check] | None = None, optional: dict[str, Check] | None = None) -> Check:
    return _fields({"type": _string, **(required or {})}, {"event_id": _string, **(optional or {})})


_EVENTS: dict[str, Check] = {
    "session.update": _event({"session": _SESSION}),
    "input_audio_buffer.append": _event({"audio": _base64}),
    "input_audio_buffer.commit": _event(),
    "input_audio_buffer.clear": _event(),
    "output_audio_buffer.clear": _event(),
    "conversation.item.create": _event({"item": _ITEM}, {"previous_item_id": _string}),
    "conversation.item.truncate": _event({"item_id": _string, "content_index": _integer(0, 0), "audio_end_ms": _integer(0)}),
    "conversation.item.delete": _event({"item_id": _string}),
    "conversation.item.retrieve": _event({"item_id": _string}),
    "response.create": _event(optional={"response": _RESPONSE}),
    "response.cancel": _event(optional={"response_id": _string}),
}
_CLIENT_EVENT_TYPES = tuple(_EVENTS)
#: The server events of the GA union (openai.types.realtime.RealtimeServerEvent), for ``drop-on``.
SERVER_EVENT_TYPES = (
    "error", "session.created", "session.updated", "conversation.item.added", "conversation.item.done",
    "conversation.item.retrieved", "conversation.item.deleted", "conversation.item.truncated",
    "conversation.item.input_audio_transcription.completed", "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.failed", "input_audio_buffer.committed", "input_audio_buffer.cleared",
    "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped", "input_audio_buffer.timeout_triggered",
    "response.created", "response.done", "response.output_item.added", "response.output_item.done",
    "response.content_part.added", "response.content_part.done", "response.output_audio.delta",
    "response.output_audio.done", "response.output_audio_transcript.delta", "response.output_audio_transcript.done",
    "response.output_text.delta", "response.output_text.done", "response.function_call_arguments.delta",
    "response.function_call_arguments.done", "rate_limits.updated",
)

_MAX_DEPTH = 64


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_json(value: Any) -> None:
    """Refuse what Python's json accepts but a real server would not, or could not echo back:
    lone UTF-16 surrogates (from ``\\ud800`` escapes), numbers too large for a double (1e400
    parses as inf) and nesting deeper than ``_MAX_DEPTH``."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise ValueError("nested too deeply")
        if isinstance(node, str):
            node.encode("utf-8")  # UnicodeEncodeError (a ValueError) for a lone surrogate
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise ValueError("number out of range")
        elif isinstance(node, dict):
            for key, item in node.items():
                key.encode("utf-8")
                stack.append((item, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)


_INVALID_JSON = ("We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
                 "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.")


# --------------------------------------------------------------------------- audio formats


def _alaw_tables() -> tuple[np.ndarray, np.ndarray]:
    """G.711 A-law (the ITU/Sun reference algorithm): code per 16-bit sample, sample per code."""
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    t = (codes & 0x0F) << 4
    seg = (codes & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    decode = np.where(codes & 0x80, t, -t).astype("<i2")
    samples = np.arange(-32768, 32768, dtype=np.int32) >> 3
    mask = np.where(samples >= 0, 0xD5, 0x55)
    magnitude = np.where(samples >= 0, samples, -samples - 1)
    seg_ends = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    segment = np.searchsorted(seg_ends, magnitude)  # the first end >= magnitude
    shift = np.where(segment < 2, 1, segment)
    value = (segment << 4) | ((magnitude >> shift) & 0x0F)
    encoded = np.where(segment >= 8, 0x7F ^ mask, value ^ mask).astype(np.uint8)
    encode = np.empty(65536, dtype=np.uint8)  # indexed by the sample's bits as an unsigned 16-bit number
    encode[(np.arange(-32768, 32768) & 0xFFFF)] = encoded
    return encode, decode


_ALAW_ENCODE, _ALAW_DECODE = _alaw_tables()


def slin_to_alaw(pcm: bytes) -> bytes:
    return _ALAW_ENCODE.take(np.frombuffer(pcm, "<u2")).tobytes()


def alaw_to_slin(alaw: bytes) -> bytes:
    return _ALAW_DECODE.take(np.frombuffer(alaw, np.uint8)).tobytes()


def upsample_24k(pcm8k: bytes) -> bytes:
    """8 kHz 16-bit PCM to 24 kHz (linear interpolation; every third sample is the original)."""
    x = np.frombuffer(pcm8k, "<i2").astype(np.float64)
    if not x.size:
        return b""
    step = np.append(x[1:], x[-1:]) - x
    y = np.empty(3 * x.size)
    y[0::3], y[1::3], y[2::3] = x, x + step / 3, x + 2 * step / 3
    return np.rint(y).astype("<i2").tobytes()


def downsample_24k(pcm24k: bytes) -> bytes:
    """24 kHz 16-bit PCM to 8 kHz: every third sample. Enough for what the simulator listens to
    (tone-voice symbols at 500..2200 Hz, VAD energy); exactly undoes ``upsample_24k``."""
    return np.frombuffer(pcm24k, "<i2", len(pcm24k) // 2)[0::3].tobytes()


@dataclass(frozen=True)
class AudioFormat:
    """One of the three GA audio formats; converts to and from 8 kHz 16-bit PCM (what the VAD,
    the tone-voice decoder and ``voice.speak`` use)."""

    type: str  # "audio/pcm" (PCM16 LE mono 24 kHz), "audio/pcmu", "audio/pcma" (G.711, 8 kHz)

    @property
    def bytes_per_ms(self) -> int:
        return 48 if self.type == "audio/pcm" else 8

    def body(self) -> dict[str, Any]:
        return {"type": self.type, "rate": 24000} if self.type == "audio/pcm" else {"type": self.type}

    def encode(self, slin8k: bytes) -> bytes:
        if self.type == "audio/pcmu":
            return g711.slin_to_ulaw(slin8k)
        if self.type == "audio/pcma":
            return slin_to_alaw(slin8k)
        return upsample_24k(slin8k)

    def decode(self, data: bytes) -> bytes:
        if self.type == "audio/pcmu":
            return g711.ulaw_to_slin(data)
        if self.type == "audio/pcma":
            return alaw_to_slin(data)
        return downsample_24k(data)


PCM24K = AudioFormat("audio/pcm")


def _format_of(spec: Any, default: AudioFormat = PCM24K) -> AudioFormat:
    return AudioFormat(spec["type"]) if isinstance(spec, dict) and "type" in spec else default


# --------------------------------------------------------------------------- the stream under the WebSocket


class _Wire(trio.abc.Stream):
    """The raw stream, with two switches. Once ``silence()``d this end is dead: what the server
    sends is discarded and what it receives is read and discarded (so the end of the connection
    is still noticed). Once ``deaf``, pong frames are not sent (trio-websocket writes each frame
    with one ``send_all``; a server's pong is unmasked and starts with 0x8A). ``closed`` is set
    when the peer's side ends (EOF or error)."""

    def __init__(self, raw: trio.abc.Stream) -> None:
        self.raw = raw
        self.silenced = False
        self.deaf = False
        self.closed = trio.Event()

    def silence(self) -> None:
        self.silenced = True

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.silenced or (self.deaf and len(data) and data[0] == 0x8A):
            await trio.lowlevel.checkpoint()
            return
        await self.raw.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        if self.silenced:
            await trio.lowlevel.checkpoint()
            return
        await self.raw.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        while True:
            try:
                data = await self.raw.receive_some(max_bytes)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.closed.set()
                raise
            if not data:
                self.closed.set()
                return data
            if not self.silenced:
                return data

    async def aclose(self) -> None:
        await self.raw.aclose()


# --------------------------------------------------------------------------- one session


class _Ids:
    """Ids unique across the sessions of one ledger (a replay into a new session may carry the
    old session's call ids): ``item_sim002000013`` is session 2's 13th id."""

    def __init__(self, session: int = 0) -> None:
        self.session = session
        self.n = 0

    def __call__(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_sim{self.session:03d}{self.n:06d}"


@dataclass
class _Part:
    """One output item of a response, from ``response.output_item.added`` to its ``.done``."""

    kind: str  # "audio", "text" (a message) or "call"
    item: dict[str, Any]
    index: int  # output_index
    previous: str | None  # previous_item_id in the conversation (in-band responses)
    name: str = ""  # call: the tool
    generated: str = ""  # transcript, text or arguments generated so far
    complete: bool = False  # all of it was generated
    sent: set[str] = field(default_factory=set)  # the event types of this part already sent


@dataclass
class _Response:
    id: str
    metadata: dict[str, str]
    turn: Turn
    out_of_band: bool = False
    modality: str = "audio"
    format: AudioFormat = PCM24K
    voice: str = "marin"
    max_output_tokens: Any = "inf"
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    output: list[dict[str, Any]] = field(default_factory=list)
    open_part: _Part | None = None
    cancel_reason: str | None = None
    call_issued: bool = False
    audio_ms: int = 0


#: The exceptions that mean the WebSocket is gone (or going) rather than a simulator bug.
_GONE = (ConnectionClosed, LocalProtocolError)
_END = object()  # "append at the end" for _add_item


def _default_session(session_id: str, model: str, expires_at: int) -> dict[str, Any]:
    """``session.created``'s session: the real service's defaults (SDK RealtimeSessionCreateResponse)."""
    return {
        "type": "realtime", "object": "realtime.session", "id": session_id, "model": model,
        "output_modalities": ["audio"], "instructions": "", "tools": [], "tool_choice": "auto",
        "max_output_tokens": "inf", "truncation": "auto", "prompt": None, "tracing": None, "include": None,
        "expires_at": expires_at,
        "audio": {
            "input": {"format": PCM24K.body(), "transcription": None, "noise_reduction": None,
                      "turn_detection": dict(_SERVER_VAD)},
            "output": {"format": PCM24K.body(), "voice": "marin", "speed": 1.0},
        },
    }


_SERVER_VAD = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500,
               "idle_timeout_ms": None, "create_response": True, "interrupt_response": True}
_SEMANTIC_VAD = {"type": "semantic_vad", "eagerness": "auto", "create_response": True, "interrupt_response": True}
#: How long semantic VAD waits after speech that sounds finished (the simulator's stand-in).
_SEMANTIC_SILENCE_MS = {"high": 300, "auto": 500, "medium": 500, "low": 800}


class SimRealtimeSession:
    """One accepted Realtime session. Its tasks (the read loop, the pinger, one per response, the
    fault timers) share one nursery; whichever finds the connection gone ends the session by
    cancelling it (``_end``): a hang-up is the end of the session, never an error."""

    def __init__(
        self, ws: WebSocketConnection, config: SimModelConfig, model: ScriptedModel,
        session_log: SessionLog | None = None, wire: _Wire | None = None, model_name: str = "gpt-realtime",
    ) -> None:
        self.ws = ws
        self.config = config
        self.faults = config.faults
        self.model = model
        self.log = session_log if session_log is not None else SessionLog(0, trio.current_time())
        self.wire = wire
        self.ids = _Ids(self.log.number)
        self.session = _default_session(self.ids("sess"), model_name, int(time.time() + config.max_session_s))
        self.log.session_id = self.session["id"]
        self.conversation_id = self.ids("conv")
        self.active: _Response | None = None  # the response writing to the default conversation
        self.running: dict[str, _Response] = {}  # every response in progress, out-of-band ones too
        self.history = History()  # what the model reads from the default conversation
        self.items: dict[str, int] = {}  # assistant audio item -> ms of audio
        self._item_responses: dict[str, _Response] = {}  # assistant audio item -> the response that said it
        self._spoken: dict[str, tuple[bytes, AudioFormat]] = {}  # assistant audio item -> (8 kHz PCM, format)
        self._heard_audio: dict[str, bytes] = {}  # user audio item -> its 8 kHz PCM
        self._heard_text: dict[str, str | None] = {}  # user audio item -> what the model made of it
        self._last_interrupted = -1  # creation order of the latest response cut short
        self.conversation: dict[str, dict[str, Any]] = {}  # item id -> item
        self.order: list[str] = []  # the conversation's item ids, in order
        self.creates = 0
        self.silenced = False
        self._sent = Counter[str]()
        self._received = Counter[str]()
        self._input = bytearray()  # input audio not yet a whole 20 ms block, in the input format
        self._input_ms = 0
        self._uncommitted: deque[bytes] = deque(maxlen=_MAX_UNCOMMITTED_BLOCKS)  # 20 ms blocks since the last commit
        self._speech: bytearray | None = None
        self._speech_item = ""
        self._speech_start_ms = 0
        self._silent_ms = 0
        self._recent = bytearray()  # recent input (8 kHz PCM), for the prefix padding
        self._send_lock = trio.Lock()
        self._pinger_scope = trio.CancelScope()
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "session.update": self._on_session_update,
            "input_audio_buffer.append": self._on_input_audio_buffer_append,
            "input_audio_buffer.commit": self._on_input_audio_buffer_commit,
            "input_audio_buffer.clear": self._on_input_audio_buffer_clear,
            "output_audio_buffer.clear": self._on_output_audio_buffer_clear,
            "conversation.item.create": self._on_conversation_item_create,
            "conversation.item.truncate": self._on_conversation_item_truncate,
            "conversation.item.delete": self._on_conversation_item_delete,
            "conversation.item.retrieve": self._on_conversation_item_retrieve,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
        }

    # ------------------------------------------------------------------ the connection

    def _end(self, reason: str, code: int | None = None) -> None:
        """Record why the session ends (the first reason wins) and end it: cancel its tasks."""
        if self.log.end_reason is None:
            self.log.end_reason = reason
            self.log.close_code = code
        self.nursery.cancel_scope.cancel()

    def _closed(self, exc: Exception) -> None:
        code = exc.reason.code if isinstance(exc, ConnectionClosed) and exc.reason is not None else None
        self._end("connection_lost" if code in (None, 1006) else "client_closed", code)

    def _record(self, direction: str, payload: Any, raw: str | None = None) -> None:
        if self.config.transcript is None:
            return
        record: dict[str, Any] = {"t": round(trio.current_time() - self.log.started_at, 6),
                                  "session": self.session["id"], "dir": direction, "event": payload}
        if raw is not None:
            record["raw"] = raw
        self.config.transcript(record)

    async def send(self, payload: dict[str, Any]) -> None:
        """Send one server event. If the connection is gone, end the session and return."""
        if self.silenced:
            return
        kind = payload.pop("type")
        payload = {"type": kind, "event_id": self.ids("event"), **payload}
        text = json.dumps(payload, ensure_ascii=False)
        try:
            async with self._send_lock:
                await self.ws.send_message(text)
        except _GONE as exc:
            self._closed(exc)
            return
        if self.config.transcript is not None and self.config.transcript_out:
            self._record("out", json.loads(text))
        self._sent[kind] += 1
        drop_on = self.faults.drop_on
        if drop_on is not None and drop_on == (kind, self._sent[kind]):
            await self._drop()

    async def error(self, exc: ClientError, event_id: str | None, error_type: str = "invalid_request_error") -> None:
        if self.silenced:
            return
        event(log, "sim.model.client_error", level=logging.WARNING, code=exc.code, message=exc.message,
              param=exc.param or "", event_id=event_id or "")
        self.log.errors.append(ErrorLog(trio.current_time(), exc.code, event_id))
        await self.send({"type": "error", "error": {"type": error_type, "code": exc.code, "message": exc.message,
                                                     "param": exc.param, "event_id": event_id}})

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            nursery.start_soon(self._pinger)
            self._start_faults(nursery)
            await self.send({"type": "session.created", "session": self.session})
            while True:
                try:
                    message = await self.ws.get_message()
                except _GONE as exc:
                    self._closed(exc)
                    break
                if not self.silenced:
                    await self._on_client_message(message)

    async def _pinger(self) -> None:
        with self._pinger_scope:
            while True:
                await trio.sleep(self.config.ping_interval_s)
                with trio.move_on_after(self.config.pong_timeout_s) as waited:
                    try:
                        await self.ws.ping()
                    except _GONE as exc:
                        self._closed(exc)
                        return
                if waited.cancelled_caught:
                    event(log, "sim.model.ping_timeout", level=logging.WARNING, timeout_s=self.config.pong_timeout_s)
                    if self.log.end_reason is None:
                        self.log.end_reason, self.log.close_code = "ping_timeout", 1011
                    with trio.move_on_after(DISCONNECT_TIMEOUT_S):
                        await self.ws.aclose(code=1011, reason="keepalive ping timeout")
                    self._end("ping_timeout", 1011)
                    return

    # ------------------------------------------------------------------ faults

    def _start_faults(self, nursery: trio.Nursery) -> None:
        faults, start = self.faults, self.log.started_at
        if faults.drop_after_s is not None:
            nursery.start_soon(self._at, start + faults.drop_after_s, self._drop)
        if faults.silent_after_s is not None:
            nursery.start_soon(self._at, start + faults.silent_after_s, self._silence)
        if faults.spurious_error_after_s is not None:
            nursery.start_soon(self._at, start + faults.spurious_error_after_s, self._spurious_error)
        if faults.deaf_pings_after_s is not None:
            nursery.start_soon(self._at, start + faults.deaf_pings_after_s, self._deafen)
        for at, code in faults.errors_at:
            nursery.start_soon(self._at, start + at, lambda code=code: self._error_fault(code))
        expire = self.config.max_session_s
        if faults.expire_after_s is not None:
            expire = min(expire, faults.expire_after_s)
        nursery.start_soon(self._at, start + expire, self._expire)

    async def _at(self, when: float, action: Callable[[], Any]) -> None:
        await trio.sleep_until(when)
        await action()

    async def _drop(self) -> None:
        event(log, "sim.model.fault", fault="drop")
        if self.log.end_reason is None:
            self.log.end_reason = "dropped_by_fault"
        raw = self.wire.raw if self.wire is not None else self.ws._stream
        await trio.aclose_forcefully(raw)
        self._end("dropped_by_fault")

    async def _silence(self) -> None:
        event(log, "sim.model.fault", fault="silence")
        self.silenced = True
        self.log.silenced_at = trio.current_time()
        if self.wire is not None:
            self.wire.silence()
        self._pinger_scope.cancel()
        for response in self.running.values():
            response.scope.cancel()
        await trio.lowlevel.checkpoint()

    async def _deafen(self) -> None:
        event(log, "sim.model.fault", fault="deaf_pings")
        if self.wire is not None:
            self.wire.deaf = True
        await trio.lowlevel.checkpoint()

    async def _spurious_error(self) -> None:
        event(log, "sim.model.fault", fault="spurious_error")
        await self.error(ClientError("invalid_value", "Invalid value: the conversation is in an unexpected state."), None)

    async def _error_fault(self, code: str) -> None:
        event(log, "sim.model.fault", fault="error", code=code)
        if code == "server_error":
            await self.error(ClientError(code, SERVER_ERROR_MESSAGE), None, error_type="server_error")
        elif code == "session_expired":
            await self.error(ClientError(code, self._expired_message()), None)
        else:
            await self.error(ClientError(code, f"The server reported an error ({code})."), None)

    def _expired_message(self) -> str:
        return f"Your session hit the maximum duration of {self.config.max_session_s / 60:g} minutes."

    async def _expire(self) -> None:
        event(log, "sim.model.session_expired", after_s=trio.current_time() - self.log.started_at)
        if self.silenced:
            self._end("expired", None)
            return
        await self.error(ClientError("session_expired", self._expired_message()), None)
        if self.log.end_reason is None:
            self.log.end_reason, self.log.close_code = "expired", 1001
        with trio.move_on_after(DISCONNECT_TIMEOUT_S):
            try:
                await self.ws.aclose(code=1001, reason="session expired")
            except _GONE:
                pass
        self._end("expired", 1001)

    # ------------------------------------------------------------------ client events

    async def _on_client_message(self, message: str | bytes) -> None:
        event_id = None
        try:
            if isinstance(message, bytes):
                self._record("in", None, f"<{len(message)} bytes binary>")
                raise ClientError("invalid_json", "Binary frames are not supported: send each event as a JSON text frame.")
            try:
                payload = json.loads(message, parse_constant=_no_constant)
                _check_json(payload)
            except (ValueError, RecursionError):  # UnicodeDecodeError included
                self._record("in", None, message[:2000])
                raise ClientError("invalid_json", _INVALID_JSON) from None
            self._record("in", payload)
            if not isinstance(payload, dict):
                raise _bad_type("event", "an object", payload)
            if isinstance(payload.get("event_id"), str):
                event_id = payload["event_id"]
            elif "event_id" in payload:
                raise _bad_type("event_id", "a string", payload["event_id"])
            kind = _str(_required(payload, "type", ""), "type")
            drop_on = self.faults.drop_on
            if drop_on is not None and drop_on[0] == kind:
                self._received[kind] += 1
                if self._received[kind] == drop_on[1]:
                    await self._drop()
                    return
            handler = self._handlers.get(kind)
            if handler is None:
                raise _invalid("type", kind, "Supported values are: " + ", ".join(f"'{k}'" for k in _EVENTS) + ".")
            await handler(payload)
        except ClientError as exc:
            await self.error(exc, event_id)

    @staticmethod
    def _validate(payload: dict[str, Any]) -> None:
        _EVENTS[payload["type"]](payload, "")

    async def _on_session_update(self, payload: dict[str, Any]) -> None:
        self._validate(payload)
        session = payload["session"]
        number = self.log.session_updates + self.log.refused_session_updates + 1
        if self.faults.refuse_every_session_update or number in self.faults.refuse_session_updates:
            self.log.refused_session_updates += 1
            event(log, "sim.model.fault", fault="refuse_session_update", number=number)
            voice_asked = session.get("audio", {}).get("output", {}).get("voice", self.session["audio"]["output"]["voice"])
            shown = voice_asked if isinstance(voice_asked, str) else json.dumps(voice_asked)
            raise ClientError("invalid_value", f"Invalid value: '{shown}'. Supported values are: "
                              + ", ".join(f"'{v}'" for v in VOICES[:-1]) + f", and '{VOICES[-1]}'.",
                              "session.audio.output.voice")
        voice_now = self.session["audio"]["output"]["voice"]
        new_voice = _voice_name(session.get("audio", {}).get("output", {}).get("voice", voice_now))
        if new_voice != voice_now and self.items:
            raise ClientError("cannot_update_voice", "Cannot update a conversation's voice if assistant audio is present.",
                              "session.audio.output.voice")
        old_input = self._input_format()
        for key, value in session.items():
            if key == "audio":
                for direction, conf in value.items():
                    for name, setting in conf.items():
                        self.session["audio"][direction][name] = _normalize(name, setting)
            elif key == "tools":
                self.session["tools"] = [{"type": "function", **tool} if "type" not in tool else tool for tool in value]
            else:
                self.session[key] = value
        if self._input_format() != old_input:
            self._input.clear()  # a partial block in the old format means nothing in the new one
        self.log.session_updates += 1
        await self.send({"type": "session.updated", "session": self.session})

    def _input_format(self) -> AudioFormat:
        return _format_of(self.session["audio"]["input"]["format"])

    def _output_format(self) -> AudioFormat:
        return _format_of(self.session["audio"]["output"]["format"])

    async def _on_input_audio_buffer_append(self, payload: dict[str, Any]) -> None:
        self._validate(payload)
        await self._vad(_decode_base64(payload["audio"], "audio"))

    async def _on_input_audio_buffer_clear(self, payload: dict[str, Any]) -> None:
        self._validate(payload)
        self._speech = None
        self._uncommitted.clear()
        self._input.clear()
        await self.send({"type": "input_audio_buffer.cleared"})

    async def _on_output_audio_buffer_clear(self, payload: dict[str, Any]) -> None:
        """WebRTC/SIP only: over a WebSocket the server keeps no output buffer, so nothing to clear."""
        self._validate(payload)
        event(log, "sim.model.ignored", type="output_audio_buffer.clear")

    async def _on_input_audio_buffer_commit(self, payload: dict[str, Any]) -> None:
        self._validate(payload)
        if self._speech is not None:
            audio, self._speech = bytes(self._speech), None
            item_id = self._speech_item
        else:
            audio = b"".join(self._uncommitted)
            item_id = self.ids("item")
        if len(audio) < 5 * _SLIN_BLOCK:
            raise ClientError("input_audio_buffer_commit_empty",
                              "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
                              f"but buffer only has {len(audio) / 16:.2f}ms of audio.")
        self._uncommitted.clear()
        await self._commit(item_id, audio)

    # ------------------------------------------------------------------ the conversation

    def _add_item(self, item: dict[str, Any], after: Any = _END) -> str | None:
        """Place ``item`` in the conversation; returns its previous_item_id."""
        if after is _END:
            previous = self.order[-1] if self.order else None
            self.order.append(item["id"])
        elif after == "root":
            previous = None
            self.order.insert(0, item["id"])
        else:
            previous = after
            self.order.insert(self.order.index(after) + 1, item["id"])
        self.conversation[item["id"]] = item
        return previous

    def _remove_item(self, item_id: str) -> None:
        self.conversation.pop(item_id, None)
        if item_id in self.order:
            self.order.remove(item_id)

    def _call_name(self, call_id: str) -> str | None:
        for calls in (self.log.calls, self.log.client_calls):
            if call_id in calls:
                return calls[call_id].name
        return self.history.pending.get(call_id) or self.history.answered.get(call_id)

    def _read(self, history: History, item: dict[str, Any]) -> None:
        """What the model takes from one item into ``history`` (an item a client put in)."""
        kind = item.get("type")
        if kind == "message":
            parts = item.get("content") or []
            if item.get("role") == "user":
                texts = [self._user_part_text(item.get("id", ""), p) for p in parts]
                words = " ".join(t for t in texts if t)
                if words:
                    history.heard(words)
                elif item.get("id") in self._heard_text:  # an utterance it could not make out
                    history.heard(None)
            elif item.get("role") == "assistant":
                history.assistant_item(" ".join(p.get("text") or p.get("transcript") or "" for p in parts))
            elif item.get("role") == "system":
                history.system_item(" ".join(p.get("text") or "" for p in parts))
        elif kind == "function_call":
            history.call_item(item["call_id"], item["name"])
        elif kind == "function_call_output":
            if not history.output(item["call_id"], item["output"]):
                name = self._call_name(item["call_id"])
                if name is not None:
                    history.outputs.append((name, item["output"]))

    def _user_part_text(self, item_id: str, part: dict[str, Any]) -> str | None:
        if part.get("type") == "input_text":
            return str(part.get("text") or "")
        if part.get("type") == "input_audio":
            if item_id in self._heard_text:
                return self._heard_text[item_id]
            if part.get("transcript"):
                return str(part["transcript"])
            if part.get("audio"):
                pcm = self._input_format().decode(base64.b64decode(part["audio"]))
                try:
                    return voice.hear(pcm)
                except voice.UnintelligibleSpeech:
                    return None
        return None

    async def _on_conversation_item_create(self, payload: dict[str, Any]) -> None:
        self._validate(payload)
        item = dict(payload["item"])
        after = payload.get("previous_item_id", _END)
        if after is not _END and after != "root" and after not in self.conversation:
            raise ClientError("item_not_found", f"Previous item with id '{after}' not found.", "previous_item_id")
        if item.get("id") in self.conversation:
            raise _invalid("item.id", item["id"], "An item with this id already exists.")
        kind = item["type"]
        if kind == "function_call_output":
            call_id = item["call_id"]
            known = self.log.calls.get(call_id) or self.log.client_calls.get(call_id)
            if known is not None:
                known.outputs.append(trio.current_time())
            if call_id not in self.history.pending:
                code = "invalid_value"
                self.log.rejected_outputs.append(RejectedOutputLog(trio.current_time(), call_id, code))
                raise ClientError(code, f"No function call with call_id '{call_id}' is awaiting output.", "item.call_id")
        elif kind == "function_call":
            item.setdefault("call_id", self.ids("call"))
            if self.history.known(item["call_id"]) or item["call_id"] in self.log.calls:
                raise _invalid("item.call_id", item["call_id"], "A function call with this call_id already exists.")
            self.log.client_calls[item["call_id"]] = FunctionCallLog(item["name"], item["arguments"], trio.current_time())
        item.setdefault("id", self.ids("item"))
        if kind in ("message", "function_call", "function_call_output"):
            item = {"id": item.pop("id"), "object": "realtime.item", "type": item.pop("type"),
                    **item, "status": item.get("status", "completed")}
        self._read(self.history, item)
        previous = self._add_item(item, after)
        await self.send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        await self.send({"type": "conversation.item.done", "previous_item_id": previous, "item": item})
        if kind == "function_call_output" and self.faults.respond_after_output and self.active is None:
            event(log, "sim.model.fault", fault="respond_after_output")
            self._start_response({}, trigger="output")

    def _interrupted(self, response: _Response, reason: str, call_issued: bool) -> None:
        """Tell the model a response of the conversation was cut: the latest one cut is what it resumes."""
        order = list(self.log.responses).index(response.id)
        if order >= self._last_interrupted:
            self._last_interrupted = order
            self.model.cancelled(response.turn, reason=reason, call_issued=call_issued)

    async def _on_conversation_item_truncate(self, payload: dict[str, Any]) -> None:
        self._validate(payload)
        item_id, end_ms = payload["item_id"], payload["audio_end_ms"]
        if item_id not in self.items:
            raise ClientError("invalid_value", f"Item '{item_id}' has no assistant audio.", "item_id")
        if end_ms > self.items[item_id]:
            raise ClientError("invalid_value", f"audio_end_ms {end_ms} is past the item's {self.items[item_id]} ms.", "audio_end_ms")
        spoken = self._item_responses.get(item_id)
        if spoken is not None and end_ms < self.items[item_id] and self.log.responses[spoken.id].status == "completed":
            # The response was complete, but the caller heard only part of it: to the model, as
            # to a person, the answer was interrupted (one cancelled mid-way was told already).
            self._interrupted(spoken, "turn_detected", call_issued=True)
        item = self.conversation.get(item_id)
        if item is not None and end_ms < self.items[item_id] and item["content"]:
            # What the caller did not hear is gone from the transcript too.
            transcript = item["content"][0].get("transcript") or ""
            words = transcript.split(" ")
            kept = words[: len(words) * end_ms // max(self.items[item_id], 1)]
            item["content"][0]["transcript"] = " ".join(kept)
        self.items[item_id] = end_ms
        await self.send({"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0, "audio_end_ms": end_ms})

    async def _on_conversation_item_delete(self, payload: dict[str, Any]) -> None:
        self._validate(payload)
        item_id = payload["item_id"]
        item = self.conversation.get(item_id)
        if item is None:
            raise ClientError("item_not_found", f"Item with item_id not found: {item_id}", "item_id")
        self._remove_item(item_id)
        self.items.pop(item_id, None)
        if item.get("type") == "function_call":
            self.history.forget(item["call_id"])
        await self.send({"type": "conversation.item.deleted", "item_id": item_id})

    async def _on_conversation_item_retrieve(self, payload: dict[str, Any]) -> None:
        self._validate(payload)
        item_id = payload["item_id"]
        item = self.conversation.get(item_id)
        if item is None:
            raise ClientError("item_not_found", f"Item with item_id not found: {item_id}", "item_id")
        item = json.loads(json.dumps(item))
        if item_id in self._heard_audio:  # "including audio data"
            audio = self._input_format().encode(self._heard_audio[item_id])
            item["content"][0]["audio"] = base64.b64encode(audio).decode()
        elif item_id in self._spoken and item["content"]:
            slin, fmt = self._spoken[item_id]
            audio = fmt.encode(slin[: self.items.get(item_id, 0) * 16])
            item["content"][0]["audio"] = base64.b64encode(audio).decode()
        await self.send({"type": "conversation.item.retrieved", "item": item})

    async def _on_response_create(self, payload: dict[str, Any]) -> None:
        self.creates += 1
        number = self.creates
        raw = payload.get("response")
        metadata = raw.get("metadata") if isinstance(raw, dict) else None
        kind = metadata.get("kind") if isinstance(metadata, dict) and isinstance(metadata.get("kind"), str) else None
        event_id = payload.get("event_id") if isinstance(payload.get("event_id"), str) else None
        record = CreateLog(trio.current_time(), kind, event_id, "rejected")
        self.log.creates.append(record)
        if number in self.faults.refuse_creates:
            record.outcome = "refused"
            echoed = event_id if self.faults.refusal_echoes_event_id else None
            event(log, "sim.model.fault", fault="refuse_create", number=number)
            await self.error(ClientError("server_error", SERVER_ERROR_MESSAGE), echoed, error_type="server_error")
            return
        self._validate(payload)
        params: dict[str, Any] = payload.get("response", {})
        out_of_band = params.get("conversation") == "none"
        if self.active is not None and not out_of_band:
            raise ClientError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self.active.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        record.response_id = self._start_response(params, trigger="create")
        record.outcome = "started"

    async def _on_response_cancel(self, payload: dict[str, Any]) -> None:
        self._validate(payload)
        response_id = payload.get("response_id")
        target = self.running.get(response_id) if response_id else self.active
        if target is None or target.scope.cancel_called:
            raise ClientError("response_cancel_not_active", "Cancellation failed: no active response found.")
        target.cancel_reason = "client_cancelled"
        target.scope.cancel()

    # ------------------------------------------------------------------ server VAD

    def _vad_settings(self) -> dict[str, Any] | None:
        detection: dict[str, Any] | None = self.session["audio"]["input"].get("turn_detection")
        return detection

    @staticmethod
    def _setting(detection: dict[str, Any], key: str, default: Any) -> Any:
        if detection.get("type") == "semantic_vad":
            if key == "silence_duration_ms":
                return _SEMANTIC_SILENCE_MS.get(detection.get("eagerness") or "auto", 500)
            if key not in detection:
                return default
        value = detection.get(key)
        return default if value is None else value

    async def _vad(self, audio: bytes) -> None:
        fmt = self._input_format()
        self._input += audio
        block = 20 * fmt.bytes_per_ms
        count = len(self._input) // block
        if not count:
            return
        slin = fmt.decode(bytes(self._input[: count * block]))
        del self._input[: count * block]
        # Every block's RMS at once, bit for bit voice.block_rms's: exact integer sums of squares.
        wide = np.frombuffer(slin, "<i2", count * _SLIN_BLOCK // 2).astype(np.int64).reshape(count, _SLIN_BLOCK // 2)
        energies = np.einsum("ij,ij->i", wide, wide).tolist()
        # Only a session.update changes the settings, and it is handled after this event is.
        detection = self._vad_settings()
        loud_rms = silence_ms = 0.0
        if detection is not None:
            loud_rms = voice.SPEECH_RMS * 2 * float(self._setting(detection, "threshold", 0.5))
            silence_ms = int(self._setting(detection, "silence_duration_ms", 500))
        for i in range(count):
            pcm = slin[i * _SLIN_BLOCK : (i + 1) * _SLIN_BLOCK]
            start_ms = self._input_ms
            self._input_ms += 20
            self._recent += pcm
            if len(self._recent) > 2 * _RECENT_BYTES:  # trimmed now and then, not copied per block
                del self._recent[:-_RECENT_BYTES]
            if detection is None:
                self._uncommitted.append(pcm)
                continue
            loud = math.sqrt(energies[i] / (_SLIN_BLOCK // 2)) >= loud_rms
            if self._speech is None:
                self._uncommitted.append(pcm)
                if loud:
                    await self._speech_started(detection, start_ms, pcm)
            else:
                self._speech += pcm
                self._silent_ms = 0 if loud else self._silent_ms + 20
                if self._silent_ms >= silence_ms:
                    await self._speech_stopped(detection)

    async def _speech_started(self, detection: dict[str, Any], start_ms: int, block: bytes) -> None:
        prefix_blocks = int(self._setting(detection, "prefix_padding_ms", 300)) // 20
        recent = self._recent[-_RECENT_BYTES:]
        prefix = bytes(recent[-_SLIN_BLOCK * (prefix_blocks + 1) : -_SLIN_BLOCK]) if prefix_blocks else b""
        self._speech = bytearray(prefix + block)
        self._speech_item = self.ids("item")
        self._speech_start_ms = start_ms
        self._silent_ms = 0
        await self.send({"type": "input_audio_buffer.speech_started", "audio_start_ms": start_ms, "item_id": self._speech_item})
        active = self.active
        if active is not None and self._setting(detection, "interrupt_response", True) and not active.scope.cancel_called:
            active.cancel_reason = "turn_detected"
            active.scope.cancel()

    async def _speech_stopped(self, detection: dict[str, Any]) -> None:
        assert self._speech is not None
        audio, self._speech = bytes(self._speech), None
        self._uncommitted.clear()
        item_id = self._speech_item
        await self.send({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": self._input_ms, "item_id": item_id})
        await self._commit(item_id, audio)
        if self._setting(detection, "create_response", True) and self.active is None:
            self._start_response({}, trigger="vad")

    async def _commit(self, item_id: str, audio: bytes) -> None:
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
                "content": [{"type": "input_audio", "transcript": None}]}
        previous = self._add_item(item)
        self._heard_audio[item_id] = audio
        try:
            text: str | None = voice.hear(audio)
            failure = ""
        except voice.UnintelligibleSpeech as exc:
            text, failure = None, str(exc)
        self._heard_text[item_id] = text
        self.history.heard(text)
        event(log, "sim.model.heard", text=text or "(unintelligible)")
        await self.send({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id})
        await self.send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        await self.send({"type": "conversation.item.done", "previous_item_id": previous, "item": item})
        if self.session["audio"]["input"].get("transcription") is None:
            return  # transcription is off unless configured: the model hears, nobody writes it down
        if text is None:
            await self.send({"type": "conversation.item.input_audio_transcription.failed", "item_id": item_id,
                             "content_index": 0, "error": {"type": "transcription_error", "code": "audio_unintelligible",
                                                           "message": failure, "param": None}})
        else:
            item["content"] = [{"type": "input_audio", "transcript": text}]
            tokens = max(1, len(audio) // 1600)  # about one audio token per 100 ms
            words = len(text.split())
            await self.send({"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id,
                             "content_index": 0, "transcript": text,
                             "usage": {"type": "tokens", "total_tokens": tokens + words, "input_tokens": tokens,
                                       "output_tokens": words,
                                       "input_token_details": {"text_tokens": 0, "audio_tokens": tokens}}})

    # ------------------------------------------------------------------ responses

    def _context_of(self, items: list[dict[str, Any]]) -> History:
        """A response's own context (``response.input``): its items, references resolved."""
        history = History()
        for i, entry in enumerate(items):
            if entry.get("type") == "item_reference":
                item = self.conversation.get(entry["id"])
                if item is None:
                    raise ClientError("item_not_found", f"Item with item_id not found: {entry['id']}",
                                      f"response.input[{i}].id")
            else:
                item = entry
                if item.get("type") == "function_call" and "call_id" not in item:
                    item = {**item, "call_id": self.ids("call")}
            self._read(history, item)
        return history

    def _start_response(self, params: dict[str, Any], *, trigger: str) -> str:
        instructions = params.get("instructions")
        out_of_band = params.get("conversation") == "none"
        if "input" in params:  # "creates a new context for this Response instead of using the default conversation"
            context = self._context_of(params["input"])
            user_text, outputs = context.user_text, context.outputs
            pending = bool(context.pending)
        elif out_of_band:  # the default conversation, read but not written: nothing is answered in it
            user_text, outputs, pending = self.history.user_text, list(self.history.outputs), bool(self.history.pending)
        else:
            user_text, outputs = self.history.take()
            pending = bool(self.history.pending)
        turn = self.model.decide(user_text=user_text, tool_outputs=outputs, instructions=instructions, call_pending=pending)
        metadata = dict(params.get("metadata") or {})
        output = params.get("audio", {}).get("output", {})
        response = _Response(
            self.ids("resp"), metadata, turn, out_of_band,
            modality=(params.get("output_modalities") or self.session["output_modalities"])[0],
            format=_format_of(output.get("format"), self._output_format()),
            voice=_voice_name(output.get("voice", self.session["audio"]["output"]["voice"])),
            max_output_tokens=params.get("max_output_tokens", self.session["max_output_tokens"]),
        )
        self.running[response.id] = response
        if not out_of_band:
            self.active = response
        self.log.responses[response.id] = ResponseLog(
            response.id, metadata.get("kind"), trigger, trio.current_time(), out_of_band, text=turn.text)
        self.nursery.start_soon(self._respond, response)
        return response.id

    async def _respond(self, response: _Response) -> None:
        turn = response.turn
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
        if response.open_part is not None:  # cut off mid-item: close what was opened, with what was generated
            await self._close_part(response, response.open_part)
        # No checkpoint from here to the response.done being on its way: nothing can slip between.
        del self.running[response.id]
        if self.active is response:
            self.active = None
        if self.silenced:
            return
        status = "cancelled" if response.scope.cancelled_caught else "completed"
        body = self._response_body(response, status)
        record = self.log.responses[response.id]
        record.status, record.done_at = status, trio.current_time()
        if status == "cancelled":
            reason = response.cancel_reason or "client_cancelled"
            record.reason = reason
            body["status_details"] = {"type": "cancelled", "reason": reason}
            if not response.out_of_band:
                self._interrupted(response, reason, response.call_issued)
        body["usage"] = self._usage(response)
        await self.send({"type": "response.done", "response": body})

    def _response_body(self, response: _Response, status: str) -> dict[str, Any]:
        return {"object": "realtime.response", "id": response.id, "status": status, "status_details": None,
                "output": response.output, "conversation_id": None if response.out_of_band else self.conversation_id,
                "output_modalities": [response.modality], "max_output_tokens": response.max_output_tokens,
                "audio": {"output": {"format": response.format.body(), "voice": response.voice}},
                "usage": None, "metadata": response.metadata or None}

    def _usage(self, response: _Response) -> dict[str, Any]:
        text = sum(len(str(i.get("arguments") or i.get("content") or "")) for i in response.output) // 4
        audio = response.audio_ms // 50
        context = 40 + 10 * len(self.order)
        return {"total_tokens": context + text + audio, "input_tokens": context, "output_tokens": text + audio,
                "input_token_details": {"text_tokens": context, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 0,
                                        "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0}},
                "output_token_details": {"text_tokens": text, "audio_tokens": audio}}

    async def _step(self, part: _Part, payload: dict[str, Any]) -> None:
        """Send one of the part's events, unless it was sent already."""
        kind = payload["type"]
        if kind not in part.sent:
            await self.send(payload)
            part.sent.add(kind)

    def _open_part(self, response: _Response, kind: str, item: dict[str, Any], name: str = "") -> _Part:
        previous = None if response.out_of_band else self._add_item(item)
        part = _Part(kind, item, len(response.output), previous, name)
        response.output.append(item)
        response.open_part = part
        return part

    async def _added(self, response: _Response, part: _Part) -> None:
        await self._step(part, {"type": "response.output_item.added", "response_id": response.id,
                                "output_index": part.index, "item": part.item})
        if not response.out_of_band:
            await self._step(part, {"type": "conversation.item.added", "previous_item_id": part.previous, "item": part.item})

    async def _close_part(self, response: _Response, part: _Part) -> None:
        """The part's closing events (``.done``s, ``output_item.done``, ``conversation.item.done``),
        each sent once: after the last delta, or, for a response cut off, with what was generated
        so far (the item then ``incomplete``). A part never announced is dropped."""
        item = part.item
        if "response.output_item.added" not in part.sent:
            response.output.remove(item)
            self._remove_item(item["id"])
            response.open_part = None
            return
        if not response.out_of_band:
            await self._step(part, {"type": "conversation.item.added", "previous_item_id": part.previous, "item": item})
        common = {"response_id": response.id, "item_id": item["id"], "output_index": part.index}
        started = "response.content_part.added" in part.sent
        if part.kind == "audio" and started:
            await self._step(part, {"type": "response.output_audio.done", **common, "content_index": 0})
            await self._step(part, {"type": "response.output_audio_transcript.done", **common, "content_index": 0,
                                    "transcript": part.generated})
            await self._step(part, {"type": "response.content_part.done", **common, "content_index": 0,
                                    "part": {"type": "audio", "transcript": part.generated}})
        elif part.kind == "text" and started:
            await self._step(part, {"type": "response.output_text.done", **common, "content_index": 0, "text": part.generated})
            await self._step(part, {"type": "response.content_part.done", **common, "content_index": 0,
                                    "part": {"type": "text", "text": part.generated}})
        elif part.kind == "call":
            await self._step(part, {"type": "response.function_call_arguments.done", **common, "call_id": item["call_id"],
                                    "name": part.name, "arguments": part.generated})
        item["status"] = "completed" if part.complete else "incomplete"
        if part.kind == "call":
            item["arguments"] = part.generated
        elif started:
            item["content"] = [{"type": "output_audio", "transcript": part.generated} if part.kind == "audio"
                               else {"type": "output_text", "text": part.generated}]
        await self._step(part, {"type": "response.output_item.done", "response_id": response.id,
                                "output_index": part.index, "item": item})
        if not response.out_of_band:
            await self._step(part, {"type": "conversation.item.done", "previous_item_id": part.previous, "item": item})
        response.open_part = None

    async def _speak(self, response: _Response, text: str) -> None:
        item: dict[str, Any] = {"id": self.ids("item"), "object": "realtime.item", "type": "message",
                                "role": "assistant", "status": "in_progress", "content": []}
        part = self._open_part(response, response.modality, item)
        await self._added(response, part)
        common = {"response_id": response.id, "item_id": item["id"], "output_index": part.index, "content_index": 0}
        words = text.split(" ")
        if response.modality == "text":
            await self._step(part, {"type": "response.content_part.added", **common, "part": {"type": "text", "text": ""}})
            for i, word in enumerate(words):
                delta = word + (" " if i < len(words) - 1 else "")
                await self.send({"type": "response.output_text.delta", **common, "delta": delta})
                part.generated += delta
                await trio.sleep(_TEXT_INTERVAL_S)
        else:
            await self._step(part, {"type": "response.content_part.added", **common, "part": {"type": "audio", "transcript": ""}})
            fmt = response.format
            slin = voice.speak(text)
            audio = fmt.encode(slin)
            size = _CHUNK_MS * fmt.bytes_per_ms
            chunks = math.ceil(len(audio) / size)
            self.items[item["id"]] = 0
            self._spoken[item["id"]] = (slin, fmt)
            if not response.out_of_band:
                self._item_responses[item["id"]] = response
            sent_words = 0
            for i in range(chunks):
                chunk = audio[i * size : (i + 1) * size]
                await self.send({"type": "response.output_audio.delta", **common, "delta": base64.b64encode(chunk).decode()})
                self.items[item["id"]] += len(chunk) // fmt.bytes_per_ms
                response.audio_ms += len(chunk) // fmt.bytes_per_ms
                upto = round(len(words) * (i + 1) / chunks)
                if upto > sent_words:
                    delta = " ".join(words[sent_words:upto]) + (" " if upto < len(words) else "")
                    await self.send({"type": "response.output_audio_transcript.delta", **common, "delta": delta})
                    part.generated += delta
                    sent_words = upto
                await trio.sleep(_CHUNK_INTERVAL_S)
        part.generated, part.complete = text, True
        await self._close_part(response, part)
        event(log, "sim.model.said", text=text, kind=response.metadata.get("kind", "turn"))

    async def _call(self, response: _Response, name: str, arguments: dict[str, Any]) -> None:
        call_id = self.ids("call")
        args = json.dumps(arguments, ensure_ascii=False)
        item: dict[str, Any] = {"id": self.ids("item"), "object": "realtime.item", "type": "function_call",
                                "status": "in_progress", "name": name, "call_id": call_id, "arguments": ""}
        part = self._open_part(response, "call", item, name)
        await self._added(response, part)
        await self.send({"type": "response.function_call_arguments.delta", "response_id": response.id,
                         "item_id": item["id"], "output_index": part.index, "call_id": call_id, "delta": args})
        # The whole call is generated: its output_item.done will say "completed", whatever happens next.
        part.generated, part.complete = args, True
        self.history.issued(call_id, name)
        response.call_issued = True
        self.log.calls[call_id] = FunctionCallLog(name, args, trio.current_time())
        await self._close_part(response, part)
        event(log, "sim.model.called", tool=name, arguments=args)


def _voice_name(value: Any) -> str:
    return str(value["id"]) if isinstance(value, dict) else str(value)


def _normalize(name: str, value: Any) -> Any:
    """A session.update's audio setting as the session then holds it (the real defaults filled in)."""
    if name == "format":
        return _format_of(value).body()
    if name == "turn_detection" and value is not None:
        defaults = _SERVER_VAD if value["type"] == "server_vad" else _SEMANTIC_VAD
        return {**defaults, **value}
    if name == "voice":
        return _voice_name(value)
    return value


# --------------------------------------------------------------------------- one connection


def _refusal_body(status: int, key: str = "", model: str = "gpt-realtime") -> bytes:
    kind, code, message = HANDSHAKE_REFUSALS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"HTTP {status}"))
    shown = f"{key[:3]}{'*' * max(len(key) - 7, 4)}{key[-4:]}" if len(key) > 8 else "****"
    body = {"error": {"message": message.format(key=shown, model=model), "type": kind, "param": None, "code": code}}
    return json.dumps(body).encode()


_JSON_HEADERS = [(b"Content-Type", b"application/json")]


async def _discard_until_closed(stream: trio.abc.Stream) -> None:
    try:
        while await stream.receive_some(65536):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


async def serve_model_stream(
    stream: trio.abc.Stream, config: SimModelConfig = SimModelConfig(), ledger: ModelLedger | None = None,
) -> None:
    """Serve one already-accepted connection: the HTTP upgrade, then the session.

    Always closes ``stream`` before returning; never raises for anything the peer does. A bug in
    the simulator ends only this session (logged as ``sim.model.crashed``, kept in the ledger).
    """
    ledger = ledger if ledger is not None else ModelLedger()
    holder: list[SessionLog] = []
    try:
        await _serve_connection(stream, config, ledger, holder)
    except* (ConnectionClosed, LocalProtocolError, RemoteProtocolError, trio.BrokenResourceError,
             trio.ClosedResourceError) as group:
        # The connection broke in a way trio-websocket let escape (its reader task, mostly).
        event(log, "sim.model.connection_error", level=logging.WARNING, error=repr(_leaves(group)[0]))
        if holder and holder[0].end_reason is None:
            holder[0].end_reason = "connection_lost"
    except* Exception as group:
        error = "; ".join(repr(leaf) for leaf in _leaves(group))
        event(log, "sim.model.crashed", level=logging.ERROR, error=error)
        if holder:
            holder[0].crashes.append(error)
            holder[0].end_reason = "crashed"
        else:
            ledger.crashes.append(error)
    finally:
        if holder:
            holder[0].ended_at = trio.current_time()
            if holder[0].end_reason is None:
                holder[0].end_reason = "server_shutdown"
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


async def _serve_connection(
    stream: trio.abc.Stream, config: SimModelConfig, ledger: ModelLedger, holder: list[SessionLog],
) -> None:
    faults = config.faults
    if faults.stall_handshake:
        ledger.handshakes.append(HandshakeLog(trio.current_time(), "stalled", None, "fault"))
        event(log, "sim.model.fault", fault="stall_handshake")
        await _discard_until_closed(stream)
        return
    wire = _Wire(stream)
    async with trio.open_nursery() as nursery:  # trio-websocket's reader task lives here
        request: WebSocketRequest | None = None

        async def handshake(race: trio.CancelScope) -> None:
            nonlocal request
            request = await wrap_server_stream(nursery, wire, message_queue_size=64, max_message_size=MAX_MESSAGE)
            race.cancel()

        async def peer_gone(race: trio.CancelScope) -> None:
            await wire.closed.wait()
            race.cancel()

        async with trio.open_nursery() as race:
            race.cancel_scope.deadline = trio.current_time() + CONNECT_TIMEOUT_S
            race.start_soon(handshake, race.cancel_scope)
            race.start_soon(peer_gone, race.cancel_scope)
        if request is None:
            reason = "client_gone" if wire.closed.is_set() else "no_request"
            ledger.handshakes.append(HandshakeLog(trio.current_time(), "timed_out", None, reason))
            nursery.cancel_scope.cancel()
            return
        ws: WebSocketConnection | None = None
        try:
            ws = await _upgrade(request, config, ledger)
            if ws is not None:
                session_log = SessionLog(len(ledger.sessions) + 1, trio.current_time())
                ledger.sessions.append(session_log)
                holder.append(session_log)
                await _session(ws, request, config, session_log, wire)
        except _GONE:
            if holder and holder[0].end_reason is None:
                holder[0].end_reason = "connection_lost"
        # As trio-websocket's own server does: close, bounded in time; the reader ends with it.
        nursery.cancel_scope.deadline = trio.current_time() + DISCONNECT_TIMEOUT_S
        if ws is not None:
            await ws.aclose()
        else:
            await wire.closed.wait()  # a refused client reads the refusal, then closes
        nursery.cancel_scope.cancel()


def _model_of(path: str) -> str:
    return (parse_qs(urlsplit(path).query).get("model") or ["gpt-realtime"])[0]


async def _upgrade(request: WebSocketRequest, config: SimModelConfig, ledger: ModelLedger) -> WebSocketConnection | None:
    """Refuse the upgrade (and log it in the ledger) or accept it."""
    path = request.path
    headers = {k.lower(): v for k, v in request.headers}
    auth = headers.get(b"authorization", b"")
    key = auth[7:].decode("latin-1") if auth.startswith(b"Bearer ") else ""
    model = _model_of(path)

    async def refuse(status: int, body: bytes, reason: str) -> None:
        ledger.handshakes.append(HandshakeLog(trio.current_time(), "refused", status, reason))
        event(log, "sim.model.handshake_refused", status=status, reason=reason)
        await request.reject(status, extra_headers=list(_JSON_HEADERS), body=body)

    if urlsplit(path).path.rstrip("/") != "/v1/realtime":
        body = {"error": {"message": f"Invalid URL (GET {urlsplit(path).path})", "type": "invalid_request_error",
                          "param": None, "code": None}}
        await refuse(404, json.dumps(body).encode(), "path")
        return None
    if config.faults.handshake_status is not None:
        await refuse(config.faults.handshake_status, _refusal_body(config.faults.handshake_status, key, model), "fault")
        return None
    if not key:
        body = {"error": {"message": "You didn't provide an API key. You need to provide your API key in an "
                          "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                          "type": "invalid_request_error", "param": None, "code": None}}
        await refuse(401, json.dumps(body).encode(), "auth")
        return None
    if config.api_key is not None and key != config.api_key:
        await refuse(401, _refusal_body(401, key, model), "auth")
        return None
    return await request.accept()


async def _session(
    ws: WebSocketConnection, request: WebSocketRequest, config: SimModelConfig, session_log: SessionLog, wire: _Wire,
) -> None:
    headers = {k.lower(): v for k, v in request.headers}
    if headers.get(b"openai-beta", b"").startswith(b"realtime"):
        session_log.end_reason, session_log.close_code = "beta_refused", 4000
        session_log.errors.append(ErrorLog(trio.current_time(), "beta_api_shape_disabled", None))
        refusal = {"type": "error", "event_id": "event_beta", "error": {
            "type": "invalid_request_error", "code": "beta_api_shape_disabled", "param": None, "event_id": None,
            "message": "The beta Realtime API shape is disabled; remove the OpenAI-Beta header."}}
        await ws.send_message(json.dumps(refusal))
        if config.transcript is not None and config.transcript_out:
            config.transcript({"t": round(trio.current_time() - session_log.started_at, 6), "session": "",
                               "dir": "out", "event": refusal})
        with trio.move_on_after(DISCONNECT_TIMEOUT_S):
            await ws.aclose(code=4000, reason="beta_api_shape_disabled")
        return
    await SimRealtimeSession(ws, config, ScriptedModel(), session_log, wire, _model_of(request.path)).run()


# --------------------------------------------------------------------------- the TCP listener


@dataclass
class ModelServer:
    """What ``serve_model`` hands to ``task_status.started``."""

    port: int
    ledger: ModelLedger
    listeners: list[trio.SocketListener]


async def serve_model(
    host: str, port: int, config: SimModelConfig = SimModelConfig(), ledger: ModelLedger | None = None,
    *, task_status: trio.TaskStatus[ModelServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the simulated Realtime API on ``ws://host:port/v1/realtime``.

    ``started()`` hands back a ``ModelServer``: ``.port`` is the bound port (of the first
    listener), ``.ledger`` the ledger every session records into.
    """
    ledger = ledger if ledger is not None else ModelLedger()
    listeners = await trio.open_tcp_listeners(port, host=host)
    server = ModelServer(listeners[0].socket.getsockname()[1], ledger, listeners)

    async def handler(stream: trio.SocketStream) -> None:
        await serve_model_stream(stream, config, ledger)

    task_status.started(server)
    await trio.serve_listeners(handler, listeners)
