"""Export the call machine for review: ``statecharts/call.mmd`` (always) and ``call.svg``.

The mermaid text comes from python-statemachine and is deterministic, so a test compares the
committed file with a fresh export. The library draws a targetless transition (one that only
acts) as a self-loop without its action; we write it as a ``state : event / action`` line
instead, so a reviewer sees what it does. The events each state explicitly ignores are appended
as mermaid comments, so the file states the whole event table. SVG needs pydot and graphviz's ``dot`` and is skipped without them
(its DOT has per-process ids, so it is never diffed).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mikrovoice.call.machine import EVENTS, CallMachine


def _targetless_lines(text: str) -> str:
    lines = text.split("\n")
    for state in CallMachine.states_map.values():
        for transition in state.transitions:
            if transition.target is not None:
                continue
            actions = [str(a) for a in transition.on if str(a) != "on_transition" and hasattr(CallMachine, str(a))]
            event = str(list(transition.events)[0])
            loop = f"{state.id} --> {state.id} : {event.replace('_', ' ').capitalize()}"
            for i, line in enumerate(lines):
                rest = line.strip().removeprefix(loop)
                if rest != line.strip() and (not rest or rest.startswith(" [")):
                    indent = line[: len(line) - len(line.lstrip())]
                    lines[i] = f"{indent}{state.id} : {event}{rest} / {', '.join(actions)}"
                    break
            else:
                # The library draws one self-loop per state and event: a second targetless
                # transition on the same event (another guard) goes after the first.
                conds = ", ".join(str(c) for c in transition.cond)
                guard = f" [{conds}]" if conds else ""
                prefix = f"{state.id} : {event} "
                at = max((i for i, line in enumerate(lines) if line.strip().startswith(prefix)), default=None)
                if at is not None:
                    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
                    lines.insert(at + 1, f"{indent}{state.id} : {event}{guard} / {', '.join(actions)}")
    return "\n".join(lines)


def mermaid() -> str:
    text = _targetless_lines(f"{CallMachine:mermaid}".rstrip("\n"))
    lines = [text, "", "    %% Events each state explicitly ignores (CallMachine.IGNORED); any event that is",
             "    %% neither a transition above nor listed here is a bug and raises CallMachineError."]
    for state, ignored in CallMachine.IGNORED.items():
        names = ", ".join(e for e in EVENTS if e in ignored)
        lines.append(f"    %% {state} ignores: {names}")
    return "\n".join(lines) + "\n"


def write_diagrams(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "call.mmd"]
    written[0].write_text(mermaid(), encoding="utf-8")
    if shutil.which("dot"):
        try:
            svg = format(CallMachine, "svg")
        except (ImportError, OSError):
            return written
        (out / "call.svg").write_text(svg if isinstance(svg, str) else svg.decode(), encoding="utf-8")
        written.append(out / "call.svg")
    return written
