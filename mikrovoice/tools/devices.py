"""dispositivos_activos: who is on one router (bound DHCP leases, ARP, wireless clients)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mikrovoice.realtime.protocol import ToolSpec
from mikrovoice.routeros import commands
from mikrovoice.routeros.fanout import Ask, FanOut, IfPresent, RouterAnswer
from mikrovoice.tools.base import MAX_DETAIL, ROUTER_PARAM, Context, RouterTool, one_router, only, unanswered


@dataclass
class ActiveDevices(RouterTool):
    ctx: Context
    spec = ToolSpec(
        name="dispositivos_activos",
        description=(
            "Dispositivos activos de UN router MikroTik: clientes DHCP con lease activo ('bound'), entradas ARP y "
            "clientes inalámbricos conectados (si el router tiene wifi). Da el número y algunos ejemplos (IP, MAC, "
            "nombre). Tarda de 1 a 10 segundos; antes de llamarla, avisa al usuario con una frase corta."
        ),
        parameters={"type": "object", "properties": {"router": ROUTER_PARAM}, "required": ["router"],
                    "additionalProperties": False},
    )

    def check(self, args: dict[str, Any], ctx: Context) -> dict[str, Any]:
        only(args, {"router"}, self.spec.name)
        router = one_router(args, ctx)
        return {"router": router, "routers": [router]}

    async def query(self, ask: Ask, args: dict[str, Any]) -> RouterAnswer:
        bound, arp, wireless, wifi = await ask.gather(
            commands.bound_leases(), IfPresent(commands.arp()), IfPresent(commands.wireless_registrations()),
            IfPresent(commands.wifi_registrations()))
        leases = [r for r in bound or [] if r.get("status", "bound") == "bound"]
        radios = None if wireless is None and wifi is None else len(wireless or []) + len(wifi or [])
        devices = [{"ip": r.get("address", ""), "mac": r.get("mac-address", ""), "nombre": r.get("host-name", "")}
                   for r in leases]
        data: dict[str, Any] = {"dispositivos_activos": len(leases), "dispositivos": devices[:MAX_DETAIL]}
        if arp is not None:
            data["entradas_arp"] = sum(1 for r in arp if r.get("complete", "true") == "true")
        if radios is not None:
            data["clientes_inalambricos"] = radios
        return RouterAnswer(data)

    def summarize(self, args: dict[str, Any], fan: FanOut) -> dict[str, Any]:
        router = args["router"]
        missing = unanswered(router, fan)
        if missing is not None:
            return missing
        outcome = fan.outcomes[router]
        d = outcome.data
        names = [x["nombre"] or x["ip"] for x in d["dispositivos"][:3]]
        text = f"El router {router} tiene {d['dispositivos_activos']} dispositivos con lease DHCP activo"
        if "clientes_inalambricos" in d:
            text += f" y {d['clientes_inalambricos']} clientes inalámbricos"
        text += (f", por ejemplo {', '.join(names)}." if names else ".")
        out = {"router": router, "estado": "ok", **d, "resumen": text}
        if outcome.age_s is not None and outcome.age_s >= 1:
            out["datos_de_hace_s"] = round(outcome.age_s)
        return out
