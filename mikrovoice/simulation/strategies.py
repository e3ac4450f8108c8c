"""Hypothesis strategies for scenarios, shaped by the operator's configuration.

``scenarios(settings)`` draws calls over the configured router inventory and timings: questions
about real routers (and unknown ones, and nonsense), interjections, how the caller's silent line
sounds, hang-ups at any moment, router latencies around the configured deadlines and router
faults, and model-service faults. Every choice lists its simplest option first and times are
tenths of a second, so Hypothesis shrinks a failure to a short, readable story: a healthy,
patient caller asking one thing, with only the events that matter left in.
"""

from __future__ import annotations

from hypothesis import strategies as st

from mikrovoice.config import Settings
from mikrovoice.sim.asterisk import Line
from mikrovoice.sim.realtime import ModelFaults
from mikrovoice.sim.routeros import FAULTS
from mikrovoice.simulation.scenario import (
    NONSENSE,
    UNREACHABLE,
    Ask,
    Backchannel,
    BargeIn,
    Digit,
    Interjections,
    RouterBehaviour,
    Scenario,
)

BACKCHANNELS = ("ajá", "sí", "mmm", "ok")
#: What Asterisk forwards: the 16 digits, a-d from SIP INFO, X for a hook flash.
DTMF = "0123456789*#ABCDabcdX"


def tenths(low: float, high: float) -> st.SearchStrategy[float]:
    """Seconds with one decimal: shrink to round numbers, print as a person would say them."""
    return st.integers(round(low * 10), round(high * 10)).map(lambda n: n / 10)


def unknown_name(names: tuple[str, ...]) -> str:
    for candidate in ("999.9", "998.8", "997.7"):
        if candidate not in names:
            return candidate
    return "router-que-no-existe"


def asks(names: tuple[str, ...], settings: Settings) -> st.SearchStrategy[Ask]:
    patient = settings.query_timeout_s + settings.connect_timeout_s + 60.0
    patience = st.one_of(st.just(patient), tenths(3.0, settings.query_timeout_s))
    router = st.sampled_from(names)
    return st.one_of(
        st.builds(lambda r, p: Ask("devices", (r,), patience_s=p), router, patience),
        st.builds(lambda p: Ask("sfp_all", patience_s=p), patience),
        st.builds(lambda rs, p: Ask("sfp_some", tuple(rs), patience_s=p),
                  st.lists(router, min_size=1, max_size=min(3, len(names)), unique=True), patience),
        st.builds(lambda p: Ask("unknown_router", (unknown_name(names),), patience_s=p), patience),
        st.builds(lambda v, p: Ask("nonsense", variant=v, patience_s=p), st.integers(0, len(NONSENSE) - 1), patience),
    )


def interjection(question_count: int) -> st.SearchStrategy[Interjections]:
    after = st.integers(0, max(0, question_count - 1))
    return st.one_of(
        st.builds(Backchannel, after, tenths(0.5, 30.0), st.sampled_from(BACKCHANNELS)),
        st.builds(BargeIn, after, tenths(0.2, 4.0)),
        st.builds(Digit, after, tenths(0.5, 30.0), st.sampled_from(DTMF)),
    )


def lines() -> st.SearchStrategy[Line]:
    """How Asterisk reaches the service; the plain AudioSocket() app most often (it shrinks to it)."""
    audiosocket = st.one_of(
        st.just(Line()),
        st.builds(lambda codec: Line(mode="dial", codec=codec),
                  st.sampled_from(("slin", "slin16", "slin24", "slin48", "slin44", "ulaw", "alaw"))),
    )
    websocket = st.builds(lambda control, codec: Line("websocket", control=control, codec=codec),
                          st.sampled_from(("plain-text", "json")), st.sampled_from(("slin", "slin16", "ulaw", "alaw")))
    return st.one_of(audiosocket, websocket)


def router_behaviour(name: str, settings: Settings) -> st.SearchStrategy[RouterBehaviour]:
    beyond = max(settings.router_timeout_s, settings.query_timeout_s) + 30.0
    latency = st.one_of(
        tenths(0.1, 3.0),  # most routers answer at once
        tenths(5.0, beyond),  # slow, around and past the deadlines
    )
    fault = st.one_of(st.none(), st.sampled_from((*FAULTS, UNREACHABLE)))
    return st.builds(RouterBehaviour, st.just(name), latency, fault)


def model_behaviour(horizon_s: float) -> st.SearchStrategy[ModelFaults]:
    at = tenths(0.0, horizon_s)
    return st.one_of(
        st.just(ModelFaults()),
        st.builds(lambda s: ModelFaults(handshake_status=s), st.sampled_from((401, 403, 404, 429, 500, 503))),
        st.just(ModelFaults(stall_handshake=True)),
        st.builds(lambda t: ModelFaults(drop_after_s=t), at),
        st.builds(lambda t: ModelFaults(silent_after_s=t), at),
        st.builds(lambda ks, echo: ModelFaults(refuse_creates=frozenset(ks), refusal_echoes_event_id=echo),
                  st.sets(st.integers(1, 8), min_size=1, max_size=3), st.booleans()),
        st.builds(lambda t: ModelFaults(spurious_error_after_s=t), at),
        st.builds(lambda kind, n: ModelFaults(drop_on=(kind, n)),
                  st.sampled_from(("response.done", "response.output_audio.delta", "response.create",
                                   "conversation.item.create", "input_audio_buffer.speech_stopped")),
                  st.integers(1, 4)),
        st.builds(lambda t: ModelFaults(deaf_pings_after_s=t), at),
        st.just(ModelFaults(refuse_every_session_update=True)),
        st.builds(lambda t, code: ModelFaults(errors_at=((t, code),)), at,
                  st.sampled_from(("rate_limit_exceeded", "server_error", "invalid_request_error",
                                   "conversation_already_has_active_response", "insufficient_quota",
                                   "some_future_error_code"))),
        st.builds(lambda t: ModelFaults(expire_after_s=t), at),
        st.just(ModelFaults(respond_after_output=True)),
    )


@st.composite
def scenarios(draw: st.DrawFn, settings: Settings) -> Scenario:
    names = tuple(r.name for r in settings.routers)
    if not names:
        raise ValueError("a simulation needs at least one [[router]] in the configuration")
    questions = tuple(draw(st.lists(asks(names, settings), min_size=1, max_size=3)))
    interjections = tuple(draw(st.lists(interjection(len(questions)), max_size=3)))
    silence = draw(st.sampled_from(("noise", "no_frames", "silence")))
    horizon = settings.query_timeout_s + 30.0
    hangup = draw(st.one_of(st.none(), tenths(0.0, horizon)))
    uuid_bytes = draw(st.one_of(st.none(), st.integers(0, 18)))
    # Routers draw their behaviour only if some question can reach them; the rest stay healthy.
    reachable = _reachable(questions, names)
    routers = tuple(draw(router_behaviour(name, settings)) if name in reachable else RouterBehaviour(name)
                    for name in names)
    model = draw(model_behaviour(horizon))
    # 1: the first reconnect finds a healthy model; more than reconnect_attempts: it never comes back.
    fault_sessions = draw(st.integers(1, settings.reconnect_attempts + 2)) if model != ModelFaults() else 1
    seed = draw(st.integers(0, 2**16))
    line = draw(lines())
    if line.transport == "websocket":
        uuid_bytes = None  # no UUID message on chan_websocket
    return Scenario(questions, interjections, silence, hangup, uuid_bytes, routers, model, seed,
                    model_fault_sessions=fault_sessions, line=line)


def _reachable(questions: tuple[Ask, ...], names: tuple[str, ...]) -> set[str]:
    reachable: set[str] = set()
    for ask in questions:
        if ask.kind == "sfp_all":
            return set(names)
        if ask.kind in ("devices", "sfp_some"):
            reachable.update(ask.routers)
    return reachable
