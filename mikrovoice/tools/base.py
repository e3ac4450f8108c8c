"""What every NOC tool shares: its shape, argument checks, and the common report.

A tool is a ``ToolSpec`` (name, Spanish description, JSON schema for the model), a ``check`` that
turns the model's arguments into normalised ones or a ``Problem`` (Spanish, read to the caller;
nothing reaches a router), a per-router ``query`` over an ``Ask`` (the only way to a router:
read-only commands through the cache), and a ``summarize`` that turns the outcomes into a short
spoken-friendly ``resumen`` plus the detail the model may give if asked.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Protocol

from mikrovoice.config import Settings
from mikrovoice.realtime.protocol import ToolSpec
from mikrovoice.routeros.fanout import DEGRADED, OK, STATUS_WORDS, UNKNOWN, Ask, FanOut, Outcome, RouterAnswer
from mikrovoice.routeros.inventory import Inventory

#: How many rows of detail a tool output carries at most (the model reads it aloud if asked).
MAX_DETAIL = 20


class Problem(Exception):
    """The arguments cannot be run; the message (Spanish) is what the caller hears."""


@dataclass(frozen=True)
class Context:
    inventory: Inventory
    settings: Settings


class Tool(Protocol):
    spec: ToolSpec

    def check(self, args: dict[str, Any], ctx: Context) -> dict[str, Any]:
        """Normalised arguments, always with ``routers`` (names to ask); raise ``Problem``."""
        ...

    def router_timeout_s(self, args: dict[str, Any], settings: Settings) -> float: ...

    async def query(self, ask: Ask, args: dict[str, Any]) -> RouterAnswer: ...

    def summarize(self, args: dict[str, Any], fan: FanOut) -> dict[str, Any]: ...


class RouterTool:
    """What the tools share unless they say otherwise: a router's deadline is ``router_timeout_s``."""

    def router_timeout_s(self, args: dict[str, Any], settings: Settings) -> float:
        return settings.router_timeout_s


# --------------------------------------------------------------------------- argument checks

ROUTERS_PARAM = {
    "type": "array",
    "items": {"type": "string"},
    "description": "Routers a consultar, como los nombró el usuario (nombre, '152.1', 'ciento cincuenta y dos punto "
                   "uno', o un sitio como 'torre norte'); vacío u omitido = todos",
}
ROUTER_PARAM = {"type": "string", "description": "El router, como lo nombró el usuario ('152.1', 'torre norte')"}


def only(args: dict[str, Any], allowed: set[str], tool: str) -> None:
    extra = sorted(set(args) - allowed)
    if extra:
        raise Problem(f"{tool} no acepta {', '.join(map(repr, extra))[:80]}; acepta: {', '.join(sorted(allowed)) or 'nada'}")


def one_router(args: dict[str, Any], ctx: Context, key: str = "router") -> str:
    spoken = args.get(key)
    if not isinstance(spoken, str) or not spoken.strip():
        raise Problem(f"falta '{key}': ¿de qué router?")
    resolution = ctx.inventory.resolve(spoken)
    if not resolution.ok:
        raise Problem(ctx.inventory.question(resolution))
    return resolution.matches[0]


def many_routers(args: dict[str, Any], ctx: Context, key: str = "routers") -> list[str]:
    """The routers named (a site names all its routers); none named: every router."""
    spoken = args.get(key)
    if spoken in (None, "", []):
        return list(ctx.inventory.routers)
    if isinstance(spoken, str):
        spoken = [spoken]
    if not isinstance(spoken, list) or not all(isinstance(s, str) for s in spoken):
        raise Problem(f"'{key}' es una lista de nombres de routers")
    names: list[str] = []
    for item in spoken[:200]:
        resolution = ctx.inventory.resolve(item)
        if resolution.unknown:
            raise Problem(ctx.inventory.question(resolution))
        names.extend(n for n in resolution.matches if n not in names)
    return names


def ip_address(value: Any, what: str = "la dirección IP") -> str:
    if not isinstance(value, str):
        raise Problem(f"falta {what}")
    text = value.strip().replace(" punto ", ".").replace(",", ".")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise Problem(f"{value[:40]!r} no es una dirección IP válida") from None


_MAC_HEX = re.compile(r"[0-9a-fA-F]")


def mac_address(value: Any) -> str:
    """Any common MAC notation (``aa:bb..``, ``aa-bb-..``, ``aabb.ccdd.eeff``) -> ``AA:BB:CC:DD:EE:FF``."""
    if not isinstance(value, str):
        raise Problem("falta la dirección MAC")
    digits = "".join(_MAC_HEX.findall(value))
    stripped = re.sub(r"[\s:.\-]", "", value)
    if len(digits) != 12 or len(stripped) != 12:
        raise Problem(f"{value[:40]!r} no es una dirección MAC válida")
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2)).upper()


def bounded_int(value: Any, default: int, low: int, high: int, what: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise Problem(f"'{what}' es un número entero de {low} a {high}")
    if not low <= int(value) <= high:
        raise Problem(f"'{what}' va de {low} a {high}")
    return int(value)


# --------------------------------------------------------------------------- reporting


def router_entry(outcome: Outcome) -> dict[str, Any]:
    """One router's line of a tool output: status (Spanish), why, how old, and its data."""
    entry: dict[str, Any] = {"router": outcome.router, "estado": STATUS_WORDS[outcome.status]}
    if outcome.reasons:
        entry["motivo"] = "; ".join(outcome.reasons)
    if outcome.age_s is not None and outcome.age_s >= 1:
        entry["datos_de_hace_s"] = round(outcome.age_s)
    entry.update(outcome.data)
    return entry


def spoken_list(items: list[str], limit: int = 4) -> str:
    if not items:
        return ""
    shown = items[:limit]
    rest = len(items) - len(shown)
    if rest:
        return ", ".join(shown) + f" y {rest} más"
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " y " + shown[-1]


def unanswered(router: str, fan: FanOut) -> dict[str, Any] | None:
    """A one-router tool's output when its router gave no answer (None when it answered)."""
    outcome = fan.outcomes.get(router)
    if outcome is not None and outcome.status != UNKNOWN:
        return None
    reason = "; ".join(outcome.reasons) if outcome else "la consulta no terminó"
    return {"router": router, "estado": "desconocido", "error": f"el router {router} {reason}"}


def common(fan: FanOut) -> dict[str, Any]:
    """The counts every multi-router output carries, and who did not answer and why."""
    out: dict[str, Any] = {"routers_consultados": fan.total, "routers_que_respondieron": fan.answered}
    unknown = {o.router: "; ".join(o.reasons) for o in fan.outcomes.values() if o.status == UNKNOWN}
    if unknown:
        out["sin_respuesta"] = unknown
    ages = [o.age_s for o in fan.outcomes.values() if o.age_s is not None and o.age_s >= 1]
    if ages:
        out["nota_datos"] = f"parte de los datos son de hace hasta {round(max(ages))} segundos (caché)"
    return out


def unknown_sentence(fan: FanOut) -> str:
    """"No respondieron 46.3 (no respondió a tiempo) y 59.3 (...)." or ""."""
    unknown = [o for o in fan.outcomes.values() if o.status == UNKNOWN]
    if not unknown:
        return ""
    parts = [f"{o.router} ({'; '.join(o.reasons)})" for o in unknown[:3]]
    more = f" y {len(unknown) - 3} más" if len(unknown) > 3 else ""
    verb = "No respondió" if len(unknown) == 1 else "No respondieron"
    return f" {verb} {', '.join(parts)}{more}."


def statuses(fan: FanOut) -> tuple[list[Outcome], list[Outcome], list[Outcome]]:
    outs = [fan.outcomes[r] for r in fan.routers if r in fan.outcomes]
    return ([o for o in outs if o.status == OK], [o for o in outs if o.status == DEGRADED],
            [o for o in outs if o.status == UNKNOWN])


def num(text: str | None) -> float | None:
    """A RouterOS number ("7", "-5.22", "24.1"); None when absent or not a number."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None
