"""A simulated OpenAI Realtime (GA) server over a real WebSocket, with a scripted model.

Serves ``/v1/realtime``. Faithful to research/openai-realtime.md: Bearer auth (401 without it),
the beta header refused (``beta_api_shape_disabled``, close 4000), ``session.created`` first,
``session.update`` validated (``session.type``, GA keys only, types, known audio formats),
server VAD on the audio it receives (energy, threshold/prefix/silence as configured),
``conversation_already_has_active_response`` when a second response would write to the
conversation, out-of-band responses (``conversation: "none"``) beside it, barge-in cancelling
the active response (``turn_detected``), GA response events (``response.output_audio.delta`` in
PCMU, transcript deltas, function calls) faster than real time. It pings its client every
``ping_interval_s`` and closes the connection of a client that has not answered within
``pong_timeout_s``: the failure that killed the old system's calls.

Whatever the client does, the server survives it: a malformed client event gets an ``error``
event in the real API's shape and the session goes on; a peer that hangs up, at any moment,
ends its own session and nothing else. Only a bug in the simulator itself ends a session
abnormally, and then only that one (``sim.model.crashed`` and ``SessionLog.crashes``).

``serve_model_stream`` serves one connection from any Trio byte stream (a TCP connection or an
in-memory stream, on the real or a virtual clock: it only waits through Trio). ``serve_model``
is the TCP listener built on it. ``SimModelConfig.faults`` (``ModelFaults``) injects the
failures of the real service; a ``ModelLedger`` records what every session did, for checking
invariants after a simulated call.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, wrap_server_stream
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from mikrovoice.logs import event
from mikrovoice.sim import voice
from mikrovoice.sim.brain import ScriptedModel, Turn
from mikrovoice.telephony import g711

log = logging.getLogger("mikrovoice.sim.model")

_FORMATS = {"audio/pcm", "audio/pcmu", "audio/pcma"}
_CHUNK_BYTES = 800  # 100 ms of PCMU per audio delta
_FIRST_AUDIO_S = 0.35  # model latency before the first delta
_CHUNK_INTERVAL_S = 0.025  # 100 ms of audio every 25 ms: 4x real time, like the real service
MAX_MESSAGE = 16 * 1024 * 1024
CONNECT_TIMEOUT_S = 60.0  # for the client's HTTP upgrade request (trio-websocket's default)
DISCONNECT_TIMEOUT_S = 2.0  # for the WebSocket close handshake once a session is over
_MAX_UNCOMMITTED_BLOCKS = 6000  # 120 s of input audio kept for input_audio_buffer.commit

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


@dataclass(frozen=True)
class ModelFaults:
    """Failures of the real service, injected on purpose. Times count from the WebSocket accept."""

    handshake_status: int | None = None  # refuse the upgrade with this HTTP status and the real body
    stall_handshake: bool = False  # accept TCP, never answer the upgrade (read and discard until closed)
    drop_after_s: float | None = None  # then close the TCP connection abruptly (no close frame)
    silent_after_s: float | None = None  # then go dead: no events, no pongs, nothing read
    refuse_creates: frozenset[int] = frozenset()  # the k-th response.create (1-based) gets a server_error
    refusal_echoes_event_id: bool = True  # that error carries the create's event_id (else null)
    spurious_error_after_s: float | None = None  # then one unprompted invalid_request_error, and carry on


@dataclass(frozen=True)
class SimModelConfig:
    # A ping every 5 s that must be answered within 20 s: any client that stops reading for
    # 25 s or more is dropped, as the old system was after its 27 s router query.
    ping_interval_s: float = 5.0
    pong_timeout_s: float = 20.0
    api_key: str | None = None  # when set, only this key is accepted
    faults: ModelFaults = ModelFaults()


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
    trigger: str  # "create" or "vad"
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


#: ``SessionLog.end_reason`` values.
END_REASONS = (
    "client_closed",  # the client's close frame
    "connection_lost",  # the TCP connection ended without a close frame
    "dropped_by_fault",  # ModelFaults.drop_after_s
    "ping_timeout",  # the client did not answer a ping in time; the server closed
    "beta_refused",  # the client sent the beta header
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


def _obj(value: Any, param: str, keys: set[str] | None = None) -> dict[str, Any]:
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


def _num(value: Any, param: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad_type(param, "a number", value)
    if not low <= value <= high:
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


def _opt(obj: dict[str, Any], key: str, check: Callable[[Any, str], Any], prefix: str, nullable: bool = False) -> None:
    """Check ``obj[key]`` if present (and, when ``nullable``, not null)."""
    if key in obj and not (nullable and obj[key] is None):
        check(obj[key], _join(prefix, key))


def _required(obj: dict[str, Any], key: str, prefix: str) -> Any:
    if key not in obj:
        raise _missing(_join(prefix, key))
    return obj[key]


def _list(check: Callable[[Any, str], Any]) -> Callable[[Any, str], None]:
    def checker(value: Any, param: str) -> None:
        if not isinstance(value, list):
            raise _bad_type(param, "an array", value)
        for i, item in enumerate(value):
            check(item, f"{param}[{i}]")

    return checker


def _check_format(value: Any, param: str) -> None:
    fmt = _obj(value, param, {"type", "rate"})
    kind = _enum(_required(fmt, "type", param), f"{param}.type", tuple(sorted(_FORMATS)))
    if "rate" in fmt:
        if kind != "audio/pcm":
            raise ClientError("unknown_parameter", f"Unknown parameter: '{param}.rate'.", f"{param}.rate")
        if _int(fmt["rate"], f"{param}.rate") != 24000:
            raise _invalid(f"{param}.rate", fmt["rate"], "Supported values are: 24000.")


def _check_turn_detection(value: Any, param: str) -> None:
    keys = {"type", "threshold", "prefix_padding_ms", "silence_duration_ms", "create_response", "interrupt_response",
            "idle_timeout_ms", "eagerness"}
    detection = _obj(value, param, keys)
    _enum(_required(detection, "type", param), f"{param}.type", ("server_vad", "semantic_vad"))
    _opt(detection, "threshold", lambda v, p: _num(v, p, 0.0, 1.0), param, nullable=True)
    _opt(detection, "prefix_padding_ms", lambda v, p: _int(v, p, 0, 10_000), param, nullable=True)
    _opt(detection, "silence_duration_ms", lambda v, p: _int(v, p, 0, 10_000), param, nullable=True)
    _opt(detection, "idle_timeout_ms", lambda v, p: _int(v, p, 5_000, 30_000), param, nullable=True)
    _opt(detection, "create_response", _bool, param, nullable=True)
    _opt(detection, "interrupt_response", _bool, param, nullable=True)
    _opt(detection, "eagerness", lambda v, p: _enum(v, p, ("low", "medium", "high", "auto")), param, nullable=True)


def _check_audio(value: Any, param: str) -> None:
    audio = _obj(value, param, {"input", "output"})
    if "input" in audio:
        p = f"{param}.input"
        audio_in = _obj(audio["input"], p, {"format", "noise_reduction", "transcription", "turn_detection"})
        _opt(audio_in, "format", _check_format, p)
        _opt(audio_in, "noise_reduction", lambda v, q: _enum(_required(_obj(v, q, {"type"}), "type", q), f"{q}.type",
                                                               ("near_field", "far_field")), p, nullable=True)
        _opt(audio_in, "transcription", _check_transcription, p, nullable=True)
        _opt(audio_in, "turn_detection", _check_turn_detection, p, nullable=True)
    if "output" in audio:
        p = f"{param}.output"
        audio_out = _obj(audio["output"], p, {"format", "voice", "speed"})
        _opt(audio_out, "format", _check_format, p)
        _opt(audio_out, "voice", _str, p)
        _opt(audio_out, "speed", lambda v, q: _num(v, q, 0.25, 1.5), p)


def _check_transcription(value: Any, param: str) -> None:
    transcription = _obj(value, param, {"model", "language", "prompt"})
    for key in ("model", "language", "prompt"):
        _opt(transcription, key, _str, param)


def _check_tool(value: Any, param: str) -> None:
    tool = _obj(value, param, {"type", "name", "description", "parameters"})
    _enum(_required(tool, "type", param), f"{param}.type", ("function",))
    _str(_required(tool, "name", param), f"{param}.name")
    _opt(tool, "description", _str, param)
    _opt(tool, "parameters", lambda v, p: _obj(v, p), param)


def _check_tool_choice(value: Any, param: str) -> None:
    if isinstance(value, str):
        _enum(value, param, ("auto", "none", "required"))
        return
    choice = _obj(value, param, {"type", "name"})
    _enum(_required(choice, "type", param), f"{param}.type", ("function",))
    _str(_required(choice, "name", param), f"{param}.name")


def _check_max_tokens(value: Any, param: str) -> None:
    if value != "inf":
        _int(value, param, 1, 4096)


def _check_modalities(value: Any, param: str) -> None:
    _list(lambda v, p: _enum(v, p, ("audio", "text")))(value, param)
    if len(value) != 1:
        raise _invalid(param, value, "Supported values are: ['audio'] and ['text'].")


_SESSION_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "type": lambda v, p: _enum(v, p, ("realtime",)),
    "model": _str,
    "output_modalities": _check_modalities,
    "instructions": _str,
    "audio": _check_audio,
    "tools": _list(_check_tool),
    "tool_choice": _check_tool_choice,
    "max_output_tokens": _check_max_tokens,
    "truncation": lambda v, p: _enum(v, p, ("auto", "disabled")) if isinstance(v, str) else _obj(v, p),
    "tracing": lambda v, p: None if v is None or v == "auto" else _obj(v, p),
    "prompt": lambda v, p: None if v is None else _obj(v, p),
    "include": lambda v, p: None if v is None else _list(_str)(v, p),
}


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


def _check_response_audio_output(value: Any, param: str) -> None:
    output = _obj(value, param, {"format", "voice"})
    _opt(output, "format", _check_format, param)
    _opt(output, "voice", _str, param)


_RESPONSE_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "conversation": lambda v, p: _enum(v, p, ("auto", "none")),
    "input": lambda v, p: _list(lambda i, q: _obj(i, q))(v, p),
    "instructions": _str,
    "metadata": _check_metadata,
    "output_modalities": _check_modalities,
    "audio": lambda v, p: _opt(_obj(v, p, {"output"}), "output", _check_response_audio_output, p),
    "tools": _list(_check_tool),
    "tool_choice": _check_tool_choice,
    "max_output_tokens": _check_max_tokens,
    "prompt": lambda v, p: None if v is None else _obj(v, p),
}


def _check_content(value: Any, param: str, role: str) -> None:
    part = _obj(value, param, {"type", "text", "audio", "transcript", "image_url", "detail"})
    allowed = {"user": ("input_text", "input_audio", "input_image"), "system": ("input_text",),
               "assistant": ("output_text",)}[role]
    kind = _enum(_required(part, "type", param), f"{param}.type", allowed)
    if kind in ("input_text", "output_text"):
        _str(_required(part, "text", param), f"{param}.text")
    if kind == "input_audio":
        audio = _str(_required(part, "audio", param), f"{param}.audio")
        _decode_base64(audio, f"{param}.audio")
        _opt(part, "transcript", _str, param, nullable=True)


def _check_item(value: Any) -> dict[str, Any]:
    common = {"id", "type", "object", "status"}
    item = _obj(value, "item")
    kind = _enum(_required(item, "type", "item"), "item.type", ("message", "function_call", "function_call_output"))
    if kind == "message":
        _obj(item, "item", common | {"role", "content"})
        role = _enum(_required(item, "role", "item"), "item.role", ("user", "assistant", "system"))
        _list(lambda v, p: _check_content(v, p, role))(_required(item, "content", "item"), "item.content")
    elif kind == "function_call":
        _obj(item, "item", common | {"call_id", "name", "arguments"})
        for key in ("call_id", "name", "arguments"):
            _str(_required(item, key, "item"), f"item.{key}")
    else:
        _obj(item, "item", common | {"call_id", "output"})
        _str(_required(item, "call_id", "item"), "item.call_id")
        _str(_required(item, "output", "item"), "item.output")
    _opt(item, "id", _str, "item")
    _opt(item, "object", lambda v, p: _enum(v, p, ("realtime.item",)), "item")
    _opt(item, "status", lambda v, p: _enum(v, p, ("completed", "incomplete", "in_progress")), "item")
    return item


_MAX_DEPTH = 64


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_json(value: Any) -> None:
    """Refuse what Python's json accepts but a real server would not, or could not echo back:
    lone UTF-16 surrogates (from ``\\ud800`` escapes) and nesting deeper than ``_MAX_DEPTH``."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise ValueError("nested too deeply")
        if isinstance(node, str):
            node.encode("utf-8")  # UnicodeEncodeError (a ValueError) for a lone surrogate
        elif isinstance(node, dict):
            for key, item in node.items():
                key.encode("utf-8")
                stack.append((item, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)


def _decode_base64(value: str, param: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ClientError("invalid_value", f"Invalid '{param}': not valid base64.", param) from None


# --------------------------------------------------------------------------- the stream under the WebSocket


class _Wire(trio.abc.Stream):
    """The raw stream, with a switch that makes this end dead: once ``silence()``d, what the
    server sends is discarded and what it receives is read and discarded (so the end of the
    connection is still noticed). ``closed`` is set when the peer's side ends (EOF or error)."""

    def __init__(self, raw: trio.abc.Stream) -> None:
        self.raw = raw
        self.silenced = False
        self.closed = trio.Event()

    def silence(self) -> None:
        self.silenced = True

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.silenced:
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
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_sim{self.n:06d}"


@dataclass
class _Response:
    id: str
    metadata: dict[str, str]
    turn: Turn
    out_of_band: bool = False
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    output: list[dict[str, Any]] = field(default_factory=list)
    cancel_reason: str | None = None
    call_issued: bool = False


#: The exceptions that mean the WebSocket is gone (or going) rather than a simulator bug.
_GONE = (ConnectionClosed, LocalProtocolError)


class SimRealtimeSession:
    """One accepted Realtime session. Its tasks (the read loop, the pinger, one per response, the
    fault timers) share one nursery; whichever finds the connection gone ends the session by
    cancelling it (``_end``): a hang-up is the end of the session, never an error."""

    def __init__(
        self, ws: WebSocketConnection, config: SimModelConfig, model: ScriptedModel,
        session_log: SessionLog | None = None, wire: _Wire | None = None,
    ) -> None:
        self.ws = ws
        self.config = config
        self.faults = config.faults
        self.model = model
        self.log = session_log if session_log is not None else SessionLog(0, trio.current_time())
        self.wire = wire
        self.ids = _Ids()
        self.session: dict[str, Any] = {
            "type": "realtime", "object": "realtime.session", "id": self.ids("sess"), "model": "gpt-realtime",
            "output_modalities": ["audio"], "instructions": "", "tools": [], "tool_choice": "auto",
            "max_output_tokens": "inf", "truncation": "auto", "prompt": None, "tracing": None,
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": None, "noise_reduction": None,
                          "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                             "silence_duration_ms": 500, "idle_timeout_ms": None,
                                             "create_response": True, "interrupt_response": True}},
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0},
            },
        }
        self.active: _Response | None = None  # the response writing to the default conversation
        self.running: dict[str, _Response] = {}  # every response in progress, out-of-band ones too
        self.pending_calls: dict[str, str] = {}  # call_id -> tool name, awaiting output
        self.answered_calls: set[str] = set()
        self.new_outputs: list[tuple[str, str]] = []
        self.user_text: str | None = None
        self.items: dict[str, int] = {}  # assistant audio item -> ms of audio
        self._item_responses: dict[str, _Response] = {}  # assistant audio item -> the response that said it
        self._last_interrupted = -1  # creation order of the latest response cut short
        self.conversation: dict[str, dict[str, Any]] = {}  # item id -> item
        self.creates = 0
        self.silenced = False
        self._input = bytearray()
        self._input_ms = 0
        self._uncommitted: deque[bytes] = deque(maxlen=_MAX_UNCOMMITTED_BLOCKS)  # 20 ms blocks since the last commit
        self._speech: bytearray | None = None
        self._speech_item = ""
        self._speech_start_ms = 0
        self._silent_ms = 0
        self._history = bytearray()  # recent input, for the prefix padding
        self._send_lock = trio.Lock()
        self._pinger_scope = trio.CancelScope()
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "session.update": self._on_session_update,
            "input_audio_buffer.append": self._on_input_audio_buffer_append,
            "input_audio_buffer.commit": self._on_input_audio_buffer_commit,
            "input_audio_buffer.clear": self._on_input_audio_buffer_clear,
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

    async def send(self, payload: dict[str, Any]) -> None:
        """Send one server event. If the connection is gone, end the session and return."""
        if self.silenced:
            return
        payload = {"type": payload.pop("type"), "event_id": self.ids("event"), **payload}
        text = json.dumps(payload, ensure_ascii=False)
        try:
            async with self._send_lock:
                await self.ws.send_message(text)
        except _GONE as exc:
            self._closed(exc)

    async def error(self, exc: ClientError, event_id: str | None, error_type: str = "invalid_request_error") -> None:
        if self.silenced:
            return
        event(log, "sim.model.client_error", level=logging.WARNING, code=exc.code, message=exc.message)
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

    async def _spurious_error(self) -> None:
        event(log, "sim.model.fault", fault="spurious_error")
        await self.error(ClientError("invalid_value", "Invalid value: the conversation is in an unexpected state."), None)

    # ------------------------------------------------------------------ client events

    async def _on_client_message(self, message: str | bytes) -> None:
        event_id = None
        try:
            try:
                payload = json.loads(message, parse_constant=_no_constant)
                _check_json(payload)
            except (ValueError, RecursionError):  # UnicodeDecodeError included
                raise ClientError("invalid_json", "We could not parse the JSON body of your request. (HINT: This likely "
                                  "means you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                                  "payload, but what was sent was not valid JSON.") from None
            if not isinstance(payload, dict):
                raise _bad_type("event", "an object", payload)
            if isinstance(payload.get("event_id"), str):
                event_id = payload["event_id"]
            elif payload.get("event_id") is not None:
                raise _bad_type("event_id", "a string", payload["event_id"])
            kind = _required(payload, "type", "")
            _str(kind, "type")
            handler = self._handlers.get(kind)
            if handler is None:
                raise _invalid("type", kind, "Supported values are the client events of the GA Realtime API"
                               + (" (output_audio_buffer.clear is for WebRTC and SIP only)." if kind == "output_audio_buffer.clear" else "."))
            await handler(payload)
        except ClientError as exc:
            await self.error(exc, event_id)

    async def _on_session_update(self, payload: dict[str, Any]) -> None:
        _obj(payload, "", {"type", "event_id", "session"})
        session = _obj(_required(payload, "session", ""), "session")
        _required(session, "type", "session")
        unknown = sorted(set(session) - set(_SESSION_CHECKS))
        if unknown:
            raise ClientError("unknown_parameter", f"Unknown parameter: 'session.{unknown[0]}'.", f"session.{unknown[0]}")
        for key, value in session.items():
            _SESSION_CHECKS[key](value, f"session.{key}")
        voice_now = self.session["audio"]["output"].get("voice")
        new_voice = session.get("audio", {}).get("output", {}).get("voice", voice_now)
        if new_voice != voice_now and self.items:
            raise ClientError("cannot_update_voice", "Cannot update a conversation's voice if assistant audio is present.",
                              "session.audio.output.voice")
        for key, value in session.items():
            if key == "audio":
                for direction, conf in value.items():
                    self.session["audio"].setdefault(direction, {}).update(conf)
            else:
                self.session[key] = value
        await self.send({"type": "session.updated", "session": self.session})

    async def _on_input_audio_buffer_append(self, payload: dict[str, Any]) -> None:
        _obj(payload, "", {"type", "event_id", "audio"})
        audio = _decode_base64(_str(_required(payload, "audio", ""), "audio"), "audio")
        await self._vad(audio)

    async def _on_input_audio_buffer_clear(self, payload: dict[str, Any]) -> None:
        _obj(payload, "", {"type", "event_id"})
        self._speech = None
        self._uncommitted.clear()
        await self.send({"type": "input_audio_buffer.cleared"})

    async def _on_input_audio_buffer_commit(self, payload: dict[str, Any]) -> None:
        _obj(payload, "", {"type", "event_id"})
        if self._speech is not None:
            audio, self._speech = bytes(self._speech), None
            item_id = self._speech_item
        else:
            audio = b"".join(self._uncommitted)
            item_id = self.ids("item")
        if len(audio) < 800:
            raise ClientError("input_audio_buffer_commit_empty",
                              "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
                              f"but buffer only has {len(audio) / 8:.2f}ms of audio.")
        self._uncommitted.clear()
        await self._commit(item_id, audio)

    async def _on_conversation_item_create(self, payload: dict[str, Any]) -> None:
        _obj(payload, "", {"type", "event_id", "item", "previous_item_id"})
        _opt(payload, "previous_item_id", _str, "", nullable=True)
        item = _check_item(_required(payload, "item", ""))
        if item.get("id") in self.conversation:
            raise _invalid("item.id", item["id"], "An item with this id already exists.")
        if item.get("type") == "function_call_output":
            call_id = item["call_id"]
            known = self.log.calls.get(call_id)
            if known is not None:
                known.outputs.append(trio.current_time())
            if call_id not in self.pending_calls:
                code = "invalid_value"
                self.log.rejected_outputs.append(RejectedOutputLog(trio.current_time(), call_id, code))
                raise ClientError(code, f"No function call with call_id '{call_id}' is awaiting output.", "item.call_id")
            self.new_outputs.append((self.pending_calls.pop(call_id), item["output"]))
            self.answered_calls.add(call_id)
        elif item.get("type") == "function_call":
            if item["call_id"] in self.pending_calls or item["call_id"] in self.answered_calls:
                raise _invalid("item.call_id", item["call_id"], "A function call with this call_id already exists.")
            self.pending_calls[item["call_id"]] = item["name"]
        elif item.get("role") == "user":
            texts = [part["text"] for part in item["content"] if part["type"] == "input_text"]
            if texts:
                self.user_text = " ".join(texts)
        item = {"id": self.ids("item"), "object": "realtime.item", "status": "completed", **item}
        self.conversation[item["id"]] = item
        await self.send({"type": "conversation.item.added", "previous_item_id": None, "item": item})
        await self.send({"type": "conversation.item.done", "previous_item_id": None, "item": item})

    def _interrupted(self, response: _Response, reason: str, call_issued: bool) -> None:
        """Tell the model a response of the conversation was cut: the latest one cut is what it resumes."""
        order = list(self.log.responses).index(response.id)
        if order >= self._last_interrupted:
            self._last_interrupted = order
            self.model.cancelled(response.turn, reason=reason, call_issued=call_issued)

    async def _on_conversation_item_truncate(self, payload: dict[str, Any]) -> None:
        _obj(payload, "", {"type", "event_id", "item_id", "content_index", "audio_end_ms"})
        item_id = _str(_required(payload, "item_id", ""), "item_id")
        _int(_required(payload, "content_index", ""), "content_index", 0, 0)
        end_ms = _int(_required(payload, "audio_end_ms", ""), "audio_end_ms", 0)
        if item_id not in self.items:
            raise ClientError("invalid_value", f"Item '{item_id}' has no assistant audio.", "item_id")
        if end_ms > self.items[item_id]:
            raise ClientError("invalid_value", f"audio_end_ms {end_ms} is past the item's {self.items[item_id]} ms.", "audio_end_ms")
        spoken = self._item_responses.get(item_id)
        if spoken is not None and end_ms < self.items[item_id] and self.log.responses[spoken.id].status == "completed":
            # The response was complete, but the caller heard only part of it: to the model, as
            # to a person, the answer was interrupted (one cancelled mid-way was told already).
            self._interrupted(spoken, "turn_detected", call_issued=True)
        await self.send({"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0, "audio_end_ms": end_ms})

    async def _on_conversation_item_delete(self, payload: dict[str, Any]) -> None:
        _obj(payload, "", {"type", "event_id", "item_id"})
        item_id = _str(_required(payload, "item_id", ""), "item_id")
        if self.conversation.pop(item_id, None) is None:
            raise ClientError("item_not_found", f"Item with item_id not found: {item_id}", "item_id")
        self.items.pop(item_id, None)
        await self.send({"type": "conversation.item.deleted", "item_id": item_id})

    async def _on_conversation_item_retrieve(self, payload: dict[str, Any]) -> None:
        _obj(payload, "", {"type", "event_id", "item_id"})
        item_id = _str(_required(payload, "item_id", ""), "item_id")
        item = self.conversation.get(item_id)
        if item is None:
            raise ClientError("item_not_found", f"Item with item_id not found: {item_id}", "item_id")
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
        _obj(payload, "", {"type", "event_id", "response"})
        params = {} if raw is None else _obj(raw, "response")
        unknown = sorted(set(params) - set(_RESPONSE_CHECKS))
        if unknown:
            raise ClientError("unknown_parameter", f"Unknown parameter: 'response.{unknown[0]}'.", f"response.{unknown[0]}")
        for key, value in params.items():
            _RESPONSE_CHECKS[key](value, f"response.{key}")
        out_of_band = params.get("conversation") == "none"
        if self.active is not None and not out_of_band:
            raise ClientError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self.active.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        record.outcome = "started"
        record.response_id = self._start_response(params.get("instructions"), params.get("metadata") or {},
                                                  trigger="create", out_of_band=out_of_band)

    async def _on_response_cancel(self, payload: dict[str, Any]) -> None:
        _obj(payload, "", {"type", "event_id", "response_id"})
        _opt(payload, "response_id", _str, "", nullable=True)
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
        value = detection.get(key)
        return default if value is None else value

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
                self._uncommitted.append(block)
                continue
            loud = voice.block_rms(g711.ulaw_to_slin(block)) >= voice.SPEECH_RMS * 2 * float(self._setting(detection, "threshold", 0.5))
            if self._speech is None:
                self._uncommitted.append(block)
                if loud:
                    await self._speech_started(detection, start_ms, block)
            else:
                self._speech += block
                self._silent_ms = 0 if loud else self._silent_ms + 20
                if self._silent_ms >= int(self._setting(detection, "silence_duration_ms", 500)):
                    await self._speech_stopped(detection)

    async def _speech_started(self, detection: dict[str, Any], start_ms: int, block: bytes) -> None:
        prefix_blocks = int(self._setting(detection, "prefix_padding_ms", 300)) // 20
        prefix = bytes(self._history[-160 * (prefix_blocks + 1) : -160]) if prefix_blocks else b""
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
            self._start_response(None, {}, trigger="vad")

    async def _commit(self, item_id: str, audio: bytes) -> None:
        await self.send({"type": "input_audio_buffer.committed", "previous_item_id": None, "item_id": item_id})
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
                "content": [{"type": "input_audio", "transcript": None}]}
        self.conversation[item_id] = item
        await self.send({"type": "conversation.item.added", "previous_item_id": None, "item": item})
        await self.send({"type": "conversation.item.done", "previous_item_id": None, "item": item})
        try:
            text = voice.hear(g711.ulaw_to_slin(audio))
        except voice.UnintelligibleSpeech as exc:
            text = None
            await self.send({"type": "conversation.item.input_audio_transcription.failed", "item_id": item_id,
                             "content_index": 0, "error": {"type": "transcription_error", "message": str(exc)}})
        else:
            item["content"] = [{"type": "input_audio", "transcript": text}]
            await self.send({"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id,
                             "content_index": 0, "transcript": text})
        event(log, "sim.model.heard", text=text or "(unintelligible)")
        self.user_text = text

    # ------------------------------------------------------------------ responses

    def _start_response(self, instructions: str | None, metadata: dict[str, str], *, trigger: str,
                        out_of_band: bool = False) -> str:
        if out_of_band:  # its own context: the instructions, not the conversation
            turn = self.model.decide(user_text=None, tool_outputs=[], instructions=instructions, call_pending=False)
        else:
            turn = self.model.decide(
                user_text=self.user_text, tool_outputs=self.new_outputs, instructions=instructions,
                call_pending=bool(self.pending_calls),
            )
            self.user_text, self.new_outputs = None, []
        response = _Response(self.ids("resp"), dict(metadata), turn, out_of_band)
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
            for item in response.output:
                if item["status"] == "in_progress":
                    item["status"] = "incomplete"
            if not response.out_of_band:
                self._interrupted(response, reason, response.call_issued)
        await self.send({"type": "response.done", "response": body})

    def _response_body(self, response: _Response, status: str) -> dict[str, Any]:
        return {"object": "realtime.response", "id": response.id, "status": status, "output": response.output,
                "metadata": response.metadata or None, "conversation_id": None if response.out_of_band else "conv_sim",
                "output_modalities": ["audio"], "status_details": None}

    async def _speak(self, response: _Response, text: str) -> None:
        item: dict[str, Any] = {"id": self.ids("item"), "object": "realtime.item", "type": "message",
                                "role": "assistant", "status": "in_progress", "content": []}
        response.output.append(item)
        index = len(response.output) - 1
        common = {"response_id": response.id, "item_id": item["id"], "output_index": index, "content_index": 0}
        await self.send({"type": "response.output_item.added", "response_id": response.id, "output_index": index, "item": dict(item)})
        await self.send({"type": "response.content_part.added", **common, "part": {"type": "audio", "transcript": ""}})
        audio = g711.slin_to_ulaw(voice.speak(text))
        words = text.split(" ")
        chunks = math.ceil(len(audio) / _CHUNK_BYTES)
        self.items[item["id"]] = 0
        if not response.out_of_band:
            self.conversation[item["id"]] = item
            self._item_responses[item["id"]] = response
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
        item: dict[str, Any] = {"id": self.ids("item"), "object": "realtime.item", "type": "function_call",
                                "status": "in_progress", "name": name, "call_id": call_id, "arguments": ""}
        response.output.append(item)
        index = len(response.output) - 1
        await self.send({"type": "response.output_item.added", "response_id": response.id, "output_index": index, "item": dict(item)})
        common = {"response_id": response.id, "item_id": item["id"], "output_index": index, "call_id": call_id}
        await self.send({"type": "response.function_call_arguments.delta", **common, "delta": args})
        await self.send({"type": "response.function_call_arguments.done", **common, "name": name, "arguments": args})
        item.update(status="completed", arguments=args)
        self.pending_calls[call_id] = name
        response.call_issued = True
        if not response.out_of_band:
            self.conversation[item["id"]] = item
        self.log.calls[call_id] = FunctionCallLog(name, args, trio.current_time())
        await self.send({"type": "response.output_item.done", "response_id": response.id, "output_index": index, "item": item})
        event(log, "sim.model.called", tool=name, arguments=args)


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


async def _upgrade(request: WebSocketRequest, config: SimModelConfig, ledger: ModelLedger) -> WebSocketConnection | None:
    """Refuse the upgrade (and log it in the ledger) or accept it."""
    path = request.path
    headers = {k.lower(): v for k, v in request.headers}
    auth = headers.get(b"authorization", b"")
    key = auth[7:].decode("latin-1") if auth.startswith(b"Bearer ") else ""
    model = (parse_qs(urlsplit(path).query).get("model") or ["gpt-realtime"])[0]

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
        await ws.send_message(json.dumps({"type": "error", "event_id": "event_beta", "error": {
            "type": "invalid_request_error", "code": "beta_api_shape_disabled", "param": None, "event_id": None,
            "message": "The beta Realtime API shape is disabled; remove the OpenAI-Beta header."}}))
        with trio.move_on_after(DISCONNECT_TIMEOUT_S):
            await ws.aclose(code=4000, reason="beta_api_shape_disabled")
        return
    await SimRealtimeSession(ws, config, ScriptedModel(), session_log, wire).run()


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
