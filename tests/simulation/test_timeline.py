"""The call timeline picture: a well-formed, self-contained, deterministic SVG whatever the data."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mikrovoice.simulation.timeline import STYLES, Bar, Lane, Marker, Timeline, render_svg, style

SVG = "{http://www.w3.org/2000/svg}"
PLOT_X = 12 + 180  # left margin + the lane-name column


def realistic() -> Timeline:
    states = Lane(
        "estado",
        (
            Bar(0, 3.2, "saludo", "greeting"),
            Bar(3.2, 9.0, "escuchando", "listening"),
            Bar(9.0, 10.4, "anuncia", "announcing"),
            Bar(10.4, 19.5, "consultando", "querying"),
            Bar(19.5, 27.0, "informando", "reporting"),
            Bar(27.0, 31.5, "escuchando", "listening"),
            Bar(31.5, 34.0, "despedida", "farewell"),
            Bar(34.0, 36.0, "fin", "ended"),
        ),
    )
    caller = Lane(
        "llamante",
        (
            Bar(
                3.6,
                8.7,
                "¿Cómo está «Torre Norte»?",
                "caller",
                "¿Cómo está el enlace de «Torre Norte»? En Chía no navegan.",
            ),
            Bar(14.0, 14.6, "ajá", "backchannel", "ajá"),
            Bar(20.5, 21.4, "sí…", "backchannel", "sí, sí"),
            Bar(21.0, 22.2, "(ininteligible)", "unintelligible", "[ruido]"),
            Bar(27.5, 30.9, "Listo, muchas gracias", "caller", "Listo, muchas gracias, eso era todo."),
        ),
    )
    assistant = Lane(
        "asistente (oído)",
        (
            Bar(
                0.2,
                3.1,
                "Hola, soy el asistente",
                "assistant",
                "Hola, soy el asistente de red. ¿En qué le ayudo?",
            ),
            Bar(9.1, 10.3, "Un momento…", "progress", "Un momento, consulto los routers."),
            Bar(
                19.6,
                26.8,
                "Torre Norte está arriba",
                "answer",
                "El enlace Torre Norte está arriba; 3 routers no respondieron.",
            ),
            Bar(31.6, 33.9, "¡Hasta luego!", "farewell_audio", "¡Hasta luego! Que tenga buen día."),
        ),
    )
    outcomes = [
        "ok",
        "ok",
        "ok",
        "timeout",
        "ok",
        "error",
        "ok",
        "timeout",
        "ok",
        "cancelled",
        "ok",
        "running",
    ]
    routers = tuple(
        Lane(
            f"router 26.{i + 1}",
            (Bar(10.5 + 0.05 * i, 12.0 + 0.5 * i, kind, kind, f"/interface/print en 26.{i + 1}: {kind}"),),
        )
        for i, kind in enumerate(outcomes)
    )
    model = Lane(
        "modelo",
        (Bar(0, 0.4, "", "connecting"), Bar(0.4, 22.5, "arriba", "up"), Bar(22.5, 36, "caído", "down")),
    )
    return Timeline(
        title="Simulación 17 — consulta de enlace «Torre Norte»",
        lanes=(states, caller, assistant, *routers, model),
        end=36.0,
        markers=(
            Marker(4.1, "barge-in", "barge_in"),
            Marker(4.3, "DTMF 5", "dtmf"),
            Marker(22.5, "enlace caído", "link_drop"),
            Marker(34.0, "colgó", "hangup"),
        ),
        highlights=(Bar(12.1, 16.0, "silencio 3.9 s", "silence", "el llamante no oyó nada durante 3.9 s"),),
        notes=(
            "Escenario: 12 routers, dos no responden y uno devuelve un error; el modelo se cae a los 22.5 s.",
        ),
    )


def parse(timeline: Timeline) -> ET.Element:
    svg = render_svg(timeline)
    assert svg.startswith("<svg ")
    root = ET.fromstring(svg.encode("utf-8"))
    assert root.tag == f"{SVG}svg" and root.get("version") == "1.1"
    return root


def child(element: ET.Element, tag: str) -> ET.Element:
    found = element.find(f"{SVG}{tag}")
    assert found is not None, tag
    return found


def text(element: ET.Element, tag: str) -> str:
    return child(element, tag).text or ""


def num(element: ET.Element, attr: str) -> float:
    return float(element.get(attr, "nan"))


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == cls]


def bar_rects(lane: ET.Element) -> list[ET.Element]:
    return [child(g, "rect") for g in groups(lane, "bar")]


def tick_labels(root: ET.Element, axis: int = 0) -> list[str]:
    return [t.text or "" for t in groups(root, "axis")[axis].iter(f"{SVG}text")][1:]  # [0]: the caption


def legal(text: str) -> str:
    """What a tooltip keeps of ``text``: line breaks normalised, control and non-XML characters dropped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]", "", text)


def check_numbers(root: ET.Element) -> None:
    for el in root.iter():
        for attr in ("x", "y", "x1", "x2", "y1", "y2", "width", "height"):
            if el.get(attr) is not None:
                assert math.isfinite(num(el, attr)), (el.tag, attr)
                assert attr not in ("width", "height") or num(el, attr) >= 0, (el.tag, attr)


def test_realistic_timeline_is_one_self_contained_svg() -> None:
    timeline = realistic()
    svg = render_svg(timeline)
    root = parse(timeline)
    for forbidden in ("<script", "<style", "@import", "@font-face", "href", "<image"):
        assert forbidden not in svg
    assert re.findall(r"https?://[^\"]*", svg) == ["http://www.w3.org/2000/svg"]
    assert text(root, "title") == timeline.title
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert timeline.title in texts and timeline.notes[0] in texts
    assert len(groups(root, "lane")) == 16
    assert len(groups(root, "bar")) == sum(len(lane.bars) for lane in timeline.lanes)
    assert len(groups(root, "marker")) == len(timeline.markers)
    check_numbers(root)


def test_rendering_is_deterministic() -> None:
    assert render_svg(realistic()) == render_svg(realistic()) == render_svg(realistic())


def test_every_bar_has_a_tooltip_with_its_detail_and_times() -> None:
    timeline = realistic()
    for lane, element in zip(timeline.lanes, groups(parse(timeline), "lane"), strict=True):
        bars = groups(element, "bar")
        assert len(bars) == len(lane.bars)
        for bar, g in zip(lane.bars, bars, strict=True):
            assert text(g, "title") == f"{bar.detail or bar.label} ({bar.start:.2f}–{bar.end:.2f} s)"


def test_lane_names_appear_and_long_ones_are_truncated_with_a_tooltip() -> None:
    long_name = "router 26.1 (Torre Norte, sector Chía, enlace principal)"
    timeline = Timeline("t", (*realistic().lanes, Lane(long_name)), 36.0)
    names = [child(g, "text") for g in groups(parse(timeline), "lane")]
    assert [n.text for n in names[:-1]] == [lane.name for lane in realistic().lanes]
    shown = names[-1].text or ""
    assert shown.endswith("…") and long_name.startswith(shown[:-1]) and len(shown) * 0.6 * 12 <= 180
    assert text(names[-1], "title") == long_name


@pytest.mark.parametrize(("end", "plot_width"), [(1.0, 600.0), (60.0, 1200.0), (10800.0, 4000.0)])
def test_horizontal_scale_is_20_px_a_second_within_bounds(end: float, plot_width: float) -> None:
    root = parse(Timeline("t", (Lane("todo", (Bar(0, end, "todo", "ok"),)),), end))
    (rect,) = bar_rects(groups(root, "lane")[0])
    assert num(rect, "x") == PLOT_X and num(rect, "width") == plot_width
    assert plot_width < num(root, "width") <= plot_width + 300


@pytest.mark.parametrize(
    ("end", "step"), [(1.0, 0.5), (9.0, 0.5), (36.0, 2), (90.0, 5), (600.0, 30), (3600.0, 300)]
)
def test_axis_ticks_use_a_round_step_giving_at_most_20_ticks(end: float, step: float) -> None:
    root = parse(Timeline("t", (Lane("a"),), end))
    labels = tick_labels(root)
    assert [float(x) for x in labels] == [i * step for i in range(len(labels))]
    assert float(labels[-1]) <= end < float(labels[-1]) + step
    assert len(labels) <= 21 and (end < 8 or len(labels) >= 8)
    assert tick_labels(root, axis=1) == labels  # the same axis at the bottom


def test_overlapping_bars_of_one_lane_go_to_different_sub_rows() -> None:
    lane = Lane("llamante", (Bar(0, 5, "a"), Bar(1, 3, "b"), Bar(2, 6, "c"), Bar(6, 8, "d"), Bar(8, 9, "e")))
    stacked, other = groups(parse(Timeline("t", (lane, Lane("otra", (Bar(0, 1),))), 10.0)), "lane")
    ys = [num(r, "y") for r in bar_rects(stacked)]
    assert len({ys[0], ys[1], ys[2]}) == 3  # all three overlap each other
    assert ys[3] == ys[4] == ys[0]  # d starts when a has ended, e when d has ended: back to the first row
    (other_rect,) = bar_rects(other)
    assert num(other_rect, "y") > max(ys) + 18  # the next lane starts below all three sub-rows


def test_degenerate_bars_are_clamped_slivers_never_negative() -> None:
    bars = (
        Bar(-5, -1),
        Bar(3, 3),
        Bar(5, 2),
        Bar(-10, 1e300),
        Bar(math.nan, math.nan),
        Bar(50, 60),
        Bar(10, 10),
    )
    root = parse(Timeline("t", (Lane("raros", bars),), 10.0))
    spans = [(num(r, "x"), num(r, "width")) for r in bar_rects(groups(root, "lane")[0])]
    plot_right = PLOT_X + 600
    for x, w in spans:
        assert PLOT_X <= x and x + w <= plot_right and w >= 2
    assert spans[0] == spans[4] == (PLOT_X, 2)  # before the call, or NaN: a sliver at 0
    assert spans[1] == (PLOT_X + 180, 2) and spans[2] == (PLOT_X + 300, 2)  # zero-length and negative
    assert spans[3] == (PLOT_X, 600)  # clamped to the axis
    assert spans[5] == spans[6] == (plot_right - 2, 2)  # after the end: a sliver at the right edge
    check_numbers(root)


def test_bar_labels_are_drawn_whole_truncated_or_not_at_all() -> None:
    label = "consultando los routers"  # 23 characters: 23 * 0.6 * 11 px = 152 px
    lane = Lane("estado", (Bar(0, 4, label), Bar(4, 5, label), Bar(5, 5.3, label)))  # 240, 60, 18 px
    wide, narrow, sliver = groups(parse(Timeline("t", (lane,), 10.0)), "bar")
    assert text(wide, "text") == label
    assert text(narrow, "text") == "consult…"
    assert sliver.find(f"{SVG}text") is None


def test_any_text_is_escaped_and_stripped_of_characters_illegal_in_xml() -> None:
    nasty = "<b>&amp; \"comillas\" 'simples' ]]> \x00\x07\x1b[31m\r\n\ud800\ufffe漢字 «ñ»"
    timeline = Timeline(
        nasty,
        (Lane(nasty, (Bar(1, 2, nasty, "<kind>", nasty),)),),
        5.0,
        (Marker(1, nasty, nasty),),
        (Bar(2, 3, nasty, nasty),),
        (nasty,),
    )
    root = parse(timeline)
    (bar,) = groups(root, "bar")
    assert text(bar, "title") == f"{legal(nasty)} (1.00–2.00 s)"
    (highlight,) = groups(root, "highlight")
    assert text(highlight, "title").startswith(legal(nasty))
    assert text(root, "title") == " ".join(legal(nasty).split())


def test_highlights_span_every_lane_behind_the_bars_and_markers_cross_every_lane() -> None:
    root = parse(realistic())
    order = list(root).index
    lanes = groups(root, "lane")
    (highlight,) = groups(root, "highlight")
    assert order(highlight) < order(lanes[0])  # drawn first: behind
    rect = child(highlight, "rect")
    assert rect.get("fill") == STYLES["silence"][0] and 0 < num(rect, "fill-opacity") < 0.5
    ys = [num(r, "y") for lane in lanes for r in bar_rects(lane)]
    assert num(rect, "y") <= min(ys) and num(rect, "y") + num(rect, "height") >= max(ys) + 18
    for marker in groups(root, "marker"):
        line = child(marker, "line")
        assert num(line, "y1") < min(ys) and num(line, "y2") >= max(ys) + 18
        assert order(marker) > order(lanes[-1])  # in front of the bars


def test_marker_labels_that_would_overlap_are_staggered() -> None:
    markers = (Marker(5.0, "violación: silencio largo"), Marker(5.2, "enlace caído"), Marker(30.0, "colgó"))
    labels = groups(parse(Timeline("t", (Lane("a"),), 36.0, markers)), "marker-label")
    ys = [num(child(g, "text"), "y") for g in labels]
    assert ys[0] != ys[1] and ys[2] == ys[0]


def test_long_notes_are_wrapped() -> None:
    note = " ".join(f"palabra{i}" for i in range(60))
    root = parse(Timeline("t", (Lane("a"),), 10.0, notes=(note,)))
    lines = [t.text or "" for t in root.iter(f"{SVG}text") if (t.text or "").startswith("palabra")]
    assert len(lines) >= 4 and all(len(line) <= 140 for line in lines)
    assert " ".join(lines) == note


def test_styles_cover_the_kinds_other_code_uses() -> None:
    kinds = (
        "greeting listening announcing querying reporting farewell ended caller backchannel assistant progress answer "
        "farewell_audio unintelligible ok error timeout cancelled running up connecting down barge_in dtmf hangup "
        "server_hangup link_drop violation note silence query"
    ).split()
    for kind in kinds:
        fill, text_colour = STYLES[kind]
        assert re.fullmatch("#[0-9a-f]{6}", fill) and re.fullmatch("#[0-9a-f]{6}", text_colour)
    assert style("no-such-kind") not in [STYLES[k] for k in kinds]
    assert len({STYLES[k][0] for k in ("ok", "error", "timeout", "cancelled", "running")}) == 5


def test_error_bars_differ_from_ok_bars_by_more_than_colour() -> None:
    lane = Lane("router", (Bar(0, 3, "ok", "ok"), Bar(4, 7, "error", "error")))
    ok, error = groups(parse(Timeline("t", (lane,), 10.0)), "bar")
    assert [r.get("fill") for r in ok.iter(f"{SVG}rect")] == [STYLES["ok"][0]]
    assert [r.get("fill") for r in error.iter(f"{SVG}rect")] == [STYLES["error"][0], "url(#mvtl-hatch)"]


def test_an_empty_timeline_still_renders() -> None:
    root = parse(Timeline("", (), 0.0))
    assert groups(root, "lane") == [] and tick_labels(root) == ["0", "0.5", "1"]
    check_numbers(root)


# --- whatever the data -----------------------------------------------------------------------------

texts = st.text(max_size=40) | st.text(
    st.sampled_from(list("<&\"'>]\x00\x01\x1b\x7f\x85\r\n\t\ud800\ufffe\uffff«»ñé漢 ")), max_size=30
)
times = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(-100, 4000)
    | st.sampled_from([0.0, -0.0, 1e308, -1e308])
)
kinds = st.sampled_from([*STYLES, "", "desconocido"])
bars = st.builds(Bar, times, times, texts, kinds, texts)
timelines = st.builds(
    Timeline,
    title=texts,
    lanes=st.lists(st.builds(Lane, texts, st.lists(bars, max_size=6).map(tuple)), max_size=5).map(tuple),
    end=times,
    markers=st.lists(st.builds(Marker, times, texts, kinds), max_size=6).map(tuple),
    highlights=st.lists(bars, max_size=3).map(tuple),
    notes=st.lists(texts, max_size=3).map(tuple),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timelines)
def test_any_timeline_renders_to_well_formed_deterministic_svg(timeline: Timeline) -> None:
    assert render_svg(timeline) == render_svg(timeline)
    root = parse(timeline)
    check_numbers(root)
    assert 600 < num(root, "width") <= 4000 + 300
    lanes = groups(root, "lane")
    assert len(lanes) == len(timeline.lanes)
    for lane, element in zip(timeline.lanes, lanes, strict=True):
        bars = groups(element, "bar")
        assert len(bars) == len(lane.bars)
        for bar, g in zip(lane.bars, bars, strict=True):
            assert text(g, "title").startswith(legal(bar.detail or bar.label) + " (")
            rect = child(g, "rect")
            x, w = num(rect, "x"), num(rect, "width")
            assert w >= 2 and PLOT_X <= x and x + w <= PLOT_X + 4000 + 0.11  # 0.11: coordinates are rounded
    assert len(groups(root, "marker")) == len(timeline.markers)
    assert len(groups(root, "highlight")) == len(timeline.highlights)
