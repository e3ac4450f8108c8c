"""ScriptedModel: the simulated model's mind. It recognises the seed's two questions.

Given what the conversation holds (the caller's last words, new tool outputs, a response's
instructions) it decides one turn: words to speak and, maybe, one function call. Its answers
are built from the tool output it receives, never from the simulator's own router data, so a
wrong or partial output is visible in what the caller hears. Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Turn:
    text: str
    call: tuple[str, dict[str, Any]] | None = None


def _plain(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


_QUOTED = re.compile(r'exactamente[^"“«]*["“«]([^"”»]+)["”»]', re.IGNORECASE)
_ROUTER = re.compile(r"router\s+(\d{1,3})\s*(?:punto|\.)\s*(\d{1,3})")


class ScriptedModel:
    def decide(
        self,
        *,
        user_text: str | None,
        tool_outputs: list[tuple[str, str]],
        instructions: str | None,
        call_pending: bool,
    ) -> Turn:
        if instructions:
            quoted = _QUOTED.search(instructions)
            if quoted:
                return Turn(quoted.group(1).strip())
        if tool_outputs:
            name, output = tool_outputs[-1]
            return Turn(self.report(name, output))
        if user_text is not None:
            return self.answer(user_text, call_pending)
        return Turn("¿En qué te puedo ayudar?")

    def answer(self, user_text: str, call_pending: bool) -> Turn:
        text = _plain(user_text)
        if call_pending:
            return Turn("Sigo esperando el resultado de la consulta anterior; te aviso apenas llegue.")
        if "dispositivo" in text and "activ" in text:
            match = _ROUTER.search(text)
            if not match:
                return Turn("¿De qué router quieres los dispositivos activos?")
            router = f"{match.group(1)}.{match.group(2)}"
            return Turn(
                f"Un momento, consulto los dispositivos activos del router {router}.",
                ("dispositivos_activos", {"router": router}),
            )
        if "trafico" in text and "sfp" in text:
            return Turn(
                "Un momento, estoy consultando el tráfico SFP de todos los routers; puede tardar.",
                ("trafico_sfp", {}),
            )
        return Turn("No entendí. Puedo consultar los dispositivos activos de un router o el tráfico SFP.")

    def report(self, name: str, output_text: str) -> str:
        try:
            output = json.loads(output_text)
        except ValueError:
            return "La herramienta devolvió algo que no entiendo."
        if not isinstance(output, dict):
            return "La herramienta devolvió algo que no entiendo."
        if "error" in output:
            return f"No pude hacer esa consulta: {output['error']}."
        if name == "dispositivos_activos":
            names = [d.get("nombre") or d.get("ip") for d in output.get("dispositivos", [])[:3]]
            return (
                f"El router {output.get('router')} tiene {output.get('dispositivos_activos')} dispositivos activos, "
                f"por ejemplo {', '.join(str(n) for n in names)}."
            )
        if name == "trafico_sfp":
            rows = output.get("interfaces", [])
            text = (
                f"Respondieron {output.get('routers_que_respondieron')} de {output.get('routers_consultados')} routers. "
                f"El tráfico SFP total es de {round(output.get('total_rx_mbps', 0))} megabits por segundo de bajada "
                f"y {round(output.get('total_tx_mbps', 0))} de subida."
            )
            if rows:
                top = max(rows, key=lambda r: r.get("rx_mbps", 0))
                text += f" El más cargado es el router {top.get('router')}, {top.get('interfaz')}, con {round(top.get('rx_mbps', 0))}."
            missing = output.get("sin_respuesta") or list(output.get("errores", {}))
            if missing:
                text += f" No respondieron: {', '.join(missing)}."
            return text
        return "Listo, ya tengo el resultado."
