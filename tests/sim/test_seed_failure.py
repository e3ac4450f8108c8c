"""The seed's failure, reproduced against the simulated Realtime server, and the design that ends it.

The old code ran the 27 s router query inside the WebSocket message handler: nothing read the
socket meanwhile, so pings went unanswered and the server closed the link; the answer then hit
"Connection is already closed". ``legacy_call`` does exactly that with trio-websocket's defaults
(the tool awaited inside the read loop). The project's design, with the same kind of slow query,
is tested end to end in tests/test_end_to_end.py (24 s and 60 s queries, link intact).
"""

import json

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, open_websocket_url

from mikrovoice.realtime import protocol as rt
from mikrovoice.sim import voice
from mikrovoice.sim.realtime import SimModelConfig, serve_model
from mikrovoice.telephony import g711


async def legacy_call(port: int, tool_seconds: float) -> str:
    """Ask the SFP question, run the tool inline in the read loop; say how the call ended."""
    url = f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime"
    outcome = "no tool call"
    try:
        async with open_websocket_url(url, extra_headers=[(b"Authorization", b"Bearer sk-test")]) as ws:
            settings = rt.SessionSettings("gpt-realtime", "x", "marin", ())
            await ws.send_message(json.dumps(rt.client_session_update(settings)))
            speech = g711.slin_to_ulaw(voice.speak("Dame el tráfico de las interfaces SFP de todos los routers"))
            silence = g711.slin_to_ulaw(bytes(16000))  # 1 s, so server VAD ends the turn
            for i in range(0, len(speech + silence), 160):
                await ws.send_message(json.dumps(rt.client_append_audio((speech + silence)[i : i + 160])))
            while True:
                message = json.loads(await ws.get_message())
                if message["type"] == "response.function_call_arguments.done":
                    await trio.sleep(tool_seconds)  # the blocking tool: the read loop stops here
                    outcome = "answer sent"
                    await ws.send_message(json.dumps(rt.client_tool_output(message["call_id"], "{}")))
                    return "survived"
    except ConnectionClosed as exc:
        return f"closed: {exc.reason.code} {exc.reason.reason}"
    except BaseExceptionGroup as group:  # trio-websocket's reader dies on the half-closed link
        return f"link dead after '{outcome}': {group.exceptions[0]!r}"
    except trio.Cancelled as exc:
        # trio-websocket 0.12.2 leaks its internal nursery's Cancelled when its reader crashes
        # answering a ping on the closing link; only that one is a result here.
        if "cannot be sent in state ConnectionState" not in str(exc):
            raise
        return f"link dead after '{outcome}': {exc}"
    return outcome


async def test_the_old_design_loses_the_model_link(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_model, "127.0.0.1", 0, SimModelConfig())
        outcome = "hung"
        with trio.move_on_after(120):
            outcome = await legacy_call(server.port, tool_seconds=27.0)
        nursery.cancel_scope.cancel()
    # While the tool ran, a server ping went 20 s without a pong and the server closed the link;
    # the answer, 27 s later, had nowhere to go ("Connection is already closed" in the old logs).
    # The old client never gets its answer through: it errors out or, as the seed's caller
    # experienced, hangs until someone hangs up ("hung": still stuck 120 s later).
    assert outcome != "survived", outcome
    assert any("sim.model.ping_timeout" in r.getMessage() for r in caplog.records)


async def test_a_short_tool_in_the_read_loop_survives(autojump_clock: trio.testing.MockClock) -> None:
    """Control: the same client with a 2 s tool is not dropped, so the drop above is the blocking."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_model, "127.0.0.1", 0, SimModelConfig())
        outcome = await legacy_call(server.port, tool_seconds=2.0)
        nursery.cancel_scope.cancel()
    assert outcome == "survived"
