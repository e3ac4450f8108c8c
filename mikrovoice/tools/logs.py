"""log_router: the recent log lines of one router about a topic."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from mikrovoice.realtime.protocol import ToolSpec
from mikrovoice.routeros import commands
from mikrovoice.routeros.fanout import Ask, FanOut, RouterAnswer
from mikrovoice.tools.base import (
    ROUTER_PARAM,
    Context,
    Problem,
    RouterTool,
    bounded_int,
    one_router,
    only,
    unanswered,
)

DEFAULT_LINES, MAX_LINES = 8, 20
#: Spanish topic words -> RouterOS log topics.
TOPICS = {
    "interfaz": "interface", "interfaces": "interface", "enlace": "interface", "puerto": "interface",
    "pppoe": "pppoe", "ppp": "ppp", "dhcp": "dhcp", "sistema": "system", "acceso": "account", "login": "account",
    "inalambrico": "wireless", "wifi": "wireless", "wireless": "wireless", "error": "error", "errores": "error",
    "critico": "critical", "firewall": "firewall", "ospf": "ospf", "bgp": "bgp", "dns": "dns", "ntp": "ntp",
}
_WORD = re.compile(r"[a-z0-9._\-]{1,32}")


def _plain(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().strip()


@dataclass
class RouterLog(RouterTool):
    ctx: Context
    spec = ToolSpec(
        name="log_router",
        description=(
            "Las últimas líneas del log de UN router, opcionalmente sobre un tema: 'interfaz', 'pppoe', 'dhcp', "
            "'sistema', 'wifi', 'error', o una palabra que aparezca en el mensaje (p. ej. 'sfp-sfpplus1' o un "
            f"usuario). 'lineas' de 1 a {MAX_LINES} (por defecto {DEFAULT_LINES}). Tarda de 1 a 10 segundos."
        ),
        parameters={"type": "object", "properties": {
            "router": ROUTER_PARAM,
            "tema": {"type": "string", "description": "Tema o palabra a buscar; omitido = todo"},
            "lineas": {"type": "integer", "minimum": 1, "maximum": MAX_LINES}},
            "required": ["router"], "additionalProperties": False},
    )

    def check(self, args: dict[str, Any], ctx: Context) -> dict[str, Any]:
        only(args, {"router", "tema", "lineas"}, self.spec.name)
        router = one_router(args, ctx)
        topic = args.get("tema") or ""
        if not isinstance(topic, str) or (topic and not _WORD.fullmatch(_plain(topic))):
            raise Problem("el tema es una sola palabra, p. ej. 'interfaz', 'pppoe' o el nombre de una interfaz")
        return {"router": router, "routers": [router], "tema": _plain(topic),
                "lineas": bounded_int(args.get("lineas"), DEFAULT_LINES, 1, MAX_LINES, "lineas")}

    async def query(self, ask: Ask, args: dict[str, Any]) -> RouterAnswer:
        rows = await ask(commands.log())
        topic = args["tema"]
        wanted = TOPICS.get(topic, topic)
        if topic:
            rows = [r for r in rows if wanted in r.get("topics", "").split(",") or topic in r.get("message", "").lower()]
        lines = [{"hora": r.get("time", ""), "temas": r.get("topics", ""), "mensaje": r.get("message", "")}
                 for r in rows[-args["lineas"]:]]
        return RouterAnswer({"coincidencias": len(rows), "lineas": lines})

    def summarize(self, args: dict[str, Any], fan: FanOut) -> dict[str, Any]:
        router = args["router"]
        missing = unanswered(router, fan)
        if missing is not None:
            return missing
        o = fan.outcomes[router]
        d = o.data
        about = f" sobre {args['tema']}" if args["tema"] else ""
        if not d["lineas"]:
            text = f"El log del {router} no tiene líneas{about}."
        else:
            last = d["lineas"][-1]
            text = (f"El log del {router} tiene {d['coincidencias']} líneas{about}; la última, a las {last['hora']}: "
                    f"{last['mensaje']}.")
        out = {"router": router, "estado": "ok", **d, "resumen": text}
        if o.age_s is not None and o.age_s >= 1:
            out["datos_de_hace_s"] = round(o.age_s)
        return out
