"""``mikrovoice serve --workers N``: a supervisor and N worker processes that share the listening ports.

One mikrovoice process is one Trio event loop on one core. To use every core of a machine, the
supervisor checks the configuration once, holds the AudioSocket (and chan_websocket) port
(``net.reserve_port``: a port 0 becomes a real one, another program cannot take it while workers
restart), starts the simulated peers once under ``--simulate`` (every worker then talks to the
same model and router fleet, as they would in production), and runs N ``mikrovoice serve
--worker i`` processes. Each worker opens its own listeners on those ports with ``SO_REUSEPORT``
and the kernel spreads the new connections over them (Linux hashes the connection's addresses
and ports: an even spread over many calls, blind to how busy a worker is). Worker i serves
``/metrics`` and ``/healthz`` on the ``[service] metrics_listen`` port + i, with the label
``worker="i"``; its log lines say ``worker=i``.

Supervision:

- A worker that ends without being asked to is started again after a pause (``BACKOFF_S``:
  0.5 s, doubling up to 30 s, back to 0.5 s once a worker has lived ``FAST_FAILURE_S``); the log
  says how it ended. A worker that ends within ``FAST_FAILURE_S`` of its start
  ``MAX_FAST_FAILURES`` times in a row stops all the others and the supervisor (exit 1, one
  line): restarting again would not help. Exit 2 (a configuration error: the file changed since
  the supervisor read it) is not retried either (exit 2).
- SIGTERM and SIGINT reach every worker through its control pipe, and each stops as one process
  does (SIGTERM: the grace, then the goodbye; SIGINT: the goodbye at once, exit 130). A second
  signal makes them stop at once; a third kills them (SIGKILL).

  Why a pipe rather than ``kill``: systemd's default ``KillMode`` signals every process of the
  unit, and a terminal's Ctrl-C reaches the whole process group, so a worker would get the
  signal twice, and a second signal means "stop now". A request on the pipe is ignored by a
  worker already stopping. The pipe also closes when the supervisor dies (even by SIGKILL): its
  workers then drain and exit instead of serving on, unsupervised.

The supervisor exits when every worker has: 0 when all drained after SIGTERM (exit 0), 130 after
SIGINT, 1 when a worker kept dying or one ended otherwise during the stop (a signal, a non-zero
status: each is logged), 2 on a configuration error.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import trio

from mikrovoice.config import RouterConfig, Settings
from mikrovoice.logs import event

log = logging.getLogger("mikrovoice.workers")

#: A worker that ends within this many seconds of its start counts as a fast failure ...
FAST_FAILURE_S = 10.0
#: ... and this many in a row stop the supervisor.
MAX_FAST_FAILURES = 5
#: The pause before a restart: the first, and the most it doubles to.
BACKOFF_S = (0.5, 30.0)
#: The most workers ``--workers`` accepts.
MAX_WORKERS = 256

#: What the supervisor writes on a worker's control pipe, one per line: the signal it received
#: (``SIGTERM``, ``SIGINT``: stop as one process does), or ``NOW`` (the second signal: stop at once).
STOP_NOW = "NOW"


class WorkersFailed(Exception):
    """The supervisor gave up (a worker kept dying, or reported a configuration error): ``status``
    is its exit status, the message one line for stderr."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def parse_workers(text: str) -> int | str:
    """``--workers``: a number 1..MAX_WORKERS, or ``auto`` (one per CPU this process may run on)."""
    if text == "auto":
        return text
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise ValueError(f"expected 1..{MAX_WORKERS} or auto, got {text!r}")
    return int(text)


def worker_count(workers: int | str) -> int:
    """The number of workers ``--workers`` asks for; ``auto``: the CPUs this process may use."""
    return len(usable_cpus()) if workers == "auto" else int(workers)


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask, which a container or ``taskset`` narrows)."""
    return sorted(os.sched_getaffinity(0))


def describe(returncode: int) -> str:
    """How a process ended, as a person reads it: ``exit 1``, ``signal SIGKILL``."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit {returncode}"


def hostport(host: str, port: int) -> str:
    """``HOST:PORT`` as ``config.parse_hostport`` reads it back (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ---------------------------------------------------------------------- the simulated peers, shared


def simulated_peers_json(settings: Settings) -> str:
    """The simulated peers the supervisor started (``service.start_simulated_peers``), for its
    workers' ``--simulated-peers``: the model's URL and the routers, without their password (the
    simulated fleet has none; a secret never goes on a command line)."""
    routers = [{key: value for key, value in asdict(router).items() if key != "password"}
               for router in settings.routers]
    return json.dumps({"realtime_url": settings.realtime_url, "routers": routers}, separators=(",", ":"))


def with_simulated_peers(settings: Settings, peers: str) -> Settings:
    """``settings`` pointed at the peers of ``simulated_peers_json``, as ``start_simulated_peers`` points them."""
    document = json.loads(peers)
    routers = tuple(RouterConfig(**{**router, "aliases": tuple(router["aliases"])}) for router in document["routers"])
    return replace(settings, routers=routers, realtime_url=document["realtime_url"],
                   api_key=settings.api_key or "sk-simulated")


# ---------------------------------------------------------------------- the worker's side


async def watch_control(fd: int, stop: Callable[[str], None]) -> None:
    """A worker reads its control pipe: ``stop(name)`` for each request (a signal's name or
    ``STOP_NOW``); the pipe's end (the supervisor is gone) is a ``SIGTERM``."""
    async with trio.lowlevel.FdStream(fd) as pipe:
        pending = b""
        while chunk := await pipe.receive_some(256):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                stop(line.decode("ascii", "replace").strip())
    event(log, "service.supervisor_gone", level=logging.WARNING)
    stop("SIGTERM")


# ---------------------------------------------------------------------- the supervisor


@dataclass
class _Worker:
    index: int
    process: trio.Process | None = None
    control: int | None = None  # the write end of its control pipe
    returncode: int | None = None  # how its last process ended (None while one runs)


class Supervisor:
    """Runs ``count`` workers and keeps them running until asked to stop (``stop``).

    ``command(i, control_fd)`` is worker i's argv; ``control_fd`` is the read end of its control
    pipe, open in the worker under that number. ``pin_cpus``: worker i runs on the i-th CPU of
    ``usable_cpus()`` only (round robin when there are more workers than CPUs)."""

    def __init__(self, count: int, command: Callable[[int, int], Sequence[str]], *, pin_cpus: bool = False,
                 fast_failure_s: float = FAST_FAILURE_S, max_fast_failures: int = MAX_FAST_FAILURES,
                 backoff_s: tuple[float, float] = BACKOFF_S) -> None:
        self.workers = [_Worker(i) for i in range(count)]
        self.command = command
        self.cpus = usable_cpus() if pin_cpus else []
        self.fast_failure_s = fast_failure_s
        self.max_fast_failures = max_fast_failures
        self.backoff_s = backoff_s
        #: The signals received so far (their names), in order.
        self.signals: list[str] = []
        self.stopping = trio.Event()
        self.failure: WorkersFailed | None = None
        #: Processes started in all (restarts included).
        self.starts = 0

    async def run(self) -> int:
        """Run the workers until all have ended; the exit status (module docstring) or ``WorkersFailed``."""
        async with trio.open_nursery() as nursery:
            for worker in self.workers:
                nursery.start_soon(self._keep_running, worker)
        ended = {worker.index: describe(worker.returncode) for worker in self.workers if worker.returncode is not None}
        if self.failure is not None:
            event(log, "workers.stopped", level=logging.ERROR, ended=ended)
            raise self.failure
        interrupted = self.signals[:1] == ["SIGINT"]
        clean = {0, 130} if interrupted else {0}
        bad = {worker.index: describe(worker.returncode) for worker in self.workers
               if worker.returncode is not None and worker.returncode not in clean}
        event(log, "workers.stopped", level=logging.WARNING if bad else logging.INFO, ended=ended)
        if bad:
            raise WorkersFailed("workers ended badly: " + ", ".join(f"worker {i} {how}" for i, how in bad.items()), 1)
        return 130 if interrupted else 0

    async def watch_signals(self, signals: AsyncIterator[int]) -> None:
        """Forward each signal the supervisor receives (``trio.open_signal_receiver``) with ``stop``."""
        async for signum in signals:
            self.stop(signal.Signals(signum).name)

    def stop(self, name: str) -> None:
        """The supervisor received signal ``name``: the first goes to every worker as is, the
        second as ``STOP_NOW``, any later one kills them."""
        self.signals.append(name)
        self.stopping.set()
        alive = [worker for worker in self.workers if worker.process is not None and worker.returncode is None]
        if len(self.signals) > 2:
            event(log, "workers.killing", level=logging.WARNING, signal=name, workers=len(alive))
            for worker in alive:
                assert worker.process is not None
                worker.process.kill()
            return
        request = name if len(self.signals) == 1 else STOP_NOW
        event(log, "workers.stop_requested", level=logging.INFO if request == name else logging.WARNING,
              signal=name, request=request, workers=len(alive))
        for worker in alive:
            self._tell(worker, request)

    def _tell(self, worker: _Worker, request: str) -> None:
        if worker.control is None:
            return
        try:
            os.write(worker.control, request.encode("ascii") + b"\n")
        except OSError:  # it has just ended: its pipe is closed
            pass

    def _give_up(self, failure: WorkersFailed) -> None:
        """Stop every worker (as SIGTERM does) and end with ``failure``."""
        if self.failure is None:
            self.failure = failure
            event(log, "workers.giving_up", level=logging.ERROR, reason=str(failure))
            self.stopping.set()
            for worker in self.workers:
                if worker.process is not None and worker.returncode is None:
                    self._tell(worker, "SIGTERM")

    async def _keep_running(self, worker: _Worker) -> None:
        fast_failures = 0
        backoff = self.backoff_s[0]
        while not self.stopping.is_set():
            started_at = trio.current_time()
            try:
                process = await self._start(worker)
            except OSError as exc:
                self._give_up(WorkersFailed(f"cannot start worker {worker.index}: {exc.strerror or exc}", 1))
                return
            if self.stopping.is_set():  # the stop came while it started: tell it too
                self._tell(worker, STOP_NOW if len(self.signals) > 1 else (self.signals or ["SIGTERM"])[0])
            returncode = worker.returncode = await process.wait()
            lived_s = trio.current_time() - started_at
            if worker.control is not None:
                os.close(worker.control)
                worker.control = None
            how = describe(returncode)
            if self.stopping.is_set():
                event(log, "workers.exited", level=logging.INFO if returncode in (0, 130) else logging.WARNING,
                      worker=worker.index, pid=process.pid, status=how, lived_s=round(lived_s, 1))
                return
            event(log, "workers.exited", level=logging.WARNING, worker=worker.index, pid=process.pid, status=how,
                  lived_s=round(lived_s, 1), expected=False)
            if returncode == 2:
                self._give_up(WorkersFailed(f"worker {worker.index} reports a configuration error (exit 2): "
                                            "fix the file, then start again", 2))
                return
            if lived_s < self.fast_failure_s:
                fast_failures += 1
            else:
                fast_failures, backoff = 0, self.backoff_s[0]
            if fast_failures >= self.max_fast_failures:
                self._give_up(WorkersFailed(
                    f"worker {worker.index} keeps dying: {fast_failures} times in a row within "
                    f"{self.fast_failure_s:g} s of its start (last: {how}); see its log lines above", 1))
                return
            event(log, "workers.restarting", level=logging.WARNING, worker=worker.index, in_s=backoff,
                  fast_failures=fast_failures)
            with trio.move_on_after(backoff):
                await self.stopping.wait()
            backoff = min(backoff * 2, self.backoff_s[1])

    async def _start(self, worker: _Worker) -> trio.Process:
        read_end, write_end = os.pipe()  # neither is inherited but as pass_fds says
        try:
            process = await trio.lowlevel.open_process(list(self.command(worker.index, read_end)),
                                                       pass_fds=(read_end,), stdin=subprocess.DEVNULL)
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        worker.process, worker.control, worker.returncode = process, write_end, None
        self.starts += 1
        fields: dict[str, Any] = {}
        if self.cpus:
            cpu = self.cpus[worker.index % len(self.cpus)]
            try:
                os.sched_setaffinity(process.pid, {cpu})
                fields["cpu"] = cpu
            except OSError as exc:  # it has ended already, or the CPU went offline
                fields["cpu_error"] = exc.strerror or str(exc)
        event(log, "workers.started", worker=worker.index, pid=process.pid, **fields)
        return process


def worker_command(*, index: int, control_fd: int, listen: str, websocket_listen: str | None, config: str | None,
                   simulated_peers: str | None, verbose: bool, log_format: str) -> list[str]:
    """The argv of worker ``index``: ``mikrovoice serve`` with the same configuration, on the
    supervisor's ports (``HOST:PORT``), and its index and control pipe."""
    argv = [sys.executable, "-m", "mikrovoice", *(["--verbose"] if verbose else []), "--log-format", log_format,
            "serve", "--listen", listen]
    if websocket_listen is not None:
        argv += ["--websocket-listen", websocket_listen]
    if config is not None:
        argv += ["--config", os.path.abspath(config)]
    if simulated_peers is not None:
        argv += ["--simulate", "--simulated-peers", simulated_peers]
    return argv + ["--worker", str(index), "--control-fd", str(control_fd)]
