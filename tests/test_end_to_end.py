"""Whole calls over real loopback sockets on Trio's virtual clock: the seed's call and its failure modes.

Every test runs the real service between the three simulators (``mikrovoice.demo.run_demo``);
a minute-long call takes well under a second of real time and its timings are exact.
"""

import logging
from dataclasses import replace

import pytest
import trio
import trio.testing

from mikrovoice.config import Settings
from mikrovoice.demo import DEMO_FLEET, SEED_QUESTIONS, run_demo
from mikrovoice.logs import CallIdFilter
from mikrovoice.service import ServiceStats, serve_calls, start_simulated_peers
from mikrovoice.sim.asterisk import AsteriskCaller, CallerScript, Question
from mikrovoice.telephony.audiosocket import Audio, encode

SEED_STATES = ["authorising", "greeting", "listening", "announcing", "querying", "reporting", "listening",
               "announcing", "querying", "reporting", "listening", "ended"]


async def test_the_seed_call(autojump_clock: trio.testing.MockClock) -> None:
    summary = await run_demo()
    assert summary["answered"] == summary["questions"] == 2
    assert summary["model_link_drops"] == 0 and summary["caller_error"] is None
    assert summary["states"] == SEED_STATES
    # The slowest router answers monitor-traffic after exactly 24 s, plus two 50 ms round trips.
    assert summary["longest_query_s"] == 24.1
    assert summary["progress_updates"] >= 2
    assert summary["max_dead_air_s"] < 10.0
    assert summary["max_frame_gap_s"] == pytest.approx(0.02, abs=0.001)  # paced, no bursts, no gaps
    assert "tiene" in summary["answers"][0] and "Respondieron 12 de 12 routers" in summary["answers"][1]


async def test_a_60_second_query_keeps_the_link_and_the_caller(autojump_clock: trio.testing.MockClock) -> None:
    fleet = replace(DEMO_FLEET, slow=3, slow_s=(40.0, 60.0))
    settings = Settings(router_timeout_s=75.0, query_timeout_s=90.0)
    summary = await run_demo(settings, fleet=fleet, questions=[SEED_QUESTIONS[1]])
    assert summary["answered"] == 1 and summary["model_link_drops"] == 0
    assert summary["longest_query_s"] == 60.1
    assert summary["progress_updates"] >= 6  # an update after every 6 s of quiet line
    assert summary["max_dead_air_s"] < 10.0


async def test_the_query_deadline_reports_what_arrived(autojump_clock: trio.testing.MockClock) -> None:
    stats = ServiceStats()
    summary = await run_demo(Settings(query_timeout_s=10.0), questions=[SEED_QUESTIONS[1]], stats=stats)
    query = stats.calls[0].queries[0]
    assert query.timed_out and query.duration_s == pytest.approx(10.0)
    assert query.answered == 9  # the 3 slow routers were cut off
    assert summary["answered"] == 1 and "No respondieron" in summary["answers"][0]


async def test_an_unknown_router_is_explained_to_the_caller(autojump_clock: trio.testing.MockClock) -> None:
    question = Question("Dame los dispositivos activos del router 999 punto 9", r"no conozco el router", 60)
    summary = await run_demo(questions=[question])
    assert summary["answered"] == 1 and summary["states"][:4] == ["authorising", "greeting", "listening", "ended"]


async def test_hangup_during_the_query_cancels_it_at_once(autojump_clock: trio.testing.MockClock) -> None:
    stats = ServiceStats()
    async with trio.open_nursery() as nursery:
        settings = await start_simulated_peers(nursery, replace(Settings(), listen=("127.0.0.1", 0)), DEMO_FLEET)
        port = await nursery.start(serve_calls, settings, stats)
        caller = AsteriskCaller(CallerScript((Question(SEED_QUESTIONS[1].text, r"^never$", timeout_s=8.0),), hangup_after_s=0))
        report = await caller.call("127.0.0.1", port)
        hung_up_at = trio.current_time()
        with trio.fail_after(2):
            await stats.calls[0].finished.wait()
        nursery.cancel_scope.cancel()
    call = stats.calls[0]
    assert not report.questions[0].answered
    assert call.end_reason == "caller hung up" and call.states[-2:] == ["querying", "ended"]
    assert call.ended_at - hung_up_at < 0.1  # not 24 s later, when the slowest router would answer
    query = call.queries[0]
    assert query.cancelled and not query.timed_out and query.answered == 9  # the 3 slow routers never answered
    assert query.ended_at is not None and query.ended_at - hung_up_at < 0.1 and call.model_link_drop is None
    assert sorted(r.outcome for r in query.per_router) == ["cancelled"] * 3 + ["ok"] * 9


async def test_bad_audiosocket_input_ends_only_that_call(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    stats = ServiceStats()
    async with trio.open_nursery() as nursery:
        settings = await start_simulated_peers(nursery, replace(Settings(), listen=("127.0.0.1", 0)), DEMO_FLEET)
        port = await nursery.start(serve_calls, settings, stats)
        bad = await trio.open_tcp_stream("127.0.0.1", port)
        await bad.send_all(encode(Audio(bytes(320))))  # audio before the UUID
        assert await bad.receive_some(100) == b""  # the service closed that connection
        report = await AsteriskCaller(CallerScript((SEED_QUESTIONS[0],))).call("127.0.0.1", port)
        nursery.cancel_scope.cancel()
    assert report.questions[0].answered
    assert any("first AudioSocket message must be the UUID" in r.getMessage() for r in caplog.records)


async def test_logs_carry_the_call_id_and_no_secrets(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mikrovoice")
    caplog.handler.addFilter(CallIdFilter())  # what mikrovoice.logs.configure() puts on its handler
    settings = Settings(api_key="sk-test-DO-NOT-LOG")
    stats = ServiceStats()
    summary = await run_demo(settings, questions=[SEED_QUESTIONS[0]], router_password="router-DO-NOT-LOG", stats=stats)
    assert summary["answered"] == 1
    text = "\n".join(r.getMessage() for r in caplog.records) + repr(settings)
    assert "DO-NOT-LOG" not in text
    # Every line the call's own tasks wrote (session, router fan-out, model link) names the call.
    call_lines = [r for r in caplog.records if r.name in ("mikrovoice.call", "mikrovoice.routers", "mikrovoice.realtime")]
    assert {r.name for r in call_lines} == {"mikrovoice.call", "mikrovoice.routers", "mikrovoice.realtime"}
    assert {r.call_id for r in call_lines} == {stats.calls[0].call_id}


def test_the_demo_command_prints_its_timeline_and_answers_both_questions() -> None:
    """``mikrovoice demo --virtual-clock``: the printed timeline's formatters read the real log fields
    (a formatter reading a renamed field must not break the call it reports on)."""
    import io
    import json

    from mikrovoice import demo

    out = io.StringIO()
    assert demo.main(as_json=True, virtual_clock=True, out=out) == 0
    text = out.getvalue()
    summary = json.loads(text.strip().splitlines()[-1])
    assert summary["answered"] == summary["questions"] == 2
    assert "router 46.3: ok (12/12" in text and "llamada terminada: caller hung up" in text
