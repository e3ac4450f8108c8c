"""The router fleet under load, over real TCP on loopback: the figures issue 8 measured, again.

Each row runs the production tools (``NocTools`` over ``Fleet``: pool, cache, fan-out) against the
RouterOS simulator serving one TCP listener per router on 127.0.0.1, in wall-clock time:

- ``1 call`` / ``10 calls``: the SFP traffic of a 12-router fleet (latencies 0.5 to 1.5 s), asked by
  one call, then by ten calls at the same moment. Before issue 8 the ten waited 4.5 times longer
  (one concurrency limit shared by every call); now they share one command per router.
- ``10 calls, no sharing``: the same ten calls, each with its own fleet (no cache, no coalescing,
  its own connections): what per-call concurrency alone gives.
- ``black hole``: the same question with one router that accepts TCP and never answers (before:
  a full minute); now the connect timeout (5 s).
- ``N routers``: router health over a fleet of N routers (latencies 0.2 to 2 s), one call.

    .venv/bin/python bench/fleet.py [--routers 300]

Prints a table and writes bench/results/fleet.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import trio

from mikrovoice.config import Settings
from mikrovoice.routeros.fanout import Fleet
from mikrovoice.sim.routeros import FleetProfile, make_fleet, serve_fleet
from mikrovoice.tools import NocTools

RESULTS = Path(__file__).parent / "results"


async def ask(tools: NocTools, tool: str, arguments: str = "{}") -> dict[str, Any]:
    call = tools.parse_call("bench", tool, arguments)
    assert call.problem is None, call.problem
    fan = tools.plan(call)
    await tools.run(call, fan)
    return tools.report(call, fan, None)


async def timed(coros: list[Any]) -> tuple[float, list[dict[str, Any]]]:
    outputs: list[dict[str, Any]] = []

    async def one(coro: Any) -> None:
        outputs.append(await coro)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for coro in coros:
            nursery.start_soon(one, coro)
    return time.perf_counter() - start, outputs


async def scenario(name: str, profile: FleetProfile, calls: int, tool: str, *, shared: bool = True,
                   fault: tuple[int, str] | None = None) -> dict[str, Any]:
    routers = make_fleet(profile, password="bench")
    if fault is not None:
        routers[fault[0]].fault = fault[1]
    async with trio.open_nursery() as nursery:
        configs = await nursery.start(serve_fleet, routers)
        settings = Settings(routers=tuple(configs))
        fleets = [Fleet(settings)] if shared else [Fleet(settings) for _ in range(calls)]
        tools = [NocTools(fleets[i % len(fleets)]) for i in range(calls)]
        wall, outputs = await timed([ask(t, tool) for t in tools])
        commands = sum(len(r.journal) for r in routers)
        for fleet in fleets:
            await fleet.pool.aclose()
        nursery.cancel_scope.cancel()
    slowest = max(r.latency_s for r in routers if r.fault is None)
    answered = [o["routers_que_respondieron"] for o in outputs]
    return {"scenario": name, "routers": len(routers), "calls": calls, "wall_s": round(wall, 3),
            "slowest_router_s": slowest, "answered_min": min(answered), "sentences_to_routers": commands}


async def main(big: int) -> list[dict[str, Any]]:
    twelve = FleetProfile(count=12, seed=7, fast_s=(0.5, 1.5), slow=0)
    rows = [
        await scenario("1 call", twelve, 1, "trafico_interfaces"),
        await scenario("10 calls", twelve, 10, "trafico_interfaces"),
        await scenario("10 calls, no sharing", twelve, 10, "trafico_interfaces", shared=False),
        await scenario("black hole", twelve, 1, "trafico_interfaces", fault=(5, "hangs")),
        await scenario(f"{big} routers", FleetProfile(count=big, seed=3, fast_s=(0.2, 2.0), slow=0), 1,
                       "estado_routers"),
    ]
    return rows


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--routers", type=int, default=300)
    args = parser.parse_args(argv)
    rows = trio.run(main, args.routers)
    header = f"{'scenario':<22} {'routers':>7} {'calls':>5} {'wall s':>7} {'slowest s':>9} {'answered':>8} {'sentences':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['scenario']:<22} {r['routers']:>7} {r['calls']:>5} {r['wall_s']:>7.3f} {r['slowest_router_s']:>9.2f} "
              f"{r['answered_min']:>8} {r['sentences_to_routers']:>9}")
    one, ten = rows[0]["wall_s"], rows[1]["wall_s"]
    print(f"\nten calls at once take {ten / one:.2f}x one call (issue 8 measured 4.5x before)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fleet.json").write_text(json.dumps({"machine": platform.platform(), "python": platform.python_version(),
                                                    "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    run()
