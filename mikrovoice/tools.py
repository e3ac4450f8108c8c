"""The tools the model may call, in the model's language (Spanish), over the RouterFleet.

Each tool has a JSON-schema spec (sent in ``session.update``), an argument check that turns
bad input into a ``problem`` the model can repeat to the caller, and an async ``run`` that
fills a ``FanOut`` as routers answer. ``report`` builds the tool output from whatever the
FanOut holds, so a query cut short by its deadline still reports what it got.
"""

from __future__ import annotations

import json
from typing import Any

from mikrovoice.call.machine import ToolCall
from mikrovoice.realtime.protocol import ToolSpec
from mikrovoice.routeros import commands
from mikrovoice.routeros.client import RouterOSClient
from mikrovoice.routeros.fleet import FanOut, RouterFleet, UnknownRouter

SFP_PREFIXES = ("sfp", "qsfp", "combo")

ACTIVE_DEVICES = ToolSpec(
    name="dispositivos_activos",
    description=(
        "Lista los dispositivos activos (clientes DHCP con lease 'bound') de UN router MikroTik. "
        "Tarda de 1 a 10 segundos. Antes de llamarla, avisa al usuario con una frase corta."
    ),
    parameters={
        "type": "object",
        "properties": {"router": {"type": "string", "description": "Nombre del router, p. ej. '152.1'"}},
        "required": ["router"],
        "additionalProperties": False,
    },
)
SFP_TRAFFIC = ToolSpec(
    name="trafico_sfp",
    description=(
        "Tráfico actual (bits por segundo) de las interfaces SFP de todos los routers, o de los indicados. "
        "Consulta muchos routers en paralelo y puede tardar 10 a 60 segundos; mientras tanto se informa "
        "el progreso al usuario. Antes de llamarla, avisa al usuario con una frase corta."
    ),
    parameters={
        "type": "object",
        "properties": {
            "routers": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Routers a consultar; vacío u omitido = todos",
            }
        },
        "additionalProperties": False,
    },
)
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


class NocTools:
    def __init__(self, fleet: RouterFleet) -> None:
        self.fleet = fleet

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        return (ACTIVE_DEVICES, SFP_TRAFFIC, CANCEL_QUERY)

    def parse_call(self, call_id: str, name: str, arguments: str) -> ToolCall:
        """Validate a model's call; a bad one gets a ``problem`` and never reaches a router."""
        try:
            args = json.loads(arguments or "{}")
        except ValueError:
            return ToolCall(call_id, name, {}, problem=f"los argumentos no son JSON válido: {arguments[:60]!r}")
        if not isinstance(args, dict):
            return ToolCall(call_id, name, {}, problem="los argumentos deben ser un objeto JSON")
        if name == ACTIVE_DEVICES.name:
            return self._check_active_devices(call_id, args)
        if name == SFP_TRAFFIC.name:
            return self._check_sfp(call_id, args)
        if name == CANCEL_QUERY.name:
            if args:
                return ToolCall(call_id, name, args, problem="cancelar_consulta no lleva argumentos")
            return ToolCall(call_id, name, {}, cancels=True)
        known = ", ".join(s.name for s in self.specs)
        return ToolCall(call_id, name, args, problem=f"no existe la herramienta {name!r}; existen: {known}")

    def _unknown_router(self, call_id: str, name: str, args: dict[str, Any], router: str) -> ToolCall:
        problem = f"no conozco el router {router!r}"
        close = self.fleet.similar(router)
        if close:
            problem += "; ¿quizás " + " o ".join(close) + "?"
        elif len(self.fleet.routers) <= 8:
            problem += "; los routers son: " + ", ".join(sorted(self.fleet.routers))
        return ToolCall(call_id, name, args, problem=problem)

    def _check_active_devices(self, call_id: str, args: dict[str, Any]) -> ToolCall:
        name = ACTIVE_DEVICES.name
        extra = set(args) - {"router"}
        router = args.get("router")
        if extra or not isinstance(router, str) or not router.strip():
            return ToolCall(call_id, name, args, problem="se necesita exactamente un argumento 'router' (texto)")
        try:
            resolved = self.fleet.resolve(router)
        except UnknownRouter:
            return self._unknown_router(call_id, name, args, router)
        return ToolCall(call_id, name, {"router": resolved})

    def _check_sfp(self, call_id: str, args: dict[str, Any]) -> ToolCall:
        name = SFP_TRAFFIC.name
        routers = args.get("routers") or []
        if set(args) - {"routers"} or not isinstance(routers, list) or not all(isinstance(r, str) for r in routers):
            return ToolCall(call_id, name, args, problem="el único argumento es 'routers', una lista de nombres")
        resolved = []
        for router in routers:
            try:
                resolved.append(self.fleet.resolve(router))
            except UnknownRouter:
                return self._unknown_router(call_id, name, args, router)
        return ToolCall(call_id, name, {"routers": resolved or sorted(self.fleet.routers)})

    def plan(self, call: ToolCall) -> FanOut:
        routers = (call.arguments["router"],) if call.name == ACTIVE_DEVICES.name else tuple(call.arguments["routers"])
        return FanOut(routers)

    async def run(self, call: ToolCall, fan: FanOut) -> None:
        query = _active_devices if call.name == ACTIVE_DEVICES.name else _sfp_traffic
        await self.fleet.fan_out(fan, query)

    def report(self, call: ToolCall, fan: FanOut, timed_out_after: float | None) -> dict[str, Any]:
        """The tool output for the model, from whatever the fan-out gathered."""
        output: dict[str, Any]
        if call.name == ACTIVE_DEVICES.name:
            router = call.arguments["router"]
            if router in fan.results:
                devices = fan.results[router]
                output = {"router": router, "dispositivos_activos": len(devices), "dispositivos": devices[:30]}
            else:
                output = {"router": router, "error": fan.errors.get(router, "el router no respondió a tiempo")}
        else:
            rows = [row for name in fan.routers for row in fan.results.get(name, ())]
            output = {
                "routers_consultados": fan.total,
                "routers_que_respondieron": len(fan.results),
                "interfaces": rows,
                "total_rx_mbps": round(sum(r["rx_mbps"] for r in rows), 1),
                "total_tx_mbps": round(sum(r["tx_mbps"] for r in rows), 1),
            }
            if fan.errors:
                output["errores"] = fan.errors
        if timed_out_after is not None:
            output["sin_respuesta"] = fan.pending
            output["nota"] = f"la consulta se cortó a los {timed_out_after:g} s; faltan {len(fan.pending)} routers"
        return output


async def _active_devices(client: RouterOSClient) -> list[dict[str, str]]:
    rows = await client.run(commands.bound_leases())
    return [
        {"ip": r.get("address", ""), "mac": r.get("mac-address", ""), "nombre": r.get("host-name", "")}
        for r in rows
        if r.get("status", "bound") == "bound"
    ]


async def _sfp_traffic(client: RouterOSClient) -> list[dict[str, Any]]:
    interfaces = await client.run(commands.interfaces())
    sfp = [i["name"] for i in interfaces if i.get("name", "").startswith(SFP_PREFIXES) and i.get("disabled") != "true"]
    if not sfp:
        return []
    rows = await client.run(commands.monitor_traffic(sfp))
    return [
        {
            "router": client.name,
            "interfaz": r.get("name", "?"),
            "rx_mbps": _mbps(r.get("rx-bits-per-second")),
            "tx_mbps": _mbps(r.get("tx-bits-per-second")),
        }
        for r in rows
    ]


def _mbps(bits_per_second: str | None) -> float:
    try:
        return round(int(bits_per_second or "0") / 1e6, 1)
    except ValueError:
        return 0.0
