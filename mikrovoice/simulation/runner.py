"""``mikrovoice simulate``: generated calls against an operator's configuration, judged by the invariants.

A run has two phases. The *survey* generates ``calls`` scenarios with Hypothesis (reproducibly:
the same seed and configuration give the same calls), simulates each on the virtual clock and
checks every invariant, collecting the statistics of the summary table. Then, for each invariant
that failed, ``hypothesis.find`` searches again from the same seed and *shrinks* the failure to a
minimal scenario, whose story, text timeline and (optionally) SVG timeline are reported.
Every simulated call replays exactly from its scenario (``world.simulate_call``).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, seed
from hypothesis import settings as hypothesis_settings

from mikrovoice.config import Settings
from mikrovoice.simulation import invariants
from mikrovoice.simulation.invariants import (
    INVARIANTS,
    Invariant,
    longest_silence,
    query_windows,
    speech_spans,
)
from mikrovoice.simulation.report import call_timeline, progress_regex, text_timeline
from mikrovoice.simulation.scenario import Scenario
from mikrovoice.simulation.strategies import scenarios
from mikrovoice.simulation.timeline import Bar, Timeline, render_svg
from mikrovoice.simulation.world import CallObservation, simulate_call

#: Shrinking one failure stops looking for a smaller story after this long (wall clock).
SHRINK_BUDGET_S = 120.0


class _Violated(Exception):
    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario.story())
        self.scenario = scenario


@dataclass
class CallStats:
    story: str
    simulated_s: float
    wall_s: float
    questions: int
    answered: int
    answer_times: list[float]
    no_speech_during_query_s: float | None
    progress_heard: int
    violations: dict[str, list[str]]
    outcome: str = ""  # the service's word for how the call ended (CallRecord.outcome)


@dataclass
class Failure:
    invariant: str
    scenario: Scenario
    violations: list[str]
    timeline: list[str]
    svg_path: str | None = None
    shrunk: bool = True


@dataclass
class RunSummary:
    seed: int
    calls: list[CallStats] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def violations_by_invariant(self) -> dict[str, int]:
        counts = Counter(name for call in self.calls for name in call.violations)
        return {i.name: counts[i.name] for i in INVARIANTS if counts[i.name]}

    def as_json(self) -> dict[str, Any]:
        answer_times = [t for c in self.calls for t in c.answer_times]
        silences = [c.no_speech_during_query_s for c in self.calls if c.no_speech_during_query_s is not None]
        simulated = sum(c.simulated_s for c in self.calls)
        return {
            "calls": len(self.calls),
            "questions": sum(c.questions for c in self.calls),
            "answered": sum(c.answered for c in self.calls),
            "violations": sum(1 for c in self.calls if c.violations),
            "violations_by_invariant": self.violations_by_invariant,
            "simulated_s": round(simulated, 1),
            "wall_s": round(self.wall_s, 2),
            "simulation_speedup": round(simulated / max(1e-9, sum(c.wall_s for c in self.calls)), 1),
            "p50_answer_s": _percentile(answer_times, 50),
            "p95_answer_s": _percentile(answer_times, 95),
            "max_no_speech_during_query_s": round(max(silences), 2) if silences else None,
            "progress_updates_heard": sum(c.progress_heard for c in self.calls),
            "outcomes": dict(sorted(Counter(c.outcome or "no call" for c in self.calls).items())),
            "seed": self.seed,
            "failures": [{"invariant": f.invariant, "story": f.scenario.story(), "violations": f.violations,
                          "shrunk": f.shrunk, "timeline_svg": f.svg_path} for f in self.failures],
        }


def _percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 2)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 2)


def call_stats(obs: CallObservation, violations: dict[str, list[str]]) -> CallStats:
    answered = [q for q in obs.caller.questions if q.answered and q.answered_at is not None]
    spans = speech_spans(obs)
    silences = [longest_silence(spans, start, end)[0] for _, start, end in query_windows(obs)]
    progress = progress_regex(obs.settings.phrases)
    return CallStats(
        story=obs.scenario.story(),
        simulated_s=obs.simulated_s,
        wall_s=obs.wall_s,
        questions=len(obs.caller.questions),
        answered=len(answered),
        answer_times=[q.answered_at - q.finished_asking_at for q in answered if q.answered_at is not None],
        no_speech_during_query_s=max(silences) if silences else None,
        progress_heard=sum(1 for h in obs.caller.heard if progress.search(h.text)),
        violations=violations,
        outcome=obs.record.outcome if obs.record is not None else "",
    )


def _hypothesis(max_examples: int, phases: tuple[Phase, ...]) -> hypothesis_settings:
    return hypothesis_settings(
        max_examples=max_examples, phases=phases, database=None, deadline=None, derandomize=False,
        suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, print_blob=False,
        report_multiple_bugs=False,
    )


def shrink_failure(
    settings: Settings, calls: int, run_seed: int, invariant: Invariant,
    surveyed: dict[Scenario, frozenset[str]] | None = None, budget_s: float = SHRINK_BUDGET_S,
) -> Scenario | None:
    """The smallest scenario that breaks ``invariant``, found as the survey found it (same seed,
    same sequence of calls up to the first failure: ``surveyed`` holds what each call broke, so
    they are not simulated again), then shrunk by Hypothesis within ``budget_s``."""
    surveyed = surveyed or {}
    failing: set[Scenario] = set()
    deadline = time.perf_counter() + budget_s

    def breaks(scenario: Scenario) -> bool:
        if scenario in surveyed:
            return invariant.name in surveyed[scenario]
        # Out of time, only stories already known to fail still fail, so shrinking settles.
        if time.perf_counter() > deadline and failing:
            return False
        return bool(invariant.check(simulate_call(scenario, settings)))

    @seed(run_seed)
    @_hypothesis(calls, (Phase.generate, Phase.shrink))
    @given(scenarios(settings))
    def hunt(scenario: Scenario) -> None:
        if scenario in failing or breaks(scenario):
            failing.add(scenario)
            raise _Violated(scenario)

    try:
        hunt()
    except _Violated as violated:
        return violated.scenario
    return None


def observation_timeline(obs: CallObservation, violations: dict[str, list[str]], title: str) -> Timeline:
    """The picture of a simulated call: its story, its violations, its longest silence during a query."""
    spans = speech_spans(obs)
    highlights = []
    for tool, start, end in query_windows(obs):
        length, where = longest_silence(spans, start, end)
        highlights.append(Bar(obs.t(start), obs.t(end), f"consulta {tool}", "query"))
        if length > 0:
            highlights.append(Bar(obs.t(where), obs.t(where) + length, f"silencio {length:.1f} s", "silence"))
    notes = (f"Escenario: {obs.scenario.story()}",) + tuple(
        f"Violación ({name}): {text}" for name, texts in violations.items() for text in texts)
    return call_timeline(obs.caller, obs.record, obs.settings.phrases, title=title, notes=notes,
                         highlights=tuple(highlights))


def simulate(
    settings: Settings, calls: int, run_seed: int, *, timeline_dir: Path | None = None, shrink: bool = True,
    on_call: Callable[[CallStats], None] = lambda stats: None,
    on_phase: Callable[[str], None] = lambda phase: None,
) -> RunSummary:
    summary = RunSummary(run_seed)
    strategy = scenarios(settings)
    first_failure: dict[str, Scenario] = {}
    surveyed: dict[Scenario, frozenset[str]] = {}
    started = time.perf_counter()

    @seed(run_seed)
    @_hypothesis(calls, (Phase.generate,))
    @given(strategy)
    def survey(scenario: Scenario) -> None:
        obs = simulate_call(scenario, settings)
        found = invariants.check(obs)
        surveyed[scenario] = frozenset(found)
        for name in found:
            first_failure.setdefault(name, scenario)
        stats = call_stats(obs, found)
        summary.calls.append(stats)
        on_call(stats)

    on_phase("survey")
    survey()
    for invariant in INVARIANTS:
        if invariant.name not in first_failure:
            continue
        scenario, shrunk = first_failure[invariant.name], False
        if shrink:
            on_phase(f"shrink {invariant.name}")
            smaller = shrink_failure(settings, calls, run_seed, invariant, surveyed)
            if smaller is not None:
                scenario, shrunk = smaller, True
        obs = simulate_call(scenario, settings)
        violations = invariants.check(obs)
        failure = Failure(invariant.name, scenario, violations.get(invariant.name, ["(did not fail again on replay)"]),
                          text_timeline(obs.caller, obs.record), shrunk=shrunk)
        if timeline_dir is not None:
            timeline_dir.mkdir(parents=True, exist_ok=True)
            path = timeline_dir / f"{len(summary.failures) + 1:02d}-{invariant.name}.svg"
            title = f"mikrovoice simulate — {invariant.name} (semilla {run_seed})"
            path.write_text(render_svg(observation_timeline(obs, violations, title)), encoding="utf-8")
            failure.svg_path = str(path)
        summary.failures.append(failure)
    summary.wall_s = time.perf_counter() - started
    return summary
