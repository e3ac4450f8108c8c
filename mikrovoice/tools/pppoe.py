"""sesion_pppoe: is a subscriber's PPPoE session up, and where (across the fleet)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mikrovoice.realtime.protocol import ToolSpec
from mikrovoice.routeros import commands
from mikrovoice.routeros.fanout import Ask, FanOut, RouterAnswer
from mikrovoice.tools.base import (
    ROUTERS_PARAM,
    Context,
    Problem,
    RouterTool,
    common,
    many_routers,
    only,
    statuses,
    unknown_sentence,
)
from mikrovoice.tools.health import spoken_duration, uptime_s

_USER = re.compile(r"[A-Za-z0-9._\-@+]{1,64}")


@dataclass
class PppoeSession(RouterTool):
    ctx: Context
    spec = ToolSpec(
        name="sesion_pppoe",
        description=(
            "Busca la sesión PPPoE activa de un cliente (usuario PPPoE, p. ej. 'juan.perez') en todos los routers, o "
            "en los indicados: en qué router está conectado, su IP, su MAC y desde hace cuánto. Si no aparece, dilo "
            "con cuántos routers respondieron: un router que no respondió podría tenerla. Tarda de 2 a 20 segundos."
        ),
        parameters={"type": "object", "properties": {
            "usuario": {"type": "string", "description": "Usuario PPPoE exacto, p. ej. 'juan.perez'"},
            "routers": ROUTERS_PARAM}, "required": ["usuario"], "additionalProperties": False},
    )

    def check(self, args: dict[str, Any], ctx: Context) -> dict[str, Any]:
        only(args, {"usuario", "routers"}, self.spec.name)
        user = args.get("usuario")
        if not isinstance(user, str) or not _USER.fullmatch(user.strip()):
            raise Problem("el usuario PPPoE va sin espacios, con letras, números, punto, guion o arroba; "
                          "¿cómo se escribe exactamente?")
        return {"usuario": user.strip(), "routers": many_routers(args, ctx)}

    async def query(self, ask: Ask, args: dict[str, Any]) -> RouterAnswer:
        rows = await ask(commands.ppp_active(name=args["usuario"]))
        sessions = [{"usuario": r.get("name", ""), "ip": r.get("address", ""), "mac": r.get("caller-id", ""),
                     "servicio": r.get("service", ""), "conectado_hace": spoken_duration(uptime_s(r.get("uptime")) or 0)}
                    for r in rows if r.get("name") == args["usuario"]]
        return RouterAnswer({"sesiones": sessions})

    def summarize(self, args: dict[str, Any], fan: FanOut) -> dict[str, Any]:
        ok, degraded, _ = statuses(fan)
        user = args["usuario"]
        found = [{"router": o.router, **s} for o in ok + degraded for s in o.data["sesiones"]]
        if found:
            s = found[0]
            text = (f"El cliente {user} está conectado en el router {s['router']} desde hace {s['conectado_hace']}, "
                    f"con la IP {s['ip']}.")
            if len(found) > 1:
                text += f" Ojo: tiene {len(found)} sesiones activas, también en " + ", ".join(
                    x["router"] for x in found[1:4]) + "."
        else:
            text = f"No encontré una sesión PPPoE activa de {user} en los {fan.answered} routers que respondieron."
            if fan.failed:
                text += " Un router que no respondió podría tenerla."
        text += unknown_sentence(fan)
        return {**common(fan), "usuario": user, "conectado": bool(found), "sesiones": found, "resumen": text}
