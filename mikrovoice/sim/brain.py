"""ScriptedModel: the simulated model's mind. It recognises the NOC questions the tools answer.

Given what the conversation holds (the caller's last words, new tool outputs, a response's
instructions) it decides one turn: words to speak and, maybe, one function call. Its answers
are built from the tool output it receives, never from the simulator's own router data, so a
wrong or partial output is visible in what the caller hears. Pure: no I/O, no clock.

The questions and the calls it makes for them (arguments as a real model passes them):

- "¿Está caído el router 46 punto 3?", "¿Cómo están los routers de la torre norte?" ->
  ``estado_routers`` (``routers``: the names said; none: all);
- "Dame los dispositivos activos del router 152 punto 1" -> ``dispositivos_activos``;
- "¿Quién tiene la IP 192.168.70.15?" / "... la MAC AA:BB:CC:DD:EE:FF?" -> ``quien_tiene``;
- "¿El cliente pppoe juan.perez está conectado?" -> ``sesion_pppoe``;
- "¿Cómo está la óptica del sfp-sfpplus1 del router 152 punto 1?" -> ``optica_sfp``;
- "Haz ping desde el router 26 punto 1 al 8.8.8.8" -> ``ping``;
- "¿Qué dice el log del router 59 punto 3 sobre la interfaz?" -> ``log_router``;
- "¿Qué routers hay?" -> ``listar_routers``; the SFP traffic -> ``trafico_interfaces``.

It reports the two seed answers in their own sentences (``ANSWER_DEVICES``, ``ANSWER_SFP``) and
every other tool's output by saying its ``resumen`` as written (a real model paraphrases it). An
output with an ``error`` is "No pude hacer esa consulta: ...", unless the error is a question for
the caller (the inventory's "¿Cuál de ellos: ...?"), which is read as it is.

It behaves as a real voice model does in three more ways:

- router names are taken as the caller said them ("del router torre norte", "de los routers
  26 punto 1 y 46 punto 3"), with "N punto M" written "N.M"; the production tools resolve them;
- a backchannel ("ajá", "sí", "ok", ...: at most two such words) is not a question: with a
  tool call pending it answers "Sí, sigo consultando." and calls nothing;
- a turn cut off by the caller (``cancelled(turn, reason="turn_detected", ...)``, told by the
  server session) is remembered if it answered the caller or reported a tool output; if the
  caller's next turn is a backchannel it is resumed ("Como te decía: ..."), with its function
  call if that had not been issued yet; a real question makes the model forget it.

``History`` is what the model reads from the items of a conversation, whoever put them there:
the caller's question it still owes an answer, the tool outputs it has not reported yet, the
function calls still waiting for their output. A client that reconnects replays the old
conversation into a new session as items (user and system text, assistant text as
``output_text`` or as a system note "El asistente dijo: ...", ``function_call`` items and their
``function_call_output``); an assistant turn after a question means the question was answered,
one after a tool output means it was reported, a ``function_call`` after a question means the
model answered it by calling the tool. So a replayed conversation is continued, not repeated:
the output of a call that was pending when the old session died is reported once, when it comes.

The module-level regexes ``ANSWER_*`` recognise its answers (use ``.search``: a resumed answer
is prefixed with ``RESUME_PREFIX``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

#: "El router 152.1 tiene 12 dispositivos activos, por ejemplo ..."
ANSWER_DEVICES = re.compile(
    r"El router (?P<router>.+?) tiene (?P<count>\S+) dispositivos activos, por ejemplo (?P<examples>.*)", re.S
)
#: "Respondieron 9 de 12 routers. El tráfico SFP total es de ... [No respondieron: 26.1, 46.3.]"
ANSWER_SFP = re.compile(
    r"Respondieron (?P<answered>\S+) de (?P<total>\S+) routers\. El tráfico SFP total es de (?P<rx_mbps>\S+) "
    r"megabits por segundo de bajada y (?P<tx_mbps>\S+) de subida\.(?:.*? No respondieron: (?P<missing>.+)\.)?",
    re.S,
)
#: A query that failed, a tool output the model cannot read, or a question it did not understand.
ANSWER_PROBLEM = re.compile(
    r"No pude hacer esa consulta: (?P<error>.*)\.|No entendí\. Puedo consultar|La herramienta devolvió algo que no entiendo",
    re.S,
)
#: A new question while a tool call is still pending.
ANSWER_WAITING = re.compile(r"Sigo esperando el resultado de la consulta anterior")
#: The inventory's question back when a router name is not exactly one router (unknown, ambiguous,
#: a site with many routers: ``routeros.inventory.InventoryPhrases``), which the model reads as is.
ANSWER_CLARIFY = re.compile(r"No conozco el router|No entendí el nombre del router|¿Cuál de ellos:|¿Cuál\?")

# The new tools' answers are their output's ``resumen``, said verbatim (a real model paraphrases
# it): these recognise the summaries the production tools write (``mikrovoice/tools``).
#: estado_routers: one router up or unreachable, or the tally of several.
ANSWER_HEALTH = re.compile(
    r"El router (?P<router>.+?) está en línea, encendido hace|No pude comunicarme con el router (?P<down>.+?): "
    r"|De (?P<total>\d+) routers, (?P<ok>\d+) están bien"
)
#: quien_tiene: who has it, or nobody among those that answered.
ANSWER_WHO_HAS = re.compile(
    r"La (?:IP|MAC) (?P<what>\S+) la tiene (?P<who>.+?) \((?:MAC|IP) (?P<other>[^)]*)\), en el router (?P<router>[^,.]+(?:\.\d+)*)"
    r"|Ninguno de los (?P<answered>\d+) routers que respondieron tiene la (?:IP|MAC) (?P<nobody>\S+?)\.(?:\s|$)"
)
#: sesion_pppoe: connected where, or not found among those that answered.
ANSWER_PPPOE = re.compile(
    r"El cliente (?P<user>\S+) está conectado en el router (?P<router>.+?) desde hace"
    r"|No encontré una sesión PPPoE activa de (?P<absent>\S+) en los (?P<answered>\d+) routers que respondieron"
)
#: optica_sfp: one port's reading, a port without module, or the tally of several.
ANSWER_OPTICS = re.compile(
    r"El (?P<port>\S+) del (?P<router>.+?) (?:recibe (?P<rx>\S+) dBm|no tiene módulo SFP)"
    r"|Revisé (?P<checked>\d+) puertos SFP con módulo en (?P<answered>\d+) de (?P<total>\d+) routers"
)
#: ping: "Desde el 26.1, 8.8.8.8 respondió 4 de 4 pings..."
ANSWER_PING = re.compile(r"Desde el (?P<router>.+?), (?P<target>\S+) respondió (?P<received>\d+) de (?P<sent>\d+) pings")
#: log_router: how many lines and the last one, or none.
ANSWER_LOG = re.compile(r"El log del (?P<router>.+?) (?:tiene (?P<lines>\d+) líneas|no tiene líneas)")
#: listar_routers: "Conozco 12 routers: ...", "En torre norte hay 3 routers: ...".
ANSWER_ROUTERS = re.compile(r"Conozco (?P<count>\d+) routers|En (?P<site>.+?) hay (?P<in_site>\d+) routers: [^¿]*$", re.S)
#: Each tool's answer.
ANSWERS = {
    "dispositivos_activos": ANSWER_DEVICES, "trafico_interfaces": ANSWER_SFP, "estado_routers": ANSWER_HEALTH,
    "quien_tiene": ANSWER_WHO_HAS, "sesion_pppoe": ANSWER_PPPOE, "optica_sfp": ANSWER_OPTICS, "ping": ANSWER_PING,
    "log_router": ANSWER_LOG, "listar_routers": ANSWER_ROUTERS,
}


def is_answer(text: str) -> bool:
    """``text`` is a tool's answer (not an explanation why there is none)."""
    return any(pattern.search(text) for pattern in ANSWERS.values())


WAITING = "Sigo esperando el resultado de la consulta anterior; te aviso apenas llegue."
NOT_UNDERSTOOD = ("No entendí. Puedo consultar de los routers el estado, los dispositivos, el tráfico y la óptica SFP, "
                  "quién tiene una IP, sesiones PPPoE, ping y log.")
UNREADABLE_OUTPUT = "La herramienta devolvió algo que no entiendo."
STILL_QUERYING = "Sí, sigo consultando."
RESUME_PREFIX = "Como te decía: "
HOW_CAN_I_HELP = "¿En qué te puedo ayudar?"
#: The caller asked to drop the running query ("olvídalo", "cancela"): the model calls cancelar_consulta.
CANCELLING = "Listo, cancelo la consulta."
CANCELLED = "Consulta cancelada. ¿Necesitas algo más?"
_CANCEL_WORDS = re.compile(r"\b(olvidalo|olvida eso|cancela|cancelala|ya no la necesito)\b")
GO_AHEAD = "Dime, ¿qué quieres consultar?"

#: Words that acknowledge without asking (accents, case and punctuation removed).
BACKCHANNELS = frozenset({
    "aja", "aha", "si", "ok", "okey", "okay", "mmm", "mhm", "claro", "dale", "listo", "vale", "ya",
    "bueno", "perfecto", "entendido", "entiendo",
})

Call = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Turn:
    text: str
    call: Call | None = None
    #: what kind of turn: "answer" (to the caller's words), "report" (of a tool output),
    #: "quoted" (spoken verbatim from instructions), "ack" (to a backchannel), "resume", "prompt"
    kind: str = "answer"
    #: the text to say again if the caller cuts this turn off and then says "ajá"; None if the
    #: turn is not worth resuming (greetings, progress lines, acknowledgements)
    resumable: str | None = None


def _plain(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def is_backchannel(text: str) -> bool:
    """At most two words, each an acknowledgement ("ajá", "sí, claro", "ok dale", "mmm")."""
    words = re.sub(r"m{3,}", "mmm", re.sub(r"[^a-z0-9\s]", " ", _plain(text))).split()
    return 1 <= len(words) <= 2 and all(word in BACKCHANNELS for word in words)


_QUOTED = re.compile(r'exactamente[^"“«]*["“«]([^"”»]+)["”»]', re.IGNORECASE)
_ROUTER_WORD = re.compile(r"\brouters?\b", re.IGNORECASE)
_ALL_ROUTERS = re.compile(r"\btod[oa]s\s+(?:l[oa]s\s+)?routers?\b", re.IGNORECASE)
_PHRASE_END = re.compile(r"[?!;¿¡]|\.(?!\d)")
#: Words after a router's name that start the rest of the question ("... 26 punto 1 al 8.8.8.8",
#: "... 59 punto 3 sobre la interfaz", "el router 46 punto 3 está caído").
_NAME_END = re.compile(r"\s+(?:al|hacia|hasta|sobre|con|est[aá]n?|tienen?|por|a(?=\s+\d))\b", re.IGNORECASE)
_SEPARATOR = re.compile(r"\s*,\s*|\s+y\s+", re.IGNORECASE)
_DOTTED = re.compile(r"(\d+)\s*(?:punto|\.)\s*(\d+)", re.IGNORECASE)
_NUMERIC = re.compile(r"\d+(?:\.\d+)*")
_FILLER = re.compile(r"(?:^|\s+)(?:por\s+favor|porfa|porfavor|ahora|ya|gracias)$", re.IGNORECASE)
#: "de la torre norte" -> "torre norte"; an article with a capital stays: "de La Calera" -> "La Calera".
_PREPOSITION = re.compile(r"^(?i:de|del|en|desde)(?:\s+(?:la|las|los|el)(?=\s))?\s+")
#: "cuarenta y seis": the " y " inside a number said in words is not a list's " y ".
_TENS_WORD = re.compile(r"(?:treinta|cuarenta|cincuenta|sesenta|setenta|ochenta|noventa)$", re.IGNORECASE)
_UNIT_WORD = re.compile(r"(?:un|uno|una|dos|tres|cuatro|cinco|seis|siete|ocho|nueve)\b", re.IGNORECASE)


def router_names(text: str) -> list[str]:
    """The routers a question names, as the caller said them, "N punto M" written "N.M".

    "del router 152 punto 1" -> ["152.1"]; "del router torre norte" -> ["torre norte"];
    "de los routers 26 punto 1 y 46 punto 3" -> ["26.1", "46.3"]; "de todos los routers" -> [];
    "de los routers de la torre norte" -> ["torre norte"]; "del router ciento cincuenta y dos punto
    uno" -> ["ciento cincuenta y dos punto uno"] (a real model passes the words it heard; the
    production inventory reads them).
    """
    match = _ROUTER_WORD.search(text)
    if match is None or _ALL_ROUTERS.search(text):
        return []
    rest = text[match.end():]
    end = _PHRASE_END.search(rest)
    phrase = rest[: end.start()] if end else rest
    stop = _NAME_END.search(phrase)
    if stop:
        phrase = phrase[: stop.start()]
    items: list[str] = []
    for item in _SEPARATOR.split(phrase):
        if items and _TENS_WORD.search(items[-1]) and _UNIT_WORD.match(item.strip()):
            items[-1] = f"{items[-1]} y {item.strip()}"
        else:
            items.append(item.strip())
    names = []
    for item in items:
        item = _DOTTED.sub(r"\1.\2", item)
        while (trimmed := _PREPOSITION.sub("", _FILLER.sub("", item)).strip()) != item:
            item = trimmed
        numeric = _NUMERIC.match(item)
        if numeric:
            item = numeric.group(0)
        if item and item not in names:
            names.append(item)
    return names


_IP = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.]*\d)")
_MAC = re.compile(r"\b[0-9A-Fa-f]{2}(?:[:\-][0-9A-Fa-f]{2}){5}\b")
_PPP_USER = re.compile(r"\b(?:cliente|usuario)\s+(?:pppoe\s+)?(?:de\s+)?(?P<user>[A-Za-z0-9._\-@+]+)", re.IGNORECASE)
_PORT = re.compile(r"\b(?:sfp|qsfp|combo)[A-Za-z0-9\-+/]*\d\b", re.IGNORECASE)
_TOPIC = re.compile(r"\bsobre\s+(?:(?:el|la|los|las)\s+)?(?P<topic>[^\s?¿!¡,;]+)", re.IGNORECASE)
_COUNT = re.compile(r"\b(?P<n>\d{1,2})\s+(?:paquetes|pings|veces)\b", re.IGNORECASE)
_LINES = re.compile(r"\b(?P<n>\d{1,2})\s+(?:[uú]ltimas\s+)?l[ií]neas\b", re.IGNORECASE)
_SITE = re.compile(r"\bhay\s+en\s+(?:(?:la|el|los|las)\s+)?(?P<site>[^?¿!¡.;]+)", re.IGNORECASE)
_LOG = re.compile(r"\blogs?\b|\bregistro\b")
_PING = re.compile(r"\bping\b|\bhaz(?:me)? un ping\b")
_LISTING = re.compile(r"\bque routers (?:hay|tienes|conoces|existen)\b|\blista(?:r| de)? (?:los )?routers\b"
                      r"|\bcuales son los routers\b")
_HEALTH = re.compile(r"\bcaid[oa]s?\b|\ben linea\b|\bcomo esta(?:n)?\b|\bestado de\b|\bresponde(?:n)?\b"
                     r"|\bprendid[oa]s?\b|\barriba\b")


def _clean(word: str) -> str:
    return word.strip().rstrip(".")


@dataclass(frozen=True)
class _Interrupted:
    text: str
    call: Call | None  # the call the interrupted turn had not issued yet


#: How a client replays an assistant turn as a system note (``Conversation(assistant_as="system")``).
ASSISTANT_NOTE = re.compile(r"^\s*el asistente dijo\s*:", re.IGNORECASE)


@dataclass
class History:
    """What the model reads from a conversation's items (see the module docstring).

    ``heard`` and ``issued`` are the live conversation (the caller's speech, the model's own
    calls); ``assistant_item``, ``system_item`` and ``call_item`` are items a client put in
    (``conversation.item.create``), typically replaying a conversation into a new session.
    """

    user_text: str | None = None  # the caller's last words, not answered yet
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (tool, output) not reported yet
    pending: dict[str, str] = field(default_factory=dict)  # call_id -> tool name, awaiting output
    answered: dict[str, str] = field(default_factory=dict)  # call_id -> tool name, output received

    def heard(self, text: str | None) -> None:
        """The caller's words: a committed utterance (None if unintelligible) or a user text item."""
        self.user_text = text

    def issued(self, call_id: str, name: str) -> None:
        """The model's own function call, in a response it is giving."""
        self.pending[call_id] = name

    def assistant_item(self, text: str) -> None:
        """An assistant turn put into the conversation: whatever it answered or reported is done."""
        if text.strip():
            self.user_text = None
            self.outputs = []

    def system_item(self, text: str) -> None:
        """A system note; one that quotes the assistant is an assistant turn."""
        if ASSISTANT_NOTE.match(_plain(text)):
            self.assistant_item(ASSISTANT_NOTE.sub("", _plain(text)))

    def call_item(self, call_id: str, name: str) -> None:
        """A ``function_call`` put into the conversation: the question before it was answered by it."""
        self.pending[call_id] = name
        self.user_text = None

    def known(self, call_id: str) -> bool:
        return call_id in self.pending or call_id in self.answered

    def output(self, call_id: str, output: str) -> bool:
        """A ``function_call_output``; False (nothing changes) unless its call awaits one."""
        name = self.pending.pop(call_id, None)
        if name is None:
            return False
        self.answered[call_id] = name
        self.outputs.append((name, output))
        return True

    def forget(self, call_id: str) -> None:
        """The call's item was deleted: the model no longer sees it."""
        self.pending.pop(call_id, None)

    def take(self) -> tuple[str | None, list[tuple[str, str]]]:
        """What a response in this conversation answers; it is then answered."""
        taken = self.user_text, self.outputs
        self.user_text, self.outputs = None, []
        return taken


class ScriptedModel:
    def __init__(self) -> None:
        self._interrupted: _Interrupted | None = None

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
                return Turn(quoted.group(1).strip(), kind="quoted")
        if tool_outputs:
            name, output = tool_outputs[-1]
            text = self.report(name, output)
            return Turn(text, kind="report", resumable=text)
        if user_text is not None:
            return self.answer(user_text, call_pending)
        if call_pending:  # nothing new to answer, a query running: say so (never "how can I help?")
            return Turn(STILL_QUERYING, kind="ack")
        return Turn(HOW_CAN_I_HELP, kind="prompt")

    def cancelled(self, turn: Turn, *, reason: str, call_issued: bool) -> None:
        """The server cancelled the response speaking ``turn`` (``reason`` as in ``response.done``)."""
        if reason == "turn_detected" and turn.resumable is not None:
            self._interrupted = _Interrupted(turn.resumable, None if call_issued else turn.call)

    def answer(self, user_text: str, call_pending: bool) -> Turn:
        if is_backchannel(user_text):
            interrupted, self._interrupted = self._interrupted, None
            if interrupted is not None:
                return Turn(RESUME_PREFIX + interrupted.text, interrupted.call, kind="resume", resumable=interrupted.text)
            if call_pending:
                return Turn(STILL_QUERYING, kind="ack")
            return Turn(GO_AHEAD, kind="ack")
        self._interrupted = None
        turn = self._question(user_text, call_pending)
        return Turn(turn.text, turn.call, kind="answer", resumable=turn.text)

    def _question(self, user_text: str, call_pending: bool) -> Turn:
        text = _plain(user_text)
        if call_pending and _CANCEL_WORDS.search(text):
            return Turn(CANCELLING, ("cancelar_consulta", {}))
        if call_pending:
            return Turn(WAITING)
        routers = router_names(user_text)
        if _LOG.search(text):
            return self._log(user_text, routers)
        if _PING.search(text):
            return self._ping(user_text, routers)
        if "pppoe" in text:
            return self._pppoe(user_text, routers)
        if "quien tiene" in text or "de quien es" in text:
            return self._who_has(user_text, routers)
        if "optica" in text or "potencia" in text or ("senal" in text and "sfp" in text):
            return self._optics(user_text, routers)
        if "dispositivo" in text and "activ" in text:
            if not routers:
                return Turn("¿De qué router quieres los dispositivos activos?")
            router = routers[0]
            return Turn(
                f"Un momento, consulto los dispositivos activos del router {router}.",
                ("dispositivos_activos", {"router": router}),
            )
        if "trafico" in text and "sfp" in text:
            if not routers:
                return Turn(
                    "Un momento, estoy consultando el tráfico SFP de todos los routers; puede tardar.",
                    ("trafico_interfaces", {"interfaces": "sfp"}),
                )
            return Turn(
                f"Un momento, estoy consultando el tráfico SFP {_of(routers)}; puede tardar.",
                ("trafico_interfaces", {"routers": routers, "interfaces": "sfp"}),
            )
        if _LISTING.search(text):
            site = _SITE.search(user_text)
            if site:
                return Turn("Un momento, te digo qué routers hay ahí.",
                            ("listar_routers", {"sitio": _clean(site.group("site"))}))
            return Turn("Un momento, te digo qué routers conozco.", ("listar_routers", {}))
        if _HEALTH.search(text):
            if not routers:
                return Turn("Un momento, reviso el estado de todos los routers.", ("estado_routers", {}))
            return Turn(f"Un momento, reviso el estado {_of(routers)}.",
                        ("estado_routers", {"routers": routers}))
        return Turn(NOT_UNDERSTOOD)

    @staticmethod
    def _log(user_text: str, routers: list[str]) -> Turn:
        if not routers:
            return Turn("¿De qué router quieres ver el log?")
        arguments: dict[str, Any] = {"router": routers[0]}
        topic = _TOPIC.search(user_text)
        if topic:
            arguments["tema"] = _clean(topic.group("topic"))
        lines = _LINES.search(user_text)
        if lines:
            arguments["lineas"] = int(lines.group("n"))
        return Turn(f"Un momento, reviso el log del router {routers[0]}.", ("log_router", arguments))

    @staticmethod
    def _ping(user_text: str, routers: list[str]) -> Turn:
        target = _IP.search(user_text)
        if not routers:
            return Turn("¿Desde qué router hago el ping?")
        if target is None:
            return Turn("¿A qué dirección IP hago el ping?")
        arguments: dict[str, Any] = {"router": routers[0], "destino": target.group(0)}
        count = _COUNT.search(user_text)
        if count:
            arguments["cantidad"] = int(count.group("n"))
        return Turn(f"Un momento, hago ping desde el router {routers[0]} a {target.group(0)}.", ("ping", arguments))

    @staticmethod
    def _pppoe(user_text: str, routers: list[str]) -> Turn:
        user = _PPP_USER.search(user_text)
        if user is None or _plain(_clean(user.group("user"))) in ("pppoe", "esta", "conectado"):
            return Turn("¿Cuál es el usuario PPPoE del cliente?")
        name = _clean(user.group("user"))
        arguments: dict[str, Any] = {"usuario": name}
        if routers:
            arguments["routers"] = routers
        return Turn(f"Un momento, busco la sesión PPPoE de {name}.", ("sesion_pppoe", arguments))

    @staticmethod
    def _who_has(user_text: str, routers: list[str]) -> Turn:
        arguments: dict[str, Any]
        mac = _MAC.search(user_text)
        ip = _IP.search(user_text)
        if mac:
            arguments = {"mac": mac.group(0)}
            what = f"la MAC {mac.group(0)}"
        elif ip:
            arguments = {"ip": ip.group(0)}
            what = f"la IP {ip.group(0)}"
        else:
            return Turn("¿Qué IP o qué MAC busco?")
        if routers:
            arguments["routers"] = routers
        return Turn(f"Un momento, busco quién tiene {what}.", ("quien_tiene", arguments))

    @staticmethod
    def _optics(user_text: str, routers: list[str]) -> Turn:
        arguments: dict[str, Any] = {}
        if routers:
            arguments["routers"] = routers
        port = _PORT.search(user_text)
        if port:
            arguments["interfaces"] = port.group(0)
        where = _of(routers) if routers else "de todos los routers"
        which = f"del {port.group(0)}" if port else "de los SFP"
        return Turn(f"Un momento, reviso la óptica {which} {where}.", ("optica_sfp", arguments))

    def report(self, name: str, output_text: str) -> str:
        """What the model says about a tool output; never fails, whatever the output holds."""
        try:
            output = json.loads(output_text)
        except ValueError:
            return UNREADABLE_OUTPUT
        if not isinstance(output, dict):
            return UNREADABLE_OUTPUT
        try:
            return self._report(name, output)
        except (TypeError, ValueError, AttributeError, KeyError, OverflowError):
            return UNREADABLE_OUTPUT

    def _report(self, name: str, output: dict[str, Any]) -> str:
        if "error" in output:
            error = str(output["error"]).strip()
            if "?" in error:  # a question for the caller (which router?): read as it is
                return error
            return f"No pude hacer esa consulta: {error.rstrip('.')}."
        if name == "cancelar_consulta":
            return CANCELLED
        if name == "dispositivos_activos":
            names = [d.get("nombre") or d.get("ip") for d in (output.get("dispositivos") or [])[:3]]
            return (
                f"El router {output.get('router')} tiene {output.get('dispositivos_activos')} dispositivos activos, "
                f"por ejemplo {', '.join(str(n) for n in names)}."
            )
        if name == "trafico_interfaces":
            rows = output.get("interfaces") or []
            text = (
                f"Respondieron {output.get('routers_que_respondieron')} de {output.get('routers_consultados')} routers. "
                f"El tráfico SFP total es de {round(output.get('total_rx_mbps') or 0)} megabits por segundo de bajada "
                f"y {round(output.get('total_tx_mbps') or 0)} de subida."
            )
            if rows:
                top = max(rows, key=lambda r: r.get("rx_mbps") or 0)
                text += f" El más cargado es el router {top.get('router')}, {top.get('interfaz')}, con {round(top.get('rx_mbps') or 0)}."
            # Who did not answer: those that failed (with their reason) and those the deadline cut.
            missing = [*(output.get("sin_respuesta") or {}), *(output.get("sin_terminar") or [])]
            if missing:
                text += f" No respondieron: {', '.join(str(m) for m in dict.fromkeys(missing))}."
            return text
        summary = output.get("resumen")
        if isinstance(summary, str) and summary.strip():
            return summary.strip()  # what a real model paraphrases; said as written, so it can be checked
        return "Listo, ya tengo el resultado."


def _of(names: list[str]) -> str:
    """"del router 26.1", "de los routers 26.1 y 46.3"."""
    return "del " + _spoken_list(names)[3:] if len(names) == 1 else "de " + _spoken_list(names)


def _spoken_list(names: list[str]) -> str:
    if len(names) == 1:
        return f"el router {names[0]}"
    return "los routers " + ", ".join(names[:-1]) + " y " + names[-1]
