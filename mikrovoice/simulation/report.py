"""What a reviewer reads about one call: its timeline as a picture (``Timeline``) and as text.

``call_timeline`` builds the picture's lanes from what the parties recorded — the call machine's
states, what the caller said, what the caller *heard* (when it reached their ear, not when the
model generated it), each router's query, the model link — plus markers for barge-in, DTMF and
hang-ups. ``observation_timeline`` adds a simulated call's story, its violations and its longest
silence during a query; ``text_timeline`` tells the same call line by line, in time order.
"""

from __future__ import annotations

import re

from mikrovoice.call.session import CallRecord
from mikrovoice.config import Phrases
from mikrovoice.sim import brain
from mikrovoice.sim.asterisk import CallReport
from mikrovoice.simulation.timeline import Bar, Lane, Marker, Timeline


def heard_kind(text: str, phrases: Phrases) -> str:
    if text.startswith("(ininteligible"):
        return "unintelligible"
    if apology_regex(phrases).search(text):
        return "farewell_audio"
    if progress_regex(phrases).search(text) or _progress_one(phrases).search(text):
        return "progress"
    if brain.is_answer(text) or brain.ANSWER_PROBLEM.search(text) or brain.ANSWER_CLARIFY.search(text):
        return "answer"
    return "assistant"


def call_timeline(
    caller: CallReport, record: CallRecord | None, phrases: Phrases, *, title: str, notes: tuple[str, ...] = (),
    highlights: tuple[Bar, ...] = (),
) -> Timeline:
    t0 = caller.connected_at

    def t(at: float) -> float:
        return at - t0

    ends = [caller.hung_up_at, caller.server_hung_up_at, record.ended_at if record and record.ended else None]
    end = max([t(e) for e in ends if e is not None] + [t(h.end) for h in caller.heard] + [1.0])
    lanes = []
    if record is not None and record.state_times:
        times = record.state_times + [(record.ended_at if record.ended else t0 + end, "")]
        lanes.append(Lane("estado", tuple(Bar(t(a), t(b), s, s) for (a, s), (b, _) in zip(times, times[1:], strict=False))))
    lanes.append(Lane("llamante", tuple(
        Bar(t(s.start), t(s.end), s.text, "backchannel" if s.kind == "backchannel" else "caller", f"{s.kind}: {s.text}")
        for s in caller.spoken)))
    lanes.append(Lane("asistente (oído)", tuple(
        Bar(t(h.start), t(h.end), h.text, heard_kind(h.text, phrases), h.text) for h in caller.heard)))
    if record is not None:
        routers: dict[str, list[Bar]] = {}
        for query in record.queries:
            for r in query.per_router:
                if r.started_at is None:
                    continue
                stop = r.ended_at if r.ended_at is not None else query.ended_at or r.started_at
                routers.setdefault(r.name, []).append(
                    Bar(t(r.started_at), t(stop), r.outcome, r.outcome, f"{query.tool}: {r.outcome} {r.error}".strip()))
        lanes += [Lane(f"router {name}", tuple(bars)) for name, bars in routers.items()]
        link = []
        connected = record.model_connected_at
        lost = record.model_link_lost_at
        finish = record.ended_at if record.ended else t0 + end
        if record.state_times:
            start = record.state_times[0][0]
            link.append(Bar(t(start), t(connected if connected is not None else (lost or finish)), "conectando", "connecting"))
        if connected is not None:
            link.append(Bar(t(connected), t(lost or finish), "arriba", "up"))
        if lost is not None:
            link.append(Bar(t(lost), t(finish), "caído", "down", record.model_link_drop or ""))
        lanes.append(Lane("modelo", tuple(link)))
    markers = [Marker(t(s.start), "barge-in", "barge_in") for s in caller.spoken if s.kind == "barge_in"]
    markers += [Marker(t(at), f"DTMF {digit}", "dtmf") for at, digit in caller.dtmf]
    if caller.hung_up_at is not None:
        markers.append(Marker(t(caller.hung_up_at), "colgó el llamante", "hangup"))
    if caller.server_hung_up_at is not None:
        markers.append(Marker(t(caller.server_hung_up_at), "colgó el servicio", "server_hangup"))
    if record is not None and record.model_link_lost_at is not None:
        markers.append(Marker(t(record.model_link_lost_at), "enlace caído", "link_drop"))
    return Timeline(title, tuple(lanes), end, tuple(markers), highlights, notes)


def text_timeline(caller: CallReport, record: CallRecord | None) -> list[str]:
    """The call line by line, each at the moment it happened (heard speech: when it was first heard)."""
    t0 = caller.connected_at
    lines: list[tuple[float, str]] = []
    if record is not None:
        lines += [(at, f"estado -> {state}") for at, state in record.state_times]
        for query in record.queries:
            lines.append((query.started_at, f"consulta {query.tool} ({query.routers} routers)"))
            for r in query.per_router:
                if r.ended_at is not None and r.outcome != "cancelled":
                    lines.append((r.ended_at, f"  router {r.name}: {r.outcome}" + (f" ({r.error})" if r.error else "")))
            if query.ended_at is not None:
                how = "cancelada" if query.cancelled else "cortada por el plazo" if query.timed_out else "terminada"
                lines.append((query.ended_at, f"consulta {how}: {query.answered} de {query.routers} respondieron"))
        if record.model_link_lost_at is not None:
            lines.append((record.model_link_lost_at, f"ENLACE CON EL MODELO PERDIDO: {record.model_link_drop}"))
    lines += [(s.start, f"llamante dice: «{s.text}»" + ("" if s.kind == "question" else f" ({s.kind})"))
              for s in caller.spoken]
    lines += [(h.start, f"llamante oye:  «{h.text}»") for h in caller.heard]
    lines += [(at, f"llamante marca {digit}") for at, digit in caller.dtmf]
    if caller.hung_up_at is not None:
        lines.append((caller.hung_up_at, "el llamante cuelga"))
    if caller.server_hung_up_at is not None:
        lines.append((caller.server_hung_up_at, "el servicio cuelga"))
    return [f"{at - t0:8.2f}s  {text}" for at, text in sorted(lines, key=lambda line: line[0])]


def progress_regex(phrases: Phrases) -> re.Pattern[str]:
    """A pattern for the configured progress phrase, with its counts as groups ``answered`` and ``total``."""
    text = re.escape(phrases.progress_many)
    for name in ("answered", "done"):
        if "(?P<answered>" not in text:
            text = text.replace(re.escape("{" + name + "}"), r"(?P<answered>\d+)", 1)
    text = text.replace(re.escape("{total}"), r"(?P<total>\d+)", 1)
    text = re.sub(r"\\\{[a-z_]+\\\}", r"\\d+", text)
    return re.compile(text, re.IGNORECASE)


def apology_regex(phrases: Phrases) -> re.Pattern[str]:
    """The recorded apology for a lost model, as the caller hears it (its first words suffice)."""
    return re.compile(re.escape(phrases.model_unavailable[:40]), re.IGNORECASE)


def _progress_one(phrases: Phrases) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{[a-z_]+\\\}", ".+", re.escape(phrases.progress_one)), re.IGNORECASE)


def longest_silence(spans: list[tuple[float, float]], start: float, end: float) -> tuple[float, float]:
    """The longest stretch of [start, end] covered by no span: (its length, where it starts)."""
    mark, longest, where = start, 0.0, start
    for s, e in spans:
        if e <= mark:
            continue
        if s >= end:
            break
        if s - mark > longest:
            longest, where = s - mark, mark
        mark = max(mark, e)
    if end - mark > longest:
        longest, where = end - mark, mark
    return longest, where
