"""listar_routers: the routers and sites of the inventory (no router is asked)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mikrovoice.realtime.protocol import ToolSpec
from mikrovoice.routeros.fanout import Ask, FanOut, RouterAnswer
from mikrovoice.tools.base import Context, Problem, RouterTool, only, spoken_list


@dataclass
class ListRouters(RouterTool):
    ctx: Context
    spec = ToolSpec(
        name="listar_routers",
        description=(
            "Lista los routers que conoces y sus sitios (torres, nodos), o los de un sitio. No consulta los "
            "routers: es inmediata. Para saber si están en línea usa estado_routers."
        ),
        parameters={"type": "object", "properties": {
            "sitio": {"type": "string", "description": "Sitio, p. ej. 'torre norte'; omitido = todos"}},
            "additionalProperties": False},
    )

    def check(self, args: dict[str, Any], ctx: Context) -> dict[str, Any]:
        only(args, {"sitio"}, self.spec.name)
        site = args.get("sitio")
        if site is None or site == "":
            return {"routers": [], "sitio": ""}
        if not isinstance(site, str):
            raise Problem("'sitio' es el nombre de un sitio")
        resolution = ctx.inventory.resolve(site)
        if resolution.unknown:
            raise Problem(ctx.inventory.question(resolution))
        return {"routers": [], "sitio": site, "nombres": list(resolution.matches)}

    async def query(self, ask: Ask, args: dict[str, Any]) -> RouterAnswer:  # never called: no router is asked
        return RouterAnswer({})

    def summarize(self, args: dict[str, Any], fan: FanOut) -> dict[str, Any]:
        inventory = self.ctx.inventory
        names = args.get("nombres") or list(inventory.routers)
        sites: dict[str, list[str]] = {}
        for name in names:
            sites.setdefault(inventory.routers[name].site or "sin sitio", []).append(name)
        text = f"Conozco {len(names)} routers" if not args["sitio"] else f"En {args['sitio']} hay {len(names)} routers"
        text += ": " + "; ".join(f"{site}: {spoken_list(members)}" for site, members in list(sites.items())[:6])
        if len(sites) > 6:
            text += f"; y {len(sites) - 6} sitios más"
        text += "."
        listing = [{"router": n, "sitio": inventory.routers[n].site, "alias": list(inventory.routers[n].aliases)}
                   for n in names[:60]]
        return {"routers_en_inventario": len(names), "sitios": {s: m for s, m in sites.items()}, "routers": listing,
                "resumen": text}
