"""The world of one simulated call: the production service between the three simulators, on one clock.

``run_scenario`` builds an in-memory network (``network.MemoryNetwork``) holding a RouterOS
simulator per router of the operator's inventory (same names and aliases, the scenario's latencies
and faults), a Realtime simulator (the scenario's faults), and the production ``CallService`` with
the operator's settings; then the Asterisk stand-in dials the service and acts the scenario's
script. The same bytes cross the same codecs as in production; only the kernel is missing. When
the caller is done, the world waits for the service to end the call and for every connection to
close, then returns a ``CallObservation`` with everything the invariants judge. ``simulate_call``
runs it on a virtual clock (``clock.EventClock``: a minute of call in a fraction of a second),
deterministically.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import trio

from mikrovoice.call.prompts import Prompts
from mikrovoice.call.session import CallRecord
from mikrovoice.config import Settings
from mikrovoice.logs import CallIdFilter
from mikrovoice.service import CallService, ServiceStats
from mikrovoice.sim import brain, voice
from mikrovoice.sim.asterisk import AsteriskCaller, CallReport
from mikrovoice.sim.realtime import ModelLedger, SimModelConfig, serve_model_stream
from mikrovoice.sim.routeros import SimRouter, make_router, serve_router_stream
from mikrovoice.simulation.clock import EventClock
from mikrovoice.simulation.network import Connection, MemoryNetwork, leaves
from mikrovoice.simulation.scenario import UNREACHABLE, Scenario

MODEL_HOST = "realtime.sim"
#: Where the service takes chan_websocket calls in the simulated world.
WEBSOCKET_LISTEN = ("127.0.0.1", 9093)
ROUTER_USER = "mikrovoice-ro"
ROUTER_PASSWORD = "sim-router-secret"
API_KEY = "sk-sim-secret"
#: After the caller hangs up, the service must have ended the call within this long.
END_GRACE_S = 5.0
#: After the call ended, every connection of every peer must be closed within this long.
SETTLE_S = 10.0
#: No call may last longer than this (the caller's own patience ends every script well before).
HORIZON_S = 3600.0


@dataclass(frozen=True)
class LogLine:
    at: float
    level: int
    logger: str
    event: str
    fields: dict[str, Any]
    call_id: str
    message: str


@dataclass(frozen=True)
class ToolOutput:
    """A ``function_call_output`` the model service received: what the model was told a tool found."""

    at: float
    session: str  # the model session's id
    call_id: str
    output: str  # the JSON text, as sent

    def data(self) -> dict[str, Any] | None:
        """The output as JSON, None if it is not a JSON object."""
        try:
            value = json.loads(self.output)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


@dataclass
class CallObservation:
    """Everything one simulated call did, as each party saw it."""

    scenario: Scenario
    settings: Settings
    caller: CallReport
    record: CallRecord | None  # the service's record of the call (None: no call was accepted)
    ledger: ModelLedger
    routers: dict[str, SimRouter]
    connections: list[Connection]
    logs: list[LogLine]
    started_at: float  # virtual time the caller dialled
    caller_done_at: float = 0.0
    call_ended_in_time: bool = True  # the service ended the call within END_GRACE_S of the caller's end
    settled_at: float = 0.0
    wall_s: float = 0.0
    crashes: list[str] = field(default_factory=list)
    #: every function_call_output the model received, in order (a replay into a new session repeats it)
    tool_outputs: list[ToolOutput] = field(default_factory=list)

    @property
    def simulated_s(self) -> float:
        return self.settled_at - self.started_at

    def t(self, at: float) -> float:
        """A virtual time as seconds since the caller dialled."""
        return at - self.started_at


class _Capture(logging.Handler):
    def __init__(self, into: list[LogLine]) -> None:
        super().__init__(logging.INFO)
        self.into = into
        self.addFilter(CallIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            now = trio.current_time()
        except RuntimeError:
            return
        self.into.append(LogLine(now, record.levelno, record.name, getattr(record, "event", ""),
                                 dict(getattr(record, "fields", {})), getattr(record, "call_id", "-"),
                                 record.getMessage()))


def simulated_settings(settings: Settings) -> Settings:
    """The operator's settings with every peer replaced by a simulator of the same shape."""
    routers = tuple(
        replace(r, host=f"10.{(i >> 8) & 0xFF}.{i & 0xFF}.1", port=8728, username=ROUTER_USER, password=ROUTER_PASSWORD,
                tls=False)
        for i, r in enumerate(settings.routers)
    )
    return replace(settings, routers=routers, api_key=API_KEY,
                   realtime_url=f"ws://{MODEL_HOST}/v1/realtime")


def seeded_fleet(seed: int, settings: Settings, latency_s: dict[str, float] | None = None) -> dict[str, SimRouter]:
    """The scenario's routers, as their data is seeded: one per configured router, in inventory
    order, with the inventory's site; PPPoE user names unique across the fleet (one ``taken`` set).
    The same seed gives the same data (strategies read it to ask about things that exist)."""
    taken: set[str] = set()
    fleet = {}
    for config in settings.routers:
        latency = (latency_s or {}).get(config.name, 0.3)
        router = make_router(config.name, random.Random(f"{seed}-{config.name}"), latency, ROUTER_USER,
                             ROUTER_PASSWORD, taken=taken)
        router.site = config.site
        fleet[config.name] = router
    return fleet


def build_fleet(scenario: Scenario, settings: Settings) -> dict[str, SimRouter]:
    """One simulated router per configured router: seeded data, the scenario's latency and fault."""
    behaviour = {r.name: r for r in scenario.routers}
    fleet = seeded_fleet(scenario.seed, settings, {r.name: r.latency_s for r in scenario.routers})
    for name, router in fleet.items():
        b = behaviour.get(name)
        if b and b.fault and b.fault != UNREACHABLE:
            router.fault = b.fault
    return fleet


async def run_scenario(scenario: Scenario, operator_settings: Settings) -> CallObservation:
    settings = simulated_settings(operator_settings)
    logs: list[LogLine] = []
    capture = _Capture(logs)
    root = logging.getLogger("mikrovoice")
    previous_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.INFO)
    try:
        return await _run(scenario, settings, logs)
    finally:
        root.removeHandler(capture)
        root.setLevel(previous_level)


async def _run(scenario: Scenario, settings: Settings, logs: list[LogLine]) -> CallObservation:
    fleet = build_fleet(scenario, settings)
    unreachable = {r.name for r in scenario.routers if r.fault == UNREACHABLE}
    ledger = ModelLedger()
    stats = ServiceStats()
    outputs: list[ToolOutput] = []
    async with trio.open_nursery() as world:
        net = MemoryNetwork(world)
        for config in settings.routers:
            if config.name not in unreachable:
                net.listen(config.host, config.port, partial(serve_router_stream, fleet[config.name]),
                           f"router {config.name}")
        sessions = itertools.count()

        async def serve_model(stream: trio.abc.Stream) -> None:
            faulty = next(sessions) < scenario.model_fault_sessions
            config = SimModelConfig(api_key=API_KEY, faults=scenario.model if faulty else scenario.model_after,
                                    transcript=partial(_keep_tool_outputs, outputs), transcript_out=False)
            await serve_model_stream(stream, config=config, ledger=ledger)

        net.listen(MODEL_HOST, 80, serve_model, "model")
        # In the simulated world every voice is the tone voice, the recorded prompt included.
        phrases = settings.phrases
        prompts = Prompts(*(voice.speak(getattr(phrases, name)) for name in (
            "model_unavailable", "connection_hold", "pin_request", "pin_wrong", "auth_refused", "busy", "shutdown")))
        service = CallService(settings, stats, dial=net.dial, prompts=prompts)
        net.listen(*settings.listen, service.handle, "mikrovoice")
        net.listen(*WEBSOCKET_LISTEN, service.handle_websocket, "mikrovoice websocket")

        # The caller repeats a question when the assistant says the line was cut, greets them only
        # now (a model that came up late never heard it), or asks what they want (it heard only
        # part of it, or only the "ajá" after it): the first words suffice.
        cues = (settings.phrases.reconnected[:30], settings.phrases.greeting[:30], brain.HOW_CAN_I_HELP,
                brain.GO_AHEAD)
        script = replace(scenario.script(), repeat_cue="|".join(re.escape(c) for c in cues))
        caller = AsteriskCaller(script, call_id=uuid.UUID(int=random.Random(scenario.seed).getrandbits(128),
                                                                      version=4), seed=scenario.seed)
        observation = CallObservation(scenario, settings, caller.report, None, ledger, fleet, net.connections, logs,
                                      started_at=trio.current_time(), tool_outputs=outputs)
        caller_crash: list[str] = []
        with trio.move_on_after(HORIZON_S):
            where = WEBSOCKET_LISTEN if scenario.line.transport == "websocket" else settings.listen
            try:
                await caller.call(*where, dial=net.dial)
            except Exception as exc:  # the caller simulator's own bug: a broken promise (no_crash), shrunk like any
                caller_crash.append("; ".join(repr(leaf) for leaf in leaves(exc)))
        observation.caller_done_at = trio.current_time()
        if stats.calls:
            observation.record = stats.calls[0]
            with trio.move_on_after(END_GRACE_S):
                await stats.calls[0].finished.wait()
            observation.call_ended_in_time = stats.calls[0].ended
        # The router connections are the process's (one per router, shared by its calls), not the
        # call's: the world's process ends with its one call, and closes them as a shutdown does.
        await service.tools.fleet.pool.aclose()
        with trio.move_on_after(SETTLE_S):
            await net.wait_settled()
        observation.settled_at = trio.current_time()
        observation.crashes = [f"{c.service}: {c.crash}" for c in net.connections if c.crash]
        observation.crashes += [f"the Asterisk caller: {crash}" for crash in caller_crash]
        world.cancel_scope.cancel()
    return observation


def _keep_tool_outputs(into: list[ToolOutput], entry: dict[str, Any]) -> None:
    """``SimModelConfig.transcript``: keep the ``function_call_output`` items the model receives."""
    payload = entry.get("event")
    if entry.get("dir") != "in" or not isinstance(payload, dict) or payload.get("type") != "conversation.item.create":
        return
    item = payload.get("item")
    if isinstance(item, dict) and item.get("type") == "function_call_output":
        into.append(ToolOutput(trio.current_time(), str(entry.get("session", "")), str(item.get("call_id", "")),
                               str(item.get("output", ""))))


def _seed_scheduler(seed: int) -> None:
    """Make Trio's choice among simultaneously runnable tasks depend only on ``seed``.

    Trio shuffles each batch of runnable tasks with a module-level ``random.Random`` (and makes
    that order deterministic under Hypothesis, which seeds it per example). Outside Hypothesis
    we seed it ourselves so that the same scenario replays the same interleaving.
    """
    scheduler_random = getattr(trio._core._run, "_r", None)  # private to Trio: see the docstring
    if isinstance(scheduler_random, random.Random):
        scheduler_random.seed(seed)


def simulate_call(scenario: Scenario, settings: Settings,
                  instruments: Sequence[trio.abc.Instrument] = ()) -> CallObservation:
    """Run one scenario to its end on the virtual clock (in its own ``trio.run``), the same way each
    time. ``instruments`` watch the run (a profile of its tasks: ``bench/simulation_speed.py``)."""
    _seed_scheduler(scenario.seed)
    start = time.perf_counter()
    observation = trio.run(run_scenario, scenario, settings, clock=EventClock(), instruments=instruments)
    observation.wall_s = time.perf_counter() - start
    return observation
