"""The ops HTTP server: /metrics, /healthz, errors, garbage, slow and too many clients."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from functools import partial
from typing import Any

import h11
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mikrovoice import logs
from mikrovoice.ops.http import HttpServer, serve_http
from mikrovoice.ops.metrics import Health, Metrics


async def fetch(port: int, method: str = "GET", target: str = "/metrics",
                headers: list[tuple[str, str]] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request over a new connection: (status, headers, body)."""
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            client = h11.Connection(h11.CLIENT)
            request = h11.Request(method=method, target=target, headers=[("Host", "localhost"), *(headers or [])])
            await stream.send_all(client.send(request) + client.send(h11.EndOfMessage()))
            status, response_headers, body = 0, {}, b""
            while True:
                ev = client.next_event()
                if ev is h11.NEED_DATA:
                    client.receive_data(await stream.receive_some(65536))
                elif isinstance(ev, h11.Response):
                    status = ev.status_code
                    response_headers = {k.decode(): v.decode() for k, v in ev.headers}
                elif isinstance(ev, h11.Data):
                    body += ev.data
                elif isinstance(ev, h11.EndOfMessage):
                    return status, response_headers, body
                else:
                    raise AssertionError(f"unexpected {ev!r}")


async def read_until_closed(stream: trio.abc.Stream) -> bytes:
    received = b""
    while True:
        try:
            data = await stream.receive_some(65536)
        except trio.BrokenResourceError:  # a reset is a close too
            return received
        if not data:
            return received
        received += data


async def test_metrics_and_health_over_http() -> None:
    metrics = Metrics(version="9.9.9")
    metrics.observe("model.reconnect", {}, logging.INFO)
    health = Health(max_calls=10)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_http, "127.0.0.1", 0, metrics, health)

        status, headers, body = await fetch(port)
        assert status == 200 and headers["content-type"].startswith("text/plain")
        assert b'mikrovoice_build_info{version="9.9.9"} 1.0' in body
        assert b"mikrovoice_model_reconnects_total 1.0" in body
        assert int(headers["content-length"]) == len(body)

        status, headers, body = await fetch(port, headers=[("Accept", "application/openmetrics-text; version=1.0.0")])
        assert status == 200 and headers["content-type"].startswith("application/openmetrics-text")

        status, _, head_body = await fetch(port, "HEAD", "/metrics")
        assert status == 200 and head_body == b""

        status, headers, body = await fetch(port, target="/healthz")
        assert status == 503 and headers["content-type"] == "application/json"
        assert json.loads(body)["status"] == "starting"
        health.listening = True
        status, _, body = await fetch(port, target="/healthz?verbose=1")
        assert status == 200 and json.loads(body)["status"] == "ok"
        health.draining = True
        status, _, body = await fetch(port, target="/healthz")
        assert status == 503 and json.loads(body)["status"] == "draining"

        assert (await fetch(port, target="/nope"))[0] == 404
        status, headers, _ = await fetch(port, "POST", "/metrics")
        assert status == 405 and headers["allow"] == "GET, HEAD"
        nursery.cancel_scope.cancel()


async def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_http, "127.0.0.1", 0, Metrics(version="x"), Health(listening=True))
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            await stream.send_all(request + request + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            with trio.fail_after(5):
                received = await read_until_closed(stream)
        assert received.count(b"HTTP/1.1 200 OK") == 3
        nursery.cancel_scope.cancel()


async def test_a_malformed_request_gets_400_and_the_connection_closes() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_http, "127.0.0.1", 0, Metrics(version="x"), Health())
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n")
            with trio.fail_after(5):
                received = await read_until_closed(stream)
        assert received.startswith(b"HTTP/1.1 400 ") and b"connection: close" in received.lower()
        nursery.cancel_scope.cancel()


REQUESTS = [b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", b"HEAD /healthz HTTP/1.0\r\n\r\n",
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda r, cut, tail: r[:cut] + tail, st.sampled_from(REQUESTS), st.integers(0, 80), st.binary(max_size=256)),
    st.lists(st.sampled_from([b"\r\n", b"GET ", b"/metrics", b" HTTP/1.1", b"Host: x", b":", b"\x00", b"\xff" * 9,
                              b"Content-Length: 99999999999", b"Transfer-Encoding: chunked", b"0\r\n", b"zz\r\n"]),
             max_size=30).map(b"".join),
))
async def test_garbage_never_breaks_the_server(garbage: bytes) -> None:
    failures: list[str] = []

    def watch(name: str, fields: Mapping[str, Any], level: int) -> None:
        if name == "ops.http_failed":
            failures.append(str(fields))

    logs.add_observer(watch)
    try:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_http, "127.0.0.1", 0, Metrics(version="x"), Health())
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                try:
                    await stream.send_all(garbage)
                    await stream.send_eof()
                except trio.BrokenResourceError:
                    pass  # the server already answered 400 and closed
                with trio.fail_after(5):
                    received = await read_until_closed(stream)
            assert received == b"" or received.startswith(b"HTTP/1.1 ")
            status, _, body = await fetch(port)
            assert status == 200 and b"mikrovoice_build_info" in body
            nursery.cancel_scope.cancel()
    finally:
        logs.remove_observer(watch)
    assert failures == []


async def test_a_slowloris_client_is_cut_at_the_connection_deadline(autojump_clock: trio.testing.MockClock) -> None:
    server = HttpServer(Metrics(version="x"), Health(), connection_timeout_s=10.0)
    client, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle, server_end)
        start = trio.current_time()

        async def drip() -> None:
            for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
                try:
                    await client.send_all(bytes([byte]))
                except trio.BrokenResourceError:
                    return
                await trio.sleep(1)

        nursery.start_soon(drip)
        assert await read_until_closed(client) == b""
        assert trio.current_time() - start == pytest.approx(10.0)
        assert server.timed_out == 1 and server.open_connections == 0


async def test_connections_beyond_the_limit_are_closed_unanswered(autojump_clock: trio.testing.MockClock) -> None:
    server = HttpServer(Metrics(version="x"), Health(listening=True), max_connections=2, connection_timeout_s=10.0)
    async with trio.open_nursery() as nursery:
        idle = []
        for _ in range(2):
            client, server_end = trio.testing.memory_stream_pair()
            nursery.start_soon(server.handle, server_end)
            idle.append(client)
        await trio.testing.wait_all_tasks_blocked()
        assert server.open_connections == 2

        client, server_end = trio.testing.memory_stream_pair()
        nursery.start_soon(server.handle, server_end)
        assert await read_until_closed(client) == b""
        assert server.refused == 1 and trio.current_time() == 0

        await trio.sleep(10.5)  # the idle ones hit their deadline
        assert server.open_connections == 0
        client, server_end = trio.testing.memory_stream_pair()
        nursery.start_soon(partial(server.handle, server_end))
        await client.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await read_until_closed(client)).startswith(b"HTTP/1.1 200 OK")
