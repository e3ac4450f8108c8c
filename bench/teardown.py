"""Teardown: the caller hangs up mid-call, and how long the service takes to close every socket of that call.

The service runs alone in its own process (``python -m mikrovoice serve``, as bench/soak.py runs
it); this process is the rest of the world over loopback: the Realtime simulator, twelve simulated
routers (1 to 6 s per query) and the callers (``sim.asterisk.AsteriskCaller``: the AudioSocket app,
a line that sends a frame every 20 ms, so audio flows both ways all the call). Each call hears the
greeting, asks for a router's active devices and hangs up at a random moment between ``--min-s``
and ``--max-s`` after connecting: during the greeting, the question, the query (routers working,
progress and comfort audio playing) or the answer. ``--calls`` calls, ``--concurrent`` at a time.

The hang-up is Asterisk's: it closes its TCP connection without any AudioSocket message (research
asterisk-media.md 1.8: Asterisk never sends 0x00; the server sees EOF). Here it is a half-close
(``shutdown(SHUT_WR)``): the service sees the same FIN, and the caller can still read until the
service closes its side. Per call, from the hang-up (this process's clock, just before the FIN):

- ``audiosocket_close_ms``: until the caller reads EOF: the service closed the call's AudioSocket;
- ``model_close_ms``: until the Realtime simulator ended that call's session (the close frame
  answered and the TCP connection closed: ``SessionLog.ended_at``, same clock). Calls are dialled
  one at a time until their model session is accepted, so the n-th session is the n-th call's;
- ``teardown_ms``: the later of the two: every socket of that call closed. (Router connections are
  shared by all calls and stay pooled: they are not the call's.)

Calls the service ended itself before the hang-up are counted apart, not measured.

    .venv/bin/python bench/teardown.py [--calls 60] [--concurrent 12]

Prints a table and writes bench/results/teardown.json (``teardown_p99_ms`` at the top level).
Exit status 0 when every measured call had both sockets closed within ``--bound-s``, 1 otherwise,
2 when the service could not be started.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from soak import (
    PASSWORD_ENV,
    ROOT,
    ROUTER_PASSWORD,
    StartError,
    free_port,
    pct,
    read_service_log,
    run_and_write,
    stop_service,
    wait_listening,
    world_log,
    write_config,
)
from summary import git_state, machine_info

from mikrovoice.sim.asterisk import AsteriskCaller, CallerScript, CallReport, Question
from mikrovoice.sim.realtime import ModelLedger, SessionLog, SimModelConfig, serve_model
from mikrovoice.sim.routeros import FleetProfile, make_fleet, serve_fleet
from mikrovoice.simulation.scenario import Ask

RESULTS = Path(__file__).parent / "results"
#: The service must have opened the call's model session within this long of the dial.
SESSION_S = 10.0


class HangingUpLine(trio.abc.Stream):
    """The caller's TCP connection, whose close is Asterisk's hang-up made observable: the FIN goes
    out at once (``shutdown(SHUT_WR)``), and ``closed_by_service`` is when the service's own FIN
    (EOF) arrives afterwards (``watch``). ``aclose`` never waits: the caller calls it in a cancelled
    scope (``trio.aclose_forcefully``)."""

    def __init__(self, inner: trio.SocketStream) -> None:
        self.inner = inner
        self.hung_up_at: float | None = None
        self.closed_by_service: float | None = None
        self.hung_up = trio.Event()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        if self.hung_up_at is None:
            self.hung_up_at = trio.current_time()
            try:
                self.inner.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the service had closed already: the report says the service hung up first
            self.hung_up.set()

    async def watch(self, bound_s: float) -> None:
        """After the hang-up, read (and drop) what the service still sends until its EOF."""
        await self.hung_up.wait()
        with trio.move_on_after(bound_s):
            try:
                while await self.inner.receive_some(65536):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # a reset closes it too
            self.closed_by_service = trio.current_time()
        await trio.aclose_forcefully(self.inner)


@dataclass
class Teardown:
    index: int
    hangup_at_s: float
    report: CallReport
    line: HangingUpLine | None
    session: SessionLog | None

    def phase(self) -> str:
        """What the call was doing when the caller hung up."""
        r = self.report
        if not r.heard and not r.questions:
            return "greeting"
        if not r.questions:
            return "after greeting"
        question = r.questions[0]
        if not question.finished_asking_at:
            return "asking"
        if question.answered_at is None:
            return "query"
        return "answer"


def ms(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round((end - start) * 1000, 3)


def spread(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": pct(values, 0.5), "p99": pct(values, 0.99), "max": pct(values, 1.0)}


async def one_call(index: int, port: int, router: str, hangup_at_s: float, ledger: ModelLedger, dial_lock: trio.Lock,
                   bound_s: float, done: list[Teardown]) -> None:
    ask = Ask("devices", (router,))
    script = CallerScript((Question(ask.text(), ask.expect().pattern, 60.0),), silence="noise",
                          hangup_at_s=hangup_at_s, greeting_timeout_s=30.0)
    caller = AsteriskCaller(script, call_id=uuid.UUID(int=index + 1, version=4), seed=index)
    lines: list[HangingUpLine] = []
    session: SessionLog | None = None
    async with trio.open_nursery() as nursery:

        async def dial(host: str, port: int) -> trio.abc.Stream:
            line = HangingUpLine(await trio.open_tcp_stream(host, port))
            lines.append(line)
            nursery.start_soon(line.watch, bound_s)
            return line

        async with dial_lock:  # one dial at a time until its model session is up: the n-th session is ours
            before = len(ledger.sessions)
            nursery.start_soon(caller.call, "127.0.0.1", port, dial)
            with trio.move_on_after(SESSION_S):
                while len(ledger.sessions) == before:  # noqa: ASYNC110 (the simulator's ledger has no event)
                    await trio.sleep(0.002)
                session = ledger.sessions[before]
    if session is not None:  # the simulator's side may finish a moment after the caller saw EOF
        with trio.move_on_after(bound_s):
            while session.ended_at is None:  # noqa: ASYNC110 (idem; 1 ms polling is the resolution)
                await trio.sleep(0.001)
    done.append(Teardown(index, hangup_at_s, caller.report, lines[0] if lines else None, session))


async def run(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    fleet = make_fleet(FleetProfile(count=12, seed=7, fast_s=(1.0, 6.0), slow=0), password=ROUTER_PASSWORD)
    ledger = ModelLedger()
    rng = random.Random(args.seed)
    done: list[Teardown] = []
    env = dict(os.environ, OPENAI_API_KEY="sk-bench", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               **{PASSWORD_ENV: ROUTER_PASSWORD})
    async with trio.open_nursery() as world:
        routers = await world.start(serve_fleet, fleet)
        model = await world.start(serve_model, "127.0.0.1", 0, SimModelConfig(), ledger)
        port = free_port()
        config, log_path = log_dir / "teardown.toml", log_dir / "service.log"
        await write_config(config, port, model.port, routers, args.concurrent, env, ROOT)
        command = [sys.executable, "-m", "mikrovoice", "serve", "--config", str(config)]
        with log_path.open("wb") as log_file:
            process = await trio.lowlevel.open_process(command, stdout=log_file, stderr=log_file, env=env, cwd=ROOT)
        try:
            try:
                await wait_listening(process, log_path, port)
            except (RuntimeError, trio.TooSlowError) as exc:
                raise StartError(f"the service did not start ({exc}); its log: {log_path}") from None
            print(f"service pid {process.pid}; {args.calls} calls, {args.concurrent} at a time; log {log_path}",
                  flush=True)
            plan = [(i, rng.choice(routers).name, round(rng.uniform(args.min_s, args.max_s), 3)) for i in range(args.calls)]
            dial_lock = trio.Lock()

            async def slot(todo: list[tuple[int, str, float]]) -> None:
                while todo:
                    index, router, hangup_at_s = todo.pop(0)
                    await one_call(index, port, router, hangup_at_s, ledger, dial_lock, args.bound_s, done)

            async with trio.open_nursery() as callers:
                for _ in range(args.concurrent):
                    callers.start_soon(slot, plan)
        finally:
            with trio.CancelScope(shield=True):
                status, seconds, killed = await stop_service(process)
        world.cancel_scope.cancel()
    return summarize(args, done, ledger, read_service_log(log_path), {"status": status, "seconds": seconds,
                                                                      "killed": killed}, log_path)


def summarize(args: argparse.Namespace, done: list[Teardown], ledger: ModelLedger, service_log: dict[str, Any],
              exit_: dict[str, Any], log_path: Path) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    unmeasured: list[dict[str, Any]] = []
    service_first = 0
    for t in sorted(done, key=lambda t: t.index):
        if t.report.server_hung_up_at is not None or t.line is None or t.line.hung_up_at is None:
            service_first += 1
            unmeasured.append({"index": t.index, "why": t.report.error or "the service ended the call first"})
            continue
        hung_up = t.line.hung_up_at
        audio = ms(hung_up, t.line.closed_by_service)
        model = ms(hung_up, t.session.ended_at) if t.session is not None else None
        rows.append({"index": t.index, "phase": t.phase(), "hangup_at_s": t.hangup_at_s,
                     "audiosocket_close_ms": audio, "model_close_ms": model,
                     "model_end_reason": t.session.end_reason if t.session is not None else None,
                     "teardown_ms": None if audio is None or model is None else max(audio, model)})
    closed = [r for r in rows if r["teardown_ms"] is not None]
    teardown = spread([r["teardown_ms"] for r in closed])
    return {
        "benchmark": "teardown", "calls": args.calls, "concurrent": args.concurrent,
        "hangup_window_s": [args.min_s, args.max_s], "seed": args.seed,
        "teardown_p99_ms": teardown["p99"], "teardown_ms": teardown,
        "audiosocket_close_ms": spread([r["audiosocket_close_ms"] for r in rows if r["audiosocket_close_ms"] is not None]),
        "model_close_ms": spread([r["model_close_ms"] for r in rows if r["model_close_ms"] is not None]),
        "by_phase": {phase: spread([r["teardown_ms"] for r in closed if r["phase"] == phase])
                     for phase in sorted({r["phase"] for r in rows})},
        "measured": len(closed), "not_closed_within_bound": len(rows) - len(closed),
        "service_ended_first": service_first, "unmeasured": unmeasured[:20],
        "model_end_reasons": dict(Counter(str(r["model_end_reason"]) for r in rows)),
        "model_sessions": len(ledger.sessions), "model_simulator_crashes": ledger.all_crashes()[:10],
        "service_log": {k: v for k, v in service_log.items() if k != "ended"} | {"path": str(log_path)},
        "service_exit": exit_, "rows": rows, "machine": machine_info(), "git": git_state(),
    }


def table(result: dict[str, Any]) -> str:
    def line(name: str, s: dict[str, Any]) -> str:
        show = ["-" if s[k] is None else f"{s[k]:.2f}" for k in ("p50", "p99", "max")]
        return f"{name:<28} {s['n']:>5} {show[0]:>9} {show[1]:>9} {show[2]:>9}"

    out = [f"{'hang-up -> closed (ms)':<28} {'calls':>5} {'p50':>9} {'p99':>9} {'max':>9}", "-" * 64,
           line("every socket (teardown)", result["teardown_ms"]),
           line("AudioSocket (caller EOF)", result["audiosocket_close_ms"]),
           line("model WebSocket (sim end)", result["model_close_ms"])]
    out += [line(f"  during {phase}", s) for phase, s in result["by_phase"].items()]
    out += ["", f"measured {result['measured']} of {result['calls']}; not closed within bound "
                f"{result['not_closed_within_bound']}; the service ended first {result['service_ended_first']}; "
                f"model sessions ended {result['model_end_reasons']}"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=60, help="calls in all (default 60)")
    parser.add_argument("--concurrent", type=int, default=12, help="calls in progress at once (default 12)")
    parser.add_argument("--min-s", type=float, default=1.0, help="earliest hang-up after connecting (default 1)")
    parser.add_argument("--max-s", type=float, default=12.0, help="latest hang-up after connecting (default 12)")
    parser.add_argument("--bound-s", type=float, default=10.0, help="a socket not closed by then counts as left open")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default=str(RESULTS / "teardown.json"), help="where to write the result")
    parser.add_argument("--log-dir", help="the service's log and config (default: a new /tmp directory)")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.concurrent < 1 or not 0 < args.min_s <= args.max_s or args.bound_s <= 0:
        parser.error("--calls and --concurrent must be >= 1, 0 < --min-s <= --max-s, --bound-s > 0")
    result = run_and_write("teardown", run, args, world_log(args.log_dir, "mikrovoice-teardown-"), table, args.json)
    if result is None:
        return 2
    return 0 if result["measured"] and result["not_closed_within_bound"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
