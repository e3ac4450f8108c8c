"""estado_routers: is a router up, and how is it (CPU, memory, uptime, version, temperature)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mikrovoice.realtime.protocol import ToolSpec
from mikrovoice.routeros import commands
from mikrovoice.routeros.fanout import Ask, FanOut, IfPresent, RouterAnswer
from mikrovoice.tools.base import (
    ROUTERS_PARAM,
    Context,
    RouterTool,
    common,
    many_routers,
    num,
    only,
    statuses,
    unknown_sentence,
)


@dataclass(frozen=True)
class HealthLimits:
    """Beyond these a router is "degraded" and the caller hears why (config section ``[health]``)."""

    cpu_high_pct: float = 85.0
    memory_low_pct: float = 10.0
    temperature_high_c: float = 70.0
    #: an uptime shorter than this means the router restarted recently
    recent_reboot_s: float = 15 * 60

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_UPTIME = re.compile(r"(\d+)([wdhms])")


def uptime_s(text: str | None) -> int | None:
    """RouterOS durations ("3w2d4h12m40s", "9m59s") in seconds; None if not one."""
    if not text or not re.fullmatch(r"(\d+[wdhms])+", text):
        return None
    return sum(int(n) * _UNITS[u] for n, u in _UPTIME.findall(text))


def spoken_duration(seconds: int) -> str:
    """The two largest units, in Spanish: "3 semanas y 2 días", "4 horas y 12 minutos", "40 segundos"."""
    names = (("semana", "semanas", 604800), ("día", "días", 86400), ("hora", "horas", 3600),
             ("minuto", "minutos", 60), ("segundo", "segundos", 1))
    parts = []
    for one, many, size in names:
        if seconds >= size:
            n, seconds = divmod(seconds, size)
            parts.append(f"{n} {one if n == 1 else many}")
        if len(parts) == 2:
            break
    return " y ".join(parts) or "0 segundos"


def _temperature(rows: list[dict[str, str]] | None) -> float | None:
    if not rows:
        return None
    temps = []
    for row in rows:
        if "name" in row and "value" in row:  # RouterOS 7: one row per sensor
            if "temperature" in row["name"]:
                temps.append(num(row["value"]))
        else:  # RouterOS 6: one row, one key per sensor
            temps += [num(v) for k, v in row.items() if "temperature" in k]
    found = [t for t in temps if t is not None]
    return max(found) if found else None


@dataclass
class Health(RouterTool):
    ctx: Context
    spec = ToolSpec(
        name="estado_routers",
        description=(
            "Estado de uno, varios o todos los routers: si responde (en línea o no), CPU, memoria libre, tiempo "
            "encendido (uptime), versión de RouterOS y temperatura si el equipo la mide. Sirve para '¿está caído "
            "el 46.3?' o '¿cómo están los routers de la torre norte?'. Cada router sale 'ok', 'degradado' (con el "
            "motivo: CPU alta, poca memoria, temperatura alta, reinicio reciente) o 'desconocido' (no respondió: no "
            "se sabe si está caído, dilo así). Tarda de 1 a 20 segundos; avisa antes con una frase corta."
        ),
        parameters={"type": "object", "properties": {"routers": ROUTERS_PARAM}, "additionalProperties": False},
    )

    def check(self, args: dict[str, Any], ctx: Context) -> dict[str, Any]:
        only(args, {"routers"}, self.spec.name)
        return {"routers": many_routers(args, ctx)}

    async def query(self, ask: Ask, args: dict[str, Any]) -> RouterAnswer:
        resources, sensors = await ask.gather(commands.resource(), IfPresent(commands.health()))
        resource = (resources or [{}])[0]
        cpu = num(resource.get("cpu-load"))
        free, total = num(resource.get("free-memory")), num(resource.get("total-memory"))
        memory = round(100 * free / total) if free is not None and total else None
        up = uptime_s(resource.get("uptime"))
        temperature = _temperature(sensors)
        data: dict[str, Any] = {"en_linea": True, "version": resource.get("version", "").split(" ")[0],
                                "placa": resource.get("board-name", ""), "cpu_pct": cpu, "memoria_libre_pct": memory,
                                "encendido_hace": spoken_duration(up) if up is not None else resource.get("uptime")}
        if temperature is not None:
            data["temperatura_c"] = temperature
        problems = []
        limits = HealthLimits(**self.ctx.settings.health_limits)
        if cpu is not None and cpu >= limits.cpu_high_pct:
            problems.append(f"CPU al {cpu:g}%")
        if memory is not None and memory < limits.memory_low_pct:
            problems.append(f"solo {memory}% de memoria libre")
        if temperature is not None and temperature >= limits.temperature_high_c:
            problems.append(f"temperatura de {temperature:g} grados")
        if up is not None and up < limits.recent_reboot_s:
            problems.append(f"se reinició hace {spoken_duration(up)}")
        return RouterAnswer(data, problems)

    def summarize(self, args: dict[str, Any], fan: FanOut) -> dict[str, Any]:
        ok, degraded, unknown = statuses(fan)
        if fan.total == 1 and fan.outcomes:
            o = next(iter(fan.outcomes.values()))
            if o.status == "unknown":
                text = (f"No pude comunicarme con el router {o.router}: {'; '.join(o.reasons)}. No sé si está caído "
                        "o si solo no responde a la consulta.")
            else:
                d = o.data
                text = (f"El router {o.router} está en línea, encendido hace {d['encendido_hace']}, CPU al "
                        f"{d['cpu_pct']:g}%, {d['memoria_libre_pct']}% de memoria libre, versión {d['version']}.")
                if o.reasons:
                    text += f" Atención: {', '.join(o.reasons)}."
        else:
            text = f"De {fan.total} routers, {len(ok)} están bien"
            if degraded:
                text += f", {len(degraded)} con problemas (" + "; ".join(
                    f"{o.router}: {', '.join(o.reasons)}" for o in degraded[:3]) + ")"
            text += "." + unknown_sentence(fan)
        return {**common(fan), "resumen": text}
