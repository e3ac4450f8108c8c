"""statecharts/ is exported from the code: this fails when they drift (fix: `mikrovoice diagram`)."""

from pathlib import Path

from mikrovoice.call.diagram import mermaid

ROOT = Path(__file__).resolve().parents[2]


def test_committed_mermaid_matches_the_code() -> None:
    committed = (ROOT / "statecharts" / "call.mmd").read_text(encoding="utf-8")
    assert committed == mermaid(), "statecharts/call.mmd is stale: run `mikrovoice diagram` and commit it"


def test_mermaid_export_is_deterministic_and_complete() -> None:
    text = mermaid()
    assert text == mermaid()
    for state in ("greeting", "listening", "announcing", "querying", "reporting", "ended"):
        assert "[*] --> greeting" in text and state in text
    assert "querying --> reporting : Query finished" in text
    assert "%% querying ignores: turn_done, progress_done" in text
