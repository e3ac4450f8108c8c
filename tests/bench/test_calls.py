"""The concurrent-calls benchmark works: three calls over ws:// and three over wss://, a few seconds each.

The real sweep (1 to 400 calls, ``bench/calls.py``) is not part of CI; this runs the same command
on a tiny configuration and checks that every figure it reports was really measured: the service's
CPU and memory read from /proc, every call receiving about 50 frames a second, every caller
connected and greeted, no call dropped. A row can also be invalid because the machine is busy
(the load core saturated, the callers' send slots or the model simulator late, the service
restarting its playout): those verdicts are about the machine, not the benchmark, and are not
asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Problems that a busy machine causes by itself (see the module docstring).
MACHINE_LOAD = ("load core at", "callers' send slots late", "model simulator starved", "late-frame restarts")


def test_calls_command_runs_three_calls_over_ws_and_wss(tmp_path: Path) -> None:
    out = tmp_path / "calls.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "calls.py"), "--calls", "3", "--tls-calls", "3", "--stagger-s", "0.5",
         "--warmup-s", "1.5", "--window-s", "3", "--json", str(out), "--log-dir", str(tmp_path / "logs")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "target met" in run.stdout or "target NOT MET" in run.stdout
    document = json.loads(out.read_text(encoding="utf-8"))
    assert [(r["transport"], r["calls"]) for r in document["rows"]] == [("ws", 3), ("wss", 3)]
    assert document["machine"]["cpus"] >= 1 and document["machine"]["python"]
    for key in ("calls_per_core", "frame_lateness_p99_ms", "memory_per_call_mib", "added_latency_in_p99_ms",
                "added_latency_out_p99_ms"):
        assert key in document
    for row in document["rows"]:
        broken = [p for p in row["problems"] if not p.startswith(MACHINE_LOAD)]
        assert not broken, (row["transport"], broken)
        caller = row["caller"]
        assert caller["connected"] == 3 and caller["no_greeting"] == 0 and caller["dropped"] == 0
        assert caller["through_window"] == 3
        fps = caller["frames_per_s"]
        assert 45.0 <= fps["min"] <= fps["max"] <= 51.0, fps
        assert caller["gap_ms"]["n"] >= 3 * 40 and 15.0 <= caller["gap_ms"]["p50"] <= 25.0, caller["gap_ms"]
        assert caller["questions_asked"] >= 3
        assert row["service_cpu_pct"] > 0.0
        assert row["rss_idle_mib"] > 10.0 and row["rss_steady_mib"] > 10.0
        assert row["drain_s"] is not None
        assert row["service_exit"]["status"] is not None and not row["service_exit"]["killed"]
        assert row["service_log"]["tracebacks"] == 0
