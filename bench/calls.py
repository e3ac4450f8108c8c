"""Concurrent calls: N simultaneous calls against ``mikrovoice serve`` pinned to one core; its CPU, memory and frame lateness per N.

Three kinds of process, all over loopback and the wall clock:

- the service under test (``python -m mikrovoice serve --config FILE``, a TOML file written here and
  checked by the service's own loader), alone on the *service core* (``os.sched_setaffinity``);
- on the *load core*: the callers (``bench/loadgen/callers.py``: N AudioSocket callers in one
  stdlib epoll loop, a frame every 20 ms each way, asking quick questions in ToneVoice) and this
  process, which mostly sleeps;
- the world (``bench/loadgen/world.py``: the simulated Realtime model over ``ws://`` and
  ``wss://``, the demo's twelve routers): on a third core when the machine has one, else on the
  load core too, niced so that the callers' timing comes first.

On two cores the load core is the limit: the model simulator costs about twice what the callers
do per call, and the load core above ``LOAD_CORE_MAX_PCT`` makes a row invalid (see below).

Each row (a transport, ws or wss, and N) gets a fresh service: it starts, one priming call hears
the greeting and hangs up (what the service loads lazily is loaded), its idle RSS is read; then the
N calls are dialled over ``--stagger-s``, run ``--warmup-s`` more, and the steady window
(``--window-s``) is measured; then every caller hangs up, the service must report 0 active calls,
and it is stopped. Per row:

- service CPU: utime+stime from /proc/PID/stat over the window, % of one core, and per call;
- memory per call: (mean RSS over the window - idle RSS after the priming call) / N, MiB;
- caller-measured lateness: each call's frames per second from the service over the window (50 when
  on time) and the inter-arrival gaps of those frames (p50/p99/max over all calls); timestamps are
  ``time.monotonic()`` at the read, late by at most the callers' loop's busy stretch (reported);
- service-measured lateness: the histogram ``mikrovoice_frame_lateness_seconds`` (each frame's send
  time minus its 20 ms deadline) scraped from /metrics at the window's start and end and differenced;
  p50/p99 interpolated linearly within buckets (as Prometheus' histogram_quantile), max from
  ``mikrovoice_frame_lateness_max_seconds`` when the service has it (else the bucket bound); "n/a"
  when the service has no such histogram (older code);
- added latency, the same way from ``mikrovoice_added_latency_seconds{direction="in"|"out"}``;
- ``mikrovoice_playout_late_frames_total`` over the whole row (the service counts it as calls end).

A row is invalid when its figures cannot be trusted or calls went wrong: the load core above
``LOAD_CORE_MAX_PCT`` (the callers' own pacing then suffers), the callers' send slots late
(p99 > ``TICK_LATE_P99_MS``), the model simulator starved (its loop lag p99 above
``WORLD_LAG_P99_MS``), a caller that could not connect or heard no greeting, a call the service
dropped, late-frame restarts in the service, the service's tracebacks. ``calls_per_core``
is the largest ws N whose row is valid, with the service at most 100 % of its core, every call
receiving >= 49 frames/s and the service's p99 lateness <= 5 ms (the callers' gap p99 <= 25 ms
when the service has no lateness histogram). Target: >= 300 calls with p99 <= 5 ms.
``frame_lateness_p99_ms`` is read at 300 calls (the target's load); ``added_latency_*_p99_ms`` at
``calls_per_core`` calls (the service's own delay at the load it is rated for; past it, a starved
loop's queueing, which the lateness shows) and, in ``added_latency_at_1_call``, at one call.

    .venv/bin/python bench/calls.py                       # the default sweep, about 5 minutes
    .venv/bin/python bench/calls.py --baseline-commit REV --calls 1,100,300 --tls-calls 300
    .venv/bin/python bench/calls.py --service-commit REV --json bench/results/calls-REV.json

``--baseline-commit`` runs every row twice, the service under test and then a ``git archive`` of
REV, so before and after are measured side by side under the same machine state (``comparison``
in the JSON: baseline / current per N); ``--service-commit`` measures a snapshot alone.

Prints a table and writes bench/results/calls.json (``--json``). Exit status 0 (the verdict is
printed: "target met" or "target NOT MET"), 2 when it could not run (world or service failed to
start). Figures on a machine where other work runs are distorted: the table shows how busy each
core was with other processes during the window.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import select
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: soak and loadgen

from loadgen import world as world_module  # noqa: E402
from soak import (  # noqa: E402
    _CHECK,
    PASSWORD_ENV,
    ROOT,
    config_text,
    cpu_seconds,
    free_port,
    read_service_log,
    rss_bytes,
    service_source,
    snapshot,
    source_state,
)

from mikrovoice.config import RouterConfig  # noqa: E402
from mikrovoice.demo import DEMO_FLEET  # noqa: E402
from mikrovoice.sim.routeros import make_fleet  # noqa: E402
from mikrovoice.simulation.scenario import Ask  # noqa: E402

RESULTS = Path(__file__).parent / "results"
LOADGEN = Path(__file__).parent / "loadgen"
MIB = 1024 * 1024
START_S = 60.0  # the service must answer /healthz within this
PRIME_S = 45.0
DRAIN_S = 30.0  # after the hang-up, the service must report 0 active calls within this
TERM_GRACE_S = 40.0
LOAD_CORE_MAX_PCT = 90.0
TICK_LATE_P99_MS = 5.0
#: The world yields the load core to the callers, whose timing is the measuring instrument: a
#: starved model simulator answers late (its loop lag is reported and judged), the callers' frames
#: must not be.
WORLD_NICENESS = 5
WORLD_LAG_P99_MS = 50.0
TARGET_CALLS = 300
TARGET_P99_MS = 5.0
LATENESS = "mikrovoice_frame_lateness_seconds"
LATENESS_MAX = "mikrovoice_frame_lateness_max_seconds"
ADDED = "mikrovoice_added_latency_seconds"
ADDED_MAX = "mikrovoice_added_latency_max_seconds"
LATE_FRAMES = "mikrovoice_playout_late_frames_total"


class StartError(Exception):
    """The world or the service could not be started; the message says why."""


# ---------------------------------------------------------------------------------------- the machine


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_model": model, "cpus": os.cpu_count(), "cpus_allowed": sorted(os.sched_getaffinity(0)),
            "python": platform.python_version(), "kernel": platform.release(), "platform": platform.platform()}


@dataclass(frozen=True)
class Cores:
    """Where each process runs: the service alone on its core; the callers (and this process) on the
    load core; the world on a third core if there is one, else on the load core too."""

    service: int
    load: int
    world: int

    @classmethod
    def pick(cls) -> Cores:
        """From the CPUs this process may use, in order; with one CPU, everything shares it."""
        allowed = sorted(os.sched_getaffinity(0))
        load = allowed[1] if len(allowed) > 1 else allowed[0]
        return cls(allowed[0], load, allowed[2] if len(allowed) > 2 else load)


def core_times() -> dict[int, tuple[float, float]]:
    """Per CPU: (busy, total) jiffies since boot, from /proc/stat."""
    times: dict[int, tuple[float, float]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            numbers = [int(v) for v in values]
            times[int(name[3:])] = (float(sum(numbers) - numbers[3] - numbers[4]), float(sum(numbers)))
    return times


def pinned(core: int, niceness: int = 0) -> Any:
    """A child's preexec: on ``core`` only, ``niceness`` added to its priority."""
    def pin() -> None:
        os.sched_setaffinity(0, {core})
        if niceness:
            os.nice(niceness)

    return pin


# ---------------------------------------------------------------------------------------- /metrics


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Metrics:
    """Prometheus text exposition: {(name, sorted labels): value}."""
    samples: Metrics = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = tuple(sorted(_LABEL.findall(match.group(2) or "")))
        try:
            samples[(match.group(1), labels)] = float(match.group(3))
        except ValueError:
            continue
    return samples


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def scrape(port: int) -> Metrics:
    """The service's /metrics ({} when it does not answer within 10 s: its figures are then "n/a")."""
    try:
        status, body = http_get(port, "/metrics", timeout=10.0)
    except OSError:
        return {}
    return parse_metrics(body.decode("utf-8", "replace")) if status == 200 else {}


def metric_sum(metrics: Metrics, name: str, **match: str) -> float | None:
    """The sum of a metric's samples whose labels include ``match`` (None: no such sample)."""
    values = [v for (n, labels), v in metrics.items()
              if n == name and all((k, x) in labels for k, x in match.items())]
    return sum(values) if values else None


def buckets(metrics: Metrics, histogram: str, **match: str) -> dict[float, float]:
    """Cumulative bucket counts by upper bound, summed over the other labels."""
    out: dict[float, float] = {}
    for (name, labels), value in metrics.items():
        if name != f"{histogram}_bucket" or not all((k, x) in labels for k, x in match.items()):
            continue
        le = dict(labels).get("le")
        if le is not None:
            bound = float("inf") if le in ("+Inf", "Inf") else float(le)
            out[bound] = out.get(bound, 0.0) + value
    return out


def quantile(cumulative: dict[float, float], q: float) -> float | None:
    """histogram_quantile: linear interpolation within the bucket holding the q-th observation;
    in the +Inf bucket, the largest finite bound."""
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    rank = q * cumulative[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def histogram_window(before: Metrics, after: Metrics, histogram: str, maximum: str,
                     **match: str) -> dict[str, Any] | None:
    """The observations between two scrapes, in ms: p50 and p99 (interpolated) and the maximum.
    The service's max gauge holds the largest observation since it started: when it rose between
    the scrapes, its new value is the window's maximum (``max_exact``); otherwise the window's
    maximum is only bounded, by the highest non-empty bucket (and the gauge). None when the service
    has no such histogram."""
    end = buckets(after, histogram, **match)
    if not end:
        return None
    start = buckets(before, histogram, **match)
    diff = {b: end[b] - start.get(b, 0.0) for b in end}
    total = diff.get(float("inf"), max(diff.values(), default=0.0))
    bound = min((upper for upper, count in diff.items() if count >= total), default=float("inf"))  # holds them all
    gauge_before, gauge_after = metric_sum(before, maximum, **match), metric_sum(after, maximum, **match)
    exact = gauge_after is not None and gauge_before is not None and gauge_after > gauge_before and total > 0
    if exact:
        top: float | None = gauge_after
    elif gauge_after is not None:
        top = min(bound, gauge_after)
    else:
        top = None if bound == float("inf") else bound

    def ms(value: float | None) -> float | None:
        if value is not None and top is not None:
            value = min(value, top)  # interpolation within a bucket never passes the known maximum
        return None if value is None else round(1000 * value, 3)

    return {"n": int(total), "p50_ms": ms(quantile(diff, 0.5)), "p99_ms": ms(quantile(diff, 0.99)),
            "max_ms": ms(top), "max_exact": exact}


# ---------------------------------------------------------------------------------------- processes


class Lines:
    """JSON lines from a child's stdout, read with a timeout (os.read: no buffering behind select)."""

    def __init__(self, process: subprocess.Popen[bytes], name: str) -> None:
        assert process.stdout is not None
        self.process, self.name, self.fd, self.buffer = process, name, process.stdout.fileno(), b""

    def next(self, timeout: float) -> dict[str, Any] | None:
        """The next line, or None when ``timeout`` passed first; raises if the child exited."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                data = os.read(self.fd, 65536)
                if not data:
                    raise StartError(f"{self.name} exited (status {self.process.wait()})")
                self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return dict(json.loads(line))

    def expect(self, kind: str, timeout: float) -> dict[str, Any]:
        record = self.next(timeout)
        if record is None or record.get("event") != kind:
            raise StartError(f"{self.name}: expected {kind!r} within {timeout:g} s, got {record!r}")
        return record


def tell(process: subprocess.Popen[bytes], line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line.encode() + b"\n")
    process.stdin.flush()


def stop(process: subprocess.Popen[bytes], grace: float = TERM_GRACE_S) -> tuple[int | None, float, bool]:
    """SIGTERM, SIGKILL after ``grace``: (exit status, seconds, killed)."""
    start = time.monotonic()
    if process.poll() is not None:
        return process.returncode, 0.0, False
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
        return process.returncode, round(time.monotonic() - start, 2), False
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return process.returncode, round(time.monotonic() - start, 2), True


@dataclass
class World:
    process: subprocess.Popen[bytes]
    lines: Lines
    model_port: int
    model_tls_port: int
    routers: list[RouterConfig]
    ca_file: Path

    def stats(self) -> dict[str, Any]:
        tell(self.process, "stats")
        return self.lines.expect("stats", 30.0)


def start_world(log_dir: Path, core: int, profile: str | None = None) -> World:
    ca_file = log_dir / "model-ca.pem"
    with (log_dir / "world.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, str(LOADGEN / "world.py"), "--ca-file", str(ca_file),
                                    *(["--profile", profile] if profile else [])],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=ROOT,
                                   preexec_fn=pinned(core, WORLD_NICENESS))
    lines = Lines(process, "the world (model and routers)")
    ready = lines.expect("ready", 60.0)
    routers = [RouterConfig(**(r | {"aliases": tuple(r["aliases"])})) for r in ready["routers"]]
    return World(process, lines, ready["model_port"], ready["model_tls_port"], routers, ca_file)


def questions_file(path: Path) -> list[dict[str, str]]:
    """Quick questions over the demo fleet's fastest routers (answers in a few seconds)."""
    fleet = make_fleet(DEMO_FLEET)
    fast = [r.name for r in sorted(fleet, key=lambda r: r.latency_s)]
    asks = [Ask("devices", (fast[0],)), Ask("health", (fast[1],)), Ask("devices", (fast[1],)),
            Ask("health", (fast[0],))]
    spec = [{"text": a.text(), "expect": a.expect().pattern} for a in asks]
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return spec


def write_config(path: Path, transport: str, port: int, metrics_port: int, world: World, calls: int,
                 env: dict[str, str], source: Path) -> None:
    """The service's TOML (as bench/soak.py's, plus [service] metrics_listen), checked by its own loader."""
    model_port = world.model_port if transport == "ws" else world.model_tls_port
    text = config_text(port, model_port, world.routers, {
        "auth": ["[auth]", 'require = "open"', ""],
        "service": ["[service]", f"max_calls = {calls + 50}", f'metrics_listen = "127.0.0.1:{metrics_port}"', ""]})
    if transport == "wss":
        text = text.replace('url = "ws://', 'url = "wss://', 1)
    path.write_text(text, encoding="utf-8")
    check = subprocess.run([sys.executable, "-c", _CHECK, str(path)], env=env, cwd=source, capture_output=True,
                           text=True, timeout=60)
    if check.returncode != 0:
        raise StartError(f"the service's loader refuses {path}: {(check.stdout or check.stderr).strip()}")


def health(metrics_port: int) -> dict[str, Any] | None:
    try:
        status, body = http_get(metrics_port, "/healthz", timeout=2.0)
    except OSError:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return dict(document) | {"http_status": status}


def wait_idle(metrics_port: int, timeout: float) -> float | None:
    """Seconds until /healthz says 0 active calls (None: not within ``timeout``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        state = health(metrics_port)
        if state is not None and state.get("active_calls") == 0:
            return round(time.monotonic() - start, 2)
        time.sleep(0.1)
    return None


# ---------------------------------------------------------------------------------------- one row


@dataclass
class Snapshot:
    at: float
    service_cpu: float
    callers_cpu: float
    world_cpu: float
    self_cpu: float
    cores: dict[int, tuple[float, float]]
    metrics: Metrics = field(default_factory=dict)


def take(service: int, callers: int, world: int, metrics_port: int) -> Snapshot:
    snap = Snapshot(time.monotonic(), cpu_seconds(service) or 0.0, cpu_seconds(callers) or 0.0,
                    cpu_seconds(world) or 0.0, cpu_seconds("self") or 0.0, core_times())
    snap.metrics = scrape(metrics_port)
    return snap


def run_row(args: argparse.Namespace, service: str, source: Path, transport: str, calls: int, world: World,
            questions: Path, log_dir: Path, cores: Cores) -> dict[str, Any]:
    """One row: ``service`` ("current" or "baseline") run from ``source``, N calls over ``transport``."""
    name = f"{service}-{transport}-{calls}"
    port, metrics_port = free_port(), free_port()
    env = dict(os.environ, OPENAI_API_KEY="sk-calls", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               **{PASSWORD_ENV: world_module.ROUTER_PASSWORD})
    if transport == "wss":
        env["SSL_CERT_FILE"] = str(world.ca_file)
    if source != ROOT:  # ahead of the editable install's finder
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    config = log_dir / f"{name}.toml"
    write_config(config, transport, port, metrics_port, world, calls, env, source)
    log_path = log_dir / f"service-{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "mikrovoice", "serve", "--config", str(config)],
                                   stdout=log, stderr=log, env=env, cwd=source, preexec_fn=pinned(cores.service))
    callers: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + START_S
        while (state := health(metrics_port)) is None or state.get("status") != "ok":
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
                raise StartError(f"the service did not start (status {process.poll()}); log {log_path}:\n"
                                 + "\n".join(tail))
            time.sleep(0.1)
        with (log_dir / f"callers-{name}.log").open("wb") as callers_log:
            callers = subprocess.Popen(
                [sys.executable, str(LOADGEN / "callers.py"), "--port", str(port), "--calls", str(calls),
                 "--questions", str(questions), "--prime", "--stagger-s", str(args.stagger_s if calls > 1 else 0),
                 "--warmup-s", str(args.warmup_s), "--window-s", str(args.window_s), "--seed", str(args.seed),
                 *(["--profile", f"{args.callers_profile}.{name}"] if args.callers_profile else [])],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=callers_log, cwd=ROOT,
                preexec_fn=pinned(cores.load))
        lines = Lines(callers, "the callers")
        primed = lines.expect("primed", PRIME_S)
        wait_idle(metrics_port, DRAIN_S)
        time.sleep(1.0)
        rss_idle = rss_bytes(process.pid) or 0
        before = scrape(metrics_port)
        world.stats()  # the world's loop lag counts from here
        tell(callers, "go")
        lines.expect("window_start", args.stagger_s + args.warmup_s + 30)
        start = take(process.pid, callers.pid, world.process.pid, metrics_port)
        world.stats()  # the lag in the window counts from here
        rss: list[int] = []
        end_record = None
        while end_record is None:
            end_record = lines.next(1.0)
            rss.append(rss_bytes(process.pid) or 0)
        if end_record.get("event") != "window_end":
            raise StartError(f"the callers: expected 'window_end', got {end_record!r}")
        end = take(process.pid, callers.pid, world.process.pid, metrics_port)
        world_window = world.stats()
        tell(callers, "hangup")
        result = lines.expect("result", 120.0)
        callers.wait(30)
        drain_s = wait_idle(metrics_port, DRAIN_S)
        after = scrape(metrics_port)
    finally:
        if callers is not None and callers.poll() is None:
            callers.kill()
            callers.wait()
        exit_status, exit_s, killed = stop(process)
    service_log = read_service_log(log_path)
    row = figures(transport, calls, primed, rss_idle, rss, before, start, end, after, result, world_window, drain_s,
                  service_log, log_path, (exit_status, exit_s, killed), cores)
    return {"service": service} | row


def figures(transport: str, calls: int, primed: dict[str, Any], rss_idle: int, rss: list[int], before: Metrics,
            start: Snapshot, end: Snapshot, after: Metrics, result: dict[str, Any],
            world_window: dict[str, Any], drain_s: float | None, service_log: dict[str, Any], log_path: Path,
            exit_info: tuple[int | None, float, bool], cores: Cores) -> dict[str, Any]:
    wall = end.at - start.at
    service_pct = 100 * (end.service_cpu - start.service_cpu) / wall
    callers_pct = 100 * (end.callers_cpu - start.callers_cpu) / wall
    world_pct = 100 * (end.world_cpu - start.world_cpu) / wall
    load_pct = callers_pct + 100 * (end.self_cpu - start.self_cpu) / wall  # what runs on the load core
    if cores.world == cores.load:
        load_pct += world_pct

    def core_pct(core: int) -> float:
        busy = end.cores[core][0] - start.cores[core][0]
        total = end.cores[core][1] - start.cores[core][1]
        return 100 * busy / total if total else 0.0

    apart = cores.service != cores.load
    service_core_other = max(0.0, core_pct(cores.service) - service_pct) if apart else None
    load_core_other = max(0.0, core_pct(cores.load) - load_pct) if apart else None
    steady_rss = statistics.fmean(rss) if rss else 0.0
    lateness = histogram_window(start.metrics, end.metrics, LATENESS, LATENESS_MAX)
    added = {d: histogram_window(start.metrics, end.metrics, ADDED, ADDED_MAX, direction=d) for d in ("in", "out")}
    late_before, late_after = metric_sum(before, LATE_FRAMES), metric_sum(after, LATE_FRAMES)
    late_restarts = None if late_after is None else int(late_after - (late_before or 0.0))
    problems: list[str] = []
    if primed.get("problem"):
        problems.append(f"priming call: {primed['problem']}")
    if load_pct > LOAD_CORE_MAX_PCT:
        starved = "callers" if cores.world != cores.load else "callers, model and routers"
        problems.append(f"load core at {load_pct:.0f} % ({starved} starved)")
    if cores.world != cores.load and world_pct > LOAD_CORE_MAX_PCT:
        problems.append(f"world core at {world_pct:.0f} % (model and routers starved)")
    tick_p99 = result["tick_late_ms"]["p99"]
    if tick_p99 is not None and tick_p99 > TICK_LATE_P99_MS:
        problems.append(f"callers' send slots late: p99 {tick_p99} ms")
    if result["failed_to_connect"]:
        problems.append(f"{result['failed_to_connect']} callers could not connect")
    if result["no_greeting"]:
        problems.append(f"{result['no_greeting']} callers heard no greeting")
    if result["dropped"]:
        problems.append(f"{result['dropped']} calls dropped: {result['drop_reasons'][:3]}")
    if late_restarts:
        problems.append(f"{late_restarts} late-frame restarts in the service")
    if drain_s is None:
        problems.append(f"the service still had active calls {DRAIN_S:g} s after the hang-up")
    if service_log["tracebacks"]:
        problems.append(f"{service_log['tracebacks']} tracebacks in the service's log")
    lag = (world_window.get("lag_ms") or {}).get("p99")
    if lag is not None and lag > WORLD_LAG_P99_MS:
        problems.append(f"model simulator starved: its loop lag p99 {lag} ms")
    if world_window.get("model_crashes"):
        problems.append(f"model simulator crashes: {world_window['model_crashes'][:2]}")
    return {
        "transport": transport, "calls": calls, "valid": not problems, "problems": problems,
        "window_s": round(wall, 2),
        "service_cpu_pct": round(service_pct, 1),
        "cpu_per_call_pct": round(service_pct / calls, 3),
        "rss_idle_mib": round(rss_idle / MIB, 2), "rss_steady_mib": round(steady_rss / MIB, 2),
        "memory_per_call_mib": round((steady_rss - rss_idle) / MIB / calls, 3),
        "caller": {k: result[k] for k in (
            "clock_resolution_s", "frames_per_s", "gap_ms", "tick_late_ms", "loop_busy_ms", "greeting_s",
            "first_speech_after_question_s", "questions_asked", "answered", "unanswered", "first_answers_decoded",
            "first_answers_verified", "connected", "failed_to_connect", "no_greeting", "dropped", "drop_reasons",
            "through_window")},
        "service_lateness": lateness,
        "added_latency": added,
        "late_frame_restarts": late_restarts,
        "drain_s": drain_s,
        "load_core_cpu_pct": round(load_pct, 1),
        "callers_cpu_pct": round(callers_pct, 1),
        "world_cpu_pct": round(world_pct, 1),
        "other_load_pct": {"service_core": None if service_core_other is None else round(service_core_other, 1),
                           "load_core": None if load_core_other is None else round(load_core_other, 1)},
        "world_loop_lag_ms": world_window.get("lag_ms"),
        "model_sessions": world_window.get("model_sessions"),
        "service_log": {k: service_log[k] for k in ("calls_ended", "end_reasons", "tracebacks",
                                                    "warnings_and_errors")} | {"path": str(log_path)},
        "service_exit": {"status": exit_info[0], "seconds": exit_info[1], "killed": exit_info[2]},
        "priming_call_greeting_s": primed.get("greeting_s"),
        "cores": {"service": cores.service, "load": cores.load, "world": cores.world},
    }


# ---------------------------------------------------------------------------------------- the sweep


def meets(row: dict[str, Any]) -> bool:
    """The row counts toward calls_per_core (see the module docstring)."""
    fps = row["caller"]["frames_per_s"]["min"]
    lateness = row["service_lateness"]
    if lateness is not None and lateness["p99_ms"] is not None:
        on_time = lateness["p99_ms"] <= TARGET_P99_MS
    else:
        gap = row["caller"]["gap_ms"]["p99"]
        on_time = gap is not None and gap <= 25.0
    return bool(row["valid"] and row["service_cpu_pct"] <= 100.0 and fps is not None and fps >= 49.0 and on_time)


def headline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The top-level figures, from one service's rows."""
    ws = [r for r in rows if r["transport"] == "ws"]
    passing = [r["calls"] for r in ws if meets(r)]
    largest = max(ws, key=lambda r: r["calls"], default=None)
    reference = next((r for r in ws if r["calls"] == TARGET_CALLS), largest)
    one = next((r for r in ws if r["calls"] == 1), None)
    rated = next((r for r in ws if r["calls"] == max(passing, default=-1)), one)

    def p99(row: dict[str, Any] | None, key: str, direction: str | None = None) -> float | None:
        if row is None:
            return None
        value = row["added_latency"][direction] if direction else row[key]
        return None if value is None else value["p99_ms"]

    return {
        "calls_per_core": max(passing, default=0),
        "frame_lateness_p99_ms": p99(reference, "service_lateness"),
        "frame_lateness_reference_calls": None if reference is None else reference["calls"],
        "memory_per_call_mib": None if reference is None else reference["memory_per_call_mib"],
        # the service's own delay, at the load it is rated for (at 300 calls on a saturated core it
        # would be the queueing of a starved loop, which frame_lateness_p99_ms already shows)
        "added_latency_in_p99_ms": p99(rated, "", "in"),
        "added_latency_out_p99_ms": p99(rated, "", "out"),
        "added_latency_reference_calls": None if rated is None else rated["calls"],
        "added_latency_at_1_call": None if one is None else {
            "in_p99_ms": p99(one, "", "in"), "out_p99_ms": p99(one, "", "out")},
    }


def comparison(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per transport and N, the baseline's figures beside the current service's, and their ratio."""
    out = []
    for row in rows:
        if row["service"] != "current":
            continue
        base = next((r for r in rows if r["service"] == "baseline" and r["transport"] == row["transport"]
                     and r["calls"] == row["calls"]), None)
        if base is None:
            continue
        entry: dict[str, Any] = {"transport": row["transport"], "calls": row["calls"]}
        for key, path in (("cpu_per_call_pct", ("cpu_per_call_pct",)),
                          ("memory_per_call_mib", ("memory_per_call_mib",)),
                          ("frames_per_s_min", ("caller", "frames_per_s", "min")),
                          ("gap_p99_ms", ("caller", "gap_ms", "p99"))):
            before: Any = base
            after: Any = row
            for step in path:
                before, after = before[step], after[step]
            entry[key] = {"baseline": before, "current": after,
                          "baseline_over_current": round(before / after, 2) if before and after else None}
        out.append(entry)
    return out


def table(rows: list[dict[str, Any]]) -> str:
    def v(value: Any) -> str:
        return "n/a" if value is None else str(value)

    head = ("service", "tr", "N", "svc CPU%", "CPU/call%", "MiB/call", "fps min", "gap p50/p99/max ms",
            "svc late p50/p99/max ms", "added in/out p99 ms", "late rst", "load%", "other svc/load%", "valid")
    lines = [head]
    for r in rows:
        c, late = r["caller"], r["service_lateness"]
        gap = c["gap_ms"]
        lines.append((
            r["service"], r["transport"], str(r["calls"]), v(r["service_cpu_pct"]), v(r["cpu_per_call_pct"]),
            v(r["memory_per_call_mib"]), v(c["frames_per_s"]["min"]),
            f"{v(gap['p50'])}/{v(gap['p99'])}/{v(gap['max'])}",
            "n/a" if late is None else f"{v(late['p50_ms'])}/{v(late['p99_ms'])}/"
                                       f"{'' if late['max_exact'] else '<='}{v(late['max_ms'])}",
            "/".join("n/a" if r["added_latency"][d] is None else v(r["added_latency"][d]["p99_ms"])
                     for d in ("in", "out")),
            v(r["late_frame_restarts"]), v(r["load_core_cpu_pct"]),
            f"{v(r['other_load_pct']['service_core'])}/{v(r['other_load_pct']['load_core'])}",
            "yes" if r["valid"] else "NO",
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)) for line in lines]
    for r in rows:
        if r["problems"]:
            out.append(f"  {r['service']} {r['transport']} {r['calls']}: " + "; ".join(r["problems"]))
    return "\n".join(out)


def counts(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a comma-separated list of call counts, not {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("call counts must be positive")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=counts, default=[1, 50, 100, 150, 200, 300],
                        help="N for the ws:// rows (default 1,50,100,150,200,300; '' for none)")
    parser.add_argument("--tls-calls", type=counts, default=[100, 300], help="N for the wss:// rows (default 100,300)")
    parser.add_argument("--stagger-s", type=float, default=5.0, help="the dials are spread over this long")
    parser.add_argument("--warmup-s", type=float, default=5.0, help="after the last dial, before the window")
    parser.add_argument("--window-s", type=float, default=15.0, help="the steady window measured")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default=str(RESULTS / "calls.json"), help="where to write the results")
    parser.add_argument("--log-dir", help="configs and logs go here (default: a new /tmp directory)")
    parser.add_argument("--service-src", metavar="DIR", help="run the service from this source tree")
    parser.add_argument("--service-commit", metavar="REV",
                        help="run the service from a snapshot of this commit (git archive into --log-dir)")
    parser.add_argument("--baseline-commit", metavar="REV",
                        help="also run every row against a snapshot of this commit, right after the same row of "
                             "the service under test: before and after side by side, on the same machine state")
    parser.add_argument("--label", default="", help="a note kept in the results")
    parser.add_argument("--world-profile", metavar="FILE",
                        help="cProfile the world (model simulator and routers) into FILE")
    parser.add_argument("--callers-profile", metavar="PREFIX",
                        help="cProfile the callers of each row into PREFIX.<service>-<transport>-<N>")
    args = parser.parse_args(argv)
    if args.stagger_s < 0 or args.warmup_s < 0 or args.window_s <= 0:
        parser.error("--stagger-s and --warmup-s must be >= 0, --window-s > 0")
    if not args.calls and not args.tls_calls:
        parser.error("no rows: --calls and --tls-calls are both empty")
    log_dir = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="mikrovoice-calls-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    service_source(parser, args, log_dir)
    source = Path(args.service_src) if args.service_src else ROOT
    services = [("current", source)]
    if args.baseline_commit:
        try:
            services.append(("baseline", snapshot(args.baseline_commit, log_dir / "baseline-src")))
        except (OSError, subprocess.SubprocessError, tarfile.TarError) as exc:
            parser.error(f"--baseline-commit {args.baseline_commit}: {exc}")
    cores = Cores.pick()
    os.sched_setaffinity(0, {cores.load})
    questions = log_dir / "questions.json"
    questions_file(questions)
    print(f"service on CPU {cores.service}, callers on CPU {cores.load}, model and routers on CPU {cores.world}; "
          f"logs in {log_dir}", flush=True)
    rows: list[dict[str, Any]] = []
    world: World | None = None
    try:
        world = start_world(log_dir, cores.world, args.world_profile)
        for transport, calls in [("ws", n) for n in args.calls] + [("wss", n) for n in args.tls_calls]:
            for service, src in services:
                row = run_row(args, service, src, transport, calls, world, questions, log_dir, cores)
                rows.append(row)
                late = row["service_lateness"]
                print(f"  {service} {transport} {calls:4d}: service {row['service_cpu_pct']:5.1f} % CPU, "
                      f"{row['memory_per_call_mib']} MiB/call, fps min {row['caller']['frames_per_s']['min']}, "
                      f"gap p99 {row['caller']['gap_ms']['p99']} ms, service p99 "
                      f"{'n/a' if late is None else late['p99_ms']} ms, load core {row['load_core_cpu_pct']} %, "
                      f"{'valid' if row['valid'] else 'INVALID'}",
                      flush=True)
    except StartError as exc:
        print(f"calls: {exc}", file=sys.stderr)
        return 2
    finally:
        if world is not None:
            assert world.process.stdin is not None
            world.process.stdin.close()  # its signal to exit (and to write its profile)
            try:
                world.process.wait(15)
            except subprocess.TimeoutExpired:
                stop(world.process, 10.0)
    top = headline([r for r in rows if r["service"] == "current"])
    target = top["calls_per_core"] >= TARGET_CALLS and (top["frame_lateness_p99_ms"] is not None
                                                         and top["frame_lateness_p99_ms"] <= TARGET_P99_MS)
    document = {
        "benchmark": "calls", "label": args.label, **top,
        "target": f">= {TARGET_CALLS} calls on one core with p99 frame lateness <= {TARGET_P99_MS:g} ms",
        "target_met": target,
        "settings": {"stagger_s": args.stagger_s, "warmup_s": args.warmup_s, "window_s": args.window_s,
                     "seed": args.seed, "questions": json.loads(questions.read_text(encoding="utf-8"))},
        "service_source": source_state(source),
        **({"baseline": headline([r for r in rows if r["service"] == "baseline"])
                        | {"service_source": source_state(services[1][1])},
            "comparison": comparison(rows)} if len(services) > 1 else {}),
        "machine": machine(),
        "notes": {
            "service_lateness": "p50/p99 interpolated linearly within the histogram's buckets (histogram_quantile), "
                                "capped at the maximum; max: exact (max_exact) when the service's max gauge rose "
                                "during the window, else a bound: the lowest bucket bound holding every observation "
                                "of the window, or the gauge if lower",
            "caller_gaps": "time.monotonic() at each read in the callers' epoll loop; a read is late by at most the "
                           "loop's busy stretch (caller.loop_busy_ms); send slots wait in epoll_wait (1 ms steps)",
            "memory_per_call": "(mean RSS over the window - idle RSS after one priming call) / N",
        },
        "rows": rows,
    }
    print(table(rows))
    for key in ("calls_per_core", "frame_lateness_p99_ms", "memory_per_call_mib", "added_latency_in_p99_ms",
                "added_latency_out_p99_ms"):
        baseline = document.get("baseline")
        was = "" if baseline is None else f"  (baseline: {'n/a' if baseline[key] is None else baseline[key]})"
        print(f"{key}: {'n/a' if top[key] is None else top[key]}{was}")
    print(f"target {document['target']}: {'target met' if target else 'target NOT MET'}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
