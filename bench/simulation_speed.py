"""How fast a full-fidelity simulated call runs, in simulated seconds per wall-clock second, on one core.

The call is the seed's: the Asterisk stand-in asks for the active devices of router 152.1, then
for the SFP traffic of all twelve routers (the demo's fleet, slowest router 24 s), through the
production service, the Realtime simulator and the RouterOS simulators, with every byte encoded
as in production (AudioSocket, G.711, base64, JSON, WebSocket frames, RouterOS sentences, the tone
voice both ways), on Trio's virtual clock over the in-memory network. Each variant runs ``--runs``
times in this one process (one core); the table shows the median. Target (issue 10): >= 200x.

    OPENBLAS_NUM_THREADS=1 taskset -c 0 .venv/bin/python bench/simulation_speed.py [--runs 7] [--profile] [--tasks]

``--tasks`` adds where one run's time goes, per Trio task (its function): wall time inside its
steps and how many steps, which is how a whole-call simulation spends its time — waking tasks
(a cancel-scope deadline, a Cancelled exception and a scheduler pass per timed wake) as much as
computing. What is left between the steps is Trio's own scheduling.

(``make bench`` does exactly that: one core, and numpy's BLAS kept to one thread.)
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import json
import platform
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import trio

from mikrovoice.config import RouterConfig, Settings
from mikrovoice.demo import DEMO_FLEET
from mikrovoice.sim.routeros import make_fleet
from mikrovoice.simulation.scenario import Ask, RouterBehaviour, Scenario
from mikrovoice.simulation.world import simulate_call

RESULTS = Path(__file__).parent / "results"


def seed_call(silence: str) -> tuple[Scenario, Settings]:
    fleet = make_fleet(DEMO_FLEET)
    settings = Settings(routers=tuple(RouterConfig(r.name, f"10.0.{i}.1") for i, r in enumerate(fleet)))
    scenario = Scenario(
        asks=(Ask("devices", ("152.1",)), Ask("sfp_all")),
        silence=silence,
        routers=tuple(RouterBehaviour(r.name, r.latency_s) for r in fleet),
        seed=7,
    )
    return scenario, settings


def measure(silence: str, runs: int) -> dict[str, Any]:
    scenario, settings = seed_call(silence)
    walls, cpus, simulated = [], [], 0.0
    for _ in range(runs):
        cpu = time.process_time()
        obs = simulate_call(scenario, settings)
        cpus.append(time.process_time() - cpu)
        walls.append(obs.wall_s)
        simulated = obs.simulated_s
        answered = sum(q.answered for q in obs.caller.questions)
        assert answered == 2, f"the seed's call must be answered twice, got {answered}"
    wall = statistics.median(walls)
    return {"silence": silence, "simulated_s": round(simulated, 2), "wall_s": round(wall, 3),
            "cpu_s": round(statistics.median(cpus), 3), "speedup": round(simulated / wall, 1),
            "frames_both_ways": obs.caller.frames_sent + obs.caller.frames_received}


class _TaskTimes(trio.abc.Instrument):
    """Wall time and steps per task function (``task.name``), over one ``trio.run``."""

    def __init__(self) -> None:
        self.seconds: collections.defaultdict[str, float] = collections.defaultdict(float)
        self.steps: collections.Counter[str] = collections.Counter()
        self._started = 0.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self.seconds[task.name] += time.perf_counter() - self._started
        self.steps[task.name] += 1


def task_times(silence: str, top: int = 15) -> None:
    """One run of the variant with ``_TaskTimes`` installed; prints the costliest tasks."""
    times = _TaskTimes()
    wall = simulate_call(*seed_call(silence), instruments=[times]).wall_s
    inside = sum(times.seconds.values())
    print(f"\n{silence}: {wall:.3f} s wall (instrumented), {inside:.3f} s inside task steps, "
          f"{wall - inside:.3f} s in Trio's scheduling between them")
    print(f"{'share':>6} {'ms':>8} {'steps':>7} {'us/step':>8}  task")
    for name, seconds in sorted(times.seconds.items(), key=lambda item: -item[1])[:top]:
        steps = times.steps[name]
        print(f"{seconds / wall:6.1%} {seconds * 1e3:8.1f} {steps:7d} {seconds / steps * 1e6:8.1f}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="print the 25 costliest functions of one run")
    parser.add_argument("--tasks", action="store_true", help="print the time per Trio task of one run of each variant")
    args = parser.parse_args()
    simulate_call(*seed_call("noise"))  # warm up imports and tables
    rows = [measure(silence, args.runs) for silence in ("noise", "no_frames")]
    print(f"{'caller line':<12} {'simulated':>10} {'wall (median)':>14} {'CPU':>8} {'speed-up':>9}  frames")
    for row in rows:
        print(f"{row['silence']:<12} {row['simulated_s']:>9.1f}s {row['wall_s']:>13.3f}s {row['cpu_s']:>7.3f}s "
              f"{row['speedup']:>8.1f}x  {row['frames_both_ways']}")
    result = {"benchmark": "simulation_speed", "target_speedup": 200, "runs": args.runs, "rows": rows,
              "simulation_speedup": min(r["speedup"] for r in rows),
              "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                          "processor": platform.processor() or platform.machine()}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "simulation_speed.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        simulate_call(*seed_call("noise"))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    if args.tasks:
        for silence in ("noise", "no_frames"):
            task_times(silence)
    verdict = "met" if result["simulation_speedup"] >= result["target_speedup"] else "NOT MET"
    print(f"target >= {result['target_speedup']}x real time on one core: {verdict} "
          f"(slowest variant {result['simulation_speedup']}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
