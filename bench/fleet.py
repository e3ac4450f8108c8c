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
- ``fan-out N`` / ``sequential N`` / ``slowest alone N``, for 20 and 200 routers: the SFP traffic
  of every router, asked once with the product's settings (``router_concurrency`` 32: at most 32
  routers at once per call), once with ``router_concurrency`` 1 (the same code visiting the routers
  one after another: sequential, measured), once with ``router_concurrency`` = N (``fan-out, no
  limit``: what the fan-out itself costs, without the product's cap of 32 routers at once per
  call, which makes 200 routers go in 7 waves), and once of the slowest router alone. Each run has its
  own ``Fleet`` (no cache, new connections: every time includes TCP connect and login). The
  latencies are 0.05 to 0.15 s (``--fanout-latencies``), not the 0.2-2 s of the other rows: a
  sequential pass over 200 routers at those would take about four minutes; at these it takes about
  45 s. ``fanout_vs_slowest`` = fan-out wall / the slowest router alone (worst of 20 and 200),
  ``fanout_speedup_vs_sequential`` = sequential wall / fan-out wall, per fleet size.

    .venv/bin/python bench/fleet.py [--routers 300] [--fanout-sizes 20,200] [--fanout-latencies 0.05,0.15]

Prints a table and writes bench/results/fleet.json (``--json``; the two fan-out figures at its top level).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import trio
from summary import git_state, machine_info

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


async def ask_once(settings: Settings, tool: str) -> tuple[float, dict[str, Any]]:
    """One question with its own Fleet (cold: connections and cache new); its wall time and output."""
    fleet = Fleet(settings)
    try:
        wall, outputs = await timed([ask(NocTools(fleet), tool)])
    finally:
        await fleet.pool.aclose()
    return wall, outputs[0]


async def fanout(count: int, latencies: tuple[float, float], tool: str = "trafico_interfaces") -> list[dict[str, Any]]:
    """Fan-out, sequential and the slowest router alone, over one fleet of ``count`` routers."""
    routers = make_fleet(FleetProfile(count=count, seed=11, fast_s=latencies, slow=0), password="bench")
    rows = []
    async with trio.open_nursery() as nursery:
        configs = await nursery.start(serve_fleet, routers)
        slowest = max(range(count), key=lambda i: routers[i].latency_s)
        product = Settings(routers=tuple(configs))
        runs = [("slowest alone", Settings(routers=(configs[slowest],))), ("fan-out", product),
                ("fan-out, no limit", Settings(routers=tuple(configs), router_concurrency=count)),
                ("sequential", Settings(routers=tuple(configs), router_concurrency=1))]
        for name, settings in runs:
            wall, output = await ask_once(settings, tool)
            rows.append({"scenario": f"{name} {count}", "routers": len(settings.routers), "calls": 1,
                         "wall_s": round(wall, 3), "slowest_router_s": routers[slowest].latency_s,
                         "answered_min": output["routers_que_respondieron"],
                         "router_concurrency": settings.router_concurrency, "sentences_to_routers": None})
        nursery.cancel_scope.cancel()
    return rows


def fanout_figures(rows: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    by_name = {r["scenario"]: r for r in rows}
    vs_slowest, unlimited, speedup = {}, {}, {}
    for size in sizes:
        fan, free, seq, alone = (by_name[f"{n} {size}"]["wall_s"]
                                 for n in ("fan-out", "fan-out, no limit", "sequential", "slowest alone"))
        vs_slowest[str(size)] = round(fan / alone, 3)
        unlimited[str(size)] = round(free / alone, 3)
        speedup[str(size)] = round(seq / fan, 1)
    return {"fanout_vs_slowest": max(vs_slowest.values()), "fanout_vs_slowest_by_routers": vs_slowest,
            "fanout_vs_slowest_no_limit_by_routers": unlimited, "fanout_speedup_vs_sequential": speedup}


async def main(big: int, sizes: list[int], latencies: tuple[float, float]) -> list[dict[str, Any]]:
    twelve = FleetProfile(count=12, seed=7, fast_s=(0.5, 1.5), slow=0)
    rows = [
        await scenario("1 call", twelve, 1, "trafico_interfaces"),
        await scenario("10 calls", twelve, 10, "trafico_interfaces"),
        await scenario("10 calls, no sharing", twelve, 10, "trafico_interfaces", shared=False),
        await scenario("black hole", twelve, 1, "trafico_interfaces", fault=(5, "hangs")),
        await scenario(f"{big} routers", FleetProfile(count=big, seed=3, fast_s=(0.2, 2.0), slow=0), 1,
                       "estado_routers"),
    ]
    for size in sizes:
        rows += await fanout(size, latencies)
    return rows


def numbers(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--routers", type=int, default=300)
    parser.add_argument("--fanout-sizes", type=numbers, default=[20, 200], help="fleet sizes of the fan-out rows")
    parser.add_argument("--fanout-latencies", type=numbers, default=[0.05, 0.15],
                        help="their routers' latency range in seconds (default 0.05,0.15)")
    parser.add_argument("--json", default=str(RESULTS / "fleet.json"), help="where to write the result")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.fanout_sizes]
    if len(args.fanout_latencies) != 2 or not 0 < args.fanout_latencies[0] <= args.fanout_latencies[1] or min(sizes) < 1:
        parser.error("--fanout-latencies takes two seconds LOW,HIGH; --fanout-sizes positive counts")
    latencies = (args.fanout_latencies[0], args.fanout_latencies[1])
    rows = trio.run(main, args.routers, sizes, latencies)
    header = f"{'scenario':<22} {'routers':>7} {'calls':>5} {'wall s':>7} {'slowest s':>9} {'answered':>8} {'sentences':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        sentences = "-" if r["sentences_to_routers"] is None else r["sentences_to_routers"]
        print(f"{r['scenario']:<22} {r['routers']:>7} {r['calls']:>5} {r['wall_s']:>7.3f} {r['slowest_router_s']:>9.2f} "
              f"{r['answered_min']:>8} {sentences:>9}")
    one, ten = rows[0]["wall_s"], rows[1]["wall_s"]
    print(f"\nten calls at once take {ten / one:.2f}x one call (issue 8 measured 4.5x before)")
    figures = fanout_figures(rows, sizes)
    for size in sizes:
        print(f"{size} routers: fan-out {figures['fanout_vs_slowest_by_routers'][str(size)]}x the slowest router alone "
              f"({figures['fanout_vs_slowest_no_limit_by_routers'][str(size)]}x without the per-call cap), "
              f"{figures['fanout_speedup_vs_sequential'][str(size)]}x faster than sequential")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "fleet", **figures, "fanout_latencies_s": list(latencies),
        "router_concurrency_default": Settings().router_concurrency,
        "machine": machine_info(), "git": git_state(), "python": platform.python_version(), "rows": rows,
    }, indent=2) + "\n")


if __name__ == "__main__":
    run()
