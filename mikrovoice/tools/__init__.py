"""The tools the model may call, in the model's language (Spanish), over the router ``Fleet``.

``NocTools`` is the registry the call session uses: ``specs`` (sent in ``session.update``),
``parse_call`` (the model's arguments checked and normalised, or a ``problem`` the model reads to
the caller: nothing reaches a router), ``plan`` (the ``FanOut`` of a call), ``run`` (the fan-out)
and ``report`` (the tool output, from whatever the fan-out gathered, so a question cut short by
its deadline still reports what it got). Each tool lives in its own module.
"""

from __future__ import annotations

import json
import logging
from functools import partial
from typing import Any

from mikrovoice.call.machine import ToolCall
from mikrovoice.logs import event
from mikrovoice.realtime.protocol import ToolSpec
from mikrovoice.routeros.fanout import UNKNOWN, FanOut, Fleet
from mikrovoice.tools.base import MAX_DETAIL, Context, Problem, Tool, router_entry
from mikrovoice.tools.devices import ActiveDevices
from mikrovoice.tools.health import Health
from mikrovoice.tools.inventory import ListRouters
from mikrovoice.tools.logs import RouterLog
from mikrovoice.tools.optics import Optics
from mikrovoice.tools.ping import Ping
from mikrovoice.tools.pppoe import PppoeSession
from mikrovoice.tools.traffic import Traffic
from mikrovoice.tools.who_has import WhoHas

log = logging.getLogger("mikrovoice.tools")

#: Not a router query: stops the query that is running. A backchannel ("ajá", "sí") is not a
#: request to cancel, and the description says so.
CANCEL_QUERY = ToolSpec(
    name="cancelar_consulta",
    description=(
        "Cancela la consulta que está en curso. Úsala SOLO si el usuario pide expresamente cancelarla u "
        "olvidarla ('olvídalo', 'cancela eso', 'ya no la necesito'). Un 'ajá', 'sí' u 'ok' no es una "
        "petición de cancelar: en ese caso sigue esperando el resultado."
    ),
    parameters={"type": "object", "properties": {}, "additionalProperties": False},
)
#: A model's arguments longer than this are refused unread.
MAX_ARGUMENTS = 4096


class NocTools:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.ctx = Context(fleet.inventory, fleet.settings)
        tools: list[Tool] = [ListRouters(self.ctx), Health(self.ctx), ActiveDevices(self.ctx), WhoHas(self.ctx),
                             Traffic(self.ctx), Optics(self.ctx), PppoeSession(self.ctx), Ping(self.ctx),
                             RouterLog(self.ctx)]
        self.tools = {t.spec.name: t for t in tools}

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        return (*(t.spec for t in self.tools.values()), CANCEL_QUERY)

    def parse_call(self, call_id: str, name: str, arguments: str) -> ToolCall:
        """Validate a model's call; a bad one gets a ``problem`` (Spanish) and never reaches a router."""
        if len(arguments or "") > MAX_ARGUMENTS:
            return ToolCall(call_id, name, {}, problem="los argumentos son demasiado largos")
        try:
            args = json.loads(arguments or "{}")
        except ValueError:
            return ToolCall(call_id, name, {}, problem=f"los argumentos no son JSON válido: {arguments[:60]!r}")
        if not isinstance(args, dict):
            return ToolCall(call_id, name, {}, problem="los argumentos deben ser un objeto JSON")
        if name == CANCEL_QUERY.name:
            if args:
                return ToolCall(call_id, name, args, problem="cancelar_consulta no lleva argumentos")
            return ToolCall(call_id, name, {}, cancels=True)
        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join(s.name for s in self.specs)
            return ToolCall(call_id, name, args, problem=f"no existe la herramienta {name[:40]!r}; existen: {known}")
        try:
            checked = tool.check(args, self.ctx)
        except Problem as problem:
            return ToolCall(call_id, name, args, problem=str(problem))
        return ToolCall(call_id, name, checked)

    def plan(self, call: ToolCall) -> FanOut:
        tool = self.tools[call.name]
        return FanOut(tuple(call.arguments["routers"]), tool.router_timeout_s(call.arguments, self.fleet.settings))

    async def run(self, call: ToolCall, fan: FanOut) -> None:
        tool = self.tools[call.name]
        await self.fleet.fan_out(fan, partial(tool.query, args=call.arguments))

    def report(self, call: ToolCall, fan: FanOut, timed_out_after: float | None) -> dict[str, Any]:
        """The tool output for the model, from whatever the fan-out gathered."""
        output = self.tools[call.name].summarize(call.arguments, fan)
        if fan.total > 1 and "routers" not in output:
            # The per-router detail, the worrying ones first, within MAX_DETAIL.
            order = {UNKNOWN: 0, "degraded": 1, "ok": 2}
            outs = sorted(fan.outcomes.values(), key=lambda o: order[o.status])
            output["routers"] = [router_entry(o) for o in outs[:MAX_DETAIL]]
        if timed_out_after is not None:
            output["sin_terminar"] = fan.pending
            output["nota"] = (f"la consulta se cortó a los {timed_out_after:g} s; {len(fan.pending)} routers no "
                              "terminaron a tiempo")
            output["resumen"] = output.get("resumen", "") + (
                f" La consulta se cortó a los {timed_out_after:g} segundos: {len(fan.pending)} routers no terminaron.")
        event(log, "tool.report", tool=call.name, answered=fan.answered, failed=fan.failed, total=fan.total,
              timed_out=timed_out_after is not None)
        return output
