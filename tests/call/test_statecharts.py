"""statecharts/ is exported from the code: this fails when they drift (fix: `mikrovoice diagram`)."""

from pathlib import Path

from mikrovoice.call.diagram import mermaid
from mikrovoice.call.machine import CONVERSATION_STATES, EVENTS, LINK_STATES

ROOT = Path(__file__).resolve().parents[2]


def test_committed_mermaid_matches_the_code() -> None:
    committed = (ROOT / "statecharts" / "call.mmd").read_text(encoding="utf-8")
    assert committed == mermaid(), "statecharts/call.mmd is stale: run `mikrovoice diagram` and commit it"


def _lines() -> list[str]:
    return [line.strip() for line in mermaid().split("\n")]


def test_mermaid_export_is_deterministic() -> None:
    assert mermaid() == mermaid()


def test_the_call_is_two_parallel_regions() -> None:
    lines = _lines()
    opening = ['state "Call" as call {', 'state "Conversation" as conversation {']
    assert lines[lines.index(opening[0]) + 1] == opening[1]
    conversation, separator = lines.index(opening[1]), lines.index("--")
    link = lines.index('state "Link" as link {')
    assert conversation < separator < link  # "--" separates the regions of a parallel state
    assert lines[conversation + 1] == "[*] --> greeting" and lines[link + 1] == "[*] --> connecting"
    for state in CONVERSATION_STATES:  # each region's states are drawn inside it
        assert any(line.startswith(f"{state} ") for line in lines[conversation:separator]), state
    for state in LINK_STATES:
        assert any(line.startswith(f"{state} ") for line in lines[link:]), state
        assert not any(line.startswith(f"{state} ") for line in lines[conversation:separator]), state
    assert "[*] --> authorising" in lines and "authorising --> call : Start [admitted]" in lines
    assert "ended --> [*]" in lines


def test_transitions_and_their_guards_are_drawn() -> None:
    lines = _lines()
    for transition in (
        "connecting --> up : Link up",
        "reconnecting --> up : Link up",
        "recycling --> up : Link up",
        "up --> reconnecting : Link down [may_reconnect]",
        "up --> recycling : Recycle due [quiet_moment]",
        "querying --> reporting : Query finished",
        "announcing --> reporting : Link up [result_ready]",
        "announcing --> querying : Link up",
        "querying --> listening : Tool called [cancels_query]",
        "listening --> announcing : Tool called [starts_query]",
        # Leaving the parallel state: one edge each, from `call` itself, not one per state.
        "call --> farewell : Link down [!may_reconnect]",
        "call --> farewell : Link failed",
        "call --> ended : Hangup",
        "call --> ended : Abort",
        "farewell --> ended : Farewell done",
        "farewell --> ended : Hangup",
    ):
        assert transition in lines, transition
    assert not any(line.startswith(("greeting --> ended", "querying --> farewell")) for line in lines)


def test_targetless_transitions_are_written_as_actions_not_self_loops() -> None:
    lines = _lines()
    for action in (
        "querying : progress_due [link_is_up] / speak_progress",
        "greeting : link_up / greet",
        "reporting : link_up / ask_report",
        "announcing : tool_called / refuse_busy",
        "listening : tool_called / refuse_invalid",
        "reconnecting : link_down [may_reconnect] / reconnect",
    ):
        assert action in lines, action
    assert not any(" --> " in line and line.split(" --> ")[0] == line.split(" --> ")[1].split(" : ")[0]
                   for line in lines if " --> " in line), "a self-loop is drawn"


def test_the_ignored_events_are_listed() -> None:
    lines = _lines()
    assert "%% querying ignores: link_up, greeting_done, turn_done, progress_done, recycle_due" in lines
    assert "%% connecting ignores: recycle_due" in lines
    assert f"%% ended ignores: {', '.join(EVENTS)}" in lines
