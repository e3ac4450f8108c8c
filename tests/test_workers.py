"""``mikrovoice serve --workers N``: the real command as a subprocess (a supervisor and its worker
processes on one port, the simulated peers shared), the supervisor's restart policy with small
stand-in workers, and the port sharing (``SO_REUSEPORT``) it rests on."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from mikrovoice.cli import build_parser
from mikrovoice.config import RouterConfig, Settings
from mikrovoice.net import StartupError, check_port_free, open_tcp_listeners, reserve_port
from mikrovoice.telephony.audiosocket import CallId, Hangup, encode
from mikrovoice.workers import (
    Supervisor,
    WorkersFailed,
    describe,
    simulated_peers_json,
    with_simulated_peers,
    worker_count,
)

MIKROVOICE = [sys.executable, "-m", "mikrovoice"]


class Supervised:
    """``mikrovoice --log-format json serve ... --workers N`` in a subprocess; its stderr read
    without pause (JSON lines in ``events``, the rest in ``other``) so no worker ever blocks on it."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*MIKROVOICE, "--log-format", "json", "serve", *args], start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.events: list[dict[str, Any]] = []
        self.other: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                try:
                    self.events.append(json.loads(line))
                except ValueError:
                    self.other.append(line)
                self._changed.notify_all()

    def wait_for(self, test: Callable[[list[dict[str, Any]]], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not test(self.events):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"not seen within {timeout} s; log: {self.events[-20:]} {self.other}")
                self._changed.wait(min(left, 0.2))

    def named(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        with self._changed:
            return [e for e in self.events if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())]

    def listening(self, count: int) -> None:
        self.wait_for(lambda events: len({e["worker"] for e in events if e.get("event") == "service.listening"})
                      >= count)

    def end(self, signum: int, timeout: float = 30.0, *, group: bool = False) -> int:
        """Signal the supervisor (``group``: it and its workers, as systemd's default KillMode does)."""
        if group:
            os.killpg(self.proc.pid, signum)
        else:
            self.proc.send_signal(signum)
        status = self.proc.wait(timeout)
        self._reader.join(5)
        return status

    def kill(self) -> None:
        """The supervisor and whatever is left of its workers (its own session), at once."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)


@pytest.fixture
def supervised() -> Iterator[Callable[..., Supervised]]:
    started: list[Supervised] = []

    def start(*args: str) -> Supervised:
        started.append(Supervised(*args))
        return started[-1]

    yield start
    for service in started:  # a failed test must not leave a supervisor (or its workers) behind
        service.kill()


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports on loopback."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first: int = probe.getsockname()[1]
        if first + count > 65535:
            continue
        try:
            for port in range(first, first + count):
                check_port_free("127.0.0.1", port, "test")
        except StartupError:
            continue
        return first
    raise AssertionError("no free port range")


def _call(port: int, number: int) -> bytes:
    """One AudioSocket call that hangs up at once; what the service sent until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(encode(CallId(uuid.UUID(int=number))) + encode(Hangup()))
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
        return received


def _get(port: int, path: str) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        response = b""
        while chunk := conn.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _pids(service: Supervised) -> dict[int, int]:
    """Worker index -> the pid of its latest process, from the supervisor's log."""
    return {e["worker"]: e["pid"] for e in service.named("workers.started")}


# -- the command --------------------------------------------------------------------------------------


def test_calls_spread_over_the_workers_each_with_its_metrics_and_sigterm_drains_all(
        tmp_path: Path, supervised: Callable[..., Supervised]) -> None:
    metrics_port = _free_ports(2)
    config = tmp_path / "mikrovoice.toml"
    config.write_text(f'[service]\nmetrics_listen = "127.0.0.1:{metrics_port}"\n', encoding="utf-8")
    service = supervised("--simulate", "--config", str(config), "--listen", "127.0.0.1:0", "--workers", "2",
                         "--pin-cpus")
    service.listening(2)
    port = service.named("workers.starting")[0]["listen"].rsplit(":", 1)[1]
    assert all(e["port"] == int(port) for e in service.named("service.listening"))  # one port, two listeners

    calls = 24
    for number in range(1, calls + 1):
        _call(int(port), number)
    service.wait_for(lambda events: sum(e.get("event") == "call.ended" for e in events) == calls)
    by_worker = {w: len(service.named("call.started", worker=w)) for w in (0, 1)}
    assert by_worker[0] + by_worker[1] == calls and min(by_worker.values()) > 0, by_worker  # the kernel spread them

    pids = _pids(service)
    for worker in (0, 1):
        status, body = _get(metrics_port + worker, "/healthz")
        health = json.loads(body)
        assert status == 200 and health["worker"] == worker and health["pid"] == pids[worker]
        status, body = _get(metrics_port + worker, "/metrics")
        samples = [line for line in body.decode().splitlines() if line.startswith("mikrovoice_calls_total{")]
        assert samples and all(f'worker="{worker}"' in line for line in samples)
        counted = sum(float(line.rsplit(" ", 1)[1]) for line in samples)
        assert counted == by_worker[worker]  # each worker counts its own calls
    if len(os.sched_getaffinity(0)) >= 2:
        cpus = {e["worker"]: e["cpu"] for e in service.named("workers.started")}
        assert [os.sched_getaffinity(pids[w]) for w in (0, 1)] == [{cpus[0]}, {cpus[1]}]
        assert os.sched_getaffinity(pids[0]) != os.sched_getaffinity(pids[1])

    # systemd's default KillMode signals every process of the unit: each worker gets SIGTERM twice
    # (its own, and the supervisor's request), and still drains rather than stopping at once
    assert service.end(signal.SIGTERM, group=True) == 0
    assert len(service.named("service.stopped", calls_left=0)) == 2 and not service.named("service.stop_now")
    assert {e["worker"]: e["status"] for e in service.named("workers.exited")} == {0: "exit 0", 1: "exit 0"}
    assert not service.other  # no traceback, no stray line


def test_a_killed_worker_is_restarted_and_the_port_keeps_answering(supervised: Callable[..., Supervised]) -> None:
    service = supervised("--simulate", "--listen", "127.0.0.1:0", "--workers", "2")
    service.listening(2)
    port = int(service.named("workers.starting")[0]["listen"].rsplit(":", 1)[1])
    victim = _pids(service)[0]
    os.kill(victim, signal.SIGKILL)
    # (a connection that reached its queue just before it died is reset: the kernel does not
    # move it to another listener unless net.ipv4.tcp_migrate_req = 1; see docs/scaling.md)
    service.wait_for(lambda events: any(e.get("event") == "workers.exited" for e in events))
    answered = 0
    deadline = time.monotonic() + 20
    while len(service.named("service.listening", worker=0)) < 2:  # until worker 0 listens again
        assert time.monotonic() < deadline, service.events[-10:]
        _call(port, 100 + answered)  # every call is taken, by worker 1 meanwhile (ConnectionError otherwise)
        answered += 1
    exited = service.named("workers.exited", worker=0, pid=victim)
    assert exited and exited[0]["status"] == "signal SIGKILL" and exited[0]["expected"] is False
    assert service.named("workers.restarting", worker=0) and _pids(service)[0] != victim
    assert answered > 0

    assert service.end(signal.SIGINT) == 130  # Ctrl-C: each worker says goodbye at once and exits 130
    assert {e["status"] for e in service.named("workers.exited", worker=1)} == {"exit 130"}


def test_workers_outlive_no_supervisor(supervised: Callable[..., Supervised]) -> None:
    """A supervisor killed outright closes the control pipes: its workers drain and exit, not serve on alone."""
    service = supervised("--simulate", "--listen", "127.0.0.1:0", "--workers", "2")
    service.listening(2)
    pids = _pids(service)
    service.proc.kill()
    service.wait_for(lambda events: sum(e.get("event") == "service.stopped" for e in events) == 2)
    for pid in pids.values():
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and "zombie" not in _state(pid):
            assert time.monotonic() < deadline, f"worker {pid} still runs"
            time.sleep(0.05)
    assert len(service.named("service.supervisor_gone")) == 2


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            return next(line for line in status if line.startswith("State:")).lower()
    except (OSError, StopIteration):
        return "zombie"


def test_a_bad_config_fails_once_not_per_worker(tmp_path: Path) -> None:
    config = tmp_path / "mikrovoice.toml"
    config.write_text('[service]\nmax_calls = 0\n', encoding="utf-8")
    result = subprocess.run([*MIKROVOICE, "serve", "--simulate", "--config", str(config), "--workers", "3"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("configuration error") == 1 and "workers.started" not in result.stderr


def test_a_taken_port_fails_once_with_the_usual_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([*MIKROVOICE, "serve", "--simulate", "--listen", f"127.0.0.1:{port}", "--workers", "2"],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr and "workers.started" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"mikrovoice: cannot listen on 127.0.0.1:{port} (service.listening): ")


def test_the_metrics_ports_of_every_worker_must_be_free(tmp_path: Path) -> None:
    first = _free_ports(3)
    config = tmp_path / "mikrovoice.toml"
    config.write_text(f'[service]\nmetrics_listen = "127.0.0.1:{first}"\n', encoding="utf-8")
    with socket.socket() as taken:
        # as every listener does (and check_port_free probes): a connection of an earlier test may
        # still be in TIME_WAIT on that port, which only a bind without it would trip on
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", first + 2))
        taken.listen()
        result = subprocess.run([*MIKROVOICE, "serve", "--simulate", "--config", str(config), "--listen",
                                 "127.0.0.1:0", "--workers", "3"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "workers.started" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{first + 2} (metrics of worker 2)" in result.stderr.splitlines()[-1]


def test_the_metrics_range_may_not_cover_the_call_port(tmp_path: Path) -> None:
    config = tmp_path / "mikrovoice.toml"
    config.write_text('[audiosocket]\nlisten = "127.0.0.1:9093"\n[service]\nmetrics_listen = "127.0.0.1:9092"\n',
                      encoding="utf-8")
    result = subprocess.run([*MIKROVOICE, "serve", "--simulate", "--config", str(config), "--workers", "2"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "[audiosocket] listen is port 9093" in result.stderr


@pytest.mark.parametrize("value", ["0", "-1", "two", "257"])
def test_workers_must_be_a_count_or_auto(value: str) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--simulate", "--workers", value])
    assert exited.value.code == 2


def test_auto_is_one_worker_per_usable_cpu() -> None:
    args = build_parser().parse_args(["serve", "--simulate", "--workers", "auto"])
    assert worker_count(args.workers) == len(os.sched_getaffinity(0)) and worker_count(3) == 3
    assert build_parser().parse_args(["serve", "--simulate"]).workers == 1  # one process, as before


def test_the_simulated_peers_reach_the_workers_without_a_password() -> None:
    routers = (RouterConfig("r1", "127.0.0.1", 40001, password="pw-never-on-argv", aliases=("core",), site="Norte"),)
    text = simulated_peers_json(Settings(routers=routers, realtime_url="ws://127.0.0.1:40000/v1/realtime"))
    assert "pw-never-on-argv" not in text
    settings = with_simulated_peers(Settings(), text)
    assert settings.realtime_url == "ws://127.0.0.1:40000/v1/realtime" and settings.api_key == "sk-simulated"
    assert settings.routers == (RouterConfig("r1", "127.0.0.1", 40001, aliases=("core",), site="Norte"),)


# -- the supervisor's policy, with stand-in workers --------------------------------------------------------

#: A stand-in worker: when the file argv[3] does not exist, creates it and exits with status
#: argv[2] at once; when it exists, waits for a request on its control pipe (argv[1]) and exits 0,
#: or with "ignore" as argv[4], ignores the pipe and runs until killed.
STAND_IN = r"""
import os, sys, time
fd, status, marker = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if not os.path.exists(marker):
    open(marker, "w").close()
    sys.exit(status)
print("up", flush=True)
if sys.argv[4:] == ["ignore"]:
    while True:
        time.sleep(1)
os.read(fd, 100)
"""


def _stand_in(tmp_path: Path, status: int, *extra: str, dies_always: int | None = None) -> Callable[[int, int], list[str]]:
    """Stand-in workers: the first process of each exits with ``status``, the next ones run (but
    worker ``dies_always``: each of its processes exits with ``status``)."""
    def command(index: int, control_fd: int) -> list[str]:
        marker = tmp_path / f"worker-{index}"
        if index == dies_always:
            marker.unlink(missing_ok=True)
        return [sys.executable, "-c", STAND_IN, str(control_fd), str(status), str(marker), *extra]
    return command


async def _run_until(supervisor: Supervisor, starts: int, *then: str) -> int:
    """Run; once ``starts`` processes have started (and had a moment to come up), deliver the signals ``then``."""
    failure: WorkersFailed | None = None
    status = -1
    async with trio.open_nursery() as nursery:
        async def stop_later() -> None:
            while supervisor.starts < starts:  # noqa: ASYNC110  # a count, not an event, to wait for
                await trio.sleep(0.02)
            await trio.sleep(0.5)
            for name in then:
                supervisor.stop(name)
                await trio.sleep(0.3)

        if then:
            nursery.start_soon(stop_later)
        try:
            status = await supervisor.run()
        except WorkersFailed as exc:
            failure = exc  # raised below, not inside the nursery's exception group
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return status


async def test_a_dead_worker_is_started_again_and_a_signal_stops_all(tmp_path: Path) -> None:
    (tmp_path / "worker-0").touch()  # worker 0 runs from its start; worker 1 dies once
    supervisor = Supervisor(2, _stand_in(tmp_path, 1), backoff_s=(0.05, 0.1))
    with trio.fail_after(20):
        assert await _run_until(supervisor, 3, "SIGTERM") == 0
    assert supervisor.starts == 3 and [w.returncode for w in supervisor.workers] == [0, 0]


async def test_a_worker_that_keeps_dying_stops_the_supervisor(tmp_path: Path) -> None:
    (tmp_path / "worker-0").touch()
    supervisor = Supervisor(2, _stand_in(tmp_path, 3, dies_always=1), fast_failure_s=10, max_fast_failures=3,
                            backoff_s=(0.01, 0.02))
    with trio.fail_after(20), pytest.raises(WorkersFailed) as failed:
        await supervisor.run()
    assert failed.value.status == 1 and "worker 1 keeps dying: 3 times in a row" in str(failed.value)
    assert "(last: exit 3)" in str(failed.value)
    assert supervisor.workers[0].returncode == 0  # the healthy one was stopped, gracefully


async def test_a_configuration_error_in_a_worker_is_not_retried(tmp_path: Path) -> None:
    supervisor = Supervisor(1, _stand_in(tmp_path, 2), backoff_s=(0.01, 0.02))
    with trio.fail_after(20), pytest.raises(WorkersFailed) as failed:
        await supervisor.run()
    assert failed.value.status == 2 and supervisor.starts == 1


async def test_the_third_signal_kills_a_worker_that_does_not_stop(tmp_path: Path) -> None:
    (tmp_path / "worker-0").touch()
    supervisor = Supervisor(1, _stand_in(tmp_path, 0, "ignore"))
    with trio.fail_after(20), pytest.raises(WorkersFailed) as failed:
        await _run_until(supervisor, 1, "SIGTERM", "SIGTERM", "SIGTERM")
    assert failed.value.status == 1 and "worker 0 signal SIGKILL" in str(failed.value)


def test_describe_says_how_a_process_ended() -> None:
    assert describe(0) == "exit 0" and describe(130) == "exit 130" and describe(-9) == "signal SIGKILL"


# -- the port sharing ---------------------------------------------------------------------------------------


async def test_reuse_port_listeners_share_a_reserved_port_that_others_cannot_take() -> None:
    port, held = reserve_port("127.0.0.1", 0, "test")
    try:
        with pytest.raises(OSError):  # a reservation alone takes no connection
            await trio.open_tcp_stream("127.0.0.1", port)
        with pytest.raises(StartupError, match=rf"cannot listen on 127\.0\.0\.1:{port} \(test\): .*in use"):
            check_port_free("127.0.0.1", port, "test")  # a plain listener (another program) cannot have it
        first = await open_tcp_listeners(port, "127.0.0.1", reuse_port=True)
        second = await open_tcp_listeners(port, "127.0.0.1", reuse_port=True)
        with pytest.raises(StartupError):  # nor can a second mikrovoice (its reservation's check)
            reserve_port("127.0.0.1", port, "test")
        accepted = {0: 0, 1: 0}

        async def accept(which: int, listener: trio.SocketListener) -> None:
            while True:
                stream = await listener.accept()
                accepted[which] += 1
                await stream.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept, 0, first[0])
            nursery.start_soon(accept, 1, second[0])
            for _ in range(200):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await stream.aclose()
            while sum(accepted.values()) < 200:  # noqa: ASYNC110  # the kernel hands them over as it will
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        assert min(accepted.values()) > 40, accepted  # spread by the kernel (a hash: about half each)
        for listener in first + second:
            await listener.aclose()
    finally:
        for sock in held:
            sock.close()
