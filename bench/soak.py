"""Soak: N concurrent simulated phone calls against ``mikrovoice serve`` for M minutes, in real time.

The service under test runs alone in its own process (``python -m mikrovoice serve --config``, a
TOML file written here and first checked by the service's own loader), so its memory and CPU are
its own. This process is the rest of the world, on loopback, over real sockets and the wall clock:
the simulated Realtime model (``sim.realtime.serve_model``), the demo's twelve simulated routers
(``sim.routeros``, three slow ones up to 24 s) and N simulated Asterisk callers
(``sim.asterisk.AsteriskCaller``: the AudioSocket app, a silent phone that sends no frames). Each
caller slot loops for the duration: dial, hear the greeting, ask one or two NOC questions the
scripted model answers (devices, health, SFP traffic, optics, log, who has an IP, PPPoE, the router
list), hang up, pause a moment, dial again. The slots start staggered over the first
min(20 s, a third of the run). When the time is up no new call is dialled and the calls in flight
finish (each is bounded: a call that outlives its bound is dropped, "hung"). Then the service gets
SIGTERM (SIGKILL after 40 s) and its exit status is reported.

A call is *completed* when the greeting was heard, every question got its answer (the scripted
model's sentence for that tool, ``sim.brain.ANSWERS``) within 100 s, the caller hung up itself and
nothing went wrong; any other call is *dropped*, with its reason and the caller's timeline.
Memory: the service's VmRSS every ``--sample-s``; the warm-up ends min(60 s, 10 % of the run) after
the stagger; memory is *flat* if, from then to the end of dialling (full load), the least-squares
slope is < 1 MiB/min and the last sample is at most 10 % above the first. CPU comes from
/proc/PID/stat, the machine's from /proc/stat: another busy process on the machine starves the two
of them and invalidates the figures (``machine CPU %`` shows it).

    .venv/bin/python bench/soak.py --calls 200 --minutes 10      # not part of CI: about 12 minutes

Prints a table and writes bench/results/soak.json (``--json``). The service's log (INFO) and this
process's warnings go to ``--log-dir`` (default: a new directory under /tmp). ``--service-src DIR``
runs the service from another source tree, ``--service-commit REV`` from a ``git archive`` of a
commit (a snapshot nobody edits during the run; its commit is kept in the summary). Exit status 0 when no call dropped and memory stayed flat, 1 otherwise, 2
when the service could not be configured or started.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import math
import os
import platform
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from mikrovoice.config import RouterConfig
from mikrovoice.demo import DEMO_FLEET
from mikrovoice.sim import asterisk
from mikrovoice.sim.asterisk import AsteriskCaller, CallerScript, CallReport, Question
from mikrovoice.sim.realtime import ModelLedger, SimModelConfig, serve_model
from mikrovoice.sim.routeros import make_fleet, serve_fleet
from mikrovoice.simulation.scenario import Ask

#: Our callers' lines are silent phones (no frames), so the caller's table of line-noise frames is
#: never read; building its 64 frames costs about 3 ms of CPU per call (49 ms under cProfile), a
#: stall of this process's event loop at every dial. One frame is enough.
asterisk._NOISE_FRAMES = 1

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")

#: How long a caller waits for each answer (the query deadline is 45 s; progress is spoken meanwhile).
PATIENCE_S = 100.0
#: The caller waits this long for the greeting (CallerScript's default).
GREETING_S = 30.0
#: A call longer than this bound (greeting + questions at full patience + slack) is "hung".
SLACK_S = 30.0
#: SIGTERM, then this long for the service to exit, then SIGKILL.
TERM_GRACE_S = 40.0
#: Memory is judged on at least this long at full load (a slope over seconds says nothing).
MIN_JUDGED_S = 60.0
#: The service must be listening within this long of its start.
START_S = 60.0
#: The simulated routers' password reaches the service through the environment, as it should.
PASSWORD_ENV = "MIKROVOICE_SOAK_ROUTER_PASSWORD"
ROUTER_PASSWORD = "soak"


# ---------------------------------------------------------------------------------------- questions


def question_mix(routers: list[RouterConfig], fast: list[str], mix: str) -> list[tuple[int, Ask]]:
    """(weight, question) pairs. ``quick``: questions answered in a few seconds (CI); ``mix``: every
    tool, the slow routers and the SFP traffic of all twelve (about 25 s) included."""
    sites = sorted({r.site for r in routers if r.site})
    quick = [
        (3, Ask("devices", (fast[0],))),
        (2, Ask("health", (fast[1],))),
        (1, Ask("list_routers")),
    ]
    if mix == "quick":
        return quick
    names = [r.name for r in routers]
    return quick + [
        (2, Ask("devices", (fast[2],), naming="words")),
        (3, Ask("sfp_all")),
        (1, Ask("sfp_some", (fast[0], fast[3]))),
        (1, Ask("health", (names[-1],))),  # a slow router
        (1, Ask("health_all")),
        (1, Ask("health", (), naming="site", site=sites[0])),
        (1, Ask("optics", (fast[1],))),
        (1, Ask("log", (fast[2],))),
        (1, Ask("log", (fast[0],), subject="la interfaz")),
        (1, Ask("who_has", subject="198.51.100.23")),  # TEST-NET-2: nobody has it
        (1, Ask("pppoe", subject="nadie.soak")),
        (1, Ask("list_routers", site=sites[0])),
    ]


def to_question(ask: Ask) -> Question:
    return Question(ask.text(), ask.expect().pattern, PATIENCE_S)


# ---------------------------------------------------------------------------------------- calls


@dataclass
class CallOutcome:
    call_id: str
    slot: int
    started_at: float
    duration_s: float
    questions: int
    dropped: str | None  # the reason, or None: completed
    greeting_s: float | None = None
    first_speech_s: list[float] = field(default_factory=list)  # question end -> first speech heard
    answer_s: list[float] = field(default_factory=list)  # question end -> the answer's start
    max_dead_air_s: float = 0.0
    max_frame_gap_s: float = 0.0
    #: A dropped call's story as the caller lived it (seconds since connecting): what it said and heard.
    timeline: list[str] = field(default_factory=list)


def caller_timeline(report: CallReport) -> list[str]:
    t0 = report.connected_at
    lines = [(s.start, f"{s.start - t0:7.2f} says  «{s.text}»") for s in report.spoken]
    lines += [(h.start, f"{h.start - t0:7.2f} hears «{h.text}»") for h in report.heard]
    for at, what in ((report.hung_up_at, "hangs up"), (report.server_hung_up_at, "the service hangs up")):
        if at is not None:
            lines.append((at, f"{at - t0:7.2f} {what}"))
    return [text for _, text in sorted(lines)]


def judge(report: CallReport, script: CallerScript, slot: int, started_at: float, ended_at: float) -> CallOutcome:
    outcome = CallOutcome(report.call_id, slot, started_at, round(ended_at - started_at, 2), len(script.questions),
                          None, max_frame_gap_s=round(report.max_frame_gap_s, 3))
    if report.heard:
        outcome.greeting_s = round(report.heard[0].start - report.connected_at, 3)
    for result in report.questions:
        after = [h.start for h in report.heard if h.start >= result.finished_asking_at]
        if after:
            outcome.first_speech_s.append(round(after[0] - result.finished_asking_at, 3))
        if result.answered_at is not None:
            outcome.answer_s.append(round(result.answered_at - result.finished_asking_at, 3))
        outcome.max_dead_air_s = max(outcome.max_dead_air_s, result.max_dead_air_s)
    unanswered = [q for q in report.questions if not q.answered]
    if report.error:
        outcome.dropped = f"caller error: {report.error}"
    elif report.server_hung_up_at is not None:
        how = "0x00" if report.server_hung_up else "closed the connection"
        outcome.dropped = f"the service ended the call ({how}) {report.server_hung_up_at - report.connected_at:.1f} s in"
    elif outcome.greeting_s is None:
        outcome.dropped = f"no greeting within {GREETING_S:g} s"
    elif len(report.questions) < len(script.questions):
        outcome.dropped = f"asked {len(report.questions)} of {len(script.questions)} questions"
    elif unanswered:
        heard = [h.text for h in report.heard if h.start >= unanswered[0].finished_asking_at][:3]
        outcome.dropped = f"unanswered after {PATIENCE_S:g} s: «{unanswered[0].text}» (heard: {heard})"
    if outcome.dropped:
        outcome.timeline = caller_timeline(report)
    return outcome


@dataclass
class Load:
    """The callers' side: every call's outcome, and the calls in flight."""

    port: int
    mix: list[tuple[int, Ask]]
    rng: random.Random
    outcomes: list[CallOutcome] = field(default_factory=list)
    in_flight: int = 0
    started: int = 0
    max_in_flight: int = 0

    def script(self) -> CallerScript:
        weights = [w for w, _ in self.mix]
        count = 1 if self.rng.random() < 0.6 else 2
        asks = self.rng.choices([a for _, a in self.mix], weights, k=count)
        return CallerScript(tuple(to_question(a) for a in asks), greeting_timeout_s=GREETING_S)

    async def one_call(self, slot: int) -> None:
        script = self.script()
        caller = AsteriskCaller(script, call_id=uuid.uuid4(), seed=self.rng.getrandbits(32))
        bound = GREETING_S + len(script.questions) * (PATIENCE_S + 10) + SLACK_S
        self.started += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        started = trio.current_time()
        report: CallReport | None = None
        problem: str | None = None
        try:
            with trio.move_on_after(bound) as scope:
                report = await caller.call("127.0.0.1", self.port)
            if scope.cancelled_caught:
                problem = f"hung: still running after {bound:g} s"
        except Exception as exc:  # a bug in the caller or the model simulator: this call is lost, say so
            problem = f"load generator raised {exc!r}"
        finally:
            self.in_flight -= 1
        ended = trio.current_time()
        outcome = judge(report or caller.report, script, slot, started, ended)
        if problem is not None:
            outcome.dropped = problem
            outcome.timeline = caller_timeline(caller.report)
        self.outcomes.append(outcome)

    async def slot(self, slot: int, start_at: float, stop_at: float) -> None:
        await trio.sleep_until(start_at)
        while trio.current_time() < stop_at:
            await self.one_call(slot)
            await trio.sleep(self.rng.uniform(0.2, 2.0))  # the next caller dials a moment later


# ---------------------------------------------------------------------------------------- /proc


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def cpu_seconds(pid: int | str) -> float | None:
    """utime + stime of a process, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs: what every process on the machine used."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


@dataclass
class Sample:
    t: float  # seconds since the callers started
    rss_mib: float
    service_cpu_pct: float  # over the sample period, % of one core
    loadgen_cpu_pct: float
    machine_cpu_pct: float  # all processes, % of one core (2 cores: up to 200)
    in_flight: int


async def sample_loop(pid: int, load: Load, t0: float, period: float, samples: list[Sample]) -> None:
    last = (trio.current_time(), cpu_seconds(pid) or 0.0, cpu_seconds("self") or 0.0, *machine_busy())
    ncpu = os.cpu_count() or 1
    while True:
        await trio.sleep(period)
        rss = rss_bytes(pid)
        if rss is None:
            return
        now, service, loadgen = trio.current_time(), cpu_seconds(pid) or 0.0, cpu_seconds("self") or 0.0
        busy, total = machine_busy()
        wall = now - last[0]
        samples.append(Sample(round(now - t0, 1), round(rss / MIB, 2), round(100 * (service - last[1]) / wall, 1),
                              round(100 * (loadgen - last[2]) / wall, 1),
                              round(100 * ncpu * (busy - last[3]) / max(1.0, total - last[4]), 1), load.in_flight))
        last = (now, service, loadgen, busy, total)


async def lag_loop(lags: list[float], period: float = 0.05) -> None:
    """This process's own event-loop lag: how late a 50 ms sleep wakes (an overloaded load generator
    makes its callers late, which would look like the service's fault)."""
    while True:
        due = trio.current_time() + period
        await trio.sleep_until(due)
        lags.append(trio.current_time() - due)


# ---------------------------------------------------------------------------------------- the service


def source_state(source: Path) -> dict[str, Any]:
    """Which code the service ran: the directory, and (in a git work tree) HEAD and the files
    of ``mikrovoice/`` that differ from it (read-only git commands)."""
    state: dict[str, Any] = {"path": str(source)}
    if (source / "COMMIT").is_file():  # a --service-commit snapshot
        return state | {"git_archive_of": (source / "COMMIT").read_text(encoding="utf-8").strip()}
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=10)
        if head.returncode == 0:
            changed = subprocess.run(["git", "diff", "--name-only", "HEAD", "--", "mikrovoice"], cwd=source,
                                     capture_output=True, text=True, timeout=10)
            state |= {"git_head": head.stdout.strip(), "changed_since_head": changed.stdout.split()}
    except (OSError, subprocess.SubprocessError):
        pass
    return state


def snapshot(rev: str, into: Path) -> Path:
    """``git archive`` of ``rev`` (this repository's) unpacked into ``into``, its commit in ``COMMIT``:
    a service nobody edits while the soak runs. Read-only for the repository."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, capture_output=True,
                            text=True, timeout=30, check=True).stdout.strip()
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True, timeout=120,
                             check=True).stdout
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / "COMMIT").write_text(commit + "\n", encoding="utf-8")
    return into


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StartError(Exception):
    """The service could not be configured or started; the message says why."""


def config_text(port: int, model_port: int, routers: list[RouterConfig], optional: dict[str, list[str]]) -> str:
    lines = ["[audiosocket]", f'listen = "127.0.0.1:{port}"', "",
             "[openai]", f'url = "ws://127.0.0.1:{model_port}/v1/realtime"', "",
             "[routeros]", f'username = "{routers[0].username}"', f'password_env = "{PASSWORD_ENV}"', ""]
    for r in routers:
        lines += ["[[router]]", f'name = "{r.name}"', f'host = "{r.host}"', f"port = {r.port}", f'site = "{r.site}"',
                  "aliases = [" + ", ".join(f'"{a}"' for a in r.aliases) + "]", ""]
    return "\n".join(lines + [line for section in optional.values() for line in section]) + "\n"


#: Checks a configuration file with the service's own loader (its code may differ from ours: --service-src).
_CHECK = ("import sys\nfrom mikrovoice.config import ConfigError, load\ntry:\n    load(sys.argv[1])\n"
          "except ConfigError as exc:\n    print(exc)\n    sys.exit(2)\n")


async def write_config(path: Path, port: int, model_port: int, routers: list[RouterConfig], calls: int,
                       env: dict[str, str], cwd: Path) -> list[str]:
    """The service's TOML: the listener, the simulated model and routers, and [auth] require = "open"
    and [service] max_calls when the service's loader knows those sections (checked by that loader,
    in a subprocess). Returns the sections left out."""
    optional = {"auth": ["[auth]", 'require = "open"', ""],
                "service": ["[service]", f"max_calls = {calls + 50}", ""]}
    left_out: list[str] = []
    while True:
        await trio.Path(path).write_text(config_text(port, model_port, routers, optional), encoding="utf-8")
        check = await trio.run_process([sys.executable, "-c", _CHECK, str(path)], env=env, cwd=cwd, check=False,
                                       capture_stdout=True, capture_stderr=True)
        if check.returncode == 0:
            return left_out
        problem = (check.stdout or check.stderr).decode(errors="replace").strip()
        unknown = [name for name in optional if f"'{name}'" in problem and "unknown key" in problem]
        if check.returncode != 2 or not unknown:
            raise StartError(f"the service's loader refuses {path}: {problem}")
        for name in unknown:
            del optional[name]
            left_out.append(name)


def logged_listening(log_path: Path, port: int) -> bool:
    return log_path.exists() and f"port={port}" in log_path.read_text(encoding="utf-8", errors="replace")


async def wait_listening(process: trio.Process, log_path: Path, port: int) -> None:
    """Until the service logs its listener (``service.listening ... port=P``); fails if it exits first."""
    with trio.fail_after(START_S):
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the service exited with status {process.returncode} before listening")
            if logged_listening(log_path, port):
                return
            await trio.sleep(0.2)


async def stop_service(process: trio.Process, profiled: bool = False) -> tuple[int | None, float, bool]:
    """SIGTERM (SIGINT when profiled: cProfile writes its file on the KeyboardInterrupt's way out);
    SIGKILL after TERM_GRACE_S. (exit status, seconds to exit, killed)."""
    start = time.monotonic()
    if process.poll() is not None:
        return process.returncode, 0.0, False
    process.send_signal(signal.SIGINT if profiled else signal.SIGTERM)
    with trio.move_on_after(TERM_GRACE_S):
        await process.wait()
        return process.returncode, round(time.monotonic() - start, 2), False
    process.kill()
    await process.wait()
    return process.returncode, round(time.monotonic() - start, 2), True


_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def read_service_log(path: Path) -> dict[str, Any]:
    """What the service's own log says: how its calls ended, late frames, errors and tracebacks."""
    ended: dict[str, dict[str, Any]] = {}
    reasons: Counter[str] = Counter()
    levels: Counter[str] = Counter()
    warned: Counter[str] = Counter()  # warning and error events by name
    late_frames: int | None = None
    errors: list[str] = []
    tracebacks = 0
    numbers: dict[str, tuple[float, float]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split(" ", 6)  # date time LEVEL call=ID logger: event fields
        if len(parts) >= 6 and parts[2] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            levels[parts[2]] += 1
            if parts[2] in ("WARNING", "ERROR", "CRITICAL"):
                warned[f"{parts[2]} {parts[5]}"] += 1
            if parts[2] in ("ERROR", "CRITICAL") and len(errors) < 20:
                errors.append(line[:300])
        if line.startswith("Traceback"):
            tracebacks += 1
        if " call.ended " not in line:
            continue
        call = line.split("call=", 1)[1].split(" ", 1)[0]
        fields: dict[str, Any] = {}
        for key, value in _FIELD.findall(line.split(" call.ended ", 1)[1]):
            fields[key] = json.loads(value) if value.startswith('"') else value
        ended[call] = fields
        reasons[str(fields.get("reason"))] += 1
        if "late_frames" in fields:
            late_frames = (late_frames or 0) + int(fields["late_frames"])
        for key, value in fields.items():  # every figure the service gives per call: sum and max
            if isinstance(value, str) and _NUMBER.fullmatch(value):
                total, most = numbers.get(key, (0.0, float("-inf")))
                numbers[key] = (total + float(value), max(most, float(value)))
    return {"calls_ended": len(ended), "end_reasons": dict(reasons.most_common()), "late_frames": late_frames,
            "call_ended_figures": {k: {"sum": round(t, 3), "max": m} for k, (t, m) in sorted(numbers.items())},
            "lines_by_level": dict(levels), "warnings_and_errors": dict(warned.most_common()), "tracebacks": tracebacks, "error_lines": errors, "ended": ended}


# ---------------------------------------------------------------------------------------- figures


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 3)


def spread(values: list[float]) -> dict[str, float | None]:
    return {"n": len(values), "p50": pct(values, 0.5), "p95": pct(values, 0.95), "max": pct(values, 1.0)}


def slope_per_min(samples: list[Sample]) -> float | None:
    if len(samples) < 2:
        return None
    xs, ys = [s.t / 60 for s in samples], [s.rss_mib for s in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var, 3) if var else None


def memory_verdict(samples: list[Sample], warmup_s: float, end_s: float) -> dict[str, Any]:
    """Judged on the samples from the warm-up's end to the end of dialling (full load): the drain's
    and the idle samples after it would flatten the slope."""
    after = [s for s in samples if warmup_s <= s.t <= end_s]
    if len(after) < 2 or after[-1].t - after[0].t < MIN_JUDGED_S:
        return {"verdict": f"UNKNOWN (less than {MIN_JUDGED_S:g} s of samples at full load)", "flat": None,
                "warmup_s": warmup_s, "samples_after_warmup": len(after)}
    first, last = after[0].rss_mib, after[-1].rss_mib
    slope = slope_per_min(after)
    flat = slope is not None and slope < 1.0 and last <= first * 1.10
    return {"verdict": "PASS" if flat else "FAIL", "flat": flat, "warmup_s": warmup_s,
            "samples_after_warmup": len(after), "rss_at_warmup_mib": first,
            "rss_min_mib": min(s.rss_mib for s in after), "rss_max_mib": max(s.rss_mib for s in after),
            "rss_last_mib": last, "slope_mib_per_min": slope,
            "rss_first_sample_mib": samples[0].rss_mib if samples else None}


# ---------------------------------------------------------------------------------------- the run


async def soak(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    duration = args.minutes * 60
    fleet = make_fleet(DEMO_FLEET, password=ROUTER_PASSWORD)
    fast = [r.name for r in sorted(fleet, key=lambda r: r.latency_s)]
    ledger = ModelLedger()
    lags: list[float] = []
    samples: list[Sample] = []
    result: dict[str, Any] = {}
    async with trio.open_nursery() as world:
        routers = await world.start(serve_fleet, fleet)
        model = await world.start(serve_model, "127.0.0.1", 0, SimModelConfig(), ledger)
        port = free_port()
        log_path = log_dir / "service.log"
        env = dict(os.environ, OPENAI_API_KEY="sk-soak", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
                   **{PASSWORD_ENV: ROUTER_PASSWORD})
        source = Path(args.service_src) if args.service_src else ROOT
        if args.service_src:  # ahead of the editable install's finder
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
        config = log_dir / "soak.toml"
        left_out = await write_config(config, port, model.port, routers, args.calls, env, source)
        profile = ["-m", "cProfile", "-o", args.service_profile] if args.service_profile else []
        command = [sys.executable, *profile, "-m", "mikrovoice", "serve", "--config", str(config)]
        with log_path.open("wb") as log_file:
            process = await trio.lowlevel.open_process(command, stdout=log_file, stderr=log_file, env=env, cwd=source)
        try:
            try:
                await wait_listening(process, log_path, port)
            except (RuntimeError, trio.TooSlowError) as exc:
                tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
                raise StartError(f"the service did not start ({exc}): {' '.join(command)}\n"
                                 + "\n".join(tail)) from None
            print(f"service pid {process.pid} listening on 127.0.0.1:{port}; log {log_path}", flush=True)
            rng = random.Random(args.seed)
            load = Load(port, question_mix(routers, fast, args.mix), rng)
            t0 = trio.current_time()
            ramp = min(20.0, duration / 3)
            stop_at = t0 + duration
            warmup = ramp + min(60.0, duration * 0.1)
            cpu0, loadgen0, wall0 = cpu_seconds(process.pid) or 0.0, cpu_seconds("self") or 0.0, time.monotonic()
            busy0, total0 = machine_busy()
            rss0 = rss_bytes(process.pid)
            async with trio.open_nursery() as watchers:
                watchers.start_soon(sample_loop, process.pid, load, t0, args.sample_s, samples)
                watchers.start_soon(lag_loop, lags)
                watchers.start_soon(progress_loop, load, t0, duration)
                async with trio.open_nursery() as callers:
                    for slot in range(args.calls):
                        callers.start_soon(load.slot, slot, t0 + rng.uniform(0, ramp), stop_at)
                drained = trio.current_time()
                # the last samples: the service with no call
                await trio.sleep(min(2 * args.sample_s, 10.0))
                watchers.cancel_scope.cancel()
            wall = time.monotonic() - wall0
            service_cpu = (cpu_seconds(process.pid) or 0.0) - cpu0
            loadgen_cpu = (cpu_seconds("self") or 0.0) - loadgen0
            busy, total = machine_busy()
            rss_idle = rss_bytes(process.pid)
        finally:
            with trio.CancelScope(shield=True):
                exit_status, exit_s, killed = await stop_service(process, profiled=bool(args.service_profile))
        world.cancel_scope.cancel()
    service_log = read_service_log(log_path)
    outcomes = load.outcomes
    dropped = [o for o in outcomes if o.dropped]
    for o in dropped:  # what the service said about a dropped call
        said = service_log["ended"].get(o.call_id)
        if said is not None:
            o.dropped = f"{o.dropped} [service: {said.get('reason')}]"
    steady = [s for s in samples if warmup <= s.t <= duration]  # full load: after the warm-up, before the drain
    result = {
        "benchmark": "soak", "label": args.label,
        "calls": args.calls, "minutes": args.minutes, "mix": args.mix, "seed": args.seed, "sample_s": args.sample_s,
        "config_sections_left_out": left_out,
        "service_source": source_state(source),
        "wall_s": round(wall, 1), "drain_s": round(drained - t0 - duration, 1),
        "calls_started": load.started, "calls_completed": len(outcomes) - len(dropped), "calls_dropped": len(dropped),
        "max_in_flight": load.max_in_flight,
        "questions": sum(o.questions for o in outcomes),
        "drop_reasons": dict(Counter(re.sub(r"\d+(\.\d+)?", "N", o.dropped or "") for o in dropped).most_common()),
        "dropped_calls": [{"call_id": o.call_id, "slot": o.slot, "at_s": round(o.started_at - t0, 1),
                           "duration_s": o.duration_s, "reason": o.dropped, "caller_timeline": o.timeline}
                          for o in dropped[:20]],
        "greeting_s": spread([o.greeting_s for o in outcomes if o.greeting_s is not None]),
        "first_speech_after_question_s": spread([v for o in outcomes for v in o.first_speech_s]),
        "answer_after_question_s": spread([v for o in outcomes for v in o.answer_s]),
        "max_dead_air_per_call_s": spread([o.max_dead_air_s for o in outcomes]),
        "max_frame_gap_per_call_s": spread([o.max_frame_gap_s for o in outcomes]),
        "call_duration_s": spread([o.duration_s for o in outcomes]),
        "memory": memory_verdict(samples, warmup, duration) | {
            "rss_before_calls_mib": round((rss0 or 0) / MIB, 2), "rss_idle_after_mib": round((rss_idle or 0) / MIB, 2)},
        "service_cpu_pct": round(100 * service_cpu / wall, 1),
        "loadgen_cpu_pct": round(100 * loadgen_cpu / wall, 1),
        "machine_cpu_pct": round(100 * (os.cpu_count() or 1) * (busy - busy0) / max(1.0, total - total0), 1),
        "steady": {"from_s": round(warmup, 1), "to_s": round(duration, 1), "samples": len(steady),
                   "in_flight": spread([s.in_flight for s in steady]),
                   "service_cpu_pct": spread([s.service_cpu_pct for s in steady]),
                   "loadgen_cpu_pct": spread([s.loadgen_cpu_pct for s in steady]),
                   "machine_cpu_pct": spread([s.machine_cpu_pct for s in steady])},
        "loadgen_loop_lag_s": spread(lags),
        "model_simulator_crashes": ledger.all_crashes()[:10],
        "model_sessions": len(ledger.sessions),
        "service_log": {k: v for k, v in service_log.items() if k != "ended"} | {"path": str(log_path)},
        "service_exit": {"signal": "SIGINT" if args.service_profile else "SIGTERM", "status": exit_status,
                         "seconds": exit_s, "killed": killed},
        "samples": [s.__dict__ for s in samples],
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
    }
    result["no_dropped_call"] = "PASS" if not dropped else "FAIL"
    return result


async def progress_loop(load: Load, t0: float, duration: float) -> None:
    while True:
        await trio.sleep(30)
        done = len(load.outcomes)
        dropped = sum(1 for o in load.outcomes if o.dropped)
        print(f"  {trio.current_time() - t0:6.0f}/{duration:.0f} s  in flight {load.in_flight:3d}  "
              f"finished {done}  dropped {dropped}", flush=True)


def table(r: dict[str, Any]) -> str:
    def fmt(d: dict[str, Any]) -> str:
        return "  ".join(f"{k} {'-' if d[k] is None else d[k]}" for k in ("p50", "p95", "max")) + f"  (n {d['n']})"

    m = r["memory"]
    rows = [
        ("calls in flight", f"{r['calls']} for {r['minutes']:g} min ({r['mix']} questions), max in flight {r['max_in_flight']}"),
        ("calls started", r["calls_started"]),
        ("completed", r["calls_completed"]),
        ("dropped", r["calls_dropped"]),
        ("questions asked", r["questions"]),
        ("greeting s", fmt(r["greeting_s"])),
        ("first speech after question s", fmt(r["first_speech_after_question_s"])),
        ("answer after question s", fmt(r["answer_after_question_s"])),
        ("max dead air per call s", fmt(r["max_dead_air_per_call_s"])),
        ("max frame gap per call s", fmt(r["max_frame_gap_per_call_s"])),
        ("service RSS MiB", f"before calls {m['rss_before_calls_mib']}, after warm-up ({m['warmup_s']:g} s) "
                            f"{m.get('rss_at_warmup_mib')}, min {m.get('rss_min_mib')}, max {m.get('rss_max_mib')}, "
                            f"last {m.get('rss_last_mib')}, idle after {m['rss_idle_after_mib']}"),
        ("RSS slope after warm-up", f"{m.get('slope_mib_per_min')} MiB/min"),
        ("steady load", f"{r['steady']['from_s']:g}-{r['steady']['to_s']:g} s, calls in flight {fmt(r['steady']['in_flight'])}"),
        ("service CPU % (one core)", f"steady {fmt(r['steady']['service_cpu_pct'])}; whole run {r['service_cpu_pct']}"),
        ("load generator CPU %", f"steady {fmt(r['steady']['loadgen_cpu_pct'])}; whole run {r['loadgen_cpu_pct']}"),
        ("load generator loop lag s", fmt(r["loadgen_loop_lag_s"])),
        ("machine CPU % (all processes)", f"steady {fmt(r['steady']['machine_cpu_pct'])}; whole run "
                                          f"{r['machine_cpu_pct']} (of {100 * r['machine']['cpus']})"),
        ("service late frames", r["service_log"]["late_frames"] if r["service_log"]["late_frames"] is not None
         else "not in its log"),
        ("service log", f"{r['service_log']['lines_by_level']}, tracebacks {r['service_log']['tracebacks']}"),
        ("service warnings/errors", r["service_log"]["warnings_and_errors"] or "none"),
        ("service call.ended figures", ", ".join(f"{k} sum {v['sum']:g} max {v['max']:g}" for k, v in
                                                 r["service_log"]["call_ended_figures"].items()) or "none"),
        ("service exit", f"status {r['service_exit']['status']} after {r['service_exit']['seconds']} s"
                         f" of {r['service_exit']['signal']}{', then SIGKILL' if r['service_exit']['killed'] else ''}"),
        ("no dropped call", r["no_dropped_call"]),
        ("flat memory", m["verdict"]),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    if r["dropped_calls"]:
        lines.append("dropped calls (first 20):")
        lines += [f"  {d['call_id']} at {d['at_s']} s: {d['reason']}" for d in r["dropped_calls"]]
    return "\n".join(lines)


def leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


def service_source(parser: argparse.ArgumentParser, args: argparse.Namespace, log_dir: Path) -> None:
    """``--service-src DIR`` or ``--service-commit REV`` (a ``git archive`` of it under ``log_dir``):
    ``args.service_src`` becomes that tree, absolute and holding a mikrovoice package (or stays None:
    this tree); a wrong one is the parser's error."""
    if args.service_src and args.service_commit:
        parser.error("--service-src or --service-commit, not both")
    if args.service_commit:
        try:
            args.service_src = str(snapshot(args.service_commit, log_dir / "service-src"))
        except (OSError, subprocess.SubprocessError, tarfile.TarError) as exc:
            parser.error(f"--service-commit {args.service_commit}: {exc}")
    if args.service_src:
        args.service_src = str(Path(args.service_src).resolve())  # the service runs in another directory
        if not (Path(args.service_src) / "mikrovoice" / "__init__.py").is_file():
            parser.error(f"--service-src {args.service_src}: no mikrovoice package there")


def world_log(log_dir: str | None, prefix: str) -> Path:
    """The run's directory (a new one under /tmp unless given), this process's warnings in its world.log."""
    path = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix=prefix))
    path.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path / "world.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("mikrovoice").addHandler(handler)
    logging.getLogger("mikrovoice").setLevel(logging.WARNING)
    return path


def run_and_write(name: str, run: Any, args: argparse.Namespace, log_dir: Path, table: Any,
                  json_path: str) -> dict[str, Any] | None:
    """``trio.run(run, args, log_dir)``, then its table printed and its result written as JSON;
    None (and one line on stderr) when the service or the simulators could not start."""
    failed: list[BaseException] = []
    try:
        result: dict[str, Any] = trio.run(run, args, log_dir)
    except* StartError as group:
        failed += leaves(group)
    if failed:
        print(f"{name}: {failed[0]}", file=sys.stderr)
        return None
    print(table(result))
    out = Path(json_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"result: {out}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls kept in flight (default 200)")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long new calls are dialled (default 10)")
    parser.add_argument("--json", default=str(RESULTS / "soak.json"), help="where to write the summary")
    parser.add_argument("--sample-s", type=float, default=10.0, help="memory sample period (default 10 s)")
    parser.add_argument("--mix", choices=("mix", "quick"), default="mix",
                        help="questions: every tool, slow routers included (default), or quick ones only")
    parser.add_argument("--seed", type=int, default=1, help="the question draw's seed")
    parser.add_argument("--log-dir", help="the service's log and config go here (default: a new /tmp directory)")
    parser.add_argument("--service-src", metavar="DIR",
                        help="run the service from this source tree (its mikrovoice/ package) instead of this one")
    parser.add_argument("--service-commit", metavar="REV",
                        help="run the service from a snapshot of this commit (git archive into --log-dir)")
    parser.add_argument("--service-profile", metavar="FILE",
                        help="run the service under cProfile into FILE (stopped with SIGINT instead of SIGTERM)")
    parser.add_argument("--label", default="", help="a note kept in the summary (what was measured, and why)")
    parser.add_argument("--profile", metavar="FILE", help="cProfile this process (the load generator) into FILE")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.minutes <= 0 or args.sample_s <= 0:
        parser.error("--calls, --minutes and --sample-s must be positive")
    log_dir = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="mikrovoice-soak-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    service_source(parser, args, log_dir)
    if args.service_profile:  # the service runs in another directory
        args.service_profile = str(Path(args.service_profile).resolve())
    handler = logging.FileHandler(log_dir / "loadgen.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("mikrovoice").addHandler(handler)
    logging.getLogger("mikrovoice").setLevel(logging.WARNING)
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    failed: list[str] = []
    try:
        result = trio.run(soak, args, log_dir)
    except* StartError as group:
        failed += [str(e) for e in leaves(group)]
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
    if failed:
        print(f"soak: {failed[0]}", file=sys.stderr)
        return 2
    print(table(result))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"summary: {out}")
    return 0 if result["no_dropped_call"] == "PASS" and result["memory"]["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
