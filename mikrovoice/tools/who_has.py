"""quien_tiene: who has an IP or a MAC, across the fleet (DHCP lease, ARP, bridge host table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mikrovoice.realtime.protocol import ToolSpec
from mikrovoice.routeros import commands
from mikrovoice.routeros.fanout import Ask, FanOut, IfPresent, RouterAnswer
from mikrovoice.tools.base import (
    MAX_DETAIL,
    ROUTERS_PARAM,
    Context,
    Problem,
    RouterTool,
    common,
    ip_address,
    mac_address,
    many_routers,
    only,
    statuses,
    unknown_sentence,
)

#: A router whose tables name more MACs than this for one IP is not asked for each one's port.
MAX_MACS = 4


@dataclass
class WhoHas(RouterTool):
    ctx: Context
    spec = ToolSpec(
        name="quien_tiene",
        description=(
            "Quién tiene una dirección IP o una MAC: la busca en los leases DHCP, la tabla ARP y la tabla de hosts "
            "del bridge de todos los routers (o de los indicados) y dice en qué router, con qué nombre de equipo y "
            "por qué puerto. Da 'ip' o 'mac', no ambas. Tarda de 2 a 20 segundos."
        ),
        parameters={"type": "object", "properties": {
            "ip": {"type": "string", "description": "Dirección IP, p. ej. '10.20.3.15'"},
            "mac": {"type": "string", "description": "Dirección MAC, p. ej. 'AA:BB:CC:DD:EE:FF'"},
            "routers": ROUTERS_PARAM}, "additionalProperties": False},
    )

    def check(self, args: dict[str, Any], ctx: Context) -> dict[str, Any]:
        only(args, {"ip", "mac", "routers"}, self.spec.name)
        if (args.get("ip") is None) == (args.get("mac") is None):
            raise Problem("dime una IP o una MAC (una sola)")
        key = {"ip": ip_address(args["ip"])} if args.get("ip") is not None else {"mac": mac_address(args["mac"])}
        return {**key, "routers": many_routers(args, ctx)}

    async def query(self, ask: Ask, args: dict[str, Any]) -> RouterAnswer:
        ip, mac = args.get("ip"), args.get("mac")
        found_leases, found_arp = await ask.gather(commands.leases_for(address=ip, mac=mac),
                                                   IfPresent(commands.arp(address=ip, mac=mac)))
        leases, arp = found_leases or [], found_arp or []
        found: dict[str, dict[str, Any]] = {}
        for row in leases:
            entry = found.setdefault(row.get("mac-address", ""), {"ip": row.get("address", ""),
                                                                 "mac": row.get("mac-address", "")})
            entry.update({"nombre": row.get("host-name", ""), "lease": row.get("status", "")})
        for row in arp:
            entry = found.setdefault(row.get("mac-address", ""), {"ip": row.get("address", ""),
                                                                 "mac": row.get("mac-address", "")})
            entry["arp_interfaz"] = row.get("interface", "")
        macs = [m for m in found if m][:MAX_MACS]
        tables = await ask.gather(*(IfPresent(commands.bridge_hosts(mac=m)) for m in macs))
        for mac_found, hosts in zip(macs, tables, strict=True):
            ports = [h.get("on-interface") or h.get("interface", "") for h in hosts or [] if h.get("local") != "true"]
            if ports:
                found[mac_found]["puerto"] = ports[0]
        return RouterAnswer({"encontrado": list(found.values())})

    def summarize(self, args: dict[str, Any], fan: FanOut) -> dict[str, Any]:
        ok, degraded, _ = statuses(fan)
        what = f"la IP {args['ip']}" if "ip" in args else f"la MAC {args['mac']}"
        found = [{"router": o.router, **e} for o in ok + degraded for e in o.data["encontrado"]]
        if found:
            first = found[0]
            who = first.get("nombre") or "un equipo sin nombre"
            text = f"{what[0].upper()}{what[1:]} la tiene {who}"
            text += f" (MAC {first['mac']})" if "ip" in args else f" (IP {first['ip'] or 'sin IP conocida'})"
            text += f", en el router {first['router']}"
            if first.get("lease") == "bound":
                text += ", con lease DHCP activo"
            if first.get("puerto"):
                text += f", por el puerto {first['puerto']}"
            text += "."
            others = sorted({f["router"] for f in found[1:]} - {first["router"]})
            if others:
                text += f" También aparece en {', '.join(others[:3])}."
        else:
            text = f"Ninguno de los {fan.answered} routers que respondieron tiene {what}."
        text += unknown_sentence(fan)
        return {**common(fan), "encontrado": found[:MAX_DETAIL], "resumen": text}
