"""Scenarios read as stories, map to the caller's script, and replay exactly."""

from mikrovoice.sim.realtime import ModelFaults
from mikrovoice.simulation.console import default_settings
from mikrovoice.simulation.scenario import (
    Ask,
    Backchannel,
    BargeIn,
    Digit,
    RouterBehaviour,
    Scenario,
    spoken_router,
)
from mikrovoice.simulation.world import simulate_call

SETTINGS = default_settings()
HEALTHY = tuple(RouterBehaviour(r.name) for r in SETTINGS.routers)


def test_a_story_names_only_what_differs_from_a_healthy_patient_call() -> None:
    scenario = Scenario(
        asks=(Ask("sfp_all"),),
        routers=tuple(RouterBehaviour(r.name, 40.0) if r.name == "26.1" else RouterBehaviour(r.name) for r in SETTINGS.routers),
        hangup_at_s=12.3,
    )
    assert scenario.story() == ("caller (line noise) asks the SFP traffic of all routers; router 26.1 takes 40 s; "
                                "caller hangs up at 12.3 s")


def test_every_kind_of_event_is_told() -> None:
    scenario = Scenario(
        asks=(Ask("devices", ("152.1",), patience_s=20.0), Ask("unknown_router", ("999.9",)), Ask("nonsense")),
        interjections=(Backchannel(0, 3.0), BargeIn(1, 0.5), Digit(2, 1.0, "#")),
        silence="no_frames",
        routers=(RouterBehaviour("152.1", fault="refuses_login"), RouterBehaviour("26.1", fault="unreachable")),
        model=ModelFaults(refuse_creates=frozenset({2, 3}), refusal_echoes_event_id=False),
    )
    story = scenario.story()
    for part in ("silent phone: no frames", "the active devices of 152.1 (waits at most 20 s)",
                 "an unknown router '999.9'", "something no tool answers", "caller says 'ajá' 3 s after question 1",
                 "speaks over the assistant", "presses # 1 s after question 3", "router 152.1 refuses the login",
                 "router 26.1 is unreachable", "2nd, 3rd response.create with server_error (error without event_id)"):
        assert part in story, part
    assert Scenario(uuid_bytes=7).story() == "caller (line noise) hangs up after sending 7 of the UUID message's 19 bytes"


def test_the_script_says_what_the_story_says() -> None:
    scenario = Scenario(asks=(Ask("sfp_some", ("26.1", "46.3")),), interjections=(BargeIn(0, 0.4),), silence="silence",
                        hangup_at_s=30.0)
    script = scenario.script()
    assert script.questions[0].text == "Dame el tráfico SFP de los routers 26 punto 1 y 46 punto 3"
    assert script.interjections[0].over_speech and script.interjections[0].delay_s == 0.4
    assert (script.silence, script.hangup_at_s, script.uuid_bytes) == ("silence", 30.0, None)
    assert spoken_router("torre-norte_2") == "torre norte 2" and spoken_router("152.1") == "152 punto 1"


def test_the_same_scenario_replays_the_same_call() -> None:
    scenario = Scenario(asks=(Ask("devices", ("26.1",)),), interjections=(Backchannel(0, 1.5),),
                        routers=tuple(RouterBehaviour(r.name, 7.0) for r in SETTINGS.routers), seed=11)
    first, second = simulate_call(scenario, SETTINGS), simulate_call(scenario, SETTINGS)
    assert first.record is not None and second.record is not None
    assert [(h.start, h.end, h.text) for h in first.caller.heard] == [(h.start, h.end, h.text) for h in second.caller.heard]
    assert first.record.state_times == second.record.state_times
    assert first.simulated_s == second.simulated_s
