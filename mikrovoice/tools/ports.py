"""Which interfaces a caller means: "los SFP", "sfp-sfpplus1", "ether*", "ether1, ether2"."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from mikrovoice.routeros.commands import is_interface_name
from mikrovoice.tools.base import Context, Problem, many_routers, only

#: SFP cages are type=ether with these name prefixes (RouterOS has no SFP interface type).
SFP_PREFIXES = ("sfp", "qsfp", "combo")
_PATTERN = re.compile(r"[A-Za-z0-9._\-/+@:*?]{1,64}")
PATTERN_PARAM = {
    "type": "string",
    "description": "Interfaces: 'sfp' (todos los puertos SFP), un nombre ('sfp-sfpplus1', 'ether1'), un patrón con * "
                   "('ether*') o varios separados por comas. Omitido = 'sfp'.",
}


def pattern(args: dict[str, Any], key: str = "interfaces", default: str = "sfp") -> str:
    value = args.get(key, default)
    if value in (None, ""):
        value = default
    if not isinstance(value, str):
        raise Problem(f"'{key}' es un texto: 'sfp', un nombre de interfaz o un patrón como 'ether*'")
    parts = [p.strip() for p in value.replace(" y ", ",").split(",") if p.strip()]
    if not parts or len(parts) > 16 or not all(_PATTERN.fullmatch(p) for p in parts):
        raise Problem(f"{value[:40]!r} no es un nombre de interfaz válido")
    return ",".join(parts)


def check_routers_and_ports(args: dict[str, Any], ctx: Context, tool: str) -> dict[str, Any]:
    """Arguments of a tool over some interfaces of some routers: ``routers`` and ``interfaces``."""
    only(args, {"routers", "interfaces"}, tool)
    return {"routers": many_routers(args, ctx), "interfaces": pattern(args)}


def matches(name: str, spec: str) -> bool:
    lowered = name.lower()
    for part in spec.lower().split(","):
        if part == "sfp" and lowered.startswith(SFP_PREFIXES):
            return True
        if fnmatch.fnmatchcase(lowered, part):
            return True
    return False


def select(rows: list[dict[str, str]], spec: str, *, ether_only: bool = False) -> list[dict[str, str]]:
    """The enabled interfaces of ``rows`` (``/interface/print``) that ``spec`` names, in router order."""
    return [r for r in rows if matches(r.get("name", ""), spec) and r.get("disabled") != "true"
            and (not ether_only or r.get("type", "ether") == "ether") and is_interface_name(r.get("name", ""))]

