"""The model link on the virtual clock: drops, dead links, refusals, reconnects and recycling.

Each test runs the production CallService between the three simulators (``simulate_call``) and
judges what the parties observed: what the caller heard (decoded, and when), the service's call
record and log, and the model simulator's ledger of every session.
"""

from __future__ import annotations

import re
from dataclasses import replace

from mikrovoice.sim import brain
from mikrovoice.sim.realtime import ModelFaults
from mikrovoice.simulation import invariants
from mikrovoice.simulation.console import default_settings
from mikrovoice.simulation.scenario import Ask, Backchannel, BargeIn, RouterBehaviour, Scenario
from mikrovoice.simulation.world import CallObservation, simulate_call

#: The deadlines these stories were written for (a router may take a minute, a question 90 s).
SETTINGS = replace(default_settings(), router_timeout_s=60.0, query_timeout_s=90.0)
#: One router takes 40 s: the query outlives a drop at 15 s.
SLOW = tuple(RouterBehaviour(r.name, 40.0 if r.name == "26.1" else 0.4) for r in SETTINGS.routers)
FAST = tuple(RouterBehaviour(r.name, 0.1) for r in SETTINGS.routers)
SFP_40S = Scenario(asks=(Ask("sfp_all"),), routers=SLOW, seed=7)


def heard(obs: CallObservation, pattern: object) -> list[str]:
    return [h.text for h in obs.caller.heard if pattern.search(h.text)]  # type: ignore[attr-defined]


def log_lines(obs: CallObservation, name: str) -> list[dict[str, object]]:
    return [line.fields for line in obs.logs if line.event == name]


def test_a_drop_in_the_middle_of_a_40_s_query_is_survived_and_the_result_spoken_once() -> None:
    obs = simulate_call(replace(SFP_40S, model=ModelFaults(drop_after_s=15.0)), SETTINGS)
    assert invariants.check(obs) == {}
    record = obs.record
    assert record is not None
    assert record.reconnects == 1 and len(record.model_link_drops) == 1
    (query,) = record.queries
    assert not query.cancelled and query.duration_s > 39.0  # the query lived through the reconnect
    assert len(heard(obs, brain.ANSWER_SFP)) == 1  # spoken once, by the new session
    assert "farewell" not in record.states and record.link_states[-2:] == ["reconnecting", "up"]
    # The second session got the conversation replayed, then the tool output, then one report.
    first, second = obs.ledger.sessions[:2]
    assert not any(call.outputs for call in first.calls.values())
    assert [len(call.outputs) for call in second.client_calls.values()] == [1]
    # While the link was down, the caller heard comfort audio, never more than 2 s of dead air.
    assert obs.caller.questions[0].max_dead_air_s <= 2.0


def test_a_model_that_goes_silent_is_found_within_two_seconds_and_replaced() -> None:
    obs = simulate_call(replace(SFP_40S, model=ModelFaults(silent_after_s=15.0)), SETTINGS)
    assert invariants.check(obs) == {}
    record = obs.record
    assert record is not None and record.reconnects == 1
    (dropped_at, reason) = record.model_link_drops[0]
    assert "no pong" in reason and obs.t(dropped_at) - 15.0 <= 2.0 + 1e-6
    assert len(heard(obs, brain.ANSWER_SFP)) == 1


def test_a_wrong_key_ends_the_call_with_the_apology_and_one_clear_line() -> None:
    scenario = Scenario(asks=(Ask("sfp_all"),), routers=FAST, model=ModelFaults(handshake_status=401),
                        model_fault_sessions=99)
    obs = simulate_call(scenario, SETTINGS)
    assert invariants.check(obs) == {}
    record = obs.record
    assert record is not None and record.states == ["authorising", "greeting", "farewell", "ended"]
    assert record.reconnects == 0  # a refused key is not cured by trying again
    (lost,) = log_lines(obs, "model.link_lost")
    assert "HTTP 401 invalid_api_key" in str(lost["reason"]) and lost["fatal"] is True
    assert heard(obs, invariants.apology_regex(SETTINGS.phrases))
    assert not any("Traceback" in line.message for line in obs.logs)


def test_an_overloaded_service_at_the_first_connect_is_retried_and_the_call_goes_on() -> None:
    scenario = Scenario(asks=(Ask("devices", ("152.1",)),), routers=FAST, model=ModelFaults(handshake_status=503),
                        model_fault_sessions=2)
    obs = simulate_call(scenario, SETTINGS)
    assert invariants.check(obs) == {}
    record = obs.record
    assert record is not None and record.reconnects == 2
    assert [h.text for h in obs.caller.heard].count(SETTINGS.phrases.greeting) == 1
    assert len(heard(obs, brain.ANSWER_DEVICES)) == 1


def test_a_handshake_that_never_completes_is_abandoned_and_retried() -> None:
    scenario = Scenario(asks=(Ask("devices", ("152.1",)),), routers=FAST, model=ModelFaults(stall_handshake=True))
    obs = simulate_call(scenario, SETTINGS)
    assert invariants.check(obs) == {}
    record = obs.record
    assert record is not None and record.reconnects == 1
    (dropped_at, reason) = record.model_link_drops[0]
    assert "no WebSocket handshake within 10 s" in reason
    assert len(heard(obs, brain.ANSWER_DEVICES)) == 1


def test_a_model_that_never_comes_back_gets_a_bounded_number_of_attempts_then_the_apology() -> None:
    obs = simulate_call(replace(SFP_40S, model=ModelFaults(drop_after_s=15.0),
                                model_after=ModelFaults(handshake_status=503)), SETTINGS)
    assert invariants.check(obs) == {}
    record = obs.record
    assert record is not None and record.states[-2:] == ["farewell", "ended"]
    assert record.reconnects == SETTINGS.reconnect_attempts
    assert heard(obs, invariants.apology_regex(SETTINGS.phrases))
    assert record.queries[0].cancelled  # the apology stops the query: nobody is left to report it
    # Backoff 0.5, 1, 2, 4 s between attempts; the caller heard comfort audio meanwhile.
    waits = [line["delay_s"] for line in log_lines(obs, "model.reconnect")]
    assert waits == [0.5, 1.0, 2.0, 4.0]


def test_a_60_minute_call_recycles_its_model_session_before_openai_ends_it() -> None:
    # The caller asks at once, then again after 58 minutes of silence. OpenAI ends a session at 60
    # minutes (the simulator too: session_expired + close 1001); mikrovoice replaces it at 55 min,
    # at a quiet moment, and replays the conversation into the new one. The caller's line sends
    # its noise all along (no silence suppression): a line that sends nothing for 58 idle minutes
    # would be ended by the inactivity watch after 2 (inactivity_timeout_s).
    scenario = Scenario(asks=(Ask("devices", ("152.1",)), Ask("sfp_all", pause_s=58 * 60.0)),
                        routers=FAST, silence="noise", seed=5)
    obs = simulate_call(scenario, SETTINGS)
    assert invariants.check(obs) == {}
    record = obs.record
    assert record is not None and record.recycles == 1 and record.reconnects == 0
    assert record.model_link_drops == []  # a recycle is not a drop
    (recycled,) = log_lines(obs, "model.recycle")
    assert 55 * 60 <= float(recycled["session_age_s"]) <= 55 * 60 + 2  # at the first quiet moment after 55 min
    assert len(heard(obs, brain.ANSWER_DEVICES)) == 1 and len(heard(obs, brain.ANSWER_SFP)) == 1
    first, second = obs.ledger.sessions[:2]
    assert first.end_reason == "client_closed" and second.end_reason != "expired"
    assert obs.t(record.ended_at) > 58 * 60


def test_olvidalo_cancels_the_running_query_and_a_backchannel_does_not() -> None:
    cancel = BargeIn(0, 6.0, "Olvídalo, ya no la necesito")
    obs = simulate_call(replace(SFP_40S, asks=(Ask("sfp_all", patience_s=30.0),), interjections=(cancel,)), SETTINGS)
    record = obs.record
    assert record is not None
    (query,) = record.queries
    assert query.cancelled and query.duration_s < 20.0
    assert [c.name for c in record.tool_calls] == ["trafico_interfaces", "cancelar_consulta"]
    assert heard(obs, re.compile(re.escape(brain.CANCELLED))) and not heard(obs, brain.ANSWER_SFP)
    assert "querying" in record.states and record.states[record.states.index("querying") + 1] == "listening"
    assert invariants.check(obs) == {}

    backchannel = Backchannel(0, 12.0, "ajá")
    obs = simulate_call(replace(SFP_40S, interjections=(backchannel,)), SETTINGS)
    assert obs.record is not None and not obs.record.queries[0].cancelled
    assert len(heard(obs, brain.ANSWER_SFP)) == 1 and invariants.check(obs) == {}


def test_a_refused_session_update_ends_the_call_cleanly_with_the_reason() -> None:
    scenario = Scenario(asks=(Ask("sfp_all"),), routers=FAST, model=ModelFaults(refuse_every_session_update=True),
                        model_fault_sessions=99)
    obs = simulate_call(scenario, SETTINGS)
    assert invariants.check(obs) == {}
    record = obs.record
    assert record is not None and record.states == ["authorising", "greeting", "farewell", "ended"]
    assert "refused our session settings" in str(record.end_reason) and "invalid_value" in str(record.end_reason)
    assert heard(obs, invariants.apology_regex(SETTINGS.phrases))
    assert SETTINGS.phrases.greeting not in [h.text for h in obs.caller.heard]  # never spoke unconfigured


def test_an_expired_session_is_replaced_and_the_result_still_spoken_once() -> None:
    obs = simulate_call(replace(SFP_40S, model=ModelFaults(expire_after_s=20.0)), SETTINGS)
    assert invariants.check(obs) == {}
    record = obs.record
    assert record is not None and record.reconnects == 1 and "session expired" in record.model_link_drops[0][1]
    assert len(heard(obs, brain.ANSWER_SFP)) == 1 and not record.queries[0].cancelled


def test_a_response_the_server_starts_by_itself_after_the_output_is_the_report() -> None:
    scenario = Scenario(asks=(Ask("devices", ("152.1",)),), routers=FAST, model=ModelFaults(respond_after_output=True))
    obs = simulate_call(scenario, SETTINGS)
    assert invariants.check(obs) == {}
    assert len(heard(obs, brain.ANSWER_DEVICES)) == 1
    reports = [c.outcome for session in obs.ledger.sessions for c in session.creates if c.kind == "report"]
    assert "started" not in reports  # ours was refused (a response was active) and not asked again


def test_the_question_asked_while_the_model_died_is_heard_by_the_next_session() -> None:
    # The link drops just after the caller finished asking (seed property run): the old session
    # never answered it. The new session gets the caller's audio since the server's last sign of
    # life and answers; the caller asks once and is answered once.
    routers = tuple(RouterBehaviour(r.name, 0.1) for r in SETTINGS.routers)
    scenario = Scenario(asks=(Ask("sfp_some", ("152.1", "26.1", "121.2")),), routers=routers,
                        model=ModelFaults(drop_after_s=7.9))
    obs = simulate_call(scenario, SETTINGS)
    assert invariants.check(obs) == {}
    assert len(obs.caller.spoken) == 1 and len(heard(obs, brain.ANSWER_SFP)) == 1
    (replay,) = log_lines(obs, "model.replay")
    assert float(str(replay["caller_audio_s"])) > 0
