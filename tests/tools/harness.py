"""A fleet of simulated routers on the in-memory network, and the production tools over it."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import trio

from mikrovoice.config import RouterConfig, Settings
from mikrovoice.routeros.fanout import FanOut, Fleet
from mikrovoice.sim.routeros import SimRouter, make_router, serve_router_stream
from mikrovoice.simulation.network import MemoryNetwork
from mikrovoice.tools import NocTools

USER, PASSWORD = "noc-ro", "clave-ro"


def routers(*names: str, latency_s: float = 0.2, site: str | None = None, seed: int = 5) -> list[SimRouter]:
    made = []
    for name in names:
        router = make_router(name, random.Random(f"{seed}-{name}"), latency_s, USER, PASSWORD)
        if site is not None:
            router.site = site
        made.append(router)
    return made


@dataclass
class World:
    tools: NocTools
    routers: dict[str, SimRouter]
    net: MemoryNetwork

    async def ask(self, tool: str, timeout_s: float | None = None, **arguments: Any) -> tuple[dict[str, Any], FanOut]:
        """One tool call as the session makes it: parse, plan, run (within ``timeout_s``), report."""
        call = self.tools.parse_call("call-1", tool, json.dumps(arguments))
        assert call.problem is None, call.problem
        fan = self.tools.plan(call)
        with trio.move_on_after(timeout_s if timeout_s is not None else 1e9) as scope:
            await self.tools.run(call, fan)
        return self.tools.report(call, fan, timeout_s if scope.cancelled_caught else None), fan

    def problem(self, tool: str, **arguments: Any) -> str | None:
        return self.tools.parse_call("call-1", tool, json.dumps(arguments)).problem

    def wire(self, name: str) -> list[list[str]]:
        """Every request sentence router ``name`` received."""
        return [words for _, words in self.routers[name].journal]


@asynccontextmanager
async def world(fleet: list[SimRouter], unreachable: tuple[str, ...] = (), passwords: dict[str, str] | None = None,
                **overrides: Any) -> AsyncIterator[World]:
    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(nursery)
        configs = []
        for i, router in enumerate(fleet):
            host = f"10.0.{i}.1"
            if router.name not in unreachable:
                net.listen(host, 8728, partial(serve_router_stream, router), f"router {router.name}")
            password = (passwords or {}).get(router.name, router.password)
            configs.append(RouterConfig(router.name, host, 8728, router.username, password,
                                        aliases=(router.identity,), site=getattr(router, "site", "")))
        settings = replace(Settings(routers=tuple(configs)), **overrides)
        tools = NocTools(Fleet(settings, net.dial))
        yield World(tools, {r.name: r for r in fleet}, net)
        await tools.fleet.pool.aclose()
        nursery.cancel_scope.cancel()
