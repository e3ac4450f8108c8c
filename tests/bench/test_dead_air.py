"""bench/dead_air.py measures what it says: a 1 s and a 5 s query, the new design beside the old blocking one.

The real run (30 s and 60 s queries against the simulator's 5 s ping / 20 s pong timeout) takes
about 90 s; this one shortens everything so that the same outcomes show in about 25 s: a ping
every 0.5 s unanswered for 2 s closes the link, so the old design's 5 s block drops it while its
1 s block does not, and the service speaks an update after 2 s of quiet instead of 6 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def test_dead_air_new_design_keeps_the_link_and_the_blocking_baseline_drops_it(tmp_path: Path) -> None:
    out = tmp_path / "dead_air.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "dead_air.py"), "--queries", "1,5", "--ping-interval-s", "0.5",
         "--pong-timeout-s", "2", "--patience-s", "10", "--progress-silence-s", "2", "--json", str(out),
         "--log-dir", str(tmp_path / "logs")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    calls: dict[tuple[str, float], dict[str, Any]] = {(c["design"], c["query_s"]): c for c in result["calls"]}
    assert set(calls) == {("new", 1.0), ("new", 5.0), ("baseline", 1.0), ("baseline", 5.0)}

    # The new design: both answered, the link kept, comfort audio instead of dead air, an update spoken.
    assert result["model_link_drops"] == 0 and result["answered"] == 2
    assert result["max_dead_air_s"] < 2.0
    slow = calls[("new", 5.0)]
    assert slow["progress_updates"] >= 1 and slow["first_progress_s"] is not None
    assert slow["first_words_s"] < slow["first_progress_s"] < slow["answer_after_s"]
    assert result["progress_interval_max_s"] < slow["answer_after_s"]

    # The old design is a working bridge (the 1 s query is answered) that drops the link when it
    # blocks longer than the server's keepalive: the caller then hears nothing until it gives up.
    assert calls[("baseline", 1.0)]["answered"] and calls[("baseline", 1.0)]["model_link_drops"] == 0
    blocked = calls[("baseline", 5.0)]
    assert not blocked["answered"] and blocked["model_link_drops"] == 1
    assert [s["end_reason"] for s in blocked["model_sessions"]] == ["ping_timeout"]
    assert blocked["progress_updates"] == 0
    assert result["baseline_model_link_drops"] == 1 and result["baseline_drop_reasons"] == ["ping_timeout"]
    assert result["baseline_max_dead_air_s"] >= 5.0 > result["max_dead_air_s"]
    assert result["baseline_progress_interval_max_s"] > result["progress_interval_max_s"]
    assert "old blocking design" in run.stdout
