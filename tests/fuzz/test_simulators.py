"""The simulated Realtime server and the simulated routers against hostile clients (real TCP, virtual clock).

They are product too (``serve --simulate``, the demo, ``mikrovoice sim``): one client's garbage
must end that client's session at most, never the listener, and a later client is served.
The Realtime simulator promises more (tests/sim/test_realtime_sim.py fuzzes its events in
memory): a bug of its own ends only that session and is kept in the ledger; here no session may
crash at all. The router simulator lets its own bugs escape its session on purpose (the
simulations catch them); over TCP its listener logs them (``router.crashed``) and goes on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import pytest
import trio
from hypothesis import example, given
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket, wrap_client_stream

from mikrovoice.realtime import protocol as rt
from mikrovoice.routeros import commands
from mikrovoice.routeros.connection import ApiSession
from mikrovoice.routeros.protocol import Request, encode_sentence
from mikrovoice.sim.realtime import ModelLedger, SimModelConfig, serve_model
from mikrovoice.sim.routeros import FleetProfile, SimRouter, evaluate, make_fleet, serve_fleet
from tests.fuzz.harness import LogCheck, read_until_closed, reset, run_virtual, start_capture
from tests.fuzz.hostile import HOSTILE_JSON_TEXT, chunked, mutated, socket_settings
from tests.fuzz.test_decoders_routeros import HOSTILE_STREAMS as ROUTEROS_BYTES

ENDINGS = ("close", "reset")

# --------------------------------------------------------------------------- the simulated model

AUTH = [(b"Authorization", b"Bearer sk-simulated")]
_SETTINGS = rt.SessionSettings("gpt-realtime-2.1", "x", "marin", (rt.ToolSpec("trafico", "d", {"type": "object"}),))
CLIENT_EVENTS: list[dict[str, Any]] = [
    rt.client_session_update(_SETTINGS),
    rt.client_append_audio(bytes(800)),
    rt.client_input_audio_clear(),
    rt.client_tool_output("call_1", '{"ok": true}'),
    rt.client_system_note("nota"),
    rt.client_truncate("item_1", 100),
    rt.client_response_create("greeting", "Saluda.", out_of_band=False),
    rt.client_response_create("check", "x", out_of_band=True, input=[rt.system_message("hola")]),
    rt.client_response_cancel("resp_1"),
    {"type": "input_audio_buffer.commit", "event_id": "c1"},
    {"type": "conversation.item.delete", "event_id": "d1", "item_id": "item_1"},
    {"type": "conversation.item.retrieve", "event_id": "r1", "item_id": "item_1"},
]
_client_messages = st.lists(
    st.sampled_from(CLIENT_EVENTS).flatmap(lambda e: mutated(e)).map(json.dumps)
    | HOSTILE_JSON_TEXT
    | st.binary(max_size=600),
    max_size=6,
).map(tuple)


@dataclass(frozen=True)
class ModelClient:
    kind: str  # "raw" (bytes, no upgrade) or "ws" (an authorised upgrade, then messages)
    raw: bytes = b""
    messages: tuple[str | bytes, ...] = ()
    ending: str = "close"  # "close": a close frame, or TCP close for raw; "reset": RST
    delay_s: float = 0.0


model_clients = st.one_of(
    st.builds(ModelClient, kind=st.just("raw"), raw=st.binary(max_size=300) | st.sampled_from(
        [b"GET /v1/realtime HTTP/1.1\r\n\r\n", b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\n"]),
        ending=st.sampled_from(ENDINGS), delay_s=st.floats(0, 2)),
    st.builds(ModelClient, kind=st.just("ws"), messages=_client_messages, ending=st.sampled_from(ENDINGS),
              delay_s=st.floats(0, 2)),
)


async def hostile_model_client(port: int, client: ModelClient) -> None:
    await trio.sleep(client.delay_s)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        if client.kind == "raw":
            await stream.send_all(client.raw)
        else:
            async with trio.open_nursery() as nursery:
                ws = await wrap_client_stream(nursery, stream, "127.0.0.1",
                                              "/v1/realtime?model=gpt-realtime", extra_headers=AUTH)
                for message in client.messages:
                    await ws.send_message(message)
                await trio.sleep(0.5)  # let the server answer what it read
                if client.ending == "close":
                    with trio.move_on_after(3):
                        await ws.aclose()
                nursery.cancel_scope.cancel()
        await trio.sleep(0.05)
        if client.ending == "reset":
            await reset(stream)
    except* (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionClosed, HandshakeError):
        pass  # the server closed on us: allowed, as long as it survives
    finally:
        await trio.aclose_forcefully(stream)


@socket_settings(12)
@given(clients=st.lists(model_clients, min_size=1, max_size=4))
@example(clients=[ModelClient("raw", b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\n", ending="reset"),
                  ModelClient("ws", messages=("[" * 100_000, b"\x00\x01", '{"type":"session.update","session":NaN}'))])
def test_hostile_clients_never_take_the_simulated_model_down(
    clients: list[ModelClient], caplog: pytest.LogCaptureFixture
) -> None:
    start_capture(caplog)
    ledger = ModelLedger()
    updated: list[dict[str, Any]] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_model, "127.0.0.1", 0, SimModelConfig(), ledger)
            async with trio.open_nursery() as clients_nursery:
                for client in clients:
                    clients_nursery.start_soon(hostile_model_client, server.port, client)
            # A later client is served: its session.update is taken.
            with trio.fail_after(30):
                async with open_websocket("127.0.0.1", server.port, "/v1/realtime?model=gpt-realtime", use_ssl=False,
                                          extra_headers=AUTH) as ws:
                    await ws.send_message(json.dumps(rt.client_session_update(_SETTINGS)))
                    while not updated:
                        event = json.loads(await ws.get_message())
                        if event["type"] == "session.updated":
                            updated.append(event)
            nursery.cancel_scope.cancel()

    run_virtual(main)
    assert ledger.all_crashes() == []
    assert updated and updated[0]["session"]["audio"]["output"]["format"]["type"] == "audio/pcmu"
    LogCheck(list(caplog.records)).assert_no_crash()


# --------------------------------------------------------------------------- the simulated routers

#: Latin-1 text, the superscript digits ¹²³ included ('²'.isdigit() is True and int('²') fails:
#: menus.py once fell for it, see the examples below).
_SAFE_LATIN1 = st.characters(codec="latin-1")
_VALUES = st.sampled_from(["", "ether1", "sfp1", "sfp-sfpplus1", "0", "1", "7", "ether1,sfp1", "0,1,2", "*1", "*FFFF",
                           "10.0.0.1", "::1", "300.1.1.1", "1s", "100ms", "00:00:01", "0.5", "yes", "1m30s", "-1",
                           "abc", "1w2d", "0.01"]) | st.text(_SAFE_LATIN1, max_size=12)
_ATTRIBUTE_NAMES = st.sampled_from(["interface", "numbers", "once", "duration", "interval", ".proplist", "address",
                                    "count", "size", "tag", "name", "password", "response", "detail", "count-only",
                                    "follow", ".id", "from", "x", ""])
_QUERIES = st.sampled_from(["?name=ether1", "?#|", "?#!", "?#&", "?#.", "?#0", "?#9", "?-name", "?<mtu=5", "?>mtu=abc",
                            "?type=ether", "?", "?=", "?#", "?running"])
_COMMANDS = st.sampled_from([
    "/interface/print", "/interface/monitor-traffic", "/interface/ethernet/monitor", "/ping", "/log/print",
    "/ip/arp/print", "/system/identity/print", "/system/resource/print", "/system/health/print", "/interface/set",
    "/ip/dhcp-server/lease/print", "/ppp/active/print", "/interface/wireless/registration-table/print",
    "/interface/bridge/host/print", "/cancel", "/login", "/quit", "/nonexistent/print", "/", "//", "/interface/",
    "/system/reboot", "/interface/getall",
])


@st.composite
def requests(draw: st.DrawFn) -> list[str]:
    words = [draw(_COMMANDS | st.text(_SAFE_LATIN1, min_size=1, max_size=10))]
    for _ in range(draw(st.integers(0, 4))):
        words.append(f"={draw(_ATTRIBUTE_NAMES)}={draw(_VALUES)}" if draw(st.booleans()) else f"={draw(_ATTRIBUTE_NAMES)}")
    words += draw(st.lists(_QUERIES, max_size=3))
    if draw(st.booleans()):
        words.append(f".tag={draw(st.sampled_from(['1', '2', '99', '', 'x', '1 2']))}")
    return [w for w in words if w]


def _login(router: SimRouter, right: bool) -> bytes:
    return encode_sentence(["/login", f"=name={router.username}",
                            f"=password={router.password if right else 'wrong'}", ".tag=1"])


@dataclass(frozen=True)
class RouterClient:
    login: str  # "right", "wrong" or "none"
    data: bytes | tuple[tuple[str, ...], ...]  # raw bytes, or sentences
    ending: str = "close"
    cuts: tuple[int, ...] = (4096,)
    delay_s: float = 0.0


router_clients = st.builds(
    RouterClient,
    login=st.sampled_from(["right", "right", "wrong", "none"]),
    data=ROUTEROS_BYTES | st.lists(requests().map(tuple), max_size=6).map(tuple),
    ending=st.sampled_from(ENDINGS),
    cuts=st.lists(st.integers(1, 300), min_size=1, max_size=3).map(tuple),
    delay_s=st.floats(0, 2),
)


async def hostile_router_client(port: int, router: SimRouter, client: RouterClient) -> None:
    await trio.sleep(client.delay_s)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    data = b"" if client.login == "none" else _login(router, client.login == "right")
    data += client.data if isinstance(client.data, bytes) else b"".join(encode_sentence(s) for s in client.data)
    try:
        for piece in chunked(data, list(client.cuts)):
            await stream.send_all(piece)
        with trio.move_on_after(1.0):  # read the answers for a while (a feed would answer forever)
            await read_until_closed(stream, 1.0)
        if client.ending == "reset":
            await reset(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def identity(port: int, router: SimRouter) -> list[dict[str, str]]:
    """A good API client: log in, ask the identity (the pure ApiSession over a TCP stream)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    session = ApiSession()
    try:
        async def exchange(tag: int, data: bytes) -> list[dict[str, str]]:
            await stream.send_all(data)
            while not session.finished(tag):
                session.receive_data(await stream.receive_some(65536))
            return session.take(tag).result()

        await exchange(*session.login(router.username, router.password))
        return await exchange(*session.send(commands.identity()))
    finally:
        await trio.aclose_forcefully(stream)


@socket_settings(15)
@given(clients=st.lists(router_clients, min_size=1, max_size=4))
@example(clients=[RouterClient("none", b"\xf8\x00\x00\x00\x01a"),  # a reserved control byte
                  RouterClient("right", (("/cancel", "=tag=1", ".tag=x"), ("/interface/monitor-traffic",
                               "=interface=ether1", ".tag=2")), ending="reset"),
                  RouterClient("right", encode_sentence(["/system/identity/print", ".tag=5"]) + b"\xef\xff\xff\xff")])
def test_hostile_clients_never_take_the_simulated_routers_down(
    clients: list[RouterClient], caplog: pytest.LogCaptureFixture
) -> None:
    start_capture(caplog)
    fleet = make_fleet(FleetProfile(count=2, slow=0, fast_s=(0.05, 0.2)), password="secret")
    answers: list[list[dict[str, str]]] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            configs = await nursery.start(serve_fleet, fleet)
            async with trio.open_nursery() as clients_nursery:
                for i, client in enumerate(clients):
                    clients_nursery.start_soon(hostile_router_client, configs[i % 2].port, fleet[i % 2], client)
            with trio.fail_after(30):
                for config, router in zip(configs, fleet, strict=True):
                    answers.append(await identity(config.port, router))
            nursery.cancel_scope.cancel()

    run_virtual(main)  # a session whose bug escaped would have ended serve_fleet, and this run, with it
    assert [rows[0]["name"] for rows in answers] == [router.identity for router in fleet]
    LogCheck(list(caplog.records)).assert_no_crash()
    assert all(r.levelno < logging.ERROR for r in caplog.records if r.name.startswith("mikrovoice.sim"))


# --------------------------------------------------------------------------- bugs menus.py had (fixed)
# '²'.isdigit() is True and int('²') fails; int() refuses more than 4300 digits. The ValueError
# escapes _Session._run, the session's nursery, serve_router_stream, and serve_router's
# serve_listeners: one client's request ends that router's listener (and with `serve --simulate`,
# the service). A monitor interval of 1e-9 s makes a feed that sends rows in a busy loop.

_ROUTER = make_fleet(FleetProfile(count=1, slow=0))[0]


@pytest.mark.parametrize("words", [
    ["/interface/print", "?#²", ".tag=1"],  # query_passes: '²'.isdigit(), then int('²')
    ["/interface/ethernet/monitor", "=numbers=¹", "=once=", ".tag=1"],  # _resolve: the same
    ["/ping", "=address=10.0.0.1", "=count=²", ".tag=1"],  # _ping: the same
    ["/ping", "=address=10.0.0.1", "=count=" + "9" * 5000, ".tag=1"],  # int() of more than 4300 digits
    ["/interface/monitor-traffic", "=interface=ether1", "=interval=" + "9" * 5000 + ":00:00", ".tag=1"],  # the same
], ids=["query-superscript", "numbers-superscript", "ping-count-superscript", "ping-count-5000-digits",
        "interval-5000-digits"])
def test_the_simulated_router_answers_any_value_with_a_trap(words: list[str]) -> None:
    answer = evaluate(_ROUTER, Request.parse(words), 0.0)
    assert isinstance(answer, list) and answer[-1].kind in ("!trap", "!done", "!empty"), answer


def test_the_simulated_router_refuses_a_monitor_interval_below_10_ms() -> None:
    answer = evaluate(_ROUTER, Request.parse(["/interface/monitor-traffic", "=interface=ether1",
                                              "=interval=0.000000001", ".tag=1"]), 0.0)
    assert isinstance(answer, list) and answer[0].kind == "!trap"
