"""``-v``: debug events that say what crossed the wire, and never a secret."""

from __future__ import annotations

import json
import logging
import random

import pytest
import trio
import trio.testing
from trio_websocket import WebSocketRequest, serve_websocket

from mikrovoice.realtime import protocol as rt
from mikrovoice.realtime.link import RealtimeLink
from mikrovoice.routeros import commands
from mikrovoice.routeros.client import RouterPool, shown_words
from mikrovoice.routeros.protocol import Request
from mikrovoice.sim.realtime import SimModelConfig, serve_model
from mikrovoice.sim.routeros import make_router, serve_fleet

from .conftest import Capture

API_KEY = "sk-test-9f8e7d6c5b4a-SECRET"
ROUTER_PASSWORD = "r0uter-Pa55-SECRET"


def debug_records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", "") == name and r.levelno == logging.DEBUG]


async def test_a_sent_client_event_is_a_debug_event(autojump_clock: trio.testing.MockClock,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mikrovoice")
    got = trio.Event()

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.get_message()
        got.set()
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        link = RealtimeLink(f"ws://127.0.0.1:{server.port}/v1/realtime", "sk-x")
        link.send(rt.client_response_cancel())
        send, _ = trio.open_memory_channel[rt.ServerEvent](10)
        nursery.start_soon(link.run, send)
        with trio.fail_after(5):
            await got.wait()
        nursery.cancel_scope.cancel()
    (sent,) = debug_records(caplog, "model.send")
    assert sent.fields["type"] == "response.cancel"  # type: ignore[attr-defined]
    assert debug_records(caplog, "model.connect_timing")


async def test_nothing_is_logged_at_debug_when_the_level_is_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mikrovoice")
    link = RealtimeLink("ws://127.0.0.1:1/v1/realtime", "sk-x")
    link.send(rt.client_response_cancel())
    assert not [r for r in caplog.records if r.levelno == logging.DEBUG]


def test_shown_words_mask_a_password() -> None:
    login = commands.login("admin", ROUTER_PASSWORD)
    assert shown_words(login, 1) == "/login =name=admin =password=*** .tag=1"
    assert ROUTER_PASSWORD not in shown_words(Request("/x", {"Password": ROUTER_PASSWORD}))


async def test_debug_output_of_a_model_session_and_a_router_login_holds_no_secret(
        log_capture: Capture, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mikrovoice")
    out = log_capture(logging.DEBUG, "json")
    async with trio.open_nursery() as nursery:
        # The model: a session accepted only with our key, a session.update, its answer.
        model = await nursery.start(serve_model, "127.0.0.1", 0, SimModelConfig(api_key=API_KEY))
        link = RealtimeLink(f"ws://127.0.0.1:{model.port}/v1/realtime?model=gpt-realtime", API_KEY)
        link.send(rt.client_session_update(rt.SessionSettings("gpt-realtime", "instrucciones", "marin", ())))
        events_in, events_out = trio.open_memory_channel[rt.ServerEvent](100)
        nursery.start_soon(link.run, events_in)
        with trio.fail_after(10):
            async for server_event in events_out:
                if isinstance(server_event, rt.SessionUpdated):
                    break
        await link.aclose()

        # A router: login with a password, one command.
        router = make_router("152.1", random.Random(1), 0.01, password=ROUTER_PASSWORD)
        configs = await nursery.start(serve_fleet, [router])
        pool = RouterPool(configs)
        with trio.fail_after(10):
            rows = await pool.run("152.1", commands.identity())
        assert rows
        await pool.aclose()
        nursery.cancel_scope.cancel()

    text = out.getvalue()
    events = [json.loads(line)["event"] for line in text.splitlines()]
    for expected in ("model.dialing", "model.connect_timing", "model.send", "model.recv", "router.dialing",
                     "router.connect_timing", "router.send", "router.reply", "router.connection"):
        assert expected in events, expected
    assert "/login =name=admin =password=***" in text
    captured = text + "\n".join(r.getMessage() + repr(getattr(r, "fields", {})) for r in caplog.records)
    for secret in (API_KEY, ROUTER_PASSWORD, "Bearer", "Authorization"):
        assert secret not in captured, secret


async def test_the_audiosocket_leg_tells_first_frame_format_and_digits_but_never_the_digit(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    import uuid

    from mikrovoice.sim import voice
    from mikrovoice.telephony.audiosocket import Audio, CallId, Dtmf, encode
    from mikrovoice.telephony.audiosocket_leg import AudioSocketLeg
    from mikrovoice.telephony.leg import LegEnded

    caplog.set_level(logging.DEBUG, logger="mikrovoice")
    speech = voice.speak("Dame el tráfico SFP de todos los routers")
    ours, theirs = trio.testing.memory_stream_pair()

    async def asterisk() -> None:  # a frame every 20 ms, as Asterisk sends them; then a PIN's digits
        await theirs.send_all(encode(CallId(uuid.uuid4())))
        for i in range(0, len(speech) - 320, 320):
            await theirs.send_all(encode(Audio(speech[i:i + 320])))
            await trio.sleep(0.02)
        await theirs.send_all(encode(Dtmf("7")) + encode(Dtmf("3")))
        await theirs.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(asterisk)
        leg = AudioSocketLeg(ours)
        assert await leg.start() is not None
        while not isinstance(await leg.receive(), LegEnded):
            pass
    (first,) = debug_records(caplog, "call.leg_first_frame")
    assert first.fields == {"transport": "audiosocket", "kind": "0x10", "bytes": 320}  # type: ignore[attr-defined]
    (decided,) = debug_records(caplog, "call.audiosocket_format")
    assert decided.fields["verdict"] == "slin"  # type: ignore[attr-defined]
    digits = debug_records(caplog, "call.leg_dtmf")
    assert len(digits) == 2 and all(r.fields == {"transport": "audiosocket"} for r in digits)  # type: ignore[attr-defined]
    assert not any("7" in r.getMessage() or "3" in r.getMessage() for r in digits)


@pytest.mark.parametrize("server_event", [
    rt.SessionCreated({}), rt.SessionUpdated({}), rt.ResponseCreated("r1", {}), rt.ResponseDone("r1", "completed", {}),
    rt.AudioDelta("r1", "i1", b"\xff" * 80), rt.TranscriptDelta("r1", "i1", "ho"), rt.TranscriptDone("r1", "i1", "hola"),
    rt.FunctionCall("r1", "i2", "call_1", "ping", '{"router": "152.1"}'), rt.ItemAdded("i3", "message", "user"),
    rt.SpeechStarted(100, "i4"), rt.SpeechStopped(900, "i4"), rt.InputTranscript("i4", "dame el tráfico"),
    rt.ServerError("rate_limit_exceeded", "slow down", "rc_1"), rt.Unrecognised("rate_limits.updated"),
])
def test_every_server_event_has_a_debug_line_without_payloads(server_event: rt.ServerEvent,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    from mikrovoice.logs import event
    from mikrovoice.realtime.link import _received_fields

    caplog.set_level(logging.DEBUG, logger="mikrovoice")
    event(logging.getLogger("mikrovoice.realtime"), "model.recv", level=logging.DEBUG, **_received_fields(server_event))
    (record,) = caplog.records
    assert record.fields["type"]  # type: ignore[attr-defined]
    for payload in ("hola", "dame", "152.1", "slow down"):  # no transcript, arguments or message at debug
        assert payload not in record.getMessage()
