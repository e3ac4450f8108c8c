"""A call's timeline as a picture: lanes of timed bars and markers, rendered to a standalone SVG.

``Timeline`` is plain data (the simulation fills it from what a call did); ``render_svg`` turns it
into one self-contained SVG document, with colours per ``kind`` from ``STYLES``. Pure code: no I/O,
no clock, standard library only.
"""

from __future__ import annotations

import math
import textwrap
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Bar:
    """Something that lasted: a state, an utterance, a router query, the model link being up."""

    start: float  # seconds from the start of the call
    end: float
    label: str = ""  # short text drawn inside the bar when it fits
    kind: str = ""  # style key, see STYLES
    detail: str = ""  # full text, shown as a tooltip (<title>)


@dataclass(frozen=True)
class Lane:
    name: str  # drawn at the left, e.g. "estado", "llamante", "asistente (oído)", "router 26.1", "modelo"
    bars: tuple[Bar, ...] = ()


@dataclass(frozen=True)
class Marker:
    """Something that happened at one instant: barge-in, DTMF, hang-up, a link drop, a violation."""

    at: float
    label: str
    kind: str = ""  # style key, see STYLES


@dataclass(frozen=True)
class Timeline:
    title: str
    lanes: tuple[Lane, ...]
    end: float  # seconds: the right edge of the time axis
    markers: tuple[Marker, ...] = ()
    highlights: tuple[Bar, ...] = ()  # spans drawn across every lane (e.g. the longest silence)
    notes: tuple[str, ...] = ()  # lines printed under the title (the scenario, the violations)


# --- styles -------------------------------------------------------------------------------------

# kind -> (fill colour, text colour). Built on the Okabe-Ito palette (safe for colour-blind readers,
# readable in greyscale print); failures also get a hatch (HATCHED), tentative outcomes a dashed
# outline (DASHED), so ok/error never rely on red/green alone. Highlights are drawn translucent.
STYLES: dict[str, tuple[str, str]] = {
    # call states: light tints, dark text
    "greeting": ("#cfe5f5", "#10324a"),
    "listening": ("#e4f1ea", "#17392a"),
    "announcing": ("#fbe3b5", "#4a3000"),
    "querying": ("#a9cfec", "#0b2a44"),
    "reporting": ("#f2d3e4", "#4a1634"),
    "farewell": ("#dcd4ee", "#2e2450"),
    "ended": ("#5c5c5c", "#ffffff"),
    # speech
    "caller": ("#e69f00", "#000000"),
    "backchannel": ("#f7d58c", "#3d2a00"),
    "assistant": ("#0072b2", "#ffffff"),
    "progress": ("#56b4e9", "#00263d"),
    "answer": ("#004a75", "#ffffff"),
    "farewell_audio": ("#cc79a7", "#000000"),
    "unintelligible": ("#b7a88a", "#000000"),
    # router query outcomes
    "ok": ("#009e73", "#ffffff"),
    "error": ("#d55e00", "#ffffff"),
    "timeout": ("#f0e442", "#000000"),
    "cancelled": ("#a8a8a8", "#000000"),
    "running": ("#bfe1f4", "#00263d"),
    # model link
    "up": ("#8fd3bd", "#0b3326"),
    "connecting": ("#f6ee9e", "#3d3800"),
    "down": ("#d55e00", "#ffffff"),
    # markers: (line colour, label colour)
    "barge_in": ("#b35900", "#8a4500"),
    "dtmf": ("#6a3d9a", "#6a3d9a"),
    "hangup": ("#000000", "#000000"),
    "server_hangup": ("#444444", "#444444"),
    "link_drop": ("#d55e00", "#a34800"),
    "violation": ("#c0001a", "#c0001a"),
    "note": ("#0072b2", "#005a8c"),
    # highlights (drawn with HIGHLIGHT_OPACITY)
    "silence": ("#e3242b", "#a0141a"),
    "query": ("#1f6fd0", "#124a8f"),
}
DEFAULT_STYLE = ("#c8c8c8", "#222222")  # unknown kinds: neutral grey
HATCHED = frozenset({"error", "timeout", "down"})
DASHED = frozenset({"cancelled", "running", "connecting"})
MARKER_DASH = {"dtmf": "2 2", "server_hangup": "6 3", "link_drop": "6 2 2 2", "note": "4 3"}
HIGHLIGHT_OPACITY = 0.16


def style(kind: str) -> tuple[str, str]:
    """(fill colour, text colour) for ``kind``; neutral grey for unknown kinds."""
    return STYLES.get(kind, DEFAULT_STYLE)


# --- layout -------------------------------------------------------------------------------------

TICK_STEPS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300)  # seconds; the first giving <= 20 ticks
PX_PER_S, MIN_PLOT_W, MAX_PLOT_W = 20.0, 600.0, 4000.0
MARGIN, LABEL_W, RIGHT_PAD = 12.0, 180.0, 24.0  # LABEL_W: the column of lane names
ROW_H, ROW_GAP, LANE_PAD = 18.0, 3.0, 4.0  # a lane stacks overlapping bars into sub-rows of ROW_H
AXIS_H, MARKER_ROW_H, STRIP_H = 16.0, 14.0, 16.0  # STRIP_H: the highlight labels under the lanes
CHAR_W = 0.6  # estimated glyph width, in font sizes
FONT = "DejaVu Sans, Verdana, Arial, Helvetica, sans-serif"
HATCH = "mvtl-hatch"  # the one (fixed) id, prefixed so that several pictures can share an HTML page


def _clean(text: str, *, one_line: bool = True) -> str:
    """``text`` without characters illegal in XML 1.0 nor other control characters; on one line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(
        c
        for c in text
        if c in "\t\n" or (unicodedata.category(c) not in ("Cc", "Cs") and c not in "\ufffe\uffff")
    )
    return " ".join(text.split()) if one_line else text


def _esc(text: str, *, one_line: bool = True) -> str:
    text = _clean(text, one_line=one_line)
    for raw, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#39;")):
        text = text.replace(raw, entity)
    return text


def _n(x: float) -> str:
    """A coordinate, to 0.1 px."""
    s = f"{x:.1f}"
    return s[:-2] if s.endswith(".0") else s


def _secs(t: float) -> str:
    return f"{t:.2f}" if abs(t) < 1e7 else f"{t:.3g}"


def _fit(text: str, width: float, size: float) -> str:
    """``text`` on one line if it fits ``width`` px, else truncated with "…", else ""."""
    text = _clean(text)
    room = int(max(width, 0) / (CHAR_W * size))
    if len(text) <= room:
        return text
    return text[: room - 1] + "…" if room >= 4 else ""


def _text(x: float, y: float, text: str, size: float, fill: str, extra: str = "") -> str:
    """A <text> element; ``text`` must be escaped already."""
    return f'<text x="{_n(x)}" y="{_n(y)}" font-size="{_n(size)}" fill="{fill}"{extra}>{text}</text>'


def _tip(text: str, start: float, end: float | None = None) -> str:
    when = f"{_secs(start)} s" if end is None else f"{_secs(start)}–{_secs(end)} s"
    return f"<title>{_esc(text, one_line=False)} ({when})</title>"


def _ticks(end: float) -> list[float]:
    step = next((float(s) for s in TICK_STEPS if end / s <= 20), 0.0)
    step = step or 300.0 * math.ceil(end / 300.0 / 20)  # beyond 100 minutes: multiples of 5 minutes
    return [i * step for i in range(int(end / step + 1e-9) + 1)]


def _stack(spans: list[tuple[float, float]]) -> tuple[list[int], int]:
    """The sub-row of each (x0, x1) span, so that spans sharing a sub-row don't overlap; and how many."""
    row_ends: list[float] = []
    rows = [0] * len(spans)
    for i in sorted(range(len(spans)), key=lambda i: (spans[i], i)):
        x0, x1 = spans[i]
        row = next((r for r, e in enumerate(row_ends) if e <= x0), len(row_ends))
        if row == len(row_ends):
            row_ends.append(x1)
        rows[i], row_ends[row] = row, x1
    return rows, max(1, len(row_ends))


def _stagger(marks: list[tuple[float, str]], right: float) -> list[tuple[int, float]]:
    """(row, label x) for each (x, label) marker, sorted by x, so that labels in one row don't overlap."""
    placed: list[tuple[int, float]] = []
    row_ends: list[float] = []
    for x, label in marks:
        w = len(label) * CHAR_W * 10
        lx = x + 3 if x + 3 + w <= right else x - 3 - w
        row = next((r for r, e in enumerate(row_ends) if e + 6 <= lx), len(row_ends))
        if row == len(row_ends):
            row_ends.append(0.0)
        row_ends[row] = lx + w
        placed.append((row, lx))
    return placed


def _header(timeline: Timeline, width: float) -> tuple[list[str], float]:
    """The title and the notes, wrapped to ``width``; and the y below them."""
    out: list[str] = []
    y = MARGIN
    for line in textwrap.wrap(_clean(timeline.title), max(20, int((width - 2 * MARGIN) / (CHAR_W * 16)))):
        y += 20
        out.append(_text(MARGIN, y - 4, _esc(line), 16, "#000000", ' font-weight="bold"'))
    chars = max(40, min(140, int((width - 2 * MARGIN) / (CHAR_W * 12))))
    for note in timeline.notes:
        for paragraph in _clean(note, one_line=False).split("\n"):
            for line in textwrap.wrap(paragraph, chars):
                y += 16
                out.append(_text(MARGIN, y - 4, _esc(line), 12, "#333333"))
    return out, y


def _bar(bar: Bar, x0: float, x1: float, y: float) -> str:
    """One bar: its rectangle (hatched or dashed by kind), its label when it fits, its tooltip."""
    fill, colour = style(bar.kind)
    stroke = ' stroke="#333333" stroke-width="0.6" stroke-opacity="0.5"'
    if bar.kind in HATCHED:
        stroke = ' stroke="#000000" stroke-width="1.2"'
    elif bar.kind in DASHED:
        stroke = ' stroke="#333333" stroke-width="1" stroke-dasharray="3 2"'
    box = f'x="{_n(x0)}" y="{_n(y)}" width="{_n(x1 - x0)}" height="{_n(ROW_H)}"'
    out = [
        f'<g class="bar">{_tip(bar.detail or bar.label, bar.start, bar.end)}<rect {box} fill="{fill}"{stroke}/>'
    ]
    if bar.kind in HATCHED:
        out.append(f'<rect {box} fill="url(#{HATCH})"/>')
    label = _fit(bar.label, x1 - x0 - 6, 11)
    if label:
        out.append(_text(x0 + 3, y + ROW_H / 2 + 4, _esc(label), 11, colour))
    out.append("</g>")
    return "".join(out)


def _legend(timeline: Timeline, y: float, width: float) -> tuple[list[str], float]:
    """A swatch (bars) or a line (markers) per kind used, wrapped to ``width``; and the y below."""
    bar_kinds = sorted({b.kind for lane in timeline.lanes for b in lane.bars})
    mark_kinds = sorted({m.kind for m in timeline.markers})
    out: list[str] = []
    x = MARGIN
    for kind, is_mark in [(k, False) for k in bar_kinds] + [(k, True) for k in mark_kinds]:
        name = _fit(kind or "(sin tipo)", 24 * CHAR_W * 10, 10)
        w = 16 + len(name) * CHAR_W * 10 + 14
        if x + w > width - MARGIN and x > MARGIN:
            x, y = MARGIN, y + 16
        fill, _ = style(kind)
        if is_mark:
            dash = f' stroke-dasharray="{MARKER_DASH[kind]}"' if kind in MARKER_DASH else ""
            out.append(
                f'<line x1="{_n(x + 6)}" y1="{_n(y - 1)}" x2="{_n(x + 6)}" y2="{_n(y + 11)}" stroke="{fill}" stroke-width="2"{dash}/>'
            )
        else:
            box = f'x="{_n(x)}" y="{_n(y)}" width="12" height="10"'
            out.append(f'<rect {box} fill="{fill}" stroke="#555555" stroke-width="0.5"/>')
            if kind in HATCHED:
                out.append(f'<rect {box} fill="url(#{HATCH})"/>')
        out.append(_text(x + 16, y + 9, _esc(name), 10, "#333333"))
        x += w
    return out, (y + 10 if out else y - 4)


# --- rendering ----------------------------------------------------------------------------------


def render_svg(timeline: Timeline) -> str:
    """One self-contained, deterministic SVG 1.1 document picturing ``timeline``."""
    end = timeline.end if math.isfinite(timeline.end) and timeline.end > 0 else 1.0
    plot_w = min(max(end * PX_PER_S, MIN_PLOT_W), MAX_PLOT_W)
    plot_x = MARGIN + LABEL_W
    plot_r = plot_x + plot_w
    width = plot_r + RIGHT_PAD

    def x_at(t: float) -> float:
        return plot_x + (min(max(t, 0.0), end) / end if t == t else 0.0) * plot_w  # NaN: 0

    def span(start: float, stop: float) -> tuple[float, float]:
        x0 = min(x_at(start), plot_r - 2)  # at least a 2 px sliver, inside the plot
        return x0, max(x_at(stop), x0 + 2)

    # Top to bottom: title and notes, axis, marker labels, lanes, highlight labels, axis, legend.
    header, axis_top = _header(timeline, width)
    axis_top += 8
    ticks = _ticks(end)
    marks = sorted(
        (x_at(m.at), i, _fit(m.label, 32 * CHAR_W * 10, 10) or "•") for i, m in enumerate(timeline.markers)
    )
    placed = _stagger([(x, label) for x, _, label in marks], width - 2)
    n_mark_rows = 1 + max((row for row, _ in placed), default=-1)
    marks_bottom = (
        axis_top + AXIS_H + n_mark_rows * MARKER_ROW_H
    )  # the bottom of marker row 0, next to the lanes
    plot_top = marks_bottom + (4 if placed else 0)
    lanes = []
    y = plot_top
    for lane in timeline.lanes:
        spans = [span(b.start, b.end) for b in lane.bars]
        rows, n_rows = _stack(spans)
        h = n_rows * (ROW_H + ROW_GAP) - ROW_GAP + 2 * LANE_PAD
        lanes.append((lane, y, h, spans, rows))
        y += h
    plot_bottom = y if lanes else plot_top + ROW_H + 2 * LANE_PAD
    strip_bottom = plot_bottom + (STRIP_H if any(h.label for h in timeline.highlights) else 0)
    legend, legend_bottom = _legend(timeline, strip_bottom + AXIS_H + 8, width)
    height = legend_bottom + MARGIN

    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{_n(width)}" height="{_n(height)}"'
        f' viewBox="0 0 {_n(width)} {_n(height)}" font-family="{FONT}">',
        f"<title>{_esc(timeline.title)}</title>",
        f'<defs><pattern id="{HATCH}" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="2.5" height="6" fill="#000000" fill-opacity="0.35"/></pattern></defs>',
        f'<rect width="{_n(width)}" height="{_n(height)}" fill="#ffffff"/>',
        *header,
    ]
    # Behind the bars: lane backgrounds, the grid, the highlights.
    for i, (_, ly, h, _, _) in enumerate(lanes):
        fill = "#f3f5f7" if i % 2 else "#ffffff"
        svg.append(
            f'<rect x="{_n(MARGIN)}" y="{_n(ly)}" width="{_n(width - 2 * MARGIN)}" height="{_n(h)}" fill="{fill}"/>'
        )
    svg.append('<g class="grid" stroke="#d9d9d9" stroke-width="0.6">')
    svg.extend(
        f'<line x1="{_n(x_at(t))}" y1="{_n(axis_top + AXIS_H)}" x2="{_n(x_at(t))}" y2="{_n(strip_bottom)}"/>'
        for t in ticks
    )
    svg.append("</g>")
    for hl in timeline.highlights:
        x0, x1 = span(hl.start, hl.end)
        fill, colour = style(hl.kind)
        svg.append(
            f'<g class="highlight">{_tip(hl.detail or hl.label, hl.start, hl.end)}<rect x="{_n(x0)}" y="{_n(plot_top)}"'
            f' width="{_n(x1 - x0)}" height="{_n(strip_bottom - plot_top)}" fill="{fill}" fill-opacity="{HIGHLIGHT_OPACITY}"/>'
        )
        label = _fit(hl.label, min(max(x1 - x0, 160), plot_r - x0) - 4, 10)  # may run past a short span
        if label:
            svg.append(_text(x0 + 2, strip_bottom - 4, _esc(label), 10, colour, ' font-weight="bold"'))
        svg.append("</g>")
    for line_y, base in ((axis_top + AXIS_H, axis_top + 11), (strip_bottom, strip_bottom + 12)):
        svg.append(
            f'<g class="axis"><line x1="{_n(plot_x)}" y1="{_n(line_y)}" x2="{_n(plot_r)}" y2="{_n(line_y)}" stroke="#888888"/>'
        )
        svg.append(_text(MARGIN, base, "tiempo (s)", 10, "#555555"))
        svg.extend(_text(x_at(t), base, f"{t:g}", 10, "#555555", ' text-anchor="middle"') for t in ticks)
        svg.append("</g>")
    for lane, ly, h, spans, rows in lanes:
        name = _fit(lane.name, LABEL_W - 10, 12)
        tip = f"<title>{_esc(lane.name)}</title>" if name != _clean(lane.name) else ""
        svg.append(
            f'<g class="lane"><line x1="{_n(MARGIN)}" y1="{_n(ly + h)}" x2="{_n(width - MARGIN)}" y2="{_n(ly + h)}" stroke="#d0d0d0"/>'
            + _text(MARGIN + 2, ly + h / 2 + 4, _esc(name) + tip, 12, "#000000", ' class="lane-name"')
        )
        for bar, (x0, x1), row in zip(lane.bars, spans, rows, strict=True):
            svg.append(_bar(bar, x0, x1, ly + LANE_PAD + row * (ROW_H + ROW_GAP)))
        svg.append("</g>")
    # In front: marker lines across every lane, then their labels on a white backing.
    for (x, i, _), (row, _) in zip(marks, placed, strict=True):
        m = timeline.markers[i]
        dash = f' stroke-dasharray="{MARKER_DASH[m.kind]}"' if m.kind in MARKER_DASH else ""
        wide = "2.5" if m.kind in ("hangup", "server_hangup", "violation") else "1.5"
        svg.append(
            f'<g class="marker">{_tip(m.label, m.at)}<line x1="{_n(x)}" y1="{_n(marks_bottom - (row + 1) * MARKER_ROW_H + 2)}"'
            f' x2="{_n(x)}" y2="{_n(strip_bottom)}" stroke="{style(m.kind)[0]}" stroke-width="{wide}"{dash}/></g>'
        )
    for (_, i, label), (row, lx) in zip(marks, placed, strict=True):
        m = timeline.markers[i]
        base = marks_bottom - row * MARKER_ROW_H - 3
        svg.append(
            f'<g class="marker-label">{_tip(m.label, m.at)}<rect x="{_n(lx - 1)}" y="{_n(base - 10)}"'
            f' width="{_n(len(label) * CHAR_W * 10 + 2)}" height="13" fill="#ffffff" fill-opacity="0.85"/>'
            + _text(lx, base, _esc(label), 10, style(m.kind)[1])
            + "</g>"
        )
    svg.extend(legend)
    svg.append("</svg>")
    return "\n".join(svg) + "\n"
