"""The terminal side of ``mikrovoice simulate``: progress bar, summary table, failures, JSON line.

Everything shown comes from ``runner.simulate``; this module only presents it (with ``rich``).
The progress bar goes to stderr, the report to stdout; with ``--json`` the last line of stdout
is one JSON object.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mikrovoice.config import ConfigError, RouterConfig, Settings
from mikrovoice.sim.routeros import FleetProfile, make_fleet
from mikrovoice.simulation.invariants import INVARIANTS
from mikrovoice.simulation.runner import CallStats, RunSummary, simulate


def default_settings() -> Settings:
    """Without a configuration: the defaults and the demo's twelve routers, at the demo's sites."""
    fleet = make_fleet(FleetProfile(count=12, seed=7))
    return Settings(routers=tuple(RouterConfig(r.name, f"10.0.{i}.1", site=r.site) for i, r in enumerate(fleet)))


def run_simulate(settings: Settings | None, *, calls: int, seed: int, as_json: bool, timeline_dir: Path | None,
                 shrink: bool = True, compare: Path | None = None) -> int:
    settings = settings or default_settings()
    before = _last_json(compare) if compare is not None else None  # a bad file fails before the run
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True)
    violating = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[status]}"), console=err, transient=True) as progress:
        task = progress.add_task("llamadas", total=calls, status="")

        def on_call(stats: CallStats) -> None:
            nonlocal violating
            violating += bool(stats.violations)
            progress.update(task, advance=1, status=f"violaciones: {violating}")

        def on_phase(phase: str) -> None:
            if phase.startswith("shrink"):
                progress.update(task, description=f"reduciendo ({phase.split(' ', 1)[1]})")

        summary = simulate(settings, calls, seed, timeline_dir=timeline_dir, shrink=shrink, on_call=on_call,
                           on_phase=on_phase)
    _print_summary(out, summary, settings)
    if before is not None:
        _print_comparison(out, before, summary.as_json())
    if as_json:
        sys.stdout.flush()
        print(json.dumps(summary.as_json(), ensure_ascii=False))
    return 1 if summary.failures or any(c.violations for c in summary.calls) else 0


def _print_summary(out: Console, summary: RunSummary, settings: Settings) -> None:
    data = summary.as_json()
    table = Table(title=f"mikrovoice simulate — semilla {summary.seed}, {len(settings.routers)} routers")
    table.add_column("medida")
    table.add_column("valor", justify="right")
    table.add_row("llamadas", str(data["calls"]))
    table.add_row("preguntas respondidas (o explicadas)", f"{data['answered']} de {data['questions']}")
    table.add_row("tiempo hasta la respuesta p50 / p95", f"{_s(data['p50_answer_s'])} / {_s(data['p95_answer_s'])}")
    table.add_row("silencio más largo durante una consulta", _s(data["max_no_speech_during_query_s"]))
    table.add_row("actualizaciones de progreso oídas", str(data["progress_updates_heard"]))
    table.add_row("tiempo simulado / real", f"{data['simulated_s']:.0f} s / {data['wall_s']:.1f} s "
                                             f"({data['simulation_speedup']:g}× tiempo real)")
    table.add_row("llamadas con violaciones", str(data["violations"]))
    out.print(table)
    invariants = Table(title="invariantes")
    invariants.add_column("invariante")
    invariants.add_column("promesa")
    invariants.add_column("llamadas que la violan", justify="right")
    counts = summary.violations_by_invariant
    for invariant in INVARIANTS:
        invariants.add_row(invariant.name, invariant.promise, str(counts.get(invariant.name, 0)))
    out.print(invariants)
    for failure in summary.failures:
        out.rule(f"[bold red]{failure.invariant}")
        out.print(("Escenario mínimo: " if failure.shrunk else "Escenario (sin reducir): ") + failure.scenario.story())
        for violation in failure.violations:
            out.print(f"  violación: {violation}")
        out.print("Línea de tiempo:")
        for line in failure.timeline:
            out.print("  " + line)
        if failure.svg_path:
            out.print(f"Imagen: {failure.svg_path}")


def _last_json(path: Path) -> dict[str, object]:
    """The summary a previous ``simulate --json`` run printed (its last line), saved to ``path``."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        data = json.loads(lines[-1])
    except (OSError, IndexError, ValueError) as exc:
        raise ConfigError(f"--compare {path}: not the output of 'mikrovoice simulate --json' ({exc})") from exc
    if not isinstance(data, dict) or "calls" not in data:
        raise ConfigError(f"--compare {path}: its last line is not a simulate --json summary")
    return data


def _print_comparison(out: Console, before: dict[str, object], after: dict[str, object]) -> None:
    """Before and after a change, side by side (meaningful with the same seed and number of calls)."""
    table = Table(title="antes / después")
    for column in ("medida", "antes", "después"):
        table.add_column(column, justify="left" if column == "medida" else "right")
    for key, label in (("calls", "llamadas"), ("questions", "preguntas"), ("answered", "respondidas o explicadas"),
                       ("p50_answer_s", "respuesta p50 (s)"), ("p95_answer_s", "respuesta p95 (s)"),
                       ("max_no_speech_during_query_s", "silencio máx. en consulta (s)"),
                       ("progress_updates_heard", "actualizaciones oídas"), ("violations", "llamadas con violaciones")):
        table.add_row(label, str(before.get(key, "—")), str(after.get(key, "—")))
    out.print(table)
    if (before.get("seed"), before.get("calls")) != (after.get("seed"), after.get("calls")):
        out.print("[yellow]Otra semilla u otro número de llamadas: las llamadas no son las mismas.[/yellow]")


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"
