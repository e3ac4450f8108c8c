"""bench/summary.py: every figure beside its target, missing inputs reported as missing (never 0), old ones flagged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

RESULTS: dict[str, dict[str, Any]] = {
    "fleet.json": {"fanout_vs_slowest": 1.01, "fanout_speedup_vs_sequential": {"20": 14.2, "200": 9.5}},
    "dead_air.json": {"max_dead_air_s": 0.9, "baseline_max_dead_air_s": 71.6, "progress_interval_max_s": 5.4,
                      "baseline_progress_interval_max_s": 71.6, "model_link_drops": 0, "baseline_model_link_drops": 2},
    "teardown.json": {"teardown_p99_ms": 12.5},
    "simulation_speed.json": {"simulation_speedup": 250.0},
}


def summarize(results: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = results / "summary.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "summary.py"), "--results", str(results), *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=30)
    return run, json.loads(out.read_text(encoding="utf-8"))


def test_verdicts_and_a_missing_result(tmp_path: Path) -> None:
    for name, data in RESULTS.items():
        (tmp_path / name).write_text(json.dumps(data), encoding="utf-8")
    run, summary = summarize(tmp_path)
    assert run.returncode == 1  # calls.json is missing
    figures = summary["figures"]
    assert figures["fanout_vs_slowest"]["verdict"] == "met"
    assert figures["fanout_speedup_vs_sequential"]["verdict"] == "not met"  # 9.5x at 200 routers
    assert figures["max_dead_air_s"]["verdict"] == "met" and figures["max_dead_air_s"]["baseline"] == 71.6
    assert figures["model_link_drops"]["verdict"] == "met" and figures["model_link_drops"]["value"] == 0
    assert figures["teardown_p99_ms"]["verdict"] == "not met"
    assert figures["simulation_speedup"]["verdict"] == "met"
    for key in ("calls_per_core", "frame_lateness_p99_ms", "added_latency_in_p99_ms", "added_latency_out_p99_ms",
                "memory_per_call_mib"):
        assert figures[key]["value"] is None and figures[key]["verdict"] == "missing", key
    assert set(summary["incomplete"]) == {"calls_per_core", "frame_lateness_p99_ms", "added_latency_in_p99_ms",
                                          "added_latency_out_p99_ms", "memory_per_call_mib"}
    assert summary["machine"]["cores"] >= 1 and summary["machine"]["cpu"] and summary["machine"]["kernel"]
    assert "missing" in run.stdout and "calls_per_core" in run.stdout


def test_complete_results_an_old_one_flagged_and_markdown(tmp_path: Path) -> None:
    calls = {"calls_per_core": 320, "frame_lateness_p99_ms": 4.1, "added_latency_in_p99_ms": 0.4,
             "added_latency_out_p99_ms": 1.3, "memory_per_call_mib": 0.6}
    for name, data in {**RESULTS, "calls.json": calls}.items():
        (tmp_path / name).write_text(json.dumps(data), encoding="utf-8")
    old = time.time() - 3 * 3600
    os.utime(tmp_path / "teardown.json", (old, old))
    run, summary = summarize(tmp_path, "--markdown")
    assert run.returncode == 1 and summary["incomplete"] == ["teardown_p99_ms"]  # from an older run
    figures = summary["figures"]
    assert "stale" in figures["teardown_p99_ms"] and figures["teardown_p99_ms"]["value"] == 12.5
    assert figures["calls_per_core"]["verdict"] == "met" and figures["added_latency_out_p99_ms"]["verdict"] == "not met"
    assert figures["memory_per_call_mib"]["verdict"] == "no target"
    lines = run.stdout.splitlines()
    assert lines[0] == "| figure | value | target | verdict |"
    assert sum(1 for line in lines if line.startswith("| `")) == 12
    assert any(line.startswith("| `teardown_p99_ms` | 12.5 ms |") and "(stale)" in line for line in lines)
