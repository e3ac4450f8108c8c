"""Dead air and spoken progress during long router queries, as the caller hears them, beside the old blocking design.

One run, real time, real sockets on loopback. This process is the world: the RouterOS simulator
(one router per query, answering its lease and ARP prints after exactly that query's seconds:
30 and 60 by default), the Realtime simulator (``sim.realtime.serve_model``: a ping every 5 s,
a client that has not answered one within 20 s is closed, ``ping_timeout``: what killed the old
system's calls) and the callers (``sim.asterisk.AsteriskCaller``, the AudioSocket app with a line
that sends frames all the time). Two services answer them, each in its own process:

- ``new``: ``python -m mikrovoice serve`` (as bench/soak.py runs it), ``[query] timeout_s`` and
  ``router_timeout_s`` set to the longest query + 30 s so that the 60 s query completes;
- ``baseline``: ``bench/baseline/blocking_bridge.py``, the seed's design: a synchronous bridge that
  runs the router query inline in the thread that reads the model's WebSocket.

Each service gets its own listener of the same model simulator (same configuration, its own
ledger, so every model session is the service's), the routers are the same. Every caller asks
"Dame la lista de dispositivos activos del router X" of its query's router, waits for the answer
up to the query + ``--patience-s`` (15 s) and hangs up. All the calls run at once (about 80 s by default).

What is measured, per call, from the end of the question to the answer (or to the caller giving
up, for a question never answered):

- ``max_dead_air_s``: the caller's own measure (``QuestionResult.max_dead_air_s``): the longest run
  of 20 ms frames below -42 dBFS, or of no frames at all (the comfort texture is sound, not dead air);
- ``first_words_s``: to the first assistant speech heard (the model's "Un momento ..." preamble);
- ``first_progress_s`` and ``progress_updates``: to the first spoken update ("Sigo consultando ...",
  the service's progress phrases) and how many were heard;
- ``progress_interval_max_s``: the longest the caller waited without a word from the assistant:
  question end to the first words, the end of an utterance to the start of the next, the last one
  to the answer (or to the caller giving up);
- ``model_link_drops``: the service's model sessions the simulator ended other than by the
  client's close (``ping_timeout``, ``connection_lost``, ...), with their reason and when, from the
  simulator's ledger.

    .venv/bin/python bench/dead_air.py [--queries 30,60] [--patience-s 15]

Prints a table and writes bench/results/dead_air.json: ``max_dead_air_s``,
``progress_interval_max_s``, ``model_link_drops`` of the new design at the top level (worst over
its calls), the old design's beside them as ``baseline_*``, and every call's detail. Exit status 0
when the new design answered every question with no link drop, 1 otherwise, 2 when a service could
not be started.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import uuid
from dataclasses import dataclass
from os.path import commonprefix
from pathlib import Path
from typing import Any

import trio
from soak import (
    _CHECK,
    PASSWORD_ENV,
    ROOT,
    ROUTER_PASSWORD,
    StartError,
    config_text,
    free_port,
    read_service_log,
    run_and_write,
    source_state,
    stop_service,
    wait_listening,
    world_log,
)
from summary import git_state, machine_info

from mikrovoice.config import Phrases, RouterConfig
from mikrovoice.sim.asterisk import AsteriskCaller, CallerScript, CallReport, Question
from mikrovoice.sim.realtime import ModelLedger, SessionLog, SimModelConfig, serve_model
from mikrovoice.sim.routeros import FleetProfile, make_fleet, serve_fleet
from mikrovoice.simulation.scenario import Ask

RESULTS = Path(__file__).parent / "results"
BASELINE = Path(__file__).parent / "baseline" / "blocking_bridge.py"
DESIGNS = ("new", "baseline")
#: Session end reasons that are the client's own doing: anything else is the link dropped under it.
CLIENT_ENDS = frozenset({"client_closed", "server_shutdown"})
#: The service's spoken updates begin so (what progress_one and progress_many share).
PROGRESS = re.compile(re.escape(commonprefix([Phrases().progress_one, Phrases().progress_many]).split("{")[0].strip()))
GREETING_S = 30.0


@dataclass
class Outcome:
    design: str
    query_s: float
    router: str
    report: CallReport


def words_heard(report: CallReport, start: float, end: float) -> list[tuple[float, float, str]]:
    return [(h.start, h.end, h.text) for h in report.heard if start <= h.start < end]


def analyse(outcome: Outcome, patience_s: float, sessions: list[SessionLog]) -> dict[str, Any]:
    report = outcome.report
    row: dict[str, Any] = {"design": outcome.design, "query_s": outcome.query_s, "router": outcome.router,
                           "call_id": report.call_id, "caller_error": report.error,
                           "service_hung_up": report.server_hung_up_at is not None}
    drops = [s for s in sessions if s.end_reason not in CLIENT_ENDS]
    row["model_sessions"] = [{"end_reason": s.end_reason, "close_code": s.close_code,
                              "seconds": None if s.ended_at is None else round(s.ended_at - s.started_at, 2)}
                             for s in sessions]
    row["model_link_drops"] = len(drops)
    if not report.questions or not report.questions[0].finished_asking_at:
        return row | {"answered": False, "problem": "the question was never asked (no greeting?)"}
    question = report.questions[0]
    asked = question.finished_asking_at
    if question.answered_at is not None:
        end = question.answered_at
    else:
        end = min(t for t in (asked + patience_s, report.server_hung_up_at, report.hung_up_at) if t is not None)
    words = words_heard(report, asked, end)
    progress = [w for w in words if PROGRESS.match(w[2])]
    gaps, mark = [], asked
    for start, stop, _ in words:
        gaps.append(max(0.0, start - mark))
        mark = max(mark, stop)
    gaps.append(max(0.0, end - mark))
    row |= {
        "answered": question.answered,
        "answer_after_s": None if question.answered_at is None else round(question.answered_at - asked, 2),
        "waited_s": round(end - asked, 2),
        "max_dead_air_s": question.max_dead_air_s,
        "first_words_s": round(words[0][0] - asked, 2) if words else None,
        "first_progress_s": round(progress[0][0] - asked, 2) if progress else None,
        "progress_updates": len(progress),
        "progress_interval_max_s": round(max(gaps), 2),
        "drops_after_question_s": [round(s.ended_at - asked, 2) for s in drops if s.ended_at is not None],
        "heard": [f"{start - asked:6.2f}-{stop - asked:6.2f} «{text}»" for start, stop, text in words],
    }
    if question.answer:
        row["answer"] = question.answer
    return row


def sessions_of(ledger: ModelLedger, router: str) -> list[SessionLog]:
    """The sessions whose model called a tool for ``router`` (one call per router and design)."""
    return [s for s in ledger.sessions
            if any(json.loads(c.arguments or "{}").get("router") == router for c in s.calls.values())]


async def start_process(command: list[str], log_path: Path, port: int, env: dict[str, str]) -> trio.Process:
    with log_path.open("wb") as log_file:
        process = await trio.lowlevel.open_process(command, stdout=log_file, stderr=log_file, env=env, cwd=ROOT)
    try:
        await wait_listening(process, log_path, port)
    except (RuntimeError, trio.TooSlowError) as exc:
        tail = (await trio.Path(log_path).read_text(encoding="utf-8", errors="replace")).splitlines()[-20:]
        with trio.CancelScope(shield=True):
            await stop_service(process)
        raise StartError(f"{' '.join(command)} did not start ({exc}):\n" + "\n".join(tail)) from None
    return process


async def new_service_config(path: Path, port: int, model_port: int, routers: list[RouterConfig], query_timeout_s: float,
                             progress_silence_s: float | None, env: dict[str, str]) -> None:
    query = ["[query]", f"timeout_s = {query_timeout_s:g}", f"router_timeout_s = {query_timeout_s:g}"]
    if progress_silence_s is not None:
        query.append(f"progress_silence_s = {progress_silence_s:g}")
    optional = {"auth": ["[auth]", 'require = "open"', ""], "query": [*query, ""]}
    await trio.Path(path).write_text(config_text(port, model_port, routers, optional), encoding="utf-8")
    check = await trio.run_process([sys.executable, "-c", _CHECK, str(path)], env=env, cwd=ROOT, check=False,
                                   capture_stdout=True, capture_stderr=True)
    if check.returncode != 0:
        raise StartError(f"the service's loader refuses {path}: {(check.stdout or check.stderr).decode().strip()}")


async def one_call(design: str, port: int, query_s: float, router: str, patience_s: float, seed: int,
                   outcomes: list[Outcome]) -> None:
    ask = Ask("devices", (router,))
    script = CallerScript((Question(ask.text(), ask.expect().pattern, query_s + patience_s, after_s=0.5),),
                          silence="noise", greeting_timeout_s=GREETING_S)
    caller = AsteriskCaller(script, call_id=uuid.UUID(int=seed, version=4), seed=seed)
    with trio.move_on_after(GREETING_S + query_s + patience_s + 30):
        await caller.call("127.0.0.1", port)
    outcomes.append(Outcome(design, query_s, router, caller.report))


async def run(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    queries: list[float] = args.queries
    fleet = make_fleet(FleetProfile(count=len(queries), seed=7, slow=0), password=ROUTER_PASSWORD)
    for router, query_s in zip(fleet, queries, strict=True):
        router.latency_s = query_s
    model_config = SimModelConfig(ping_interval_s=args.ping_interval_s, pong_timeout_s=args.pong_timeout_s)
    ledgers = {design: ModelLedger() for design in DESIGNS}
    outcomes: list[Outcome] = []
    env = dict(os.environ, OPENAI_API_KEY="sk-bench", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               **{PASSWORD_ENV: ROUTER_PASSWORD})
    query_timeout_s = max(queries) + 30
    async with trio.open_nursery() as world:
        routers = await world.start(serve_fleet, fleet)
        models = {d: await world.start(serve_model, "127.0.0.1", 0, model_config, ledgers[d]) for d in DESIGNS}
        ports = {d: free_port() for d in DESIGNS}
        config = log_dir / "dead_air.toml"
        await new_service_config(config, ports["new"], models["new"].port, routers, query_timeout_s,
                                 args.progress_silence_s, env)
        routers_file = log_dir / "routers.json"
        routers_file.write_text(json.dumps({r.name: {"host": r.host, "port": r.port} for r in routers}), encoding="utf-8")
        commands = {
            "new": [sys.executable, "-m", "mikrovoice", "serve", "--config", str(config)],
            "baseline": [sys.executable, str(BASELINE), "--listen", f"127.0.0.1:{ports['baseline']}",
                         "--model-url", f"ws://127.0.0.1:{models['baseline'].port}/v1/realtime",
                         "--routers", str(routers_file), "--router-user", routers[0].username,
                         "--router-password-env", PASSWORD_ENV, "--router-timeout-s", f"{query_timeout_s:g}"],
        }
        processes: dict[str, trio.Process] = {}
        exits: dict[str, Any] = {}
        try:
            for design in DESIGNS:
                processes[design] = await start_process(commands[design], log_dir / f"{design}.log", ports[design], env)
            print(f"new design pid {processes['new'].pid}, baseline pid {processes['baseline'].pid}; "
                  f"{len(queries) * 2} calls, queries {', '.join(f'{q:g} s' for q in queries)}; logs in {log_dir}",
                  flush=True)
            async with trio.open_nursery() as calls:
                for design in DESIGNS:
                    for index, (router, query_s) in enumerate(zip(routers, queries, strict=True)):
                        calls.start_soon(one_call, design, ports[design], query_s, router.name, args.patience_s,
                                         1000 * (DESIGNS.index(design) + 1) + index, outcomes)
        finally:
            with trio.CancelScope(shield=True):
                for design, process in processes.items():
                    status, seconds, killed = await stop_service(process)
                    exits[design] = {"status": status, "seconds": seconds, "killed": killed}
        world.cancel_scope.cancel()
    rows = sorted((analyse(o, o.query_s + args.patience_s, sessions_of(ledgers[o.design], o.router)) for o in outcomes),
                  key=lambda r: (DESIGNS.index(r["design"]), r["query_s"]))
    result: dict[str, Any] = {"benchmark": "dead_air", "queries_s": queries, "patience_s": args.patience_s,
                              "progress_silence_s": args.progress_silence_s,
                              "ping_interval_s": args.ping_interval_s, "pong_timeout_s": args.pong_timeout_s,
                              "query_timeout_s": query_timeout_s}
    for design in DESIGNS:
        mine = [r for r in rows if r["design"] == design]
        prefix = "" if design == "new" else "baseline_"
        every = ledgers[design].sessions
        result |= {
            f"{prefix}max_dead_air_s": max((r.get("max_dead_air_s", 0.0) for r in mine), default=None),
            f"{prefix}progress_interval_max_s": max((r.get("progress_interval_max_s", 0.0) for r in mine), default=None),
            f"{prefix}model_link_drops": sum(1 for s in every if s.end_reason not in CLIENT_ENDS),
            f"{prefix}answered": sum(1 for r in mine if r.get("answered")),
            f"{prefix}questions": len(mine),
            f"{prefix}drop_reasons": sorted({str(s.end_reason) for s in every if s.end_reason not in CLIENT_ENDS}),
        }
    result |= {
        "calls": rows,
        "new_service_log": {k: v for k, v in read_service_log(log_dir / "new.log").items() if k != "ended"},
        "service_source": source_state(ROOT),
        "process_exits": exits, "log_dir": str(log_dir),
        "model_simulator_crashes": [c for d in DESIGNS for c in ledgers[d].all_crashes()],
        "machine": machine_info(), "git": git_state(),
    }
    return result


def table(result: dict[str, Any]) -> str:
    header = ("design", "query s", "answered", "answer s", "dead air s", "1st words s", "1st progress s", "updates",
              "max w/o words s", "link drops")
    lines = []
    for r in result["calls"]:
        def show(key: str, r: dict[str, Any] = r) -> str:
            value = r.get(key)
            return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
        drops = show("model_link_drops")
        if r.get("drops_after_question_s"):
            reasons = ", ".join(str(s["end_reason"]) for s in r["model_sessions"] if s["end_reason"] not in CLIENT_ENDS)
            drops += f" ({reasons} {', '.join(f'{t:g}' for t in r['drops_after_question_s'])} s in)"
        lines.append((r["design"], show("query_s"), "yes" if r.get("answered") else "no", show("answer_after_s"),
                      show("max_dead_air_s"), show("first_words_s"), show("first_progress_s"), show("progress_updates"),
                      show("progress_interval_max_s"), drops))
    widths = [max(len(x[i]) for x in [header, *lines]) for i in range(len(header))]
    out = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)) for x in lines]
    out.append("")
    for prefix, name in (("", "new design"), ("baseline_", "old blocking design")):
        out.append(f"{name}: max dead air {result[f'{prefix}max_dead_air_s']} s, longest without words "
                   f"{result[f'{prefix}progress_interval_max_s']} s, model link drops {result[f'{prefix}model_link_drops']} "
                   f"{result[f'{prefix}drop_reasons'] or ''}, answered {result[f'{prefix}answered']} of "
                   f"{result[f'{prefix}questions']}")
    return "\n".join(out)


def seconds_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds separated by commas, e.g. 30,60; got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive seconds, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=seconds_list, default=[30.0, 60.0],
                        help="each query's seconds; one call per query and design, all at once (default 30,60)")
    parser.add_argument("--patience-s", type=float, default=15.0,
                        help="a caller waits for the answer this long beyond its query (default 15: a progress "
                             "update still being spoken when the result comes, then the answer itself)")
    parser.add_argument("--progress-silence-s", type=float,
                        help="the service's [query] progress_silence_s (default: the service's own, 6 s); "
                             "the smoke test shortens it to hear an update during a short query")
    parser.add_argument("--ping-interval-s", type=float, default=SimModelConfig.ping_interval_s,
                        help="the model simulator's ping period (default: the simulator's, 5)")
    parser.add_argument("--pong-timeout-s", type=float, default=SimModelConfig.pong_timeout_s,
                        help="... and how long it waits for the pong before closing (default: the simulator's, 20)")
    parser.add_argument("--json", default=str(RESULTS / "dead_air.json"), help="where to write the result")
    parser.add_argument("--log-dir", help="the services' logs and config (default: a new /tmp directory)")
    args = parser.parse_args(argv)
    if args.patience_s <= 0 or args.ping_interval_s <= 0 or args.pong_timeout_s <= 0 or (args.progress_silence_s or 1) <= 0:
        parser.error("--patience-s, --ping-interval-s and --pong-timeout-s must be positive")
    result = run_and_write("dead_air", run, args, world_log(args.log_dir, "mikrovoice-dead-air-"), table, args.json)
    if result is None:
        return 2
    new = [r for r in result["calls"] if r["design"] == "new"]
    return 0 if new and all(r.get("answered") for r in new) and result["model_link_drops"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
