"""The simulated Realtime server: it never crashes whatever the client does, it serves any Trio
stream, its faults look like the real service's failures to the production link, and its ledger
records what each session did."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
    wrap_client_stream,
)

from mikrovoice.realtime import protocol as rt
from mikrovoice.realtime.link import RealtimeLink
from mikrovoice.sim import voice
from mikrovoice.sim.brain import RESUME_PREFIX, ScriptedModel
from mikrovoice.sim.realtime import (
    CONNECT_TIMEOUT_S,
    ModelFaults,
    ModelLedger,
    SimModelConfig,
    serve_model,
    serve_model_stream,
)
from mikrovoice.telephony import g711

AUTH = [(b"Authorization", b"Bearer sk-test")]
RESOURCE = "/v1/realtime?model=gpt-realtime"
GREETING = rt.client_response_create("greeting", 'Saluda. Di exactamente: "Hola, soy el asistente del NOC. ¿Qué quieres consultar?"')
PROBE = {"type": "input_audio_buffer.clear", "event_id": "probe"}
#: A probe whose answer says which event it answers: an error echoing this event_id.
MARKER = {"type": "conversation.item.retrieve", "event_id": "marker-7f3a", "item_id": "item_none"}


def speech(text: str, silence_s: float = 1.0) -> bytes:
    """What a caller saying ``text`` sends: tone-voice speech, then silence so server VAD ends the turn."""
    return g711.slin_to_ulaw(voice.speak(text)) + g711.slin_to_ulaw(bytes(int(16000 * silence_s)))


async def say(ws: WebSocketConnection, text: str) -> None:
    audio = speech(text)
    for i in range(0, len(audio), 160):
        await ws.send_message(json.dumps(rt.client_append_audio(audio[i : i + 160])))


async def next_event(ws: WebSocketConnection, *types: str, within_s: float = 120.0) -> dict[str, Any]:
    """The next event of one of ``types``; fails after ``within_s`` virtual seconds (the server's pings
    would otherwise keep the virtual clock running forever)."""
    with trio.fail_after(within_s):
        while True:
            message = json.loads(await ws.get_message())
            if message["type"] in types:
                return message


@asynccontextmanager
async def memory_client(
    config: SimModelConfig = SimModelConfig(), ledger: ModelLedger | None = None,
    headers: list[tuple[bytes, bytes]] = AUTH, resource: str = RESOURCE,
) -> AsyncIterator[WebSocketConnection]:
    """A trio-websocket client talking to ``serve_model_stream`` over in-memory streams."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_model_stream, server_stream, config, ledger)
        ws = await wrap_client_stream(nursery, client_stream, "sim", resource, extra_headers=headers,
                                      message_queue_size=100_000, max_message_size=16 * 1024 * 1024)
        try:
            yield ws
        finally:
            nursery.cancel_scope.cancel()


def assert_error_shape(message: dict[str, Any], code: str, event_id: str | None, error_type: str = "invalid_request_error") -> None:
    assert message["type"] == "error" and isinstance(message["event_id"], str)
    assert set(message) == {"type", "event_id", "error"}
    error = message["error"]
    assert set(error) == {"type", "code", "message", "param", "event_id"}
    assert (error["type"], error["code"], error["event_id"]) == (error_type, code, event_id)
    assert isinstance(error["message"], str) and error["message"]


# --------------------------------------------------------------------------- section 1: never crash


async def test_hanging_up_during_the_greeting_ends_only_that_session(autojump_clock: trio.testing.MockClock) -> None:
    """The bug: a client closing while the greeting streams made a session task raise ConnectionClosed,
    which escaped the session's nursery as an ExceptionGroup and took the whole listener down.

    The close is timed to land on the server's next 25 ms audio tick (where the race lives) after
    the 1st..5th delta; before the fix about one such call in three killed the server, so 50
    calls on one server never all survived."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_model, "127.0.0.1", 0, SimModelConfig())
        url = f"ws://127.0.0.1:{server.port}{RESOURCE}"
        for i in range(50):
            async with open_websocket_url(url, extra_headers=AUTH) as ws:
                await next_event(ws, "session.created")
                await ws.send_message(json.dumps(GREETING))
                for _ in range(1 + i % 5):
                    await next_event(ws, "response.output_audio.delta")
                await trio.sleep(0.025 * (1 + i % 2))
            # the caller hung up; the next caller is still served
        async with open_websocket_url(url, extra_headers=AUTH) as ws:
            assert (await next_event(ws, "session.created"))["session"]["type"] == "realtime"
        nursery.cancel_scope.cancel()


async def test_every_hang_up_is_recorded_as_the_client_closing(autojump_clock: trio.testing.MockClock) -> None:
    ledger = ModelLedger()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_model, "127.0.0.1", 0, SimModelConfig(), ledger)
        assert server.ledger is ledger
        url = f"ws://127.0.0.1:{server.port}{RESOURCE}"
        for i in range(20):
            async with open_websocket_url(url, extra_headers=AUTH) as ws:
                await ws.send_message(json.dumps(GREETING))
                for _ in range(1 + i % 4):
                    await next_event(ws, "response.output_audio.delta")
                await trio.sleep(0.025)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert len(ledger.sessions) == 20 and ledger.all_crashes() == []
    for session in ledger.sessions:
        assert (session.end_reason, session.close_code) == ("client_closed", 1000)
        assert session.ended_at is not None
        [response] = session.responses.values()
        assert response.kind == "greeting" and response.status is None  # cut off: no response.done was sent


MALFORMED: list[tuple[str | bytes, str, str | None, str | None]] = [
    # (message, error code, param, echoed event_id)
    ("this is not json", "invalid_json", None, None),
    (b"\xff\xfe\x00", "invalid_json", None, None),
    ("[1, 2, 3]", "invalid_type", "event", None),
    ('"session.update"', "invalid_type", "event", None),
    ('{"event_id": "e1"}', "missing_required_parameter", "type", "e1"),
    ('{"type": 5, "event_id": "e2"}', "invalid_type", "type", "e2"),
    ('{"type": "session.update", "event_id": 7}', "invalid_type", "event_id", None),
    ('{"type": "no.such.event", "event_id": "e3"}', "invalid_value", "type", "e3"),
    ('{"type": "session_update", "event_id": "e4", "session": {"type": "realtime"}}', "invalid_value", "type", "e4"),
    ('{"type": "session.update", "event_id": "s1"}', "missing_required_parameter", "session", "s1"),
    ('{"type": "session.update", "event_id": "s2", "session": []}', "invalid_type", "session", "s2"),
    ('{"type": "session.update", "event_id": "s3", "session": {"audio": {}}}', "missing_required_parameter", "session.type", "s3"),
    ('{"type": "session.update", "event_id": "s4", "session": {"type": "transcription"}}', "invalid_value", "session.type", "s4"),
    ('{"type": "session.update", "event_id": "s5", "session": {"type": "realtime", "audio": 5}}', "invalid_type", "session.audio", "s5"),
    ('{"type": "session.update", "event_id": "s6", "session": {"type": "realtime", "audio": {"input": []}}}', "invalid_type", "session.audio.input", "s6"),
    ('{"type": "session.update", "event_id": "s7", "session": {"type": "realtime", "input_audio_format": "g711_ulaw"}}', "unknown_parameter", "session.input_audio_format", "s7"),
    ('{"type": "session.update", "event_id": "s8", "session": {"type": "realtime", "audio": {"input": {"format": {"type": "g711_ulaw"}}}}}', "invalid_value", "session.audio.input.format.type", "s8"),
    ('{"type": "session.update", "event_id": "s9", "session": {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": "high"}}}}}', "invalid_type", "session.audio.input.turn_detection.threshold", "s9"),
    ('{"type": "session.update", "event_id": "s10", "session": {"type": "realtime", "tools": [{"type": "function"}]}}', "missing_required_parameter", "session.tools[0].name", "s10"),
    ('{"type": "input_audio_buffer.append", "event_id": "a1"}', "missing_required_parameter", "audio", "a1"),
    ('{"type": "input_audio_buffer.append", "event_id": "a2", "audio": 5}', "invalid_type", "audio", "a2"),
    ('{"type": "input_audio_buffer.append", "event_id": "a3", "audio": "not base64!!"}', "invalid_value", "audio", "a3"),
    ('{"type": "input_audio_buffer.commit", "event_id": "a4"}', "input_audio_buffer_commit_empty", None, "a4"),
    ('{"type": "conversation.item.create", "event_id": "i1", "item": []}', "invalid_type", "item", "i1"),
    ('{"type": "conversation.item.create", "event_id": "i2", "item": {"type": "function_call_output", "call_id": "call_x", "output": "{}"}}', "invalid_value", "item.call_id", "i2"),
    ('{"type": "conversation.item.create", "event_id": "i3", "item": {"type": "function_call_output", "call_id": "call_x", "output": 5}}', "invalid_type", "item.output", "i3"),
    ('{"type": "conversation.item.create", "event_id": "i4", "item": {"type": "function_call_output", "output": "{}"}}', "missing_required_parameter", "item.call_id", "i4"),
    ('{"type": "conversation.item.create", "event_id": "i5", "item": {"type": "message", "role": "assistant", "content": [{"type": "output_audio"}]}}', "invalid_value", "item.content[0].type", "i5"),
    ('{"type": "conversation.item.truncate", "event_id": "t1", "item_id": "item_x", "content_index": 0, "audio_end_ms": "x"}', "invalid_type", "audio_end_ms", "t1"),
    ('{"type": "conversation.item.truncate", "event_id": "t2", "item_id": "item_x", "content_index": 0, "audio_end_ms": 10}', "invalid_value", "item_id", "t2"),
    ('{"type": "conversation.item.delete", "event_id": "d1", "item_id": "item_x"}', "item_not_found", "item_id", "d1"),
    ('{"type": "response.create", "event_id": "r1", "response": 5}', "invalid_type", "response", "r1"),
    ('{"type": "response.create", "event_id": "r2", "response": {"metadata": {"kind": 5}}}', "invalid_type", "response.metadata.kind", "r2"),
    ('{"type": "response.create", "event_id": "r3", "response": {"modalities": ["audio"]}}', "unknown_parameter", "response.modalities", "r3"),
    ('{"type": "response.create", "event_id": "r4", "response": {"conversation": "other"}}', "invalid_value", "response.conversation", "r4"),
    ('{"type": "response.cancel", "event_id": "c1"}', "response_cancel_not_active", None, "c1"),
    ('{"type": "response.cancel", "event_id": "c2", "response_id": 3}', "invalid_type", "response_id", "c2"),
    # JSON that Python parses but a real server would not, or could not echo back
    ("[" * 100_000 + "]" * 100_000, "invalid_json", None, None),
    ('{"type": "session.update", "event_id": "n1", "session": {"type": "realtime", "tools": [{"type": "function", '
     '"name": "f", "parameters": ' + '{"a": ' * 900 + "1" + "}" * 900 + "}]}}", "invalid_json", None, None),
    ('{"type": "session.update", "event_id": "n2", "session": {"type": "realtime", "audio": {"input": '
     '{"turn_detection": {"type": "server_vad", "threshold": NaN}}}}}', "invalid_json", None, None),
    ('{"type": "session.update", "event_id": "n3", "session": {"type": "realtime", "instructions": "\\ud800"}}',
     "invalid_json", None, None),
    ('{"type": "response.create", "event_id": "n4", "response": {"metadata": {"kind": "\\udfff"}}}', "invalid_json", None, None),
]


async def test_malformed_events_get_error_events_and_the_session_goes_on(autojump_clock: trio.testing.MockClock) -> None:
    ledger = ModelLedger()
    async with memory_client(ledger=ledger) as ws:
        await next_event(ws, "session.created")
        for message, code, param, event_id in MALFORMED:
            await ws.send_message(message)
            error = await next_event(ws, "error")
            assert_error_shape(error, code, event_id)
            assert error["error"]["param"] == param, (message, error)
            await ws.send_message(json.dumps(PROBE))
            assert (await next_event(ws, "input_audio_buffer.cleared", "error"))["type"] == "input_audio_buffer.cleared"
    [session] = ledger.sessions
    assert [e.code for e in session.errors] == [code for _, code, _, _ in MALFORMED]
    assert session.crashes == [] and ledger.all_crashes() == []


# Templates of valid client events and the paths where hypothesis puts arbitrary JSON.
TEMPLATES: list[tuple[dict[str, Any], tuple[str, ...]]] = [
    ({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"},
      "turn_detection": {"type": "server_vad", "threshold": 0.5}}, "output": {"voice": "marin"}}, "tools": [], "tool_choice": "auto"}},
     ("session", "session.type", "session.audio", "session.audio.input", "session.audio.input.format",
      "session.audio.input.turn_detection", "session.audio.input.turn_detection.threshold", "session.audio.output",
      "session.audio.output.voice", "session.tools", "session.tool_choice", "session.instructions",
      "session.max_output_tokens", "session.truncation", "session.output_modalities")),
    ({"type": "input_audio_buffer.append", "audio": "/////w=="}, ("audio",)),
    ({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "call_1", "output": "{}"}},
     ("item", "item.type", "item.call_id", "item.output", "item.id", "previous_item_id")),
    ({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hola"}]}},
     ("item.role", "item.content", "item.status")),
    ({"type": "conversation.item.truncate", "item_id": "item_1", "content_index": 0, "audio_end_ms": 0},
     ("item_id", "content_index", "audio_end_ms")),
    ({"type": "response.create", "response": {"instructions": "x", "metadata": {"kind": "turn"}}},
     ("response", "response.metadata", "response.metadata.kind", "response.instructions", "response.conversation",
      "response.tool_choice", "response.max_output_tokens", "response.input")),
    ({"type": "response.cancel"}, ("response_id",)),
    ({"type": "input_audio_buffer.clear"}, ("type", "event_id")),
]

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)


def _with(template: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    event = json.loads(json.dumps(template))
    *parents, last = path.split(".")
    target = event
    for key in parents:
        target = target[key]
    target[last] = value
    return event


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_json_in_any_field_never_ends_the_session(data: st.DataObject) -> None:
    events = []
    for _ in range(data.draw(st.integers(1, 3))):
        template, paths = data.draw(st.sampled_from(TEMPLATES))
        events.append(_with(template, data.draw(st.sampled_from(paths)), data.draw(JSON_VALUES)))

    async def main() -> None:
        ledger = ModelLedger()
        async with memory_client(ledger=ledger) as ws:
            await next_event(ws, "session.created")
            for i, client_event in enumerate(events):
                client_event.setdefault("event_id", f"ev{i}")
                await ws.send_message(json.dumps(client_event))
                await ws.send_message(json.dumps(MARKER))
                while True:
                    message = await next_event(ws, "error")
                    if message["error"]["event_id"] == MARKER["event_id"]:  # the session is alive
                        assert_error_shape(message, "item_not_found", MARKER["event_id"])
                        break
                    try:
                        json.dumps(client_event, allow_nan=False)
                    except ValueError:  # NaN or Infinity: not JSON, so nothing in it can be echoed
                        assert_error_shape(message, "invalid_json", None)
                        continue
                    echoed = client_event["event_id"] if isinstance(client_event.get("event_id"), str) else None
                    assert_error_shape(message, message["error"]["code"], echoed)
                    assert message["error"]["code"] != "server_error"
        assert ledger.all_crashes() == []
        assert len(ledger.sessions) == 1

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(noise=st.binary(max_size=3000), cut=st.integers(0, 4000), chunk=st.integers(1, 500))
def test_any_audio_never_ends_the_session(noise: bytes, cut: int, chunk: int) -> None:
    """Noise, speech cut short, odd-sized appends: heard or not, the session goes on."""
    audio = speech("Dame el tráfico SFP")[:cut] + noise + speech("ajá")

    async def main() -> None:
        ledger = ModelLedger()
        async with memory_client(ledger=ledger) as ws:
            await ws.send_message(json.dumps(rt.client_session_update(rt.SessionSettings("gpt-realtime", "x", "marin", ()))))
            for i in range(0, len(audio), chunk):
                await ws.send_message(json.dumps(rt.client_append_audio(audio[i : i + chunk])))
            await ws.send_message(json.dumps(MARKER))
            while (await next_event(ws, "error"))["error"]["event_id"] != MARKER["event_id"]:
                pass
        assert ledger.all_crashes() == [] and ledger.sessions[0].end_reason is not None

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_a_simulator_bug_ends_only_its_own_session(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: ScriptedModel, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    ledger = ModelLedger()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_model, "127.0.0.1", 0, SimModelConfig(), ledger)
        url = f"ws://127.0.0.1:{server.port}{RESOURCE}"
        with monkeypatch.context() as patch:
            patch.setattr(ScriptedModel, "decide", broken)
            with pytest.raises(ConnectionClosed) as closed:
                async with open_websocket_url(url, extra_headers=AUTH) as ws:
                    await ws.send_message(json.dumps(GREETING))
                    while True:
                        await ws.get_message()
            assert closed.value.reason.code == 1006  # the crashed session's connection is just closed
        async with open_websocket_url(url, extra_headers=AUTH) as ws:  # the listener is alive
            await ws.send_message(json.dumps(GREETING))
            assert (await next_event(ws, "response.done"))["response"]["status"] == "completed"
        nursery.cancel_scope.cancel()
    crashed = [r for r in caplog.records if "sim.model.crashed" in r.getMessage()]
    assert len(crashed) == 1 and crashed[0].levelno == logging.ERROR and "boom" in crashed[0].getMessage()
    assert ledger.sessions[0].crashes == ["RuntimeError('boom')"] and ledger.sessions[0].end_reason == "crashed"
    assert ledger.sessions[1].crashes == [] and ledger.all_crashes() == ["RuntimeError('boom')"]


async def test_cancelling_the_server_is_never_swallowed(autojump_clock: trio.testing.MockClock) -> None:
    ledger = ModelLedger()
    client_stream, server_stream = trio.testing.memory_stream_pair()
    outcome: list[str] = []

    async def client(nursery: trio.Nursery) -> None:
        ws = await wrap_client_stream(nursery, client_stream, "sim", RESOURCE, extra_headers=AUTH)
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed as exc:
            outcome.append(f"closed {exc.reason.code} at {trio.current_time():g}")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client, nursery)
        with trio.move_on_after(7) as scope:
            await serve_model_stream(server_stream, SimModelConfig(), ledger)
        assert scope.cancelled_caught and trio.current_time() == pytest.approx(7)
    assert outcome == ["closed 1006 at 7"]  # the stream was closed on the way out
    assert ledger.sessions[0].end_reason == "server_shutdown" and ledger.sessions[0].ended_at == pytest.approx(7)


# --------------------------------------------------------------------------- section 2: any stream


async def test_serve_model_stream_serves_a_memory_stream_and_closes_it(autojump_clock: trio.testing.MockClock) -> None:
    ledger = ModelLedger()
    client_stream, server_stream = trio.testing.memory_stream_pair()
    returned = trio.Event()

    async def server() -> None:
        await serve_model_stream(server_stream, SimModelConfig(), ledger)
        returned.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        ws = await wrap_client_stream(nursery, client_stream, "sim", RESOURCE, extra_headers=AUTH)
        created = await next_event(ws, "session.created")
        assert created["session"]["object"] == "realtime.session"
        await ws.send_message(json.dumps(GREETING))
        done = await next_event(ws, "response.done")
        assert done["response"]["status"] == "completed" and done["response"]["metadata"] == {"kind": "greeting"}
        await trio.sleep(3)
        await ws.aclose()
        with trio.fail_after(1):
            await returned.wait()
        nursery.cancel_scope.cancel()
    with pytest.raises(trio.ClosedResourceError):
        await server_stream.send_all(b"x")  # serve_model_stream closed its stream
    [session] = ledger.sessions
    assert (session.end_reason, session.close_code) == ("client_closed", 1000)
    assert session.started_at == 0 and session.ended_at == pytest.approx(trio.current_time())


@pytest.mark.parametrize("client_bytes", [b"", b"garbage that is not HTTP\r\n\r\n", b"GET /v1/realtime HTTP/1.1\r\n"])
async def test_a_client_that_never_upgrades_is_let_go(autojump_clock: trio.testing.MockClock, client_bytes: bytes) -> None:
    ledger = ModelLedger()
    client_stream, server_stream = trio.testing.memory_stream_pair()
    await client_stream.send_all(client_bytes)
    if not client_bytes:
        await client_stream.aclose()
    with trio.fail_after(CONNECT_TIMEOUT_S + 1):
        await serve_model_stream(server_stream, SimModelConfig(), ledger)
    assert ledger.sessions == [] and ledger.all_crashes() == []
    [handshake] = ledger.handshakes
    assert handshake.outcome == "timed_out"
    if not client_bytes:  # the client went away: no need to wait for the timeout
        assert handshake.reason == "client_gone" and trio.current_time() == 0


@pytest.mark.parametrize(("headers", "resource", "status", "code"), [
    ([], RESOURCE, 401, None),
    ([(b"Authorization", b"Bearer sk-wrong")], RESOURCE, 401, "invalid_api_key"),
    (AUTH, "/v1/other", 404, None),
])
async def test_refused_upgrades(
    autojump_clock: trio.testing.MockClock, headers: list[tuple[bytes, bytes]], resource: str, status: int, code: str | None,
) -> None:
    ledger = ModelLedger()
    refusals: list[ConnectionRejected] = []
    try:
        async with memory_client(SimModelConfig(api_key="sk-test"), ledger, headers, resource):
            pass
    except* ConnectionRejected as group:  # raised by the client's reader task, in its nursery
        refusals.extend(group.exceptions)  # type: ignore[arg-type]
    [refused] = refusals
    assert refused.status_code == status
    error = json.loads(refused.body or b"")["error"]
    assert set(error) == {"message", "type", "code", "param"} and error["code"] == code
    assert ledger.sessions == [] and [(h.outcome, h.status) for h in ledger.handshakes] == [("refused", status)]


async def test_the_beta_header_is_refused_after_the_upgrade(autojump_clock: trio.testing.MockClock) -> None:
    ledger = ModelLedger()
    async with memory_client(ledger=ledger, headers=AUTH + [(b"OpenAI-Beta", b"realtime=v1")]) as ws:
        error = json.loads(await ws.get_message())
        assert error["error"]["code"] == "beta_api_shape_disabled"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason.code == 4000
    assert ledger.sessions[0].end_reason == "beta_refused"


# --------------------------------------------------------------------------- section 3: faults, seen by the production link


async def run_link(
    config: SimModelConfig, *, until: float = 120.0, actions: list[tuple[float, rt.JSON]] = (),  # type: ignore[assignment]
    api_key: str = "sk-test",
) -> tuple[Any, list[tuple[float, rt.ServerEvent]], ModelLedger]:
    """Run a RealtimeLink against ``serve_model`` (TCP) with ``config``; send ``actions`` at their times.

    Returns how the link closed (None: still up after ``until`` seconds), the events it delivered, the ledger."""
    ledger = ModelLedger()
    seen: list[tuple[float, rt.ServerEvent]] = []
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_model, "127.0.0.1", 0, config, ledger)
        link = RealtimeLink(f"ws://127.0.0.1:{server.port}{RESOURCE}", api_key, ping_interval_s=15, pong_timeout_s=10)
        send, receive = trio.open_memory_channel[rt.ServerEvent](100_000)

        async def collect() -> None:
            async for server_event in receive:
                seen.append((trio.current_time(), server_event))

        async def act() -> None:
            for at, client_event in actions:
                await trio.sleep_until(at)
                link.send(client_event)

        nursery.start_soon(collect)
        nursery.start_soon(act)
        closed = None  # still up at ``until``
        with trio.move_on_after(until):
            closed = await link.run(send)
        await trio.sleep(3)  # let the server notice
        nursery.cancel_scope.cancel()
    return closed, seen, ledger


async def test_silent_server_is_declared_dead_by_the_link(autojump_clock: trio.testing.MockClock) -> None:
    closed, seen, ledger = await run_link(SimModelConfig(faults=ModelFaults(silent_after_s=3.0)),
                                          actions=[(4.0, rt.client_response_create("turn"))])
    assert closed.reason == "no pong within 10 s: link dead" and not closed.by_us
    assert all(at <= 3.0 for at, _ in seen)  # nothing after the silence, not even the response asked at 4 s
    assert not any(isinstance(e, rt.ResponseCreated) for _, e in seen)
    [session] = ledger.sessions
    assert session.silenced_at == pytest.approx(session.started_at + 3.0)
    assert session.ended_at is not None  # the link's close ended the dead session: no task hangs
    assert session.end_reason == "connection_lost" and session.creates == []


async def test_dropped_connection_is_a_close_not_by_us(autojump_clock: trio.testing.MockClock) -> None:
    closed, seen, ledger = await run_link(SimModelConfig(faults=ModelFaults(drop_after_s=4.0)))
    assert not closed.by_us and "1006" in closed.reason, closed
    [session] = ledger.sessions
    assert session.end_reason == "dropped_by_fault"
    assert session.ended_at == pytest.approx(session.started_at + 4.0)


@pytest.mark.parametrize(("status", "code"), [
    (401, "invalid_api_key"), (403, "unsupported_country_region_territory"), (404, "model_not_found"),
    (429, "rate_limit_exceeded"), (500, "server_error"), (503, "server_error"),
])
async def test_refused_handshake_is_reported_by_the_link(autojump_clock: trio.testing.MockClock, status: int, code: str) -> None:
    closed, seen, ledger = await run_link(SimModelConfig(faults=ModelFaults(handshake_status=status)))
    assert f"HTTP {status} {code}" in closed.reason and not closed.by_us, closed
    assert seen == [] and ledger.sessions == []
    assert [(h.outcome, h.status, h.reason) for h in ledger.handshakes] == [("refused", status, "fault")]


async def test_stalled_handshake_times_out_in_the_link(autojump_clock: trio.testing.MockClock) -> None:
    closed, seen, ledger = await run_link(SimModelConfig(faults=ModelFaults(stall_handshake=True)))
    assert closed.reason == "no WebSocket handshake within 10 s" and not closed.by_us
    assert [(h.outcome, h.reason) for h in ledger.handshakes] == [("stalled", "fault")] and ledger.sessions == []


async def test_stalled_handshake_ends_when_the_client_leaves(autojump_clock: trio.testing.MockClock) -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    config = SimModelConfig(faults=ModelFaults(stall_handshake=True))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_model_stream, server_stream, config)
        await client_stream.send_all(b"GET /v1/realtime HTTP/1.1\r\nHost: sim\r\n\r\n")
        await trio.sleep(500)
        assert await _nothing_received(client_stream)  # never answered
        closed_at = trio.current_time()
        await client_stream.aclose()
    assert trio.current_time() == closed_at  # serve_model_stream returned as soon as the client closed


async def _nothing_received(stream: trio.abc.ReceiveStream) -> bool:
    with trio.move_on_after(1):
        await stream.receive_some()
        return False
    return True


@pytest.mark.parametrize("echo", [True, False])
async def test_refused_create_is_a_server_error(autojump_clock: trio.testing.MockClock, echo: bool) -> None:
    first, second = rt.client_response_create("greeting", 'Di exactamente: "Hola."'), rt.client_response_create("turn")
    faults = ModelFaults(refuse_creates=frozenset({1}), refusal_echoes_event_id=echo)
    closed, seen, ledger = await run_link(SimModelConfig(faults=faults), until=10, actions=[(1.0, first), (2.0, second)])
    errors = [e for _, e in seen if isinstance(e, rt.ServerError)]
    assert errors == [rt.ServerError("server_error", "The server had an error while processing your request. Sorry about that!",
                                     first["event_id"] if echo else None)]
    created = [e for _, e in seen if isinstance(e, rt.ResponseCreated)]
    assert [c.metadata for c in created] == [{"kind": "turn"}]
    [session] = ledger.sessions
    assert [(c.kind, c.outcome) for c in session.creates] == [("greeting", "refused"), ("turn", "started")]
    assert [(e.code, e.event_id) for e in session.errors] == [("server_error", first["event_id"] if echo else None)]


async def test_spurious_error_and_the_session_carries_on(autojump_clock: trio.testing.MockClock) -> None:
    create = rt.client_response_create("turn")
    closed, seen, ledger = await run_link(SimModelConfig(faults=ModelFaults(spurious_error_after_s=2.0)),
                                          until=10, actions=[(3.0, create)])
    [(at, error)] = [(at, e) for at, e in seen if isinstance(e, rt.ServerError)]
    assert at == pytest.approx(2.0, abs=0.01) and error.code == "invalid_value" and error.event_id is None
    assert any(isinstance(e, rt.ResponseDone) and e.status == "completed" for _, e in seen)
    assert closed is None  # the link is still up
    assert [(e.code, e.event_id) for e in ledger.sessions[0].errors] == [("invalid_value", None)]


async def test_no_fault_keeps_the_link_up(autojump_clock: trio.testing.MockClock) -> None:
    """Control for the fault tests: the same link, no fault, two minutes: still up."""
    closed, seen, ledger = await run_link(SimModelConfig(), until=120)
    assert closed is None and isinstance(seen[0][1], rt.SessionCreated)
    assert (ledger.sessions[0].end_reason, ledger.sessions[0].close_code) == ("client_closed", 1000)  # the link closed cleanly
    assert ledger.all_crashes() == []


# --------------------------------------------------------------------------- section 4/5: the ledger, and the brain in a session


async def test_the_ledger_records_calls_outputs_creates_responses_and_errors(autojump_clock: trio.testing.MockClock) -> None:
    ledger = ModelLedger()
    async with memory_client(ledger=ledger) as ws:
        await ws.send_message(json.dumps(rt.client_session_update(rt.SessionSettings("gpt-realtime", "x", "marin", ()))))
        await say(ws, "Dame los dispositivos activos del router 152 punto 1")
        call = await next_event(ws, "response.function_call_arguments.done")
        assert (call["name"], json.loads(call["arguments"])) == ("dispositivos_activos", {"router": "152.1"})
        issued_at = trio.current_time()
        await next_event(ws, "response.done")
        await trio.sleep(5)
        output = json.dumps({"router": "152.1", "dispositivos_activos": 2, "dispositivos": [{"nombre": "a"}, {"ip": "10.0.0.2"}]})
        await ws.send_message(json.dumps(rt.client_tool_output(call["call_id"], output)))
        await ws.send_message(json.dumps(rt.client_tool_output(call["call_id"], output)))  # a duplicate
        await ws.send_message(json.dumps(rt.client_tool_output("call_unknown", output)))
        report = rt.client_response_create("report", "Resume la salida.")
        await ws.send_message(json.dumps(report))
        await ws.send_message(json.dumps(rt.client_response_create("report")))  # one too many
        transcript = await next_event(ws, "response.output_audio_transcript.done")
        assert transcript["transcript"] == "El router 152.1 tiene 2 dispositivos activos, por ejemplo a, 10.0.0.2."
        await next_event(ws, "response.done")
    [session] = ledger.sessions
    [(call_id, record)] = session.calls.items()
    assert call_id == call["call_id"] and record.name == "dispositivos_activos"
    assert json.loads(record.arguments) == {"router": "152.1"} and record.issued_at == pytest.approx(issued_at)
    assert record.outputs == [pytest.approx(issued_at + 5)] * 2
    assert [(r.call_id, r.code) for r in session.rejected_outputs] == [(call["call_id"], "invalid_value"), ("call_unknown", "invalid_value")]
    assert [(c.kind, c.outcome, c.event_id) for c in session.creates] == [
        ("report", "started", report["event_id"]), ("report", "rejected", session.creates[1].event_id)]
    assert [(r.trigger, r.kind, r.status) for r in session.responses.values()] == [("vad", None, "completed"), ("create", "report", "completed")]
    assert [e.code for e in session.errors] == ["invalid_value", "invalid_value", "conversation_already_has_active_response"]


async def test_an_interrupted_answer_resumes_after_a_backchannel(autojump_clock: trio.testing.MockClock) -> None:
    """The caller says "ajá" over the model's preamble: the response is cancelled (turn_detected) before
    its function call; the model then says it again ("Como te decía: ...") and issues the call."""
    ledger = ModelLedger()
    async with memory_client(ledger=ledger) as ws:
        await ws.send_message(json.dumps(rt.client_session_update(rt.SessionSettings("gpt-realtime", "x", "marin", ()))))
        await say(ws, "Dame los dispositivos activos del router 152 punto 1")
        await next_event(ws, "response.output_audio.delta")
        await say(ws, "ajá")
        cancelled = await next_event(ws, "response.done")
        assert cancelled["response"]["status"] == "cancelled"
        assert cancelled["response"]["status_details"]["reason"] == "turn_detected"
        assert not [i for i in cancelled["response"]["output"] if i["type"] == "function_call"]
        transcript = await next_event(ws, "response.output_audio_transcript.done")
        assert transcript["transcript"] == RESUME_PREFIX + "Un momento, consulto los dispositivos activos del router 152.1."
        call = await next_event(ws, "response.function_call_arguments.done")
        assert json.loads(call["arguments"]) == {"router": "152.1"}
        assert (await next_event(ws, "response.done"))["response"]["status"] == "completed"
    statuses = [(r.status, r.reason) for r in ledger.sessions[0].responses.values()]
    assert statuses == [("cancelled", "turn_detected"), ("completed", None)]
    assert [c.name for c in ledger.sessions[0].calls.values()] == ["dispositivos_activos"]


async def test_out_of_band_responses_run_beside_the_conversation(autojump_clock: trio.testing.MockClock) -> None:
    async with memory_client() as ws:
        await ws.send_message(json.dumps(GREETING))
        oob = {"type": "response.create", "event_id": "oob", "response": {
            "conversation": "none", "instructions": 'Di exactamente: "Un momento."', "metadata": {"kind": "progress"}}}
        await ws.send_message(json.dumps(oob))
        created = [await next_event(ws, "response.created"), await next_event(ws, "response.created")]
        assert [c["response"]["metadata"]["kind"] for c in created] == ["greeting", "progress"]
        await ws.send_message(json.dumps(GREETING))  # the default conversation is still busy
        error = await next_event(ws, "error")
        assert_error_shape(error, "conversation_already_has_active_response", GREETING["event_id"])
