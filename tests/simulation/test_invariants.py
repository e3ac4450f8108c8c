"""Each invariant catches the failure it exists for: the product (or a simulator) is broken on purpose
here, one way at a time, and the scenario that exposes it must be flagged by exactly that promise.
The issue's known failures are among them: progress counting failed routers as answered, and a
caller whose phone sends no frames while silent never being heard."""

from collections.abc import Callable
from dataclasses import replace

import pytest

from mikrovoice.call import session as call_session
from mikrovoice.call.machine import CallMachine
from mikrovoice.call.progress import ProgressPolicy
from mikrovoice.config import Phrases
from mikrovoice.sim import brain
from mikrovoice.sim import routeros as sim_routeros
from mikrovoice.sim.realtime import ModelFaults
from mikrovoice.simulation import invariants
from mikrovoice.simulation.console import default_settings
from mikrovoice.simulation.scenario import Ask, RouterBehaviour, Scenario
from mikrovoice.simulation.world import CallObservation, simulate_call
from mikrovoice.telephony.inbound import ModelFeed
from mikrovoice.tools import NocTools

SETTINGS = default_settings()
NAMES = [r.name for r in SETTINGS.routers]


def fleet(**behaviour: tuple[float, str | None]) -> tuple[RouterBehaviour, ...]:
    """Healthy routers, but those named (with "_" for ".") get (latency, fault)."""
    special = {name.replace("_", "."): value for name, value in behaviour.items()}
    return tuple(RouterBehaviour(n, *special.get(n, (0.3, None))) for n in NAMES)


#: One router refuses the login, one never answers within the router deadline (router_timeout_s).
SFP_WITH_TROUBLE = Scenario(asks=(Ask("sfp_all"),), routers=fleet(**{"26_1": (0.3, "refuses_login"), "46_3": (70.0, None)}))


def violated(obs: CallObservation) -> dict[str, list[str]]:
    return invariants.check(obs)


def test_the_healthy_product_keeps_every_promise() -> None:
    for scenario in (SFP_WITH_TROUBLE, Scenario(asks=(Ask("devices", ("152.1",)),), silence="no_frames", routers=fleet())):
        assert violated(simulate_call(scenario, SETTINGS)) == {}


def test_progress_that_counts_failed_routers_as_answered_contradicts_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    def counts_failures(phrases: Phrases, answered: int, failed: int, total: int, pending: list[str],
                        **more: object) -> str:
        return phrases.progress_many.format(answered=answered + failed, done=answered + failed, total=total)

    monkeypatch.setattr(ProgressPolicy, "phrase", staticmethod(counts_failures))
    found = violated(simulate_call(SFP_WITH_TROUBLE, SETTINGS))
    assert set(found) == {"progress_consistent"}
    assert "said 11 of 12 routers had answered, the final answer says 10" in found["progress_consistent"][0]


def test_a_silent_phone_is_never_heard_without_the_silence_fill(monkeypatch: pytest.MonkeyPatch) -> None:
    def feed_without_fill(started_at: float, chunk_s: float = 0.1) -> ModelFeed:
        return ModelFeed(started_at, chunk_s, slack_s=1e9)

    monkeypatch.setattr(call_session, "ModelFeed", feed_without_fill)
    scenario = Scenario(asks=(Ask("devices", ("152.1",)),), silence="no_frames", routers=fleet())
    found = violated(simulate_call(scenario, SETTINGS))
    assert set(found) == {"answered_or_told"}
    assert "got no answer and no explanation" in found["answered_or_told"][0]
    # The same call with line noise is heard: it is the missing frames, not the question.
    assert violated(simulate_call(replace(scenario, silence="noise"), SETTINGS)) == {}


def test_progress_that_comes_too_late_breaks_the_cadence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ProgressPolicy, "due_at", lambda self, quiet_since: quiet_since + 12.0)
    found = violated(simulate_call(SFP_WITH_TROUBLE, SETTINGS))
    assert set(found) == {"progress_cadence"}
    assert "without speech" in found["progress_cadence"][0]


def test_a_report_that_hides_a_router_that_is_down_is_not_true(monkeypatch: pytest.MonkeyPatch) -> None:
    honest = NocTools.report

    def hides_errors(self: NocTools, *args: object) -> dict[str, object]:
        output = honest(self, *args)  # type: ignore[arg-type]
        output.pop("sin_respuesta", None)
        return output

    monkeypatch.setattr(NocTools, "report", hides_errors)
    found = violated(simulate_call(SFP_WITH_TROUBLE, SETTINGS))
    assert set(found) == {"answer_true", "status_honest"}
    assert "routers ['26.1'] were down" in found["answer_true"][0]
    # the output's own counts no longer add up, and count the router that refused the login
    assert "counts 10 routers that answered; of the 12 asked, 0 did not answer" in found["status_honest"][0]
    assert "counts 26.1 among the routers that answered" in found["status_honest"][1]


def test_an_event_the_machine_cannot_take_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CallMachine.IGNORED, "listening", frozenset())  # a VAD turn while listening is now a bug
    scenario = Scenario(asks=(Ask("nonsense"),), routers=fleet())
    found = violated(simulate_call(scenario, SETTINGS))
    assert "machine_total" in found and "can't handle event 'turn_done' in state 'listening'" in found["machine_total"][0]


def test_a_simulator_that_crashes_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: object, request: object) -> list[object]:
        raise RuntimeError("simulator bug")

    monkeypatch.setattr(sim_routeros._Session, "answer", broken)
    found = violated(simulate_call(Scenario(asks=(Ask("devices", ("152.1",)),), routers=fleet()), SETTINGS))
    assert "no_crash" in found and "RuntimeError('simulator bug')" in found["no_crash"][0]


def test_checks_on_what_the_parties_recorded() -> None:
    obs = simulate_call(SFP_WITH_TROUBLE, SETTINGS)
    assert violated(obs) == {}
    router = obs.routers["152.1"]
    router.journal.append((obs.started_at + 1.0, ["/interface/set", "=numbers=ether1", "=disabled=yes"]))
    assert invariants.read_only(obs) == [
        "router 152.1 received ['/interface/set', '=numbers=ether1', '=disabled=yes'] at 1.00 s: /interface/set is "
        "not in mikrovoice's read-only allowlist",
        "router 152.1 received ['/interface/set', '=numbers=ether1', '=disabled=yes'] at 1.00 s: 'set' changes the router"]
    call = next(iter(obs.ledger.sessions[0].calls.values()))
    call.outputs.append(call.outputs[0])
    assert "got 2 outputs" in invariants.one_output_per_call(obs)[0]
    obs.connections[-1].server.closed_at = None
    assert any("left open" in p for p in invariants.call_ends(obs))
    assert obs.record is not None
    obs.record.queries[0].ended_at = obs.record.queries[0].started_at + SETTINGS.query_timeout_s + 1
    assert f"past its {SETTINGS.query_timeout_s:g} s deadline" in invariants.query_bounded(obs)[0]


@pytest.mark.parametrize("breaks", [
    # The model never comes back (every reconnect is refused): the apology.
    lambda s: replace(s, model=ModelFaults(drop_after_s=15.0), model_after=ModelFaults(handshake_status=503)),
    lambda s: replace(s, model=ModelFaults(silent_after_s=15.0), model_after=ModelFaults(handshake_status=503)),
    lambda s: replace(s, model=ModelFaults(refuse_creates=frozenset({3, 4, 5}))),
])
def test_losing_the_model_mid_query_is_explained_and_ends_cleanly(breaks: Callable[[Scenario], Scenario]) -> None:
    obs = simulate_call(breaks(SFP_WITH_TROUBLE), SETTINGS)
    assert violated(obs) == {}
    assert obs.record is not None and obs.record.states[-2:] == ["farewell", "ended"]
    assert any(SETTINGS.phrases.model_unavailable in h.text for h in obs.caller.heard)
    assert obs.record.queries[0].cancelled and obs.caller.server_hung_up


def test_comfort_fills_catches_a_product_without_comfort_audio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CallMachine, "wants_comfort", property(lambda self: False))
    found = violated(simulate_call(SFP_WITH_TROUBLE, SETTINGS))
    assert "comfort_fills" in found and "of dead air" in found["comfort_fills"][0]


def test_result_once_catches_a_result_spoken_twice() -> None:
    # The real server may start a response by itself after a tool output; a product that asked
    # for a report anyway could have the result said twice. Our simulated model is too polite to
    # repeat itself, so the check is shown on the record: the same answer heard a second time.
    scenario = Scenario(asks=(Ask("devices", ("152.1",)),), routers=fleet(), model=ModelFaults(respond_after_output=True))
    obs = simulate_call(scenario, SETTINGS)
    assert violated(obs) == {}
    (answer,) = [h for h in obs.caller.heard if brain.ANSWER_DEVICES.search(h.text)]
    obs.caller.heard.append(replace(answer, start=answer.end + 1.0, end=answer.end + 5.0))
    assert "2 answers for 1 finished query" in invariants.result_once(obs)[0]


def test_a_crash_of_the_caller_simulator_is_a_broken_promise_not_a_crashed_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from mikrovoice.sim.asterisk import AsteriskCaller

    async def broken_call(self: AsteriskCaller, *args: object, **kwargs: object) -> None:
        raise ValueError("`seconds` must be non-negative")

    monkeypatch.setattr(AsteriskCaller, "call", broken_call)
    obs = simulate_call(Scenario(asks=(Ask("devices", ("152.1",)),), routers=fleet()), SETTINGS)
    assert violated(obs)["no_crash"] == ["crash in the Asterisk caller: ValueError('`seconds` must be non-negative')"]
