"""The end-to-end demo: the seed's acceptance call, on loopback, through all three simulators.

A simulated Asterisk caller asks the seed's two questions ("Paso 4") of the real service,
which talks to the simulated Realtime model and a 12-router fleet where the SFP question takes
more than 20 s. A live timeline goes to stdout; with ``--json`` the last line is a summary
object. Exit status 0 only if every question was answered and the model link never dropped.
"""

from __future__ import annotations

import heapq
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import trio
import trio.testing

from mikrovoice.config import Settings
from mikrovoice.service import ServiceStats, serve_calls, start_simulated_peers
from mikrovoice.sim.asterisk import AsteriskCaller, CallerScript, CallReport, Question
from mikrovoice.sim.routeros import FleetProfile
from mikrovoice.simulation.report import call_timeline, longest_silence
from mikrovoice.simulation.timeline import Timeline as Picture
from mikrovoice.simulation.timeline import render_svg

SEED_QUESTIONS = [
    Question("Dame la lista de dispositivos activos del router 152 punto 1", r"tiene \d+ dispositivos activos", 60.0),
    Question("Dame el tráfico de las interfaces SFP de todos los routers", r"tr[aá]fico SFP total", 150.0),
]
DEMO_FLEET = FleetProfile(count=12, seed=7, fast_s=(0.3, 2.5), slow=3, slow_s=(9.0, 24.0))

_SHOWN = {
    "call.state": lambda f: f"estado -> {f['state']}",
    "caller.says": lambda f: f"llamante dice: «{f['text']}»",
    "caller.heard": lambda f: f"llamante oye:  «{f['text']}»",
    "tool.called": lambda f: f"herramienta {f['tool']}({f['arguments']})" + (f"  RECHAZADA: {f['problem']}" if f.get("problem") else ""),
    "router.answered": lambda f: (f"  router {f['router']}: {f['status']} ({f['done']}/{f['total']}, {f['elapsed_s']} s)"
                                  + (f" {f['reason']}" if f.get("reason") else "")),
    "query.running": lambda f: f"  consultando... ({f['elapsed_s']}s transcurridos, {f['answered']}/{f['total']})",
    "query.progress_spoken": lambda f: f"progreso pedido al modelo: «{f['phrase']}»",
    "query.finished": lambda f: f"consulta terminada en {f['elapsed_s']} s ({f['answered']} routers respondieron)",
    "model.link_lost": lambda f: f"ENLACE CON EL MODELO PERDIDO: {f['reason']}",
    "call.ended": lambda f: f"llamada terminada: {f['reason']}",
}


class Timeline(logging.Handler):
    """Prints the demo's readable timeline from the structured log events, in the order things happened.

    What the caller heard is only known once the utterance is over, but its line belongs at the
    moment the caller *started* hearing it (the event's ``at``): lines are held back while the
    caller is in the middle of hearing something (``hearing_since``), then printed in time order.
    """

    def __init__(self, out: TextIO) -> None:
        super().__init__(logging.INFO)
        self.out = out
        self.t0: float | None = None
        self.hearing_since: Callable[[], float | None] = lambda: None
        self._held: list[tuple[float, int, str]] = []
        self._count = 0

    def emit(self, record: logging.LogRecord) -> None:
        name = getattr(record, "event", "")
        if name not in _SHOWN:
            return
        try:
            now = trio.current_time()
        except RuntimeError:
            return
        if self.t0 is None:
            self.t0 = now
        try:
            at = float(record.fields.get("at", now)) if name == "caller.heard" else now
            text = _SHOWN[name](record.fields)
        except (KeyError, TypeError, ValueError):  # a line we cannot show must not break the call that logged it
            self.handleError(record)
            return
        self._count += 1
        heapq.heappush(self._held, (at, self._count, text))
        self.flush_until(self.hearing_since())

    def flush_until(self, horizon: float | None) -> None:
        assert self.t0 is not None or not self._held
        while self._held and (horizon is None or self._held[0][0] < horizon):
            at, _, text = heapq.heappop(self._held)
            print(f"{at - (self.t0 or 0.0):7.2f}s  {text}", file=self.out, flush=True)


def max_no_speech_during_query(report: CallReport, stats: ServiceStats) -> float:
    """The longest stretch of a running query in which the caller heard no speech and said nothing
    (what the caller's ears decoded; comfort audio is not speech)."""
    spans = sorted([(h.start, h.end) for h in report.heard] + [(s.start, s.end) for s in report.spoken])
    left = min((t for t in (report.hung_up_at, report.server_hung_up_at) if t is not None), default=None)
    longest = 0.0
    for call in stats.calls:
        for query in call.queries:
            end = query.ended_at if query.ended_at is not None else left
            if end is not None and left is not None:
                end = min(end, left)
            if end is not None and end > query.started_at:
                longest = max(longest, longest_silence(spans, query.started_at, end)[0])
    return round(longest, 2)


def summarise(report: CallReport, stats: ServiceStats) -> dict[str, Any]:
    queries = [q for call in stats.calls for q in call.queries]
    states: list[str] = []
    for call in stats.calls:
        states += call.states
    return {
        "calls": len(stats.calls),
        "questions": len(report.questions),
        "answered": sum(q.answered for q in report.questions),
        "model_link_drops": sum(len(c.model_link_drops) for c in stats.calls),
        "reconnects": sum(c.reconnects for c in stats.calls),
        "longest_query_s": round(max((q.duration_s for q in queries), default=0.0), 2),
        # From the caller's ears: the longest time without sound (below the comfort level) between
        # the end of a question and its answer.
        "max_dead_air_s": round(max((q.max_dead_air_s for q in report.questions), default=0.0), 2),
        "max_no_speech_during_query_s": max_no_speech_during_query(report, stats),
        "comfort_audio_s": round(sum(c.comfort_frames for c in stats.calls) * 0.02, 1),
        "progress_updates": sum(c.progress_updates for c in stats.calls),
        "states": states,
        "caller_error": report.error,
        "answers": [q.answer for q in report.questions],
        "max_frame_gap_s": round(report.max_frame_gap_s, 3),
    }


async def run_demo(
    settings: Settings | None = None, questions: list[Question] | None = None, fleet: FleetProfile = DEMO_FLEET,
    router_password: str = "", stats: ServiceStats | None = None, timeline: Timeline | None = None,
    pictures: list[Picture] | None = None,
) -> dict[str, Any]:
    """Run the demo call; its readable timeline goes to ``timeline``, its picture to ``pictures``."""
    settings = replace(settings or Settings(), listen=("127.0.0.1", 0))
    stats = stats if stats is not None else ServiceStats()
    async with trio.open_nursery() as nursery:
        settings = await start_simulated_peers(nursery, settings, fleet, router_password=router_password)
        port = await nursery.start(serve_calls, settings, stats)
        caller = AsteriskCaller(CallerScript(tuple(questions or SEED_QUESTIONS)))
        if timeline is not None:
            timeline.t0 = trio.current_time()
            timeline.hearing_since = lambda: caller.hearing_since
        report = await caller.call("127.0.0.1", port)
        with trio.move_on_after(5):  # let the service notice the hang-up and close the call
            for call in stats.calls:
                await call.finished.wait()
        nursery.cancel_scope.cancel()
    if timeline is not None:
        timeline.flush_until(None)
    if pictures is not None:
        pictures.append(call_timeline(report, stats.calls[0] if stats.calls else None, settings.phrases,
                                      title="mikrovoice demo — la llamada del seed"))
    return summarise(report, stats)


def main(as_json: bool, virtual_clock: bool, out: TextIO = sys.stdout, timeline_svg: Path | None = None) -> int:
    timeline = Timeline(out)
    root = logging.getLogger("mikrovoice")
    root.addHandler(timeline)
    root.setLevel(logging.INFO)
    clock = trio.testing.MockClock(autojump_threshold=0) if virtual_clock else None
    pictures: list[Picture] = []
    try:
        summary = trio.run(partial(run_demo, timeline=timeline, pictures=pictures), clock=clock)
    finally:
        root.removeHandler(timeline)
    if timeline_svg is not None and pictures:
        timeline_svg.write_text(render_svg(pictures[0]), encoding="utf-8")
    ok = summary["answered"] == summary["questions"] and summary["model_link_drops"] == 0
    if as_json:
        print(json.dumps(summary, ensure_ascii=False), file=out)
    else:
        print(f"\n{summary['answered']}/{summary['questions']} preguntas respondidas, "
              f"caídas del enlace: {summary['model_link_drops']}, consulta más larga: {summary['longest_query_s']} s, "
              f"silencio máximo (sin sonido) esperando una respuesta: {summary['max_dead_air_s']} s, "
              f"sin voz durante una consulta: {summary['max_no_speech_during_query_s']} s, "
              f"reconexiones: {summary['reconnects']}, "
              f"actualizaciones de progreso: {summary['progress_updates']}", file=out)
    return 0 if ok else 1
