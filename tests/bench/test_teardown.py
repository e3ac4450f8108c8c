"""bench/teardown.py measures hang-up -> every socket of the call closed, on three calls."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_teardown_measures_both_sockets_of_every_call(tmp_path: Path) -> None:
    out = tmp_path / "teardown.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "teardown.py"), "--calls", "3", "--concurrent", "3", "--min-s", "1",
         "--max-s", "4", "--json", str(out), "--log-dir", str(tmp_path / "logs")],
        cwd=ROOT, capture_output=True, text=True, timeout=90,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["measured"] == 3 and result["not_closed_within_bound"] == 0 and result["service_ended_first"] == 0
    assert result["model_sessions"] == 3 and result["model_end_reasons"] == {"client_closed": 3}
    for row in result["rows"]:
        assert 0 < row["audiosocket_close_ms"] < 10_000 and 0 < row["model_close_ms"] < 10_000
        assert row["teardown_ms"] == max(row["audiosocket_close_ms"], row["model_close_ms"])
        assert 1.0 <= row["hangup_at_s"] <= 4.0
    assert result["teardown_p99_ms"] == max(r["teardown_ms"] for r in result["rows"])  # 3 calls: p99 is the max
    assert result["machine"]["cores"] and "every socket (teardown)" in run.stdout
