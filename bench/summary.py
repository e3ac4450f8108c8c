"""The figures of issue 10 in one table: every benchmark's result of the latest run, beside its target.

Reads ``bench/results/*.json`` (``--results DIR``): the keys each benchmark writes at the top level
of its JSON (``FIGURES`` says which file gives which figure), and writes
``bench/results/summary.json``: per figure its value, unit, source file (and when it was written),
the target where the issue gives one and the verdict (``met``, ``not met``, ``no target``, or
``missing`` when no result holds it: a missing figure is never read as 0), and the machine (CPU
model, cores, RAM, kernel, Python) and the git commit of this tree. A source written more than
``--stale-min`` minutes before the newest one is from an older run: it is used, and flagged.

    .venv/bin/python bench/summary.py              # the table
    .venv/bin/python bench/summary.py --markdown   # the same as a markdown table (docs/performance.md)

Exit status 0 when every figure was found in a result of the latest run, 1 otherwise (the
verdicts do not change it: ``make bench`` measures, the table judges). Other benchmarks import
``machine_info`` and ``git_state`` from here so that every result records the same facts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, kernel and Python of this machine (Linux /proc)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib: float | None = None
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024**2, 1)
                break
    except (OSError, ValueError):
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    return {"cpu": cpu, "cores": os.cpu_count(), "cores_usable": usable, "ram_gib": ram_gib,
            "kernel": platform.release(), "python": platform.python_version(), "platform": platform.platform()}


def git_state(root: Path = ROOT) -> dict[str, Any]:
    """HEAD and whether tracked files differ from it (read-only git commands); {} outside a work tree."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return {}
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                 capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": head.stdout.strip(), "tracked_files_changed": len(changed.stdout.splitlines())}


@dataclass(frozen=True)
class Figure:
    key: str
    source: str  # the result file (in --results) whose top-level key it is
    unit: str
    meaning: str
    target: str | None = None  # as the issue says it; None: the issue gives none
    #: the verdict from the value (and the whole source JSON, for a baseline beside it)
    met: Callable[[Any, dict[str, Any]], bool] | None = None


def _below_baseline(key: str) -> Callable[[Any, dict[str, Any]], bool]:
    def met(value: Any, source: dict[str, Any]) -> bool:
        baseline = source.get(f"baseline_{key}")
        return isinstance(baseline, (int, float)) and value < baseline
    return met


def _each(test: Callable[[float], bool]) -> Callable[[Any, dict[str, Any]], bool]:
    """For a figure given per size ({"20": x, "200": y}): every size meets it."""
    def met(value: Any, _source: dict[str, Any]) -> bool:
        values = list(value.values()) if isinstance(value, dict) else [value]
        return bool(values) and all(isinstance(v, (int, float)) and test(v) for v in values)
    return met


FIGURES: tuple[Figure, ...] = (
    Figure("fanout_vs_slowest", "fleet.json", "x",
           "one question to every router: fan-out wall time / the slowest router's time alone (worst of 20 and 200 routers)",
           "<= 1.05 (issue: 1.002x, keep it)", _each(lambda v: v <= 1.05)),
    Figure("fanout_speedup_vs_sequential", "fleet.json", "x",
           "the same question, routers one at a time (measured) / fan-out, for 20 and 200 routers",
           ">= 12.8 (issue: 12.8x, keep it)", _each(lambda v: v >= 12.8)),
    Figure("max_dead_air_s", "dead_air.json", "s",
           "longest silence the caller heard while waiting for a 30 s and a 60 s query (caller-measured)",
           "below the old blocking design's, same run", _below_baseline("max_dead_air_s")),
    Figure("progress_interval_max_s", "dead_air.json", "s",
           "longest the caller waited without a word from the assistant, question to answer",
           "below the old blocking design's, same run", _below_baseline("progress_interval_max_s")),
    Figure("model_link_drops", "dead_air.json", "",
           "model WebSocket sessions the simulator closed during those calls (the old design: ping timeout)",
           "0 (the old design drops the link)", lambda v, _s: v == 0),
    Figure("calls_per_core", "calls.json", "calls",
           "concurrent calls one core carries with p99 frame lateness <= 5 ms",
           ">= 300", lambda v, _s: v >= 300),
    Figure("frame_lateness_p99_ms", "calls.json", "ms",
           "outbound 20 ms frames: how late behind the playout clock, p99, at 300 calls on one core",
           "<= 5", lambda v, _s: v <= 5),
    Figure("added_latency_in_p99_ms", "calls.json", "ms",
           "caller frame in -> input_audio_buffer.append out, p99, the waits for the tick and the 100 ms chunk "
           "excluded, at calls_per_core calls (at 1 call: calls.json added_latency_at_1_call)",
           "<= 1", lambda v, _s: v <= 1),
    Figure("added_latency_out_p99_ms", "calls.json", "ms",
           "model audio delta in -> first frame out, p99, the wait for the next 20 ms tick excluded, "
           "at calls_per_core calls",
           "<= 1", lambda v, _s: v <= 1),
    Figure("teardown_p99_ms", "teardown.json", "ms",
           "caller hangs up -> the call's AudioSocket and model WebSocket both closed, p99 "
           "(before issue 10, this harness and machine: 21.4 ms, results/teardown-5c89291.json)",
           "<= 8.6 (issue: 8.6 ms, keep it)", lambda v, _s: v <= 8.6),
    Figure("simulation_speedup", "simulation_speed.json", "x",
           "simulated call seconds per wall second, one core", ">= 200", lambda v, _s: v >= 200),
    Figure("memory_per_call_mib", "calls.json", "MiB", "the service's RSS per concurrent call"),
)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def summarize(results: Path, stale_min: float) -> dict[str, Any]:
    sources = {f.source for f in FIGURES}
    loaded = {name: _read(results / name) for name in sorted(sources)}
    written = {name: (results / name).stat().st_mtime for name, data in loaded.items() if data is not None}
    newest = max(written.values(), default=0.0)
    figures: dict[str, Any] = {}
    for figure in FIGURES:
        data = loaded.get(figure.source)
        entry: dict[str, Any] = {"unit": figure.unit, "meaning": figure.meaning, "source": figure.source,
                                 "target": figure.target}
        value = None if data is None else data.get(figure.key)
        if value is None:
            entry |= {"value": None, "verdict": "missing",
                      "why": f"{figure.source} not found or unreadable" if data is None
                      else f"{figure.source} has no {figure.key!r}"}
        else:
            entry["value"] = value
            baseline = data.get(f"baseline_{figure.key}") if data is not None else None
            if baseline is not None:
                entry["baseline"] = baseline
            if figure.met is None:
                entry["verdict"] = "no target"
            else:
                try:
                    entry["verdict"] = "met" if figure.met(value, data or {}) else "not met"
                except TypeError:
                    entry["verdict"] = "not met"
                    entry["why"] = f"not a number: {value!r}"
            age_min = (newest - written[figure.source]) / 60
            entry["written"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(written[figure.source]))
            if age_min > stale_min:
                entry["stale"] = f"written {age_min:.0f} min before the newest result: an older run"
        figures[figure.key] = entry
    incomplete = [k for k, v in figures.items() if v["verdict"] == "missing" or "stale" in v]
    return {"benchmark": "summary", "written": time.strftime("%Y-%m-%d %H:%M:%S"), "git": git_state(),
            "machine": machine_info(), "figures": figures, "incomplete": incomplete,
            "source_machines": {name: data.get("machine") for name, data in loaded.items() if data is not None}}


def _show(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_show(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    out = []
    for key, f in summary["figures"].items():
        value = _show(f["value"]) + (f" {f['unit']}" if f["value"] is not None and f["unit"] else "")
        if "baseline" in f:
            value += f" (old design: {_show(f['baseline'])})"
        verdict = f["verdict"] + (" (stale)" if "stale" in f else "")
        out.append((key, value, f["target"] or "-", verdict, f["source"]))
    return out


def machine_line(summary: dict[str, Any]) -> str:
    m, g = summary["machine"], summary["git"]
    commit = g.get("commit", "unknown")[:12] + (f" + {g['tracked_files_changed']} changed files"
                                                 if g.get("tracked_files_changed") else "")
    return (f"{m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), {m['ram_gib']} GiB RAM, "
            f"Linux {m['kernel']}, Python {m['python']}; commit {commit}; {summary['written']}")


def table(summary: dict[str, Any]) -> str:
    header = ("figure", "value", "target", "verdict", "from")
    body = rows(summary)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines + ["", machine_line(summary)])


def markdown(summary: dict[str, Any]) -> str:
    lines = ["| figure | value | target | verdict |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {v} | {t} | {verdict} |" for k, v, t, verdict, _ in rows(summary)]
    return "\n".join(lines + ["", f"Machine: {machine_line(summary)}."])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default=str(RESULTS), help="the benchmarks' JSON files (default bench/results)")
    parser.add_argument("--json", help="where to write the summary (default: summary.json in --results)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table instead")
    parser.add_argument("--stale-min", type=float, default=30.0,
                        help="a result written this long before the newest is from an older run (default 30)")
    args = parser.parse_args(argv)
    results = Path(args.results)
    summary = summarize(results, args.stale_min)
    out = Path(args.json) if args.json else results / "summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(markdown(summary) if args.markdown else table(summary))
    if summary["incomplete"]:
        print(f"\nmissing or stale: {', '.join(summary['incomplete'])}", file=sys.stderr)
    return 1 if summary["incomplete"] else 0


if __name__ == "__main__":
    sys.exit(main())
