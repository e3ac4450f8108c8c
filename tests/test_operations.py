"""Operations: a graceful stop (SIGTERM), Ctrl-C, start-up failures, /healthz and /metrics while
calls run. The graceful stop runs in-process on the virtual clock; the signals and exit statuses
run the real ``mikrovoice serve`` command as a subprocess."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from mikrovoice.config import AuthSettings, Operator, Settings
from mikrovoice.demo import DEMO_FLEET, SEED_QUESTIONS
from mikrovoice.ops import Metrics, serve_http
from mikrovoice.service import CallService, ServiceStats, run_service, start_simulated_peers
from mikrovoice.sim.asterisk import AsteriskCaller, CallerScript, Question
from mikrovoice.sim.realtime import SimModelConfig
from mikrovoice.telephony.audiosocket import CallId, encode

MIKROVOICE = [sys.executable, "-m", "mikrovoice"]
SLOW_QUESTION = Question(SEED_QUESTIONS[1].text, SEED_QUESTIONS[1].expect, timeout_s=120)  # 24 s of routers


async def _service(nursery: trio.Nursery, settings: Settings) -> tuple[CallService, int]:
    settings = await start_simulated_peers(nursery, replace(settings, listen=("127.0.0.1", 0)), DEMO_FLEET)
    service = CallService(settings, ServiceStats())
    ports = await nursery.start(partial(run_service, settings, service))
    return service, ports.audiosocket


async def test_sigterm_lets_a_short_call_finish(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        service, port = await _service(nursery, Settings(shutdown_grace_s=60.0))
        caller = AsteriskCaller(CallerScript((SLOW_QUESTION,)))
        done = trio.Event()

        async def call() -> None:
            caller.report = await caller.call("127.0.0.1", port)
            done.set()

        nursery.start_soon(call)
        await trio.sleep(15)  # the question is being answered (its routers take 24 s)
        service.request_stop()
        await trio.sleep(0.1)
        with pytest.raises(OSError):  # no new calls: the listener is closed at once
            await trio.open_tcp_stream("127.0.0.1", port)
        assert service.health.status()[0] == 503
        await done.wait()
        with trio.fail_after(1):  # the service hears the hang-up at its clock's next tick for this call
            await service.stats.calls[0].finished.wait()
        nursery.cancel_scope.cancel()
    call = service.stats.calls[0]
    assert caller.report.questions[0].answered and call.outcome == "completed"


async def test_sigterm_ends_a_call_that_outlives_the_grace_with_a_goodbye(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mikrovoice")
    async with trio.open_nursery() as nursery:
        service, port = await _service(nursery, Settings(shutdown_grace_s=5.0))
        caller = AsteriskCaller(CallerScript((SLOW_QUESTION,)))
        nursery.start_soon(caller.call, "127.0.0.1", port)
        await trio.sleep(12)
        stop_at = trio.current_time()
        service.request_stop()
        with trio.fail_after(30):
            await service.stats.calls[0].finished.wait()
        ended_at = trio.current_time()
        nursery.cancel_scope.cancel()
    call = service.stats.calls[0]
    assert call.outcome == "shutdown" and call.states[-2:] == ["farewell", "ended"]
    assert call.queries[0].cancelled  # the query stopped with the call
    # the grace (5 s), then what the assistant was saying, the shutdown prompt (5.6 s) whole, the hang-up
    assert 5.0 + 5.5 < ended_at - stop_at < 5.0 + 10.0
    assert caller.report.server_hung_up_at is not None
    ended = [r for r in caplog.records if r.getMessage().startswith("call.ended")]
    assert len(ended) == 1 and "outcome=shutdown" in ended[0].getMessage()
    assert any(r.getMessage().startswith("service.stopped calls_left=0") for r in caplog.records)


async def test_metrics_and_health_while_a_call_runs(autojump_clock: trio.testing.MockClock) -> None:
    from mikrovoice import logs

    async with trio.open_nursery() as nursery:
        service, port = await _service(nursery, Settings())
        metrics = Metrics()
        logs.add_observer(metrics.observe)
        try:
            http_port = await nursery.start(serve_http, "127.0.0.1", 0, metrics, service.health)
            caller = AsteriskCaller(CallerScript((SEED_QUESTIONS[0],)))
            nursery.start_soon(caller.call, "127.0.0.1", port)
            await trio.sleep(10)
            assert service.health.status() == (200, {**service.health.status()[1], "status": "ok"})
            assert service.health.active_calls == 1
            stream = await trio.open_tcp_stream("127.0.0.1", http_port)
            await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            body = b""
            while chunk := await stream.receive_some(65536):
                body += chunk
            assert b"mikrovoice_active_calls 1.0" in body
            with trio.fail_after(60):
                await service.stats.calls[0].finished.wait()
        finally:
            logs.remove_observer(metrics.observe)
        nursery.cancel_scope.cancel()
    assert metrics.registry.get_sample_value("mikrovoice_calls_total", {"outcome": "completed"}) == 1.0
    assert metrics.registry.get_sample_value("mikrovoice_query_duration_seconds_count",
                                             {"tool": "dispositivos_activos", "outcome": "finished"}) == 1.0


# -- the command, as systemd and an operator at a terminal run it ------------------------------------


def _start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([*MIKROVOICE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    seen = ""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen += line
        if "service.listening " in line or not line:
            return proc, seen
    proc.kill()
    raise AssertionError(f"the service did not start: {seen}")


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_a_signal_stops_the_service_cleanly(signum: int, status: int) -> None:
    proc, started = _start("serve", "--simulate", "--listen", "127.0.0.1:0")
    assert "service.listening" in started
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == status, err
    assert "Traceback" not in err and "service.stopped calls_left=0" in err


def test_a_port_in_use_is_one_line_and_status_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([*MIKROVOICE, "serve", "--simulate", "--listen", f"127.0.0.1:{port}"],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"mikrovoice: cannot listen on 127\.0\.0\.1:{port} \(service\.listening\): .*in use.*", last)
    assert "Traceback" not in result.stderr


def test_an_unresolvable_host_is_one_line_and_status_1() -> None:
    result = subprocess.run([*MIKROVOICE, "serve", "--simulate", "--listen", "no-such-host.invalid:9092"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot resolve 'no-such-host.invalid'" in result.stderr


def test_serve_refuses_a_config_without_auth(tmp_path: Path) -> None:
    config = tmp_path / "mikrovoice.toml"
    config.write_text('[[router]]\nname = "r1"\nhost = "127.0.0.1"\n', encoding="utf-8")
    result = subprocess.run([*MIKROVOICE, "serve", "--config", str(config)], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "OPENAI_API_KEY": "sk-test"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "[auth] is missing" in result.stderr


async def test_a_flood_of_connections_costs_no_model_session(autojump_clock: trio.testing.MockClock) -> None:
    """The issue's measurement: 200 sockets that send a UUID gave 200 paid model sessions. With
    [auth], none is opened; beyond max_calls the rest hear "busy"; a real caller still gets in
    once the flood is gone."""
    sessions: list[str] = []
    model = SimModelConfig(transcript=lambda entry: sessions.append(entry["session"]))
    # (lockout_after: these callers tell no number, so their failures would lock out every caller
    # without one, the real one too: fail closed, see operations.md; not what this test is about)
    auth = AuthSettings(require="pin", configured=True, lockout_after=100, operators=(Operator("Ana", pin="740219"),))
    stats = ServiceStats()
    async with trio.open_nursery() as nursery:
        settings = await start_simulated_peers(
            nursery, replace(Settings(auth=auth, max_calls=20), listen=("127.0.0.1", 0)), DEMO_FLEET,
            model_config=model)
        service = CallService(settings, stats)
        port = (await nursery.start(partial(run_service, settings, service))).audiosocket

        async def flood_one(i: int) -> None:  # sends its UUID, then reads whatever comes, says nothing
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(encode(CallId(uuid.UUID(int=i + 1))))
            while await stream.receive_some(65536):
                pass

        async with trio.open_nursery() as flood:
            for i in range(60):
                flood.start_soon(flood_one, i)
            await trio.sleep(3)
            assert service.active_calls == 60 and not sessions  # 20 asked for a PIN, 40 told busy
        report = await AsteriskCaller(CallerScript((SEED_QUESTIONS[0],), pins=("740219",))).call("127.0.0.1", port)
        nursery.cancel_scope.cancel()
    outcomes = [call.outcome for call in stats.calls]
    assert outcomes.count("busy") == 40 and outcomes.count("auth_refused") == 20  # the silent ones time out
    assert report.questions[0].answered and len(set(sessions)) == 1  # the one real caller's


async def test_a_peer_that_stops_reading_is_dropped(autojump_clock: trio.testing.MockClock,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A client that sends a UUID and never reads would hold a call slot forever (the playout
    blocks on a full socket): after WRITE_STALL_S the call ends, with one line."""
    async with trio.open_nursery() as nursery:
        service, port = await _service(nursery, Settings())
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(encode(CallId(uuid.UUID(int=7))))
        with trio.fail_after(120):
            await trio.sleep(1)
            await service.stats.calls[0].finished.wait()
        await stream.aclose()
        nursery.cancel_scope.cancel()
    call = service.stats.calls[0]
    assert call.outcome == "error" and call.end_reason == "Asterisk read none of our audio for 5 s"
    assert [r.getMessage() for r in caplog.records if "call.bad_peer" in r.getMessage()] == [
        'call.bad_peer transport=audiosocket error="Asterisk read none of our audio for 5 s"']
