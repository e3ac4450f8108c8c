"""ping: from one router to an address, a bounded number of packets (one per second)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mikrovoice.config import Settings
from mikrovoice.realtime.protocol import ToolSpec
from mikrovoice.routeros import commands
from mikrovoice.routeros.fanout import Ask, FanOut, RouterAnswer
from mikrovoice.tools.base import (
    ROUTER_PARAM,
    Context,
    bounded_int,
    ip_address,
    num,
    one_router,
    only,
    unanswered,
)

DEFAULT_COUNT = 4
_RTT = re.compile(r"(?:(\d+)ms)?(?:(\d+)us)?")


def rtt_ms(text: str | None) -> float | None:
    """RouterOS 7 round-trip times ("1ms244us", "818us", "12ms") in milliseconds."""
    if not text:
        return None
    match = _RTT.fullmatch(text)
    if match is None or not any(match.groups()):
        value = num(text)
        return value
    ms, us = match.groups()
    return round(int(ms or 0) + int(us or 0) / 1000, 3)


@dataclass
class Ping:
    ctx: Context
    spec = ToolSpec(
        name="ping",
        description=(
            f"Hace ping desde UN router a una dirección IP: 'cantidad' paquetes (1 a {commands.MAX_PING_COUNT}, por "
            f"defecto {DEFAULT_COUNT}), uno por segundo, así que tarda esa cantidad de segundos. Dice cuántos "
            "respondieron, la pérdida y la latencia. Avisa antes con una frase corta."
        ),
        parameters={"type": "object", "properties": {
            "router": ROUTER_PARAM,
            "destino": {"type": "string", "description": "Dirección IP de destino, p. ej. '8.8.8.8'"},
            "cantidad": {"type": "integer", "minimum": 1, "maximum": commands.MAX_PING_COUNT}},
            "required": ["router", "destino"], "additionalProperties": False},
    )

    def check(self, args: dict[str, Any], ctx: Context) -> dict[str, Any]:
        only(args, {"router", "destino", "cantidad"}, self.spec.name)
        router = one_router(args, ctx)
        return {"router": router, "routers": [router], "destino": ip_address(args.get("destino"), "el destino"),
                "cantidad": bounded_int(args.get("cantidad"), DEFAULT_COUNT, 1, commands.MAX_PING_COUNT, "cantidad")}

    def router_timeout_s(self, args: dict[str, Any], settings: Settings) -> float:
        return settings.router_timeout_s + int(args["cantidad"]) * commands.PING_INTERVAL_S

    async def query(self, ask: Ask, args: dict[str, Any]) -> RouterAnswer:
        rows = await ask(commands.ping(args["destino"], args["cantidad"]))
        last = rows[-1] if rows else {}
        sent, received = int(num(last.get("sent")) or 0), int(num(last.get("received")) or 0)
        loss = round(100 * (sent - received) / sent) if sent else 100
        data: dict[str, Any] = {"destino": args["destino"], "enviados": sent, "recibidos": received,
                                "perdida_pct": loss}
        if received:
            data["rtt_promedio_ms"] = rtt_ms(last.get("avg-rtt"))
            data["rtt_max_ms"] = rtt_ms(last.get("max-rtt"))
        problems = []
        if not received:
            problems.append(f"{args['destino']} no respondió ningún ping")
        elif loss:
            problems.append(f"pérdida del {loss}%")
        return RouterAnswer(data, problems)

    def summarize(self, args: dict[str, Any], fan: FanOut) -> dict[str, Any]:
        router = args["router"]
        missing = unanswered(router, fan)
        if missing is not None:
            return missing
        o = fan.outcomes[router]
        d = o.data
        text = f"Desde el {router}, {d['destino']} respondió {d['recibidos']} de {d['enviados']} pings"
        if d["recibidos"]:
            text += f", con {d['rtt_promedio_ms']:g} milisegundos de promedio"
        text += "."
        if d["recibidos"] and d["perdida_pct"]:
            text += f" Hay pérdida del {d['perdida_pct']}%."
        return {"router": router, "estado": "degradado" if o.reasons else "ok", **d, "resumen": text}
