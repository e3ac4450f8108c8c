"""trafico_interfaces: bits per second now on some interfaces of one, several or all routers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mikrovoice.realtime.protocol import ToolSpec
from mikrovoice.routeros import commands
from mikrovoice.routeros.fanout import Ask, FanOut, RouterAnswer
from mikrovoice.tools import ports
from mikrovoice.tools.base import (
    MAX_DETAIL,
    ROUTERS_PARAM,
    Context,
    RouterTool,
    common,
    num,
    statuses,
    unknown_sentence,
)


def mbps(bits_per_second: str | None) -> float:
    value = num(bits_per_second)
    return round(value / 1e6, 1) if value is not None else 0.0


@dataclass
class Traffic(RouterTool):
    ctx: Context
    spec = ToolSpec(
        name="trafico_interfaces",
        description=(
            "Tráfico actual (megabits por segundo de bajada y subida) de interfaces de uno, varios o todos los "
            "routers: por defecto todos los puertos SFP; o una interfaz ('sfp-sfpplus1', 'ether1') o un patrón "
            "('ether*'). Marca 'degradado' una interfaz sin enlace o con errores o descartes. Consulta los routers "
            "en paralelo y puede tardar 5 a 30 segundos; mientras tanto se informa el progreso al usuario. Antes de "
            "llamarla, avisa al usuario con una frase corta."
        ),
        parameters={"type": "object", "properties": {"routers": ROUTERS_PARAM, "interfaces": ports.PATTERN_PARAM},
                    "additionalProperties": False},
    )

    def check(self, args: dict[str, Any], ctx: Context) -> dict[str, Any]:
        return ports.check_routers_and_ports(args, ctx, self.spec.name)

    async def query(self, ask: Ask, args: dict[str, Any]) -> RouterAnswer:
        chosen = ports.select(await ask(commands.interfaces()), args["interfaces"])
        if not chosen:
            return RouterAnswer({"interfaces": []})
        rows = await ask(commands.monitor_traffic([i["name"] for i in chosen]))
        running = {i["name"]: i.get("running") != "false" for i in chosen}
        found, problems = [], []
        for row in rows:
            name = row.get("name", "?")
            errors = sum(num(row.get(k)) or 0 for k in ("rx-errors-per-second", "tx-errors-per-second"))
            drops = sum(num(row.get(k)) or 0 for k in ("rx-drops-per-second", "tx-drops-per-second"))
            found.append({"interfaz": name, "rx_mbps": mbps(row.get("rx-bits-per-second")),
                          "tx_mbps": mbps(row.get("tx-bits-per-second")), "enlace": running.get(name, True)})
            if not running.get(name, True):
                problems.append(f"{name} sin enlace")
            elif errors:
                problems.append(f"{name} con {errors:g} errores por segundo")
            elif drops:
                problems.append(f"{name} descarta {drops:g} paquetes por segundo")
        return RouterAnswer({"interfaces": found}, problems)

    def summarize(self, args: dict[str, Any], fan: FanOut) -> dict[str, Any]:
        ok, degraded, _ = statuses(fan)
        rows = [{"router": o.router, **i} for o in ok + degraded for i in o.data["interfaces"]]
        rx = round(sum(r["rx_mbps"] for r in rows), 1)
        tx = round(sum(r["tx_mbps"] for r in rows), 1)
        which = "SFP" if args["interfaces"] == "sfp" else args["interfaces"]
        text = (f"Respondieron {fan.answered} de {fan.total} routers. El tráfico de {which} suma {round(rx)} megabits "
                f"por segundo de bajada y {round(tx)} de subida")
        if rows:
            top = max(rows, key=lambda r: r["rx_mbps"])
            text += f"; la más cargada es {top['interfaz']} del {top['router']}, con {round(top['rx_mbps'])} de bajada"
        text += "."
        if degraded:
            text += " Con problemas: " + "; ".join(f"{o.router}: {', '.join(o.reasons)}" for o in degraded[:3]) + "."
        text += unknown_sentence(fan)
        busiest = sorted(rows, key=lambda r: -r["rx_mbps"])[:MAX_DETAIL]
        return {**common(fan), "total_rx_mbps": rx, "total_tx_mbps": tx, "interfaces_medidas": len(rows),
                "interfaces": busiest, "resumen": text}
