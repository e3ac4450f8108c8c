"""The scenario model: one phone call as a story of timed events, in plain frozen data.

A ``Scenario`` says what the caller does (questions, interjections, how their silent line sounds,
when they hang up), how each router behaves (latency, fault) and how the model service behaves
(handshake refused, drops, goes silent, answers with errors). ``story()`` tells it in one line that
a reviewer can read ("caller asks the SFP traffic of all routers; router 26.1 takes 40 s; caller
hangs up at 12.3 s"), listing only what differs from a healthy, patient call. Pure: no I/O, no
clock; ``world`` turns a scenario into a running call and ``strategies`` generates scenarios.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mikrovoice.sim import brain
from mikrovoice.sim.asterisk import CallerScript, Interjection, Line, PressDigit, Question, Say
from mikrovoice.sim.realtime import ModelFaults

#: The kinds of question a caller can ask. The first three and the new tools' kinds are answered
#: by a tool; "unknown_router" and "ambiguous_router" get the inventory's question back;
#: "nonsense" gets "No entendí".
ASK_KINDS = ("devices", "sfp_all", "sfp_some", "unknown_router", "nonsense", "health", "health_all", "who_has",
             "pppoe", "optics", "ping", "log", "list_routers", "ambiguous_router")
#: How the caller names routers: "152 punto 1", "ciento cincuenta y dos punto uno", or their site.
NAMINGS = ("digits", "words", "site")
NONSENSE = (
    "¿Qué hora es en Tokio?",
    "Cuéntame un chiste de redes",
    "¿Cuánto cuesta el plan de cien megas?",
)
#: Router faults beyond the simulator's own (sim.routeros.FAULTS): nothing listens at its address.
UNREACHABLE = "unreachable"
#: "The router was slow" in a story starts here.
SLOW_S = 5.0

_UNITS = ("cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve", "diez", "once", "doce",
          "trece", "catorce", "quince", "dieciséis", "diecisiete", "dieciocho", "diecinueve", "veinte", "veintiuno",
          "veintidós", "veintitrés", "veinticuatro", "veinticinco", "veintiséis", "veintisiete", "veintiocho",
          "veintinueve")
_TENS = {3: "treinta", 4: "cuarenta", 5: "cincuenta", 6: "sesenta", 7: "setenta", 8: "ochenta", 9: "noventa"}
_HUNDREDS = {1: "ciento", 2: "doscientos", 3: "trescientos", 4: "cuatrocientos", 5: "quinientos", 6: "seiscientos",
             7: "setecientos", 8: "ochocientos", 9: "novecientos"}


def number_words(n: int) -> str:
    """0..999 as a Colombian says it: 152 -> "ciento cincuenta y dos", 26 -> "veintiséis", 100 -> "cien"."""
    if not 0 <= n <= 999:
        raise ValueError(f"{n} is not 0..999")
    if n == 100:
        return "cien"
    hundreds, rest = divmod(n, 100)
    words = [_HUNDREDS[hundreds]] if hundreds else []
    if rest or not hundreds:
        if rest < 30:
            words.append(_UNITS[rest])
        else:
            tens, unit = divmod(rest, 10)
            words.append(_TENS[tens] + (f" y {_UNITS[unit]}" if unit else ""))
    return " ".join(words)


def spoken_router(name: str, naming: str = "digits") -> str:
    """How a caller says a router's name: "152.1" -> "152 punto 1" (or, in words, "ciento cincuenta
    y dos punto uno"), "torre-norte" -> "torre norte"."""
    if naming == "words" and re.fullmatch(r"\d{1,3}(?:\.\d{1,3})+", name):
        return " punto ".join(number_words(int(part)) for part in name.split("."))
    text = re.sub(r"(\d)\.(\d)", r"\1 punto \2", name)
    return re.sub(r"[_\-]+", " ", text).strip()


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " y " + names[-1]


@dataclass(frozen=True)
class Ask:
    """One question, asked after the previous one was answered (or the caller's patience ran out).

    ``routers`` are inventory names (``site`` replaces them in the words when the caller names
    the site); ``subject`` is what the question is about: an IP or a MAC (who_has), a PPPoE user
    (pppoe), an interface or "" for every SFP (optics), the ping's target, a log topic ("" for
    the whole log). ``expected`` is what the strategy knew when it drew the subject ("lease of
    152.1", "nobody"): story words only, the invariants ask the simulated routers themselves.
    """

    kind: str  # one of ASK_KINDS
    routers: tuple[str, ...] = ()  # devices / unknown_router / single-router kinds: one name; others: some
    variant: int = 0  # which wording (nonsense questions); ping: how many packets (0: as many as the tool sends)
    patience_s: float = 180.0  # how long the caller waits for an answer before moving on
    pause_s: float = 0.0  # the caller is silent this long before asking (a long call)
    naming: str = "digits"  # one of NAMINGS
    site: str = ""  # the site the caller names (naming "site", ambiguous_router, list_routers)
    subject: str = ""
    expected: str = ""

    def _routers_said(self) -> list[str]:
        return [spoken_router(r, self.naming) for r in self.routers]

    def _router(self) -> str:
        return spoken_router(self.routers[0], self.naming)

    def text(self) -> str:
        if self.kind in ("devices", "unknown_router"):
            return f"Dame la lista de dispositivos activos del router {self._router()}"
        if self.kind == "ambiguous_router":
            return f"Dame la lista de dispositivos activos del router de {self.site}"
        if self.kind == "sfp_all":
            return "Dame el tráfico de las interfaces SFP de todos los routers"
        if self.kind == "sfp_some":
            names = self._routers_said()
            if self.naming == "site":
                return f"Dame el tráfico SFP de los routers de {self.site}"
            return f"Dame el tráfico SFP de los routers {_listed(names)}" if len(names) > 1 else f"Dame el tráfico SFP del router {names[0]}"
        if self.kind == "health":
            if self.naming == "site":
                return f"¿Cómo están los routers de {self.site}?"
            names = self._routers_said()
            return f"¿Está caído el router {names[0]}?" if len(names) == 1 else f"¿Cómo están los routers {_listed(names)}?"
        if self.kind == "health_all":
            return "¿Cómo están todos los routers?"
        if self.kind == "who_has":
            what = "la MAC" if ":" in self.subject else "la IP"
            return f"¿Quién tiene {what} {self.subject}?"
        if self.kind == "pppoe":
            return f"¿El cliente pppoe {self.subject} está conectado?"
        if self.kind == "optics":
            port = f"del {self.subject}" if self.subject else "de los SFP"
            return f"¿Cómo está la óptica {port} del router {self._router()}?"
        if self.kind == "ping":
            count = f" con {self.variant} paquetes" if self.variant else ""
            return f"Haz ping desde el router {self._router()} al {self.subject}{count}"
        if self.kind == "log":
            about = f" sobre {self.subject}" if self.subject else ""
            return f"¿Qué dice el log del router {self._router()}{about}?"
        if self.kind == "list_routers":
            return f"¿Qué routers hay en {self.site}?" if self.site else "¿Qué routers hay?"
        return NONSENSE[self.variant % len(NONSENSE)]

    def expect(self) -> re.Pattern[str]:
        """What answers it, or explains why there is no answer (the brain's own wording)."""
        tool = self.tool()
        if tool is not None:
            return brain.ANSWERS[tool]
        if self.kind in ("unknown_router", "ambiguous_router"):
            return brain.ANSWER_CLARIFY
        return brain.ANSWER_PROBLEM

    def tool(self) -> str | None:
        """The tool that answers it (None: no tool is called, or the call is refused)."""
        return {"devices": "dispositivos_activos", "sfp_all": "trafico_interfaces", "sfp_some": "trafico_interfaces",
                "health": "estado_routers", "health_all": "estado_routers", "who_has": "quien_tiene",
                "pppoe": "sesion_pppoe", "optics": "optica_sfp", "ping": "ping", "log": "log_router",
                "list_routers": "listar_routers"}.get(self.kind)

    def describe(self) -> str:
        said = {"words": " (said in words)", "site": f" (by site: {self.site})"}.get(self.naming, "")
        known = f" [{self.expected}]" if self.expected else ""
        if self.kind == "devices":
            return f"the active devices of {self.routers[0]}{said}"
        if self.kind == "sfp_all":
            return "the SFP traffic of all routers"
        if self.kind == "sfp_some":
            return "the SFP traffic of " + ", ".join(self.routers) + said
        if self.kind == "unknown_router":
            return f"the active devices of an unknown router {self.routers[0]!r}"
        if self.kind == "ambiguous_router":
            return f"the active devices of 'the router of {self.site}' (it has {len(self.routers)})"
        if self.kind == "health":
            return "whether " + ", ".join(self.routers) + " are up" + said
        if self.kind == "health_all":
            return "how all routers are"
        if self.kind == "who_has":
            return f"who has {self.subject}{known}"
        if self.kind == "pppoe":
            return f"whether PPPoE user {self.subject} is connected{known}"
        if self.kind == "optics":
            return f"the optics of {self.subject or 'the SFPs'} of {self.routers[0]}{said}"
        if self.kind == "ping":
            count = f" ({self.variant} packets)" if self.variant else ""
            return f"a ping from {self.routers[0]} to {self.subject}{count}{said}{known}"
        if self.kind == "log":
            return f"the log of {self.routers[0]}" + (f" about {self.subject}" if self.subject else "") + said
        if self.kind == "list_routers":
            return f"the routers of {self.site}" if self.site else "which routers there are"
        return f"something no tool answers ({self.text()!r})"


@dataclass(frozen=True)
class Backchannel:
    """A short "ajá" some time after finishing a question (typically while its query runs)."""

    after_question: int
    delay_s: float
    word: str = "ajá"


@dataclass(frozen=True)
class BargeIn:
    """The caller speaks over the assistant: ``delay_s`` after it starts speaking, following a question."""

    after_question: int
    delay_s: float
    text: str = "Espera, espera, una cosa"


@dataclass(frozen=True)
class Digit:
    after_question: int
    delay_s: float
    digit: str


Interjections = Backchannel | BargeIn | Digit


#: How a story tells the simulator's other faults (``sim.routeros.FAULTS``).
FAULT_STORIES = {
    "black_hole": "accepts the connection and never answers",
    "drops_mid_reply": "drops the connection in the middle of a reply",
    "busy": "refuses another API session (max-sessions)",
    "slow": "is slow to answer",
    "drips": "sends its replies a few bytes at a time",
}
#: Faults that keep a router from answering anything: it must never be reported as answering.
NO_ANSWER_FAULTS = frozenset({"hangs", "black_hole", "hangs_after_login", "refuses_login", "drops_mid_query",
                              "drops_mid_reply", "busy", UNREACHABLE})


@dataclass(frozen=True)
class RouterBehaviour:
    name: str
    latency_s: float = 0.3  # how long its data queries take
    fault: str | None = None  # None, one of sim.routeros.FAULTS, or UNREACHABLE

    def describe(self) -> str | None:
        if self.fault == UNREACHABLE:
            return f"router {self.name} is unreachable"
        if self.fault == "hangs":
            return f"router {self.name} accepts the connection and never answers"
        if self.fault == "hangs_after_login":
            return f"router {self.name} logs in and then never answers"
        if self.fault == "drops_mid_query":
            return f"router {self.name} drops the connection mid-query"
        if self.fault == "refuses_login":
            return f"router {self.name} refuses the login"
        if self.fault is not None and self.fault in FAULT_STORIES:
            return f"router {self.name} {FAULT_STORIES[self.fault]}" + (
                f" ({self.latency_s:g} s per query)" if self.latency_s >= SLOW_S else "")
        if self.latency_s >= SLOW_S:
            return f"router {self.name} takes {self.latency_s:g} s"
        return None


def describe_model(faults: ModelFaults) -> list[str]:
    """How the model service misbehaves, in story words (nothing for a healthy service)."""
    parts = []
    if faults.handshake_status is not None:
        parts.append(f"the model service refuses the connection (HTTP {faults.handshake_status})")
    if faults.stall_handshake:
        parts.append("the model service accepts TCP and never completes the handshake")
    if faults.drop_after_s is not None:
        parts.append(f"the model link drops at {faults.drop_after_s:g} s")
    if faults.silent_after_s is not None:
        parts.append(f"the model service goes silent (no pongs) at {faults.silent_after_s:g} s")
    if faults.refuse_creates:
        which = ", ".join(_ordinal(n) for n in sorted(faults.refuse_creates))
        echo = "" if faults.refusal_echoes_event_id else " (error without event_id)"
        parts.append(f"the model answers the {which} response.create with server_error{echo}")
    if faults.spurious_error_after_s is not None:
        parts.append(f"the model sends an unprompted error at {faults.spurious_error_after_s:g} s")
    if faults.drop_on is not None:
        kind, n = faults.drop_on
        parts.append(f"the model link drops at the {_ordinal(n)} {kind}")
    if faults.deaf_pings_after_s is not None:
        parts.append(f"the model stops answering pings at {faults.deaf_pings_after_s:g} s")
    if faults.refuse_every_session_update:
        parts.append("the model refuses every session.update")
    elif faults.refuse_session_updates:
        which = ", ".join(_ordinal(n) for n in sorted(faults.refuse_session_updates))
        parts.append(f"the model refuses the {which} session.update")
    for at, code in faults.errors_at:
        parts.append(f"the model sends error {code} at {at:g} s")
    if faults.expire_after_s is not None:
        parts.append(f"the model session expires at {faults.expire_after_s:g} s")
    if faults.respond_after_output:
        parts.append("the model starts a response by itself after each tool output")
    return parts


def _ordinal(n: int) -> str:
    return f"{n}{'st' if n == 1 else 'nd' if n == 2 else 'rd' if n == 3 else 'th'}"


@dataclass(frozen=True)
class Scenario:
    asks: tuple[Ask, ...] = ()
    interjections: tuple[Interjections, ...] = ()
    silence: str = "noise"  # the caller's line while they are silent: "noise", "silence" or "no_frames"
    hangup_at_s: float | None = None  # None: the caller hangs up after the conversation
    uuid_bytes: int | None = None  # the caller hangs up after only this many bytes of the UUID message
    routers: tuple[RouterBehaviour, ...] = ()
    model: ModelFaults = field(default_factory=ModelFaults)  # the simulator's own fault model
    seed: int = 0  # call id and the routers' data
    #: The model's faults apply to this many model sessions in a row (the first, then each
    #: reconnect); later sessions have ``model_after``'s (healthy by default).
    model_fault_sessions: int = 1
    model_after: ModelFaults = field(default_factory=ModelFaults)
    #: How Asterisk reaches the service: AudioSocket (app or Dial) or chan_websocket, and the codec
    #: its channel carries (slin at a rate, or mu-law mislabelled as slin).
    line: Line = Line()
    #: What the caller types when asked for a PIN ([auth]): one entry per prompt heard, in order.
    pins: tuple[str, ...] = ()
    #: How the story names those PINs ("Ana's PIN", "a wrong PIN"), one per entry of ``pins``.
    pin_story: tuple[str, ...] = ()

    def script(self) -> CallerScript:
        questions = tuple(Question(a.text(), _any_reply(a), a.patience_s, a.pause_s) for a in self.asks)
        interjections = []
        for item in self.interjections:
            if isinstance(item, Backchannel):
                interjections.append(Interjection(item.after_question, item.delay_s, Say(item.word, "backchannel")))
            elif isinstance(item, BargeIn):
                interjections.append(Interjection(item.after_question, item.delay_s, Say(item.text, "barge_in"), over_speech=True))
            else:
                interjections.append(Interjection(item.after_question, item.delay_s, PressDigit(item.digit)))
        return CallerScript(questions, tuple(interjections), silence=self.silence, hangup_at_s=self.hangup_at_s,
                            uuid_bytes=self.uuid_bytes, line=self.line, pins=self.pins)

    def story(self) -> str:
        """The scenario in one readable line: only what differs from a healthy, patient call."""
        parts = []
        line = {"no_frames": "silent phone: no frames", "silence": "silence frames", "noise": "line noise"}[self.silence]
        if self.line != Line():
            line += ", " + describe_line(self.line)
        if self.line.transport == "websocket" and self.line.control == "json":
            line += f", from {self.line.caller_id}"
        if self.uuid_bytes is not None:
            parts.append(f"caller ({line}) hangs up after sending {self.uuid_bytes} of the UUID message's 19 bytes")
        else:
            if self.pin_story:
                parts.append("caller types " + ", then ".join(self.pin_story))
            asks = "; then ".join(_ask_story(a) for a in self.asks) or "nothing"
            parts.append(f"caller ({line}) asks {asks}")
        for item in self.interjections:
            parts.append(_interjection_story(item))
        parts += [d for d in (r.describe() for r in self.routers) if d]
        faults = describe_model(self.model)
        if faults and self.model_fault_sessions > 1:
            faults[-1] += f" (in {self.model_fault_sessions} sessions in a row)"
        parts += faults
        later = describe_model(self.model_after)
        if later:
            parts.append("then " + " and ".join(later))
        if self.hangup_at_s is not None and self.uuid_bytes is None:
            parts.append(f"caller hangs up at {self.hangup_at_s:g} s")
        return "; ".join(parts)


def describe_line(line: Line) -> str:
    """"over chan_websocket (json, slin16)", "Dial(AudioSocket) without c(slin): mu-law as slin"."""
    if line.transport == "websocket":
        return f"over chan_websocket ({line.control}, {line.codec})"
    how = "the AudioSocket() app" if line.mode == "app" else "Dial(AudioSocket)"
    if line.codec in ("ulaw", "alaw"):
        return f"{how} without c(slin): {'mu' if line.codec == 'ulaw' else 'A'}-law labelled as slin"
    return f"{how} with {line.codec}" if line.codec != "slin" else how


def _any_reply(ask: Ask) -> str:
    """The caller moves on when it hears the answer or any explanation of why there is none."""
    patterns = (ask.expect(), brain.ANSWER_PROBLEM, brain.ANSWER_CLARIFY, brain.ANSWER_WAITING)
    return "|".join(f"(?:{re.sub(r'[(][?]P<[a-z_]+>', '(', p.pattern)})" for p in patterns)


def _ask_story(ask: Ask) -> str:
    text = ask.describe()
    if ask.pause_s:
        text = f"after {ask.pause_s:g} s of silence, {text}"
    if ask.patience_s < 60:
        text += f" (waits at most {ask.patience_s:g} s)"
    return text


def _interjection_story(item: Interjections) -> str:
    if isinstance(item, Backchannel):
        return f"caller says {item.word!r} {item.delay_s:g} s after question {item.after_question + 1}"
    if isinstance(item, BargeIn):
        return (f"caller speaks over the assistant ({item.text!r}) {item.delay_s:g} s into its first reply "
                f"after question {item.after_question + 1}")
    return f"caller presses {item.digit} {item.delay_s:g} s after question {item.after_question + 1}"
