"""optica_sfp: SFP optics (receive and transmit power, temperature, link) with a verdict."""

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


@dataclass(frozen=True)
class OpticsLimits:
    """Thresholds of a healthy optical link (dBm, °C): typical 1G/10G SFP and SFP+ modules. A fleet of
    long-reach modules (ZR: receivers down to about -30 dBm) sets its own in ``[optics]``."""

    rx_low_dbm: float = -20.0       # weak: the link works with little margin
    rx_critical_dbm: float = -25.0  # most receivers stop here
    rx_high_dbm: float = 0.5        # overload (a short link without attenuator)
    tx_low_dbm: float = -9.0
    temperature_high_c: float = 70.0


LIMITS = OpticsLimits()


def verdict(row: dict[str, str], limits: OpticsLimits = LIMITS) -> tuple[dict[str, Any], list[str]]:
    """One port's reading and what is wrong with it (Spanish), from one ``ethernet/monitor`` row."""
    name = row.get("name", "?")
    port: dict[str, Any] = {"interfaz": name, "enlace": row.get("status") == "link-ok"}
    if row.get("rate"):
        port["velocidad"] = row["rate"]
    if row.get("sfp-module-present") == "false":
        port["modulo"] = False
        port["veredicto"] = "sin módulo SFP"
        return port, []
    rx, tx = num(row.get("sfp-rx-power")), num(row.get("sfp-tx-power"))
    temperature = num(row.get("sfp-temperature"))
    port.update({"rx_dbm": rx, "tx_dbm": tx, "temperatura_c": temperature})
    if row.get("sfp-vendor-name"):
        port["modulo"] = f"{row.get('sfp-vendor-name')} {row.get('sfp-vendor-part-number', '')}".strip()
    problems = []
    if row.get("sfp-rx-loss") == "true":
        problems.append("pérdida de señal (rx-loss)")
    elif rx is not None and rx <= limits.rx_critical_dbm:
        problems.append(f"recepción {rx:g} dBm, crítica")
    elif rx is not None and rx <= limits.rx_low_dbm:
        problems.append(f"recepción {rx:g} dBm, baja")
    elif rx is not None and rx >= limits.rx_high_dbm:
        problems.append(f"recepción {rx:g} dBm, saturada")
    if row.get("sfp-tx-fault") == "true":
        problems.append("falla del transmisor (tx-fault)")
    elif tx is not None and tx <= limits.tx_low_dbm:
        problems.append(f"transmisión {tx:g} dBm, baja")
    if temperature is not None and temperature >= limits.temperature_high_c:
        problems.append(f"temperatura {temperature:g} grados")
    if not port["enlace"] and not problems:
        problems.append("sin enlace")
    port["veredicto"] = "; ".join(problems) or "bien"
    return port, [f"{name}: {p}" for p in problems]


@dataclass
class Optics(RouterTool):
    ctx: Context
    spec = ToolSpec(
        name="optica_sfp",
        description=(
            "Óptica de los puertos SFP: potencia de recepción y transmisión (dBm), temperatura del módulo y enlace, "
            "con un veredicto ('bien', 'baja', 'crítica', 'sin módulo'). De uno, varios o todos los routers; por "
            "defecto todos sus puertos SFP, o uno ('sfp-sfpplus1'). Tarda de 2 a 20 segundos; avisa antes con una "
            "frase corta."
        ),
        parameters={"type": "object", "properties": {"routers": ROUTERS_PARAM, "interfaces": ports.PATTERN_PARAM},
                    "additionalProperties": False},
    )

    def check(self, args: dict[str, Any], ctx: Context) -> dict[str, Any]:
        return ports.check_routers_and_ports(args, ctx, self.spec.name)

    async def query(self, ask: Ask, args: dict[str, Any]) -> RouterAnswer:
        chosen = ports.select(await ask(commands.interfaces()), args["interfaces"], ether_only=True)
        if not chosen:
            return RouterAnswer({"puertos": []})
        rows = await ask(commands.ethernet_monitor([i["name"] for i in chosen]))
        limits = OpticsLimits(**self.ctx.settings.optics_limits)
        found, problems = [], []
        for row in rows:
            port, wrong = verdict(row, limits)
            found.append(port)
            problems += wrong
        return RouterAnswer({"puertos": found}, problems)

    def summarize(self, args: dict[str, Any], fan: FanOut) -> dict[str, Any]:
        ok, degraded, _ = statuses(fan)
        ports_seen = [{"router": o.router, **p} for o in ok + degraded for p in o.data["puertos"]]
        with_module = [p for p in ports_seen if p.get("modulo") is not False]
        bad = [p for p in with_module if p["veredicto"] != "bien"]
        if len(ports_seen) == 1 and fan.total == 1:
            p = ports_seen[0]
            if p.get("modulo") is False:
                text = f"El {p['interfaz']} del {p['router']} no tiene módulo SFP."
            else:
                text = (f"El {p['interfaz']} del {p['router']} recibe {p['rx_dbm']} dBm y transmite {p['tx_dbm']} dBm, "
                        f"a {p['temperatura_c']} grados: {p['veredicto']}.")
        else:
            text = (f"Revisé {len(with_module)} puertos SFP con módulo en {fan.answered} de {fan.total} routers: "
                    f"{len(with_module) - len(bad)} bien")
            if bad:
                text += f", {len(bad)} con problemas: " + "; ".join(
                    f"{p['interfaz']} del {p['router']} ({p['veredicto']})" for p in bad[:3])
                if len(bad) > 3:
                    text += f" y {len(bad) - 3} más"
            text += "."
        text += unknown_sentence(fan)
        worst = sorted(ports_seen, key=lambda p: (p["veredicto"] == "bien", p.get("rx_dbm") or 0))[:MAX_DETAIL]
        return {**common(fan), "puertos_revisados": len(with_module), "puertos_con_problemas": len(bad),
                "puertos": worst, "resumen": text}
