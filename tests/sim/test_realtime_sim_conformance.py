"""The simulator against the openai SDK's GA types (openai 3.57.0, ``openai.types.realtime``).

Client events: for a corpus of valid and invalid events, the simulator's verdict (an ``error``
event answering it, or none) equals the verdict of the strict SDK validator: the SDK's client
event union with unknown keys forbidden (research/openai-realtime.md section 4), plus the
``item_reference`` form of ``response.create`` that the SDK's own ``send()`` also accepts
(``ResponseCreateEventWithReferencesParam``). ``Iterable`` fields of the SDK's TypedDicts are
validated lazily by pydantic, so the validator consumes them: a bad content part is a bad event.
Each event is judged in a session where it is meaningful (an assistant audio item to truncate,
a call awaiting its output, audio to commit, a response to cancel), so a verdict is about the
event's shape, not about the state.

Server events: everything the simulator sends across whole conversations validates as
``RealtimeServerEvent`` with no unknown keys anywhere (``model_extra`` empty, recursively). The
one exception is named: the session object of ``session.created``/``session.updated`` also
carries ``id``, ``object`` and ``expires_at``, as the real service sends it (the SDK's
``RealtimeSessionCreateResponse``, which it is then validated against, strictly); the SDK types
these events' session with the request shape, which lacks them.
"""

from __future__ import annotations

import base64
import json
import typing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Optional

import pytest
import trio
import trio.testing
from openai.types.realtime import (
    RealtimeClientEventParam,
    RealtimeServerEvent,
    RealtimeSessionCreateResponse,
    ResponseCreateEventWithReferencesParam,
)
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from trio_websocket import WebSocketConnection, wrap_client_stream

from mikrovoice.realtime import protocol as rt
from mikrovoice.sim import voice
from mikrovoice.sim.realtime import ModelFaults, ModelLedger, SimModelConfig, serve_model_stream, upsample_24k
from mikrovoice.telephony import g711

AUTH = [(b"Authorization", b"Bearer sk-test")]
RESOURCE = "/v1/realtime?model=gpt-realtime"
STRICT_CLIENT = [
    TypeAdapter(RealtimeClientEventParam, config=ConfigDict(extra="forbid")),
    TypeAdapter(Optional[ResponseCreateEventWithReferencesParam], config=ConfigDict(extra="forbid")),  # noqa: UP045
]
SERVER = TypeAdapter(RealtimeServerEvent)
SESSION_RESPONSE = TypeAdapter(RealtimeSessionCreateResponse)


def _consume(value: Any) -> None:
    """Run pydantic's lazy validation of ``Iterable`` fields (it raises ValidationError then)."""
    if isinstance(value, dict):
        for item in value.values():
            _consume(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _consume(item)
    elif not isinstance(value, str | bytes | int | float | bool) and value is not None:
        for item in value:
            _consume(item)


def sdk_accepts(client_event: Any) -> bool:
    if not isinstance(client_event, dict):
        return False
    for adapter in STRICT_CLIENT:
        try:
            _consume(adapter.validate_python(client_event))
            return True
        except ValidationError:
            pass
    return False


# --------------------------------------------------------------------------- a session to judge events in


@asynccontextmanager
async def client(config: SimModelConfig = SimModelConfig(), ledger: ModelLedger | None = None,
                 ) -> AsyncIterator[WebSocketConnection]:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_model_stream, server_stream, config, ledger)
        ws = await wrap_client_stream(nursery, client_stream, "sim", RESOURCE, extra_headers=AUTH,
                                      message_queue_size=100_000, max_message_size=16 * 1024 * 1024)
        try:
            yield ws
        finally:
            nursery.cancel_scope.cancel()


async def until(ws: WebSocketConnection, predicate: Any, within_s: float = 120.0) -> list[dict[str, Any]]:
    """Events up to and including the first that satisfies ``predicate``."""
    seen = []
    with trio.fail_after(within_s):
        while True:
            message = json.loads(await ws.get_message())
            seen.append(message)
            if predicate(message):
                return seen


def of_type(*types: str) -> Any:
    return lambda message: message["type"] in types


QUESTION = "Dame los dispositivos activos del router 152 punto 1"
LONG = 'Di exactamente: "' + "Esta es una frase larga para que la respuesta siga activa un buen rato. " * 3 + '"'
SETUP_SESSION = rt.client_session_update(rt.SessionSettings("gpt-realtime", "Eres el asistente del NOC.", "marin", ()))
# The server's own barge-in (the API's default; the service turns it off and does its own) is
# part of what must conform: leave it on here.
SETUP_SESSION["session"]["audio"]["input"]["turn_detection"]["interrupt_response"] = True


async def prepared(ws: WebSocketConnection, needs: str) -> dict[str, str]:
    """A session holding a user text item, an assistant audio item and a call awaiting its
    output (and, as ``needs`` says, audio to commit or a response in progress). Returns the ids."""
    await ws.send_message(json.dumps(SETUP_SESSION))
    await until(ws, of_type("session.updated"))
    await ws.send_message(json.dumps(rt.client_item_create(
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": QUESTION}]})))
    user = (await until(ws, of_type("conversation.item.done")))[-1]["item"]["id"]
    await ws.send_message(json.dumps({"type": "response.create"}))
    done = (await until(ws, of_type("response.done")))[-1]["response"]
    [message] = [i for i in done["output"] if i["type"] == "message"]
    [call] = [i for i in done["output"] if i["type"] == "function_call"]
    ids = {"$USER": user, "$ITEM": message["id"], "$CALL": call["call_id"], "$RESP": ""}
    if needs == "audio":
        await ws.send_message(json.dumps(rt.client_append_audio(b"\xff" * 2400)))  # 300 ms of mu-law silence
    if needs == "active":
        await ws.send_message(json.dumps({"type": "response.create", "response": {"instructions": LONG}}))
        ids["$RESP"] = (await until(ws, of_type("response.created")))[-1]["response"]["id"]
    return ids


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


MARKER = {"type": "conversation.item.retrieve", "event_id": "marker", "item_id": "item_no_such_thing"}


async def simulator_accepts(client_event: Any, needs: str = "") -> tuple[bool, list[dict[str, Any]]]:
    """Send ``client_event`` in a prepared session; True if no ``error`` answered it."""
    async with client() as ws:
        ids = await prepared(ws, needs)
        sent = _fill(client_event, ids)
        await ws.send_message(json.dumps(sent))
        await ws.send_message(json.dumps(MARKER))
        answers = await until(ws, lambda m: m["type"] == "error" and m["error"]["event_id"] == "marker")
        errors = [m for m in answers[:-1] if m["type"] == "error"]
        return not errors, errors


def needs_of(client_event: Any) -> str:
    kind = client_event.get("type") if isinstance(client_event, dict) else None
    return {"input_audio_buffer.commit": "audio", "response.cancel": "active"}.get(kind or "", "")


# --------------------------------------------------------------------------- the corpus

PCMU_SPEECH = base64.b64encode(g711.slin_to_ulaw(voice.speak("hola"))).decode()
SYSTEM = {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Nota: la consulta sigue."}]}
USER_TEXT = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "¿Qué hora es?"}]}

#: Valid GA client events, all 11 types (research/openai-realtime.md section 1.4 and the SDK).
VALID: list[dict[str, Any]] = [
    # session.update
    {"type": "session.update", "session": {"type": "realtime"}},
    {"type": "session.update", "event_id": "su_1", "session": {
        "type": "realtime", "model": "gpt-realtime", "output_modalities": ["audio"], "instructions": "...",
        "audio": {"input": {"format": {"type": "audio/pcmu"}, "noise_reduction": {"type": "near_field"},
                            "transcription": {"model": "gpt-4o-transcribe", "language": "de"},
                            "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                               "silence_duration_ms": 500, "idle_timeout_ms": 10000,
                                               "create_response": True, "interrupt_response": True}},
                  "output": {"format": {"type": "audio/pcmu"}, "voice": "marin", "speed": 1.0}},
        "tools": [{"type": "function", "name": "query_routers",
                   "description": "Query MikroTik routers; takes 10-60 s. Tell the caller you are checking before calling.",
                   "parameters": {"type": "object", "properties": {"routers": {"type": "array", "items": {"type": "string"}}},
                                  "required": ["routers"]}}],
        "tool_choice": "auto", "max_output_tokens": "inf", "truncation": {"type": "retention_ratio", "retention_ratio": 0.8}}},
    SETUP_SESSION,
    {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": {
        "type": "semantic_vad", "eagerness": "high", "create_response": True, "interrupt_response": False}}}}},
    {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}}},
    {"type": "session.update", "session": {"type": "realtime", "audio": {
        "input": {"format": {"type": "audio/pcm", "rate": 24000}}, "output": {"format": {"type": "audio/pcma"}}}}},
    {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"noise_reduction": {
        "type": "far_field", "strength": 0.5}, "transcription": {"model": "whisper-1", "prompt": "routers", "delay": "low"}}}}},
    {"type": "session.update", "session": {"type": "realtime", "tool_choice": {"type": "function", "name": "query_routers"}}},
    {"type": "session.update", "session": {"type": "realtime", "tool_choice": "required", "parallel_tool_calls": False}},
    {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"], "max_output_tokens": 512}},
    {"type": "session.update", "session": {"type": "realtime", "tracing": "auto", "truncation": "disabled",
                                           "include": ["item.input_audio_transcription.logprobs"]}},
    {"type": "session.update", "session": {"type": "realtime", "tracing": {"workflow_name": "noc", "metadata": {"a": 1}},
                                           "reasoning": {"effort": "low"}, "prompt": {"id": "pmpt_1", "variables": {"x": "y"}}}},
    {"type": "session.update", "session": {"type": "realtime", "tracing": None, "prompt": None}},
    {"type": "session.update", "session": {"type": "realtime", "tools": [
        {"type": "mcp", "server_label": "noc", "server_url": "https://mcp.example/", "require_approval": "never"}]}},
    # input_audio_buffer.*, output_audio_buffer.clear
    {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\xff" * 160).decode()},
    {"type": "input_audio_buffer.append", "event_id": "a_1", "audio": PCMU_SPEECH},
    {"type": "input_audio_buffer.commit"},
    {"type": "input_audio_buffer.commit", "event_id": "c_1"},
    {"type": "input_audio_buffer.clear"},
    {"type": "input_audio_buffer.clear", "event_id": "cl_1"},
    {"type": "output_audio_buffer.clear"},
    # conversation.item.*
    {"type": "conversation.item.create", "item": USER_TEXT},
    {"type": "conversation.item.create", "event_id": "i_1", "item": SYSTEM},
    {"type": "conversation.item.create", "item": {"type": "message", "role": "assistant",
                                                  "content": [{"type": "output_text", "text": "Hola."}]}},
    {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
        {"type": "input_audio", "audio": PCMU_SPEECH}, {"type": "input_text", "text": "y esto"}]}},
    {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}]}},
    {"type": "conversation.item.create", "item": {"id": "item_mine_1", "object": "realtime.item", "status": "completed",
                                                  **USER_TEXT}},
    {"type": "conversation.item.create", "previous_item_id": "$USER", "item": USER_TEXT},
    {"type": "conversation.item.create", "item": {"type": "function_call", "call_id": "call_replayed_1",
                                                  "name": "trafico_sfp", "arguments": "{}"}},
    {"type": "conversation.item.create", "item": {"type": "function_call", "name": "trafico_sfp", "arguments": "{}"}},
    {"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "$CALL", "output": "{}"}},
    {"type": "conversation.item.truncate", "item_id": "$ITEM", "content_index": 0, "audio_end_ms": 120},
    {"type": "conversation.item.truncate", "event_id": "t_1", "item_id": "$ITEM", "content_index": 0, "audio_end_ms": 0},
    {"type": "conversation.item.delete", "item_id": "$USER"},
    {"type": "conversation.item.retrieve", "item_id": "$ITEM"},
    {"type": "conversation.item.retrieve", "event_id": "r_1", "item_id": "$USER"},
    # response.create
    {"type": "response.create"},
    {"type": "response.create", "response": {}},
    rt.client_response_create("progress", 'Di exactamente: "Sigo consultando."', tool_choice="none"),
    {"type": "response.create", "event_id": "rc_8", "response": {
        "conversation": "none", "output_modalities": ["audio"], "input": [],
        "instructions": "Say exactly: 'Ich prüfe noch, drei von fünf Routern sind fertig.'", "tool_choice": "none",
        "metadata": {"kind": "progress", "call_id": "call_x"}}},
    {"type": "response.create", "response": {"conversation": "none", "input": [
        {"type": "item_reference", "id": "$USER"}, SYSTEM, {"type": "function_call_output", "call_id": "$CALL", "output": "{}"}]}},
    {"type": "response.create", "response": {"conversation": "auto", "output_modalities": ["text"], "max_output_tokens": 300}},
    {"type": "response.create", "response": {"audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000},
                                                                  "voice": "marin"}}, "max_output_tokens": "inf"}},
    {"type": "response.create", "response": {"tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
                                             "tool_choice": {"type": "function", "name": "f"}, "parallel_tool_calls": True,
                                             "reasoning": {"effort": "minimal"}, "prompt": {"id": "pmpt_2"}, "metadata": None}},
    # response.cancel
    {"type": "response.cancel"},
    {"type": "response.cancel", "event_id": "x_1", "response_id": "$RESP"},
]

_S = "session.update"


def _session(**session: Any) -> dict[str, Any]:
    return {"type": _S, "session": {"type": "realtime", **session}}


def _input(**audio_input: Any) -> dict[str, Any]:
    return _session(audio={"input": audio_input})


def _vad(**vad: Any) -> dict[str, Any]:
    return _input(turn_detection={"type": "server_vad", **vad})


def _item(**item: Any) -> dict[str, Any]:
    return {"type": "conversation.item.create", "item": item}


def _response(**response: Any) -> dict[str, Any]:
    return {"type": "response.create", "response": response}


#: Invalid events: unknown types, beta keys, misspellings, wrong types, missing keys, bad literals.
INVALID: list[Any] = [
    # not an event of the GA client set
    {"type": "session.updat"}, {"type": "response.audio.delta", "delta": ""}, {"type": "conversation.item.created"},
    {"type": ""}, {"type": 5}, {"event_id": "e"}, {"type": None}, {"type": "transcription_session.update", "session": {}},
    # beta keys
    _session(input_audio_format="g711_ulaw"), _session(output_audio_format="pcm16"), _session(voice="marin"),
    _session(turn_detection={"type": "server_vad"}), _session(modalities=["audio", "text"]),
    _session(input_audio_transcription={"model": "whisper-1"}), _session(temperature=0.8),
    _session(max_response_output_tokens=200),
    _response(modalities=["audio"]), _response(voice="marin"), _response(output_audio_format="g711_ulaw"),
    _response(temperature=0.7), {"type": "session.update", "session": {"modalities": ["audio"], "voice": "alloy"}},
    # misspelled keys
    _session(instruction="x"), _session(tool=[]), _vad(treshold=0.5), _session(audio={"outputs": {}}),
    _input(turndetection=None), _response(metadatas={"kind": "x"}), _response(instruction="x"),
    _item(type="message", role="user", contents=[]), _item(type="message", role="user", content=[{"type": "input_text", "txt": "x"}]),
    {"type": "conversation.item.create", "previous_item": "$USER", "item": USER_TEXT},
    {"type": "conversation.item.truncate", "itemid": "$ITEM", "content_index": 0, "audio_end_ms": 1},
    {"type": "conversation.item.truncate", "item_id": "$ITEM", "content_index": 0, "audio_end": 1},
    {"type": "response.cancel", "responseid": "$RESP"}, {"type": "input_audio_buffer.append", "audio_data": "AAAA"},
    {"type": "input_audio_buffer.clear", "foo": 1}, {"type": "response.cancel", "response": {}},
    {"type": "output_audio_buffer.clear", "response_id": "x"}, {"type": "input_audio_buffer.commit", "item_id": "x"},
    # wrong types
    {"type": _S, "session": 5}, {"type": _S, "session": "realtime"}, {"type": _S, "session": []}, {"type": _S, "session": None},
    _session(instructions=5), _session(tools={}), _session(tools=["x"]), _input(format="audio/pcmu"),
    _session(audio={"output": {"voice": 5}}), _session(tool_choice=5), _session(max_output_tokens="lots"),
    _vad(create_response="maybe"), _session(audio=[]), _session(output_modalities="audio"),
    {"type": "input_audio_buffer.clear", "event_id": 5}, {"type": "input_audio_buffer.clear", "event_id": None},
    {"type": "conversation.item.create", "item": []}, _item(type="message", role="user", content=5),
    _item(type="function_call_output", call_id=5, output="{}"), _item(type="function_call_output", call_id="$CALL", output={}),
    {"type": "conversation.item.truncate", "item_id": "$ITEM", "content_index": 0, "audio_end_ms": [100]},
    {"type": "conversation.item.truncate", "item_id": "$ITEM", "content_index": "x", "audio_end_ms": 1},
    {"type": "conversation.item.delete", "item_id": 5}, {"type": "conversation.item.retrieve", "item_id": None},
    {"type": "input_audio_buffer.append", "audio": 5}, {"type": "response.create", "response": 5},
    _response(instructions=[]), _response(metadata=[]), _response(metadata={"kind": 5}), _response(input={"x": 1}),
    _response(input=["x"]), _response(conversation=5), _response(tools={"x": 1}),
    {"type": "response.cancel", "response_id": 5}, {"type": "response.cancel", "response_id": None},
    {"type": "conversation.item.create", "previous_item_id": None, "item": USER_TEXT},
    {"type": "response.create", "response": None},
    # missing required keys
    {"type": _S}, {"type": _S, "session": {"instructions": "x"}}, {"type": "conversation.item.create"},
    _item(role="user", content=[]), _item(type="message", content=[]), _item(type="message", role="user"),
    _item(type="function_call_output", call_id="$CALL"), _item(type="function_call_output", output="{}"),
    _item(type="function_call", arguments="{}"), _item(type="function_call", name="f"),
    {"type": "conversation.item.truncate", "content_index": 0, "audio_end_ms": 1},
    {"type": "conversation.item.truncate", "item_id": "$ITEM", "audio_end_ms": 1},
    {"type": "conversation.item.delete"}, {"type": "conversation.item.retrieve"}, {"type": "input_audio_buffer.append"},
    _session(tool_choice={"type": "function"}), _input(turn_detection={"threshold": 0.5}),
    _response(input=[{"type": "item_reference"}]), _session(truncation={"type": "retention_ratio"}),
    # values outside the literals
    {"type": _S, "session": {"type": "realtimes"}}, _input(format={"type": "g711_ulaw"}),
    _input(format={"type": "audio/pcm", "rate": 16000}), _vad(type="vad"),
    _input(turn_detection={"type": "semantic_vad", "eagerness": "fast"}), _session(output_modalities=["video"]),
    _session(tool_choice="sometimes"), _item(type="message", role="bot", content=[]), _item(type="function_call_outputs"),
    _item(type="message", role="user", content=[{"type": "text", "text": "beta"}]),
    _item(type="message", role="user", status="done", content=[]), _item(type="message", role="user", object="item", content=[]),
    _input(noise_reduction={"type": "near"}), _input(transcription={"model": "whisper-1", "delay": "none"}),
    _session(include=["logprobs"]), _session(max_output_tokens="infinite"), _session(reasoning={"effort": "max"}),
    _session(truncation="sometimes"), _response(audio={"output": {"format": {"type": "pcm16"}}}),
    # null where the types have no null
    _session(instructions=None), _vad(threshold=None), _response(instructions=None), _item(type="message", role="user", content=None),
    _session(tools=None), _response(output_modalities=None),
]


@pytest.mark.parametrize("client_event", VALID + INVALID, ids=lambda e: json.dumps(e)[:90])
async def test_the_simulator_judges_client_events_as_the_sdk(client_event: Any, autojump_clock: trio.testing.MockClock) -> None:
    expected = sdk_accepts(_fill(client_event, {"$USER": "item_u", "$ITEM": "item_a", "$CALL": "call_c", "$RESP": "resp_r"}))
    assert expected == (client_event in VALID), "the corpus itself is wrong: the SDK disagrees"
    accepted, errors = await simulator_accepts(client_event, needs_of(client_event))
    assert accepted == expected, errors
    for error in errors:  # an error answers its event: invalid_request_error, event_id echoed when there was one
        assert error["error"]["type"] == "invalid_request_error"
        event_id = client_event.get("event_id") if isinstance(client_event, dict) else None
        assert error["error"]["event_id"] == (event_id if isinstance(event_id, str) else None)


def test_the_corpus_covers_every_client_event_type() -> None:
    client_types = {typing.get_args(typing.get_type_hints(t)["type"])[0] for t in typing.get_args(RealtimeClientEventParam)}
    assert len(client_types) == 11
    assert {e["type"] for e in VALID} == client_types
    assert {e["type"] for e in INVALID if isinstance(e.get("type"), str)} >= client_types


# --------------------------------------------------------------------------- systematic mutations


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, (*path, i))
    return found


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def _with(value: Any, path: tuple[Any, ...], new: Any, *, delete: bool = False) -> Any:
    copy = json.loads(json.dumps(value))
    parent = _at(copy, path[:-1])
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return copy


def mutants() -> list[tuple[str, dict[str, Any]]]:
    """From every valid event: an unknown key in every object, every key deleted, every value
    replaced by one of another JSON kind (picked so that pydantic's lax mode cannot coerce it)."""
    found: list[tuple[str, dict[str, Any]]] = []
    for base in VALID:
        for path in _paths(base):
            node = _at(base, path)
            where = ".".join(map(str, path)) or "(event)"
            if isinstance(node, dict):
                found.append((f"{base['type']} +{where}.zzz", _with(base, (*path, "zzz_unknown"), 1)))
            if not path or path == ("type",):
                continue
            if isinstance(path[-1], str):
                found.append((f"{base['type']} -{where}", _with(base, path, None, delete=True)))
            replacement = {"wrong": True} if not isinstance(node, dict) else "not an object"
            found.append((f"{base['type']} {where}={json.dumps(replacement)}", _with(base, path, replacement)))
    return found


#: Where the real server checks more than the SDK's types: (the sim's error code, param suffix).
#: A mutant the SDK accepts but the simulator refuses must match one of these, or the test fails.
SERVER_IS_STRICTER = {
    ("missing_required_parameter", "].name"),  # a function tool (tools[i]) needs its name (optional in the type)
    ("missing_required_parameter", "].type"),  # a content part (content[i]) needs its type
    ("missing_required_parameter", "format.type"),  # an audio format needs its type
    ("missing_required_parameter", "].text"),  # a text part needs its text
    ("missing_required_parameter", "].audio"),  # an input_audio part needs its audio
    ("invalid_type", "].parameters"),  # a tool's parameters are a JSON schema: an object (the type says any value)
}


async def test_mutated_events_are_judged_as_the_sdk_judges_them(autojump_clock: trio.testing.MockClock) -> None:
    cases = mutants()
    assert len(cases) > 400
    disagreements: list[str] = []
    judged: list[bool] = []
    async with client() as ws:
        ids = await prepared(ws, "")
        for label, mutant in cases:
            if mutant["type"] in ("input_audio_buffer.commit", "response.cancel", "response.create",
                                  "conversation.item.delete", "conversation.item.truncate", "session.update"):
                continue  # these change the session's state: judged one by one below
            mutant = _fill(mutant, ids)
            if isinstance(mutant.get("item"), dict) and isinstance(mutant["item"].get("id"), str):
                mutant["item"]["id"] = f"item_mutant_{len(judged)}"  # an id is used once in a session
            expected = sdk_accepts(mutant)
            judged.append(expected)
            await ws.send_message(json.dumps(mutant))
            await ws.send_message(json.dumps(MARKER))
            answers = await until(ws, lambda m: m["type"] == "error" and m["error"]["event_id"] == "marker")
            errors = [m["error"] for m in answers[:-1] if m["type"] == "error"]
            _judge(label, expected, errors, disagreements)
            if mutant["type"] == "conversation.item.create" and not errors:  # keep the call awaiting its output
                ids = await _renew(ws, ids)
    assert not disagreements, "\n".join(disagreements)
    assert judged.count(True) > 20 and judged.count(False) > 150  # both verdicts were put to the test


async def _renew(ws: WebSocketConnection, ids: dict[str, str]) -> dict[str, str]:
    await ws.send_message(json.dumps({"type": "response.create", "response": {"instructions": "x"}}))
    await ws.send_message(json.dumps(rt.client_item_create(
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": QUESTION}]})))
    await until(ws, of_type("conversation.item.done"))
    await until(ws, of_type("response.done"))
    await ws.send_message(json.dumps({"type": "response.create"}))
    done = (await until(ws, of_type("response.done")))[-1]["response"]
    calls = [i for i in done["output"] if i["type"] == "function_call"]
    return {**ids, "$CALL": calls[0]["call_id"]} if calls else ids


def _judge(label: str, expected: bool, errors: list[dict[str, Any]], disagreements: list[str]) -> None:
    if expected and errors:
        error = errors[0]
        if not any(error["code"] == code and (error["param"] or "").endswith(suffix) for code, suffix in SERVER_IS_STRICTER):
            disagreements.append(f"{label}: SDK accepts, simulator says {error['code']} {error['param']}")
    elif not expected and not errors:
        disagreements.append(f"{label}: SDK rejects, simulator accepts")


@pytest.mark.parametrize("kind", ["input_audio_buffer.commit", "response.cancel", "response.create",
                                  "conversation.item.delete", "conversation.item.truncate", "session.update"])
async def test_mutated_stateful_events_are_judged_as_the_sdk_judges_them(
    kind: str, autojump_clock: trio.testing.MockClock,
) -> None:
    disagreements: list[str] = []
    cases = [(label, m) for label, m in mutants() if m["type"] == kind]
    assert cases
    verdicts = set()
    for label, mutant in cases:
        ids = {"$USER": "item_u", "$ITEM": "item_a", "$CALL": "call_c", "$RESP": "resp_r"}
        expected = sdk_accepts(_fill(mutant, ids))
        verdicts.add(expected)
        accepted, errors = await simulator_accepts(mutant, needs_of(mutant))
        _judge(label, expected, [e["error"] for e in errors], disagreements)
    assert not disagreements, "\n".join(disagreements)
    assert False in verdicts and (True in verdicts or kind == "conversation.item.delete")


# --------------------------------------------------------------------------- server events


def _extras(model: Any, where: str = "") -> list[str]:
    """Every unknown key in a parsed pydantic model, recursively, as dotted paths."""
    found = []
    if isinstance(model, BaseModel):
        found += [f"{where}.{key}" for key in (model.model_extra or {})]
        for name in type(model).model_fields:
            found += _extras(getattr(model, name), f"{where}.{name}")
    elif isinstance(model, list | tuple):
        for i, item in enumerate(model):
            found += _extras(item, f"{where}[{i}]")
    elif isinstance(model, dict):
        for key, item in model.items():
            found += _extras(item, f"{where}.{key}")
    return found


#: The session as the real service sends it (SDK RealtimeSessionCreateResponse), beyond the request shape.
SESSION_EXTRAS = {".session.id", ".session.object", ".session.expires_at"}


def check_server_event(message: dict[str, Any]) -> None:
    parsed = SERVER.validate_python(message)
    assert parsed.type == message["type"]
    extras = _extras(parsed)
    if message["type"] in ("session.created", "session.updated"):
        assert set(extras) <= SESSION_EXTRAS, (message["type"], extras)
        assert _extras(SESSION_RESPONSE.validate_python(message["session"])) == [], message["session"]
    else:
        assert extras == [], (message["type"], extras)


async def conversations(records: list[dict[str, Any]]) -> None:
    """Whole conversations through the simulator, every event in and out into ``records``."""
    config = SimModelConfig(transcript=records.append)

    async def say(ws: WebSocketConnection, text: str, fmt: str = "pcmu", silence_s: float = 1.0, cut: int = 0) -> None:
        pcm = voice.speak(text)[cut:] + bytes(int(16000 * silence_s))
        audio = g711.slin_to_ulaw(pcm) if fmt == "pcmu" else upsample_24k(pcm)
        step = 160 if fmt == "pcmu" else 960
        for i in range(0, len(audio), step):
            await ws.send_message(json.dumps({"type": "input_audio_buffer.append",
                                              "audio": base64.b64encode(audio[i : i + step]).decode()}))

    # 1. Greeting, a question by voice, a tool call, its output, the report; transcription on.
    async with client(config) as ws:
        await ws.send_message(json.dumps(SETUP_SESSION))
        await ws.send_message(json.dumps(rt.client_response_create("greeting", 'Di exactamente: "Hola, soy el asistente."')))
        await until(ws, of_type("response.done"))
        await say(ws, QUESTION)
        call = (await until(ws, of_type("response.function_call_arguments.done")))[-1]
        await until(ws, of_type("response.done"))
        await say(ws, "ajá")  # a backchannel while the call is pending
        await until(ws, of_type("response.done"))
        output = json.dumps({"router": "152.1", "dispositivos_activos": 2, "dispositivos": [{"nombre": "a"}]})
        await ws.send_message(json.dumps(rt.client_tool_output(call["call_id"], output)))
        await ws.send_message(json.dumps(rt.client_response_create("report", "Resume la salida.")))
        await ws.send_message(json.dumps(rt.client_response_create("report")))  # collides: an error
        await until(ws, of_type("response.done"))
        await say(ws, "zzz", silence_s=0.5, cut=320)  # tones without their start tone: transcription fails
        await ws.send_message("not JSON")
        await until(ws, of_type("response.done"))
    # 2. Barge-in and cancel: the cancelled responses close what they opened.
    async with client(config) as ws:
        await ws.send_message(json.dumps(SETUP_SESSION))
        await ws.send_message(json.dumps({"type": "response.create", "response": {"instructions": LONG}}))
        await until(ws, of_type("response.output_audio.delta"))
        await say(ws, "espera")
        await until(ws, lambda m: m["type"] == "response.done" and m["response"]["status"] == "cancelled")
        await until(ws, of_type("response.done"))
        await ws.send_message(json.dumps({"type": "response.create", "response": {"instructions": LONG}}))
        await until(ws, of_type("response.output_audio_transcript.delta"))
        await ws.send_message(json.dumps({"type": "response.cancel"}))
        await until(ws, of_type("response.done"))
        await ws.send_message(json.dumps({"type": "response.cancel", "event_id": "nothing_to_cancel"}))
        await until(ws, of_type("error"))
    # 3. Out of band, text only, items created, retrieved, truncated, deleted; the default formats.
    async with client(config) as ws:
        user = await _create(ws, USER_TEXT)
        await _create(ws, {"type": "function_call", "call_id": "call_old_1", "name": "trafico_sfp", "arguments": "{}"})
        await _create(ws, SYSTEM)
        await ws.send_message(json.dumps({"type": "response.create", "response": {
            "conversation": "none", "metadata": {"kind": "progress"}, "instructions": 'Di exactamente: "Un momento."',
            "input": [{"type": "item_reference", "id": user}]}}))
        await ws.send_message(json.dumps({"type": "response.create", "response": {"output_modalities": ["text"],
                                                                                    "instructions": 'Di exactamente: "Texto."'}}))
        await until(ws, of_type("response.done"))
        await until(ws, of_type("response.done"))
        await ws.send_message(json.dumps({"type": "response.create", "response": {"instructions": 'Di exactamente: "Audio."'}}))
        done = (await until(ws, of_type("response.done")))[-1]["response"]
        spoken = done["output"][0]["id"]
        for client_event in ({"type": "conversation.item.retrieve", "item_id": spoken},
                             {"type": "conversation.item.truncate", "item_id": spoken, "content_index": 0, "audio_end_ms": 100},
                             {"type": "conversation.item.delete", "item_id": user},
                             {"type": "conversation.item.retrieve", "item_id": user}):
            await ws.send_message(json.dumps(client_event))
        await ws.send_message(json.dumps({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": "call_old_1", "output": "{\"error\": \"timeout\"}"}}))
        await until(ws, of_type("error"))  # the retrieve of the deleted item
        await ws.send_message(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(
            bytes(9600)).decode()}))  # 100 ms of PCM16 24 kHz silence
        await ws.send_message(json.dumps({"type": "input_audio_buffer.clear"}))
        await ws.send_message(json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": {
            "input": {"turn_detection": None}, "output": {"format": {"type": "audio/pcma"}}}}}))
        await say(ws, "hola", fmt="pcm", silence_s=0.2)  # the default input format: PCM16 24 kHz
        await ws.send_message(json.dumps({"type": "input_audio_buffer.commit"}))
        await ws.send_message(json.dumps({"type": "response.create"}))
        await until(ws, of_type("response.done"))
    # 4. Faults: a refused session.update, an unprompted error, the session's expiry.
    faults = ModelFaults(refuse_session_updates=frozenset({1}), errors_at=((1.0, "server_error"),), expire_after_s=5.0)
    async with client(SimModelConfig(transcript=records.append, faults=faults)) as ws:
        await ws.send_message(json.dumps(SETUP_SESSION))
        await ws.send_message(json.dumps(SETUP_SESSION))
        await until(ws, of_type("session.updated"))
        await until(ws, lambda m: m["type"] == "error" and m["error"]["code"] == "session_expired")


async def _create(ws: WebSocketConnection, item: dict[str, Any]) -> str:
    await ws.send_message(json.dumps({"type": "conversation.item.create", "item": item}))
    return str((await until(ws, of_type("conversation.item.done")))[-1]["item"]["id"])


async def test_every_server_event_conforms_to_the_sdk(autojump_clock: trio.testing.MockClock) -> None:
    records: list[dict[str, Any]] = []
    await conversations(records)
    sent = [r["event"] for r in records if r["dir"] == "out"]
    for message in sent:
        check_server_event(message)
    seen = {m["type"] for m in sent}
    assert seen >= {
        "session.created", "session.updated", "error", "rate_limits.updated",
        "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
        "input_audio_buffer.cleared", "conversation.item.added", "conversation.item.done",
        "conversation.item.input_audio_transcription.completed", "conversation.item.input_audio_transcription.failed",
        "conversation.item.retrieved", "conversation.item.truncated", "conversation.item.deleted",
        "response.created", "response.output_item.added", "response.content_part.added", "response.output_audio.delta",
        "response.output_audio_transcript.delta", "response.output_audio.done", "response.output_audio_transcript.done",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.done",
    }, seen
    statuses = {(m["response"]["status"], (m["response"]["status_details"] or {}).get("reason"))
                for m in sent if m["type"] == "response.done"}
    assert statuses >= {("completed", None), ("cancelled", "turn_detected"), ("cancelled", "client_cancelled")}


def test_the_server_event_check_can_fail() -> None:
    """The check above is not vacuous: a beta event, an unknown key, a missing field all fail it."""
    good = {"type": "response.output_audio.done", "event_id": "e", "response_id": "r", "item_id": "i",
            "output_index": 0, "content_index": 0}
    check_server_event(good)
    for bad in ({**good, "type": "response.audio.done"}, {**good, "extra": 1}, {k: v for k, v in good.items() if k != "item_id"},
                {"type": "response.done", "event_id": "e", "response": {"id": "r", "status": "completed", "usage": {"tokens": 1}}},
                {"type": "session.created", "event_id": "e", "session": {"type": "realtime", "id": "s", "object": "realtime.session",
                                                                         "audio": {"input": {"format": {"type": "audio/pcmu",
                                                                                                        "rate": 8000}}}}}):
        with pytest.raises((AssertionError, ValidationError)):
            check_server_event(bad)
