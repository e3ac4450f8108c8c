"""Configuration: the TOML file, defaults, and every phrase the caller can hear (Spanish first).

``load`` checks the whole file before anything starts, so that a mistake stops the service at
once (exit status 2) instead of crashing every call or silently doing the wrong thing: every
key's type (a bool is not a number, "15" is not a number; an integer will do where a float is
expected) and range, listen addresses and ports, the model URL, the ``{fields}`` of every phrase
(``PHRASE_FIELDS``: exactly those the code fills in), duplicate router and operator names,
numbers and PINs, and the files and environment variables the file names. A mistake is one
``ConfigError`` line that names the key (``[openai] ping_interval_s``, ``[[router]] 152.1
port``, ``[[operator]] Ana pin_file``), what was expected and what was given; a secret's value
is never quoted. The plain keys are declared once each, in ``SETTINGS_KEYS`` and ``AUTH_KEYS``
(section, key, attribute, rule); the rest (routers, operators, secrets, phrases, files) and the
rules between keys follow them.

Secrets do not live in the file: the OpenAI key comes from the environment variable ``[openai]
api_key_env`` names (default ``OPENAI_API_KEY``) or from ``api_key_file``; a router password from
``password_env`` or ``password_file``; an operator's PIN from ``pin_env`` or ``pin_file``. A
secret file must be its owner's alone (``chmod 600``: no bit for group or others). A router's
inline ``password`` is still accepted (a lab router), with a line in ``Settings.warnings``; an
inline ``pin`` is not. Objects that hold secrets hide them from ``repr``, so that a logged config
cannot leak them.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
import ssl
import stat
import string
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

#: reasoning.effort values of the GA types (openai.types.realtime.RealtimeReasoningEffort).
REASONING_EFFORTS = ("minimal", "low", "medium", "high", "xhigh")


class ConfigError(Exception):
    """The configuration file is missing, malformed, or names something invalid."""


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9092`` for IPv6; an empty host is 127.0.0.1). Port 0 passes: the
    simulators take it as "any free port"; ``load`` asks for 1..65535."""
    host, sep, port = text.rpartition(":")
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port) or int(port) > 65535 or any(c.isspace() for c in text):
        raise ConfigError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True)
class Phrases:
    """What the assistant says or is told to say. ``{...}`` fields are filled in by the code: exactly those
    of ``PHRASE_FIELDS`` (a phrase not listed there is used as written, with no braces)."""

    instructions: str = (
        "Eres el asistente telefónico del centro de operaciones de red (NOC) de un ISP con routers MikroTik. "
        "Hablas en español de Colombia, con frases cortas y claras para el teléfono. "
        "Antes de llamar a cualquier herramienta, di una sola frase corta que anuncie la consulta, por ejemplo "
        "'Un momento, estoy consultando esa información', y llama a la herramienta enseguida. "
        "Las consultas a muchos routers pueden tardar 10 a 45 segundos: nunca inventes resultados; espera la "
        "salida de la herramienta. Cada salida trae un 'resumen' para decir por teléfono; da el detalle solo si "
        "te lo piden. Cada router sale 'ok', 'degradado' (respondió, pero algo anda mal: di el motivo) o "
        "'desconocido' (no respondió: di el motivo y nunca lo cuentes como bien ni como caído). Si la salida "
        "trae 'datos_de_hace_s' o 'nota_datos', di de cuándo son los datos. Si una herramienta devuelve un "
        "error o una pregunta (por ejemplo, cuál de dos routers), díselo al usuario tal cual. "
        "Da cifras redondeadas y nombres de routers tal como vienen en la salida."
    )
    greeting: str = "Hola, soy el asistente del NOC. ¿Qué quieres consultar?"
    greeting_instructions: str = 'Saluda al usuario. Di exactamente: "{greeting}"'
    #: Said for the model when it called a tool without a word first: the caller must know we are looking.
    preamble: str = "Un momento, estoy consultando los routers."
    #: Fields: {answered} (routers that answered; {done} is the same), {failed}, {total}, {pending}
    #: (how many are still running), {missing} (their names, when there are few).
    progress_many: str = "Sigo consultando: {answered} de {total} routers ya respondieron."
    #: Appended to progress_many when at most three routers are still running (field {missing}).
    progress_missing: str = "Faltan {missing}."
    #: Appended to progress_many while some routers have failed (same fields).
    progress_failed: str = "{failed} no se pudieron consultar."
    #: Instead of progress_failed when at most three failed: {which} ("46.3 no contestó al conectarse").
    progress_failed_which: str = "Sin respuesta: {which}."
    progress_one: str = "Sigo consultando el router {router}; todavía no responde."
    #: Appended while routers are pending: at most how long the caller may still wait (field {seconds}).
    progress_wait: str = "Lo espero como máximo {seconds} segundos más."
    progress_instructions: str = (
        'La consulta sigue en curso. Di exactamente, sin añadir resultados: "{phrase}" '
        "No llames herramientas ni inventes datos."
    )
    #: For the scripted lines that are not progress (the reconnection notice); field {phrase}.
    say_instructions: str = 'Di exactamente: "{phrase}" No llames herramientas ni añadas nada.'
    report_instructions: str = (
        "Resume para el usuario, en español y en pocas frases, la salida de la herramienta que acabas de recibir."
    )
    #: The words of the recorded prompt played when the model is unavailable (see [prompts]);
    #: simulations speak this text, logs quote it.
    #: Said when the model link is back after a drop and nothing was running: what the caller said
    #: meanwhile was lost.
    reconnected: str = (
        "Perdona, se cortó la comunicación un momento. Si me preguntaste algo, ¿me lo repites, por favor?"
    )
    #: The words of the recorded prompt played while the model link is re-established during a query.
    connection_hold: str = "Un momento, por favor: recupero la conexión y tu consulta sigue en curso."
    model_unavailable: str = (
        "Lo siento, el asistente no está disponible en este momento. Por favor, intenta de nuevo en unos minutos."
    )
    #: Why a router gave no answer, as the caller hears it (the model is told these words; the
    #: technical reason goes to the log). Keys: routeros.errors.Reason values.
    router_timeout: str = "no respondió a tiempo"
    router_connect_timeout: str = "no contestó al conectarse"
    router_unreachable: str = "no está alcanzable por la red"
    router_login: str = "rechazó el usuario o la contraseña de consulta"
    router_dropped: str = "cortó la conexión a mitad de la respuesta"
    router_protocol: str = "respondió algo que no se entiende"
    router_missing: str = "no tiene esa función"
    router_permission: str = "el usuario de consulta no tiene permiso para eso"
    router_busy: str = "no acepta más sesiones de consulta"
    router_tls: str = "falló la conexión segura con el router"
    router_trap: str = "devolvió un error"
    #: Caller authorisation ([auth]): recorded prompts, played before any model session exists
    #: (an unauthorised caller never reaches the model). These are their words (see [prompts]).
    pin_request: str = "Hola, habla el asistente del NOC. Marca tu PIN y luego la tecla numeral."
    pin_wrong: str = "El PIN no es correcto. Márcalo otra vez y luego la tecla numeral."
    #: After the allowed attempts, to a caller not on the allowlist, or to a locked-out number.
    auth_refused: str = "Lo siento, no puedo atender esta llamada. Si eres del NOC, comunícate con tu supervisor. Adiós."
    #: Beyond [service] max_calls.
    busy: str = "Todas las líneas del asistente están ocupadas. Por favor, llama de nuevo en unos minutos."
    #: The service is stopping (SIGTERM) and the call outlived the grace period.
    shutdown: str = "El asistente se va a reiniciar. Por favor, llama de nuevo en un minuto. Adiós."
    #: Said when the caller presses the "human" digit (``[dtmf] human``, default 0).
    human_contact: str = (
        "Para hablar con una persona del NOC, cuelga y llama a la línea de guardia del NOC."
    )


@dataclass(frozen=True)
class RouterConfig:
    """One router of the inventory. ``site`` and ``aliases`` are how people name it on the phone."""

    name: str
    host: str
    port: int = 8728
    username: str = "admin"
    password: str = field(default="", repr=False)
    aliases: tuple[str, ...] = ()
    site: str = ""
    #: API-SSL (port 8729 by default); ``tls_verify`` checks the router's certificate against
    #: ``ca_file`` (or the system store). A router with no certificate needs tls_verify = false.
    tls: bool = False
    tls_verify: bool = True
    ca_file: str | None = None

    def __repr__(self) -> str:  # never print the password
        return (f"RouterConfig(name={self.name!r}, host={self.host!r}, port={self.port}, username={self.username!r}, "
                f"site={self.site!r}, tls={self.tls})")


#: [auth] require: who may use the assistant.
AUTH_MODES = (
    "pin",                # every caller enters an operator's PIN
    "caller_id",          # the caller's number is an operator's (chan_websocket tells it; AudioSocket does not)
    "caller_id_and_pin",  # an operator's number, and that operator's PIN
    "caller_id_or_pin",   # an operator's number passes; any other caller enters a PIN
    "open",               # anyone who reaches the listener (a test line; never on a public number)
)


@dataclass(frozen=True)
class Operator:
    """A person allowed to use the assistant ([[operator]]): their numbers, their PIN, their tools."""

    name: str
    #: Caller numbers as Asterisk's CALLERID(num) gives them (compared digits-only, see auth.py).
    numbers: tuple[str, ...] = ()
    pin: str = field(default="", repr=False)  # from pin_env or pin_file, never inline
    #: Tool names this operator may use; ("*",): all of them.
    tools: tuple[str, ...] = ("*",)

    def __repr__(self) -> str:  # never print the PIN
        return f"Operator(name={self.name!r}, numbers={self.numbers!r}, tools={self.tools!r})"


@dataclass(frozen=True)
class AuthSettings:
    require: str = "open"
    #: True when the file has an [auth] section: ``serve`` refuses a file without one (fail closed).
    configured: bool = False
    pin_length: int = 6
    #: PIN attempts in one call before the refusal.
    attempts: int = 3
    #: Seconds for the first digit after the request, and between digits.
    digit_timeout_s: float = 10.0
    #: Calls from one number that used up their attempts within lockout_s: that number is refused
    #: without a PIN request until lockout_s has passed since its last failure.
    lockout_after: int = 3
    lockout_s: float = 900.0
    operators: tuple[Operator, ...] = ()


#: Command families whose answers are cached, and for how long by default (seconds). ``ping`` is
#: never cached: it is a measurement of now.
CACHE_TTL_DEFAULTS = {
    "interfaces": 300.0,   # the interface list: names and types change rarely
    "identity": 300.0,
    "resource": 10.0,      # uptime, CPU, memory, version
    "health": 10.0,        # temperature, voltage
    "traffic": 5.0,        # monitor-traffic: bits per second now
    "optics": 10.0,        # ethernet monitor: SFP power and temperature
    "leases": 30.0,
    "arp": 30.0,
    "bridge_hosts": 30.0,
    "wireless": 15.0,
    "ppp": 15.0,
    "log": 10.0,
}


@dataclass(frozen=True)
class Settings:
    #: The AudioSocket listener (Asterisk's ``AudioSocket()`` app or ``Dial(AudioSocket/...)``).
    listen: tuple[str, int] = ("127.0.0.1", 9092)
    #: The chan_websocket listener (``Dial(WebSocket/...)``, Asterisk >= 20.18/22.8/23.2); None: off.
    websocket_listen: tuple[str, int] | None = None
    #: Asterisk sent nothing at all for this long (not a frame, not a digit): the peer is gone.
    #: A silent caller behind silence suppression sends nothing too, so keep it above the longest
    #: quiet a caller may keep (a long query and its answer).
    inactivity_timeout_s: float = 120.0
    #: Part of an AudioSocket message arrived and the rest did not within this: the peer is broken
    #: (Asterisk writes each message in one write; its own limit for our messages is 5 ms).
    partial_frame_timeout_s: float = 1.0
    #: AudioSocket carries no caller number; with this, the dialplan passes it as the UUID's last
    #: group, zero-padded to 12 digits: ``${CUT(UUID(),-,1-4)}-${CALLER12:-12}`` (docs/asterisk.md).
    audiosocket_caller_in_uuid: bool = False
    #: Barge-in: the caller's speech must last this long before the assistant stops talking (an
    #: "ajá", a cough or line noise neither cuts the assistant nor cancels a query).
    min_speech_ms: int = 500
    #: The first this-many ms of the greeting are not cut by the caller's speech ("¿aló?").
    greeting_protect_ms: int = 2000
    #: DTMF: the digit that repeats the last answer, and the one that says how to reach a human.
    dtmf_repeat: str = "#"
    dtmf_human: str = "0"
    #: The Realtime endpoint without the model: ``realtime_endpoint`` adds ``?model=`` from ``model``,
    #: so the URL and the session can never name two different models.
    realtime_url: str = "wss://api.openai.com/v1/realtime"
    #: gpt-realtime and gpt-realtime-mini shut down on 2027-01-20 (openai SDK 3.57 docstring).
    model: str = "gpt-realtime-2.1"
    #: reasoning.effort for reasoning models (gpt-realtime-2*): "minimal" is the lowest latency
    #: they accept. None (config: "") sends no reasoning block (gpt-realtime-1.5 has none).
    reasoning_effort: str | None = "minimal"
    voice: str = "marin"
    api_key: str = field(default="", repr=False)
    #: Where ``api_key`` came from ([openai] api_key_env / api_key_file), for messages: the
    #: variable's name, and the file (None: the key comes from the environment).
    api_key_env: str = "OPENAI_API_KEY"
    api_key_file: str | None = None
    ping_interval_s: float = 15.0
    pong_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    #: Reconnects after the link drops or dies mid-call, with backoff (initial, doubling, capped)
    #: before the caller hears the goodbye. 0 disables reconnecting.
    reconnect_attempts: int = 4
    reconnect_backoff_s: float = 0.5
    reconnect_backoff_max_s: float = 4.0
    #: OpenAI closes a Realtime session at 60 min; recycle it before, at a quiet moment.
    session_recycle_s: float = 55 * 60.0
    #: Caller audio that waited longer than this for a slow link is dropped (and counted): the model
    #: must hear the caller now, not twenty seconds ago.
    max_audio_lag_ms: int = 1000
    #: Caller audio per input_audio_buffer.append: 20 (one Asterisk frame) to 100 ms. Larger means
    #: fewer messages and up to this much minus 20 ms before the model hears the caller.
    model_audio_chunk_ms: int = 100
    #: The whole question's deadline (the query's cancel scope).
    query_timeout_s: float = 45.0
    #: One router's deadline for one question (connection, login and commands).
    router_timeout_s: float = 30.0
    #: Routers one call queries at once.
    router_concurrency: int = 32
    #: TCP connect plus login: a router that accepts TCP and never answers is given up on after this.
    router_connect_timeout_s: float = 5.0
    #: A router connection unused this long is closed (the next question opens a new one).
    router_idle_timeout_s: float = 60.0
    #: Commands in flight on one router at once, for all calls together (RouterOS allows 20 API
    #: sessions by default; mikrovoice uses one connection per router and tags its commands).
    router_commands_per_router: int = 4
    #: Commands in flight on all routers at once, for all calls together.
    router_commands_total: int = 256
    #: Seconds an answer stays fresh, per command family (CACHE_TTL_DEFAULTS); 0 disables caching.
    cache_ttl_s: dict[str, float] = field(default_factory=lambda: dict(CACHE_TTL_DEFAULTS))
    #: Overrides of ``tools.optics.OpticsLimits`` (section ``[optics]``: dBm and °C thresholds of a
    #: healthy SFP) and of ``tools.health.HealthLimits`` (section ``[health]``).
    optics_limits: dict[str, float] = field(default_factory=dict)
    health_limits: dict[str, float] = field(default_factory=dict)
    #: Overrides of ``routeros.inventory.InventoryPhrases`` (section ``[router_names]``): how the
    #: caller is asked which router they meant.
    router_name_phrases: dict[str, Any] = field(default_factory=dict)
    progress_silence_s: float = 6.0
    progress_lead_s: float = 1.0  # ask for an update this much before progress_silence_s: the model's latency
    #: Per tool: seconds of quiet before a spoken update ({tool name: seconds}); others use progress_silence_s.
    progress_silence_by_tool: dict[str, float] = field(default_factory=dict)
    #: Comfort audio while a query runs and nobody speaks: "thinking" (generated here, a soft
    #: texture), "off", or a file (8 kHz .wav/.sln/.ulaw, looped). Level in dBFS of the texture.
    comfort_audio: str = "thinking"
    comfort_level_dbfs: float = -36.0
    routers: tuple[RouterConfig, ...] = ()
    #: Recorded prompt (8 kHz: .wav 16-bit mono, raw .sln/.raw slin, or .ulaw) played when the model
    #: is unavailable; None: the bundled Spanish recording of Phrases.model_unavailable.
    prompt_model_unavailable: str | None = None
    #: Recorded prompt played while the model link is re-established during a query (same formats);
    #: None: the bundled recording of Phrases.connection_hold.
    prompt_connection_hold: str | None = None
    #: Recorded prompts of authorisation, busy and shutdown (same formats); None: the bundled recording
    #: of the phrase of the same name.
    prompt_pin_request: str | None = None
    prompt_pin_wrong: str | None = None
    prompt_auth_refused: str | None = None
    prompt_busy: str | None = None
    prompt_shutdown: str | None = None
    auth: AuthSettings = field(default_factory=AuthSettings)
    #: [service]: calls at once in this process; one more hears Phrases.busy and is hung up.
    max_calls: int = 100
    #: SIGTERM: calls may go on this long; then they hear Phrases.shutdown and end.
    shutdown_grace_s: float = 30.0
    #: [service] metrics_listen: HTTP for /metrics (Prometheus) and /healthz; None: off.
    metrics_listen: tuple[str, int] | None = None
    phrases: Phrases = field(default_factory=Phrases)
    #: Things ``load`` accepted but advises against (an inline router password): one line each,
    #: for ``serve`` to log and ``check-config`` to print.
    warnings: tuple[str, ...] = ()

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name != "api_key")
        return f"Settings({shown})"

    @property
    def realtime_endpoint(self) -> str:
        """The WebSocket URL: ``realtime_url`` plus ``?model=`` from ``model`` (one setting, one model)."""
        base, _, query = self.realtime_url.partition("?")
        params = [p for p in query.split("&") if p and not p.startswith("model=")]
        return base + "?" + "&".join([f"model={self.model}", *params])


# --------------------------------------------------------------------------- rules: what a value may be


class _Wrong(Exception):
    """A value does not fit its rule; ``_checked`` turns it into a ``ConfigError`` naming the key."""


def _given(value: object) -> str:
    """A value as a message quotes it, with its TOML type when that is the point: ``"15" (a string)``."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:59] + "…"
        return f"{json.dumps(text, ensure_ascii=False)} (a string)"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "a table"
    return f"{value} (a date or time)"


def _g(number: float) -> str:
    return f"{number:g}"


@dataclass(frozen=True)
class Number:
    """A finite number (an integer will do; a bool or a string will not) within bounds.

    ``low``/``high`` are inclusive, ``above``/``below`` exclusive; ``unit`` reads "a number of
    seconds 1..600", ``note`` goes in parentheses after the range.
    """

    low: float | None = None
    high: float | None = None
    above: float | None = None
    below: float | None = None
    unit: str = ""
    note: str = ""

    kind: ClassVar[str] = "a number"

    @property
    def expected(self) -> str:
        if self.low is not None and self.high is not None:
            bounds = [f"{_g(self.low)}..{_g(self.high)}"]
        else:
            bounds = [f"{sign} {_g(bound)}" for sign, bound in ((">=", self.low), (">", self.above), ("<=", self.high),
                                                                ("<", self.below)) if bound is not None]
        text = self.kind + (f" of {self.unit}" if self.unit else "") + " " + " and ".join(bounds)
        return text.rstrip() + (f" ({self.note})" if self.note else "")

    def _number(self, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _Wrong
        if ((self.low is not None and value < self.low) or (self.high is not None and value > self.high)
                or (self.above is not None and value <= self.above) or (self.below is not None and value >= self.below)):
            raise _Wrong
        return value

    def __call__(self, value: object) -> Any:
        return float(self._number(value))


@dataclass(frozen=True)
class Integer(Number):
    """An integer (not a bool, not 2.0) within bounds, optionally a multiple of ``step``."""

    step: int = 1

    kind: ClassVar[str] = "an integer"

    @property
    def expected(self) -> str:
        return super().expected + (f", a multiple of {self.step}" if self.step != 1 else "")

    def __call__(self, value: object) -> Any:
        if not isinstance(value, int):
            raise _Wrong
        number = int(self._number(value))
        if number % self.step:
            raise _Wrong
        return number


@dataclass(frozen=True)
class Flag:
    expected: ClassVar[str] = "true or false"

    def __call__(self, value: object) -> Any:
        if not isinstance(value, bool):
            raise _Wrong
        return value


@dataclass(frozen=True)
class Choice:
    """One of ``options`` (strings); ``""`` becomes None when it is one of them."""

    options: tuple[str, ...]

    @property
    def expected(self) -> str:
        return "one of " + ", ".join(json.dumps(o) for o in self.options)

    def __call__(self, value: object) -> Any:
        if not isinstance(value, str) or value not in self.options:
            raise _Wrong
        return value or None


@dataclass(frozen=True)
class Text:
    """A string that matches ``pattern`` as a whole; ``expected`` says what it is."""

    expected: str
    pattern: str = r"\S(?:.*\S)?"  # not empty, no space around

    def __call__(self, value: object) -> Any:
        if not isinstance(value, str) or not re.fullmatch(self.pattern, value, re.DOTALL):
            raise _Wrong
        return value


@dataclass(frozen=True)
class Listen:
    expected: ClassVar[str] = "HOST:PORT with a port 1..65535"

    def __call__(self, value: object) -> Any:
        if not isinstance(value, str):
            raise _Wrong
        try:
            host, port = parse_hostport(value)
        except ConfigError:
            raise _Wrong from None
        if port < 1:
            raise _Wrong
        return host, port


@dataclass(frozen=True)
class WebSocketUrl:
    expected: ClassVar[str] = "a ws:// or wss:// URL with a host"

    def __call__(self, value: object) -> Any:
        if not isinstance(value, str) or any(c.isspace() for c in value):
            raise _Wrong
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018  # raises ValueError for a port that is not 0..65535
        except ValueError:
            raise _Wrong from None
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise _Wrong
        return value


_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?")


@dataclass(frozen=True)
class Host:
    expected: ClassVar[str] = "a host name or IP address (no scheme, no :port: the port is its own key)"

    def __call__(self, value: object) -> Any:
        if not isinstance(value, str) or len(value) > 253:
            raise _Wrong
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not _HOSTNAME.fullmatch(value):
                raise _Wrong from None
        return value


#: What a key's value may be: ``expected`` says it in words, calling it checks and converts (or
#: raises ``_Wrong``).
Rule = Number | Flag | Choice | Text | Listen | WebSocketUrl | Host


def _seconds(low: float | None = None, high: float | None = None, *, above: float | None = None,
             below: float | None = None, note: str = "") -> Number:
    return Number(low, high, above, below, unit="seconds", note=note)


def _ms(low: int, high: int, *, step: int = 1) -> Integer:
    return Integer(low, high, unit="milliseconds", step=step)


_DTMF = Text('one DTMF digit as a string ("0"-"9", "*", "#", "A"-"D")', r"[0-9*#A-D]")
_ENV_NAME = Text("an environment variable name (letters, digits, _)", r"[A-Za-z_][A-Za-z0-9_]*")
_NAME = Text("a name (not empty, no spaces around it)")
_PORT = Integer(1, 65535)


def _checked(where: str, rule: Rule, value: object) -> Any:
    """``value`` as ``rule`` makes it, or ``ConfigError``: "``where``: expected ..., got ..."."""
    try:
        return rule(value)
    except _Wrong:
        raise ConfigError(f"{where}: expected {rule.expected}, got {_given(value)}") from None


# --------------------------------------------------------------------------- the plain keys


@dataclass(frozen=True)
class Key:
    """One plain key: ``[section] key`` sets the attribute ``attr`` (of ``Settings``, or of
    ``AuthSettings`` for ``AUTH_KEYS``) to ``rule(value)``."""

    section: str
    key: str
    attr: str
    rule: Rule


SETTINGS_KEYS = (
    Key("audiosocket", "listen", "listen", Listen()),
    # A caller behind silence suppression sends nothing at all: keep it above a long query and its answer.
    Key("audiosocket", "inactivity_timeout_s", "inactivity_timeout_s", _seconds(5, 3600)),
    Key("audiosocket", "partial_frame_timeout_s", "partial_frame_timeout_s", _seconds(above=0, high=60)),
    # The dialplan writes the caller's number in the UUID's last group (docs/asterisk.md).
    Key("audiosocket", "caller_in_uuid", "audiosocket_caller_in_uuid", Flag()),
    Key("websocket", "listen", "websocket_listen", Listen()),
    Key("call", "min_speech_ms", "min_speech_ms", _ms(0, 10_000)),
    Key("call", "greeting_protect_ms", "greeting_protect_ms", _ms(0, 10_000)),
    Key("dtmf", "repeat", "dtmf_repeat", _DTMF),
    Key("dtmf", "human", "dtmf_human", _DTMF),
    Key("openai", "url", "realtime_url", WebSocketUrl()),
    Key("openai", "model", "model", Text("a model name (letters, digits, - . _ :)", r"[A-Za-z0-9._:-]+")),
    Key("openai", "reasoning_effort", "reasoning_effort", Choice((*REASONING_EFFORTS, ""))),
    Key("openai", "voice", "voice", Text("a voice name (letters, digits, - _)", r"[A-Za-z0-9_-]+")),
    Key("openai", "ping_interval_s", "ping_interval_s", _seconds(1, 300)),
    Key("openai", "pong_timeout_s", "pong_timeout_s", _seconds(above=0, high=60)),
    Key("openai", "connect_timeout_s", "connect_timeout_s", _seconds(above=0, high=120)),
    Key("openai", "audio_chunk_ms", "model_audio_chunk_ms", _ms(20, 100, step=20)),  # Asterisk frames are 20 ms
    Key("openai", "max_audio_lag_ms", "max_audio_lag_ms", _ms(100, 60_000)),
    Key("openai", "reconnect_attempts", "reconnect_attempts", Integer(0, 20)),
    Key("openai", "reconnect_backoff_s", "reconnect_backoff_s", _seconds(above=0, high=60)),
    Key("openai", "reconnect_backoff_max_s", "reconnect_backoff_max_s", _seconds(above=0, high=300)),
    # OpenAI ends a session at 60 min: recycling must come before.
    Key("openai", "session_recycle_s", "session_recycle_s", _seconds(60, below=3600)),
    Key("query", "timeout_s", "query_timeout_s", _seconds(1, 600)),
    Key("query", "router_timeout_s", "router_timeout_s", _seconds(above=0, high=600)),
    Key("query", "router_concurrency", "router_concurrency", Integer(1, 1000)),
    Key("query", "progress_silence_s", "progress_silence_s", _seconds(1, 60)),
    Key("query", "progress_lead_s", "progress_lead_s", _seconds(0, 30)),
    Key("routeros", "connect_timeout_s", "router_connect_timeout_s", _seconds(above=0, high=60)),
    Key("routeros", "idle_timeout_s", "router_idle_timeout_s", _seconds(1, 86_400)),
    Key("routeros", "commands_per_router", "router_commands_per_router", Integer(1, 100)),
    Key("routeros", "commands_total", "router_commands_total", Integer(1, 10_000)),
    Key("comfort", "level_dbfs", "comfort_level_dbfs", Number(-60, -20, note="dBFS: it must stay below speech")),
    Key("service", "max_calls", "max_calls", Integer(1, 10_000)),
    Key("service", "shutdown_grace_s", "shutdown_grace_s", _seconds(0, 3600)),
    Key("service", "metrics_listen", "metrics_listen", Listen()),
)

AUTH_KEYS = (
    Key("auth", "require", "require", Choice(AUTH_MODES)),
    Key("auth", "pin_length", "pin_length", Integer(4, 12)),
    Key("auth", "attempts", "attempts", Integer(1, 10)),
    Key("auth", "digit_timeout_s", "digit_timeout_s", _seconds(above=0, high=60)),
    Key("auth", "lockout_after", "lockout_after", Integer(1, 100)),
    Key("auth", "lockout_s", "lockout_s", _seconds(0, 604_800)),
)

#: Keys read by their own code below, per section (besides those of SETTINGS_KEYS and AUTH_KEYS).
_OTHER_KEYS = {
    "openai": {"api_key", "api_key_env", "api_key_file"},  # api_key: refused with its own message
    "query": {"progress_silence_by_tool"},
    "routeros": {"username", "password_env", "password_file", "tls", "tls_verify", "ca_file"},
    "comfort": {"audio"},
    "cache": set(CACHE_TTL_DEFAULTS),
    "phrases": {f.name for f in fields(Phrases)},
    "prompts": {"model_unavailable", "connection_hold", "pin_request", "pin_wrong", "auth_refused", "busy",
                "shutdown"},
}
#: Sections whose keys are another class's fields, known once it is imported (see _allowed_keys).
_IMPORTED_SECTIONS = ("router_names", "optics", "health")
_ROUTER_KEYS = {"name", "host", "port", "username", "password", "password_env", "password_file", "aliases", "site",
                "tls", "tls_verify", "ca_file"}
_OPERATOR_KEYS = {"name", "numbers", "pin", "pin_env", "pin_file", "tools"}


# --------------------------------------------------------------------------- phrases

#: The fields of progress_many and the phrases appended to it (call/progress.py ProgressPolicy.phrase).
_PROGRESS_FIELDS = frozenset({"answered", "done", "failed", "total", "pending", "missing", "which"})
#: For every phrase the code formats, the fields it fills in (read off each ``.format(`` of it).
#: Every other phrase is said or sent as written: it may hold no ``{`` or ``}`` at all.
PHRASE_FIELDS: dict[str, frozenset[str]] = {
    "greeting_instructions": frozenset({"greeting"}),       # call/session.py, Greet
    "progress_instructions": frozenset({"phrase"}),         # call/session.py, SpeakPreamble and SpeakProgress
    "say_instructions": frozenset({"phrase"}),              # call/session.py, SayReconnected and the human digit
    "progress_many": _PROGRESS_FIELDS,                      # call/progress.py
    "progress_missing": _PROGRESS_FIELDS,
    "progress_failed": _PROGRESS_FIELDS,
    "progress_failed_which": _PROGRESS_FIELDS,
    "progress_one": frozenset({"router"}),
    "progress_wait": frozenset({"seconds"}),
}
_ROUTER = frozenset({"name", "site", "router"})
#: The same for ``[router_names]`` (routeros/inventory.py, Inventory.describe, question and _overview).
ROUTER_NAME_FIELDS: dict[str, frozenset[str]] = {
    "described": frozenset({"name", "site"}),
    "choice": _ROUTER,
    "ambiguous": frozenset({"options"}),
    "many_site": frozenset({"site", "count", "first", "rest", "spoken"}),
    "many": frozenset({"count", "first", "rest", "spoken"}),
    "unknown": frozenset({"spoken"}),
    "suggest": frozenset({"options"}),
    "suggestion": _ROUTER,
    "suggestion_site": frozenset({"site"}),
    "all_routers": frozenset({"routers", "count"}),
    "all_sites": frozenset({"sites", "count"}),
    "more_sites": frozenset({"rest"}),
    "count_only": frozenset({"count"}),
}
#: A value of each field's type, to fill a phrase in once at load (a bad format spec fails here).
_SAMPLES: dict[str, object] = {
    "answered": 7, "done": 7, "failed": 1, "total": 12, "pending": 4, "seconds": 15, "count": 12, "rest": 3,
    "missing": "46.3 y 59.3", "which": "46.3 no contestó al conectarse", "router": "152.1 (Torre Norte)",
    "phrase": "Un momento.", "greeting": "Hola.", "name": "152.1", "site": "Torre Norte", "options": "el 152.1 o el 152.2",
    "first": "152.1, 152.2, 152.3", "spoken": "ciento cincuenta y dos", "routers": "152.1 y 26.1", "sites": "Torre Norte y Suba",
}


def check_phrase(where: str, value: object, allowed: frozenset[str] | None) -> str:
    """``value`` if it is a phrase that uses only the fields ``allowed`` (None: a phrase used as
    written, with no braces at all), and can be filled in; else ``ConfigError`` naming ``where``."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a phrase (a non-empty string), got {_given(value)}")
    if allowed is None:
        if "{" in value or "}" in value:
            raise ConfigError(f"{where}: this phrase is used as written (nothing is filled in), so it may not "
                              "contain { or }")
        return value
    may_use = ", ".join(f"{{{name}}}" for name in sorted(allowed))
    try:
        used = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
    except ValueError as exc:
        raise ConfigError(f"{where}: not a valid phrase ({exc}); write {{{{ or }}}} for a literal brace") from None
    for name in used:
        if name not in allowed:
            raise ConfigError(f"{where}: unknown field {{{name}}}; this phrase may use {may_use}")
    try:
        value.format(**{name: _SAMPLES[name] for name in allowed})
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ConfigError(f"{where}: cannot be filled in ({type(exc).__name__}: {exc})") from None
    return value


# --------------------------------------------------------------------------- files and secrets


def _path(where: str, value: object, base: Path) -> Path:
    """A file the config names: relative to the config file's folder; it must exist."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a file name, got {_given(value)}")
    file = base / Path(value).expanduser()
    if not file.is_file():
        raise ConfigError(f"{where}: no such file {file}")
    return file


def _audio(where: str, value: object, base: Path) -> str:
    """A recorded prompt or comfort file: it exists and is audio ``call.prompts.read_audio`` can play."""
    from mikrovoice.call.prompts import read_audio  # here: prompts imports this module

    file = _path(where, value, base)
    try:
        read_audio(file)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return str(file)


def _exposure(mode: int) -> str:
    """What the group or other bits of ``mode`` allow, in words: "readable by others"."""
    bits, who = (mode & 0o007, "others") if mode & 0o007 else (mode & 0o070, "its group")
    what = [word for word, mask in (("readable", 0o044), ("writable", 0o022), ("executable", 0o011)) if bits & mask]
    return f"{' and '.join(what)} by {who}"


def _secret_file(where: str, value: object, base: Path) -> str:
    """The secret in a file: its first line. The file must exist and be private (mode & 0o077 == 0)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a file name, got {_given(value)}")
    file = base / Path(value).expanduser()
    try:
        mode = stat.S_IMODE(file.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(f"{where}: {file} is {_exposure(mode)} (mode {mode:04o}): chmod 600 {file}")
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: {file} is not UTF-8 text") from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise ConfigError(f"{where}: {file} is empty")
    if "\n" in secret:
        raise ConfigError(f"{where}: {file} holds more than one line (the secret alone is expected)")
    return secret


def _secret_env(where: str, value: object, env: Mapping[str, str]) -> str:
    name = _checked(where, _ENV_NAME, value)
    if name not in env:
        raise ConfigError(f"{where}: environment variable {name} is not set")
    return env[name]


def _secret(where: str, entry: Mapping[str, Any], kind: str, base: Path, env: Mapping[str, str]) -> str | None:
    """The secret ``entry`` names through ``<kind>_env`` or ``<kind>_file`` (None: neither).
    ``where`` is the entry's place ("[[router]] 152.1"); the key is added to it."""
    given = [key for key in (kind, f"{kind}_env", f"{kind}_file") if key in entry]
    if len(given) > 1:
        raise ConfigError(f"{where} {given[1]}: give only one of {kind}, {kind}_env, {kind}_file (got {given})")
    if f"{kind}_env" in entry:
        return _secret_env(f"{where} {kind}_env", entry[f"{kind}_env"], env)
    if f"{kind}_file" in entry:
        return _secret_file(f"{where} {kind}_file", entry[f"{kind}_file"], base)
    return None


# --------------------------------------------------------------------------- the file's shape


def _allowed_keys(section: str) -> set[str]:
    if section in _IMPORTED_SECTIONS:
        return {f.name for f in fields(_imported(section))}
    return ({k.key for k in (*SETTINGS_KEYS, *AUTH_KEYS) if k.section == section}
            | _OTHER_KEYS.get(section, set()))


def _imported(section: str) -> type:
    """The class whose fields a section sets (imported here: those modules import this one)."""
    if section == "router_names":
        from mikrovoice.routeros.inventory import InventoryPhrases

        return InventoryPhrases
    if section == "optics":
        from mikrovoice.tools.optics import OpticsLimits

        return OpticsLimits
    from mikrovoice.tools.health import HealthLimits

    return HealthLimits


_SECTIONS = ("audiosocket", "websocket", "call", "dtmf", "openai", "query", "routeros", "cache", "optics", "health",
             "comfort", "phrases", "router_names", "prompts", "auth", "service")


def _check_keys(where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(allowed), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where}: unknown key(s) {unknown}{hint}; allowed: {sorted(allowed)}")


def _tables(data: dict[str, Any], name: str, label: str) -> list[dict[str, Any]]:
    """The ``[[name]]`` entries (an array of tables)."""
    entries = data.get(name, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{label}: expected [[{name}]] entries (an array of tables), got {_given(entries)}")
    return entries


def _read(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    _check_keys("top level", data, {*_SECTIONS, "router", "operator"})
    for section in _SECTIONS:
        if section in data:
            if not isinstance(data[section], dict):
                raise ConfigError(f"[{section}]: expected a table ([{section}] and its keys), got {_given(data[section])}")
            _check_keys(f"[{section}]", data[section], _allowed_keys(section))
    return data


# --------------------------------------------------------------------------- load


def load(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of the TOML file at ``path`` (files it names are relative to its folder;
    secrets from ``environ``, default ``os.environ``). ``ConfigError``: the first mistake, one line."""
    env = os.environ if environ is None else environ
    path = Path(path)
    base = path.parent
    data = _read(path)
    values: dict[str, Any] = {}
    for key in SETTINGS_KEYS:
        table = data.get(key.section, {})
        if key.key in table:
            values[key.attr] = _checked(f"[{key.section}] {key.key}", key.rule, table[key.key])
    values.update(_api_key(data.get("openai", {}), base, env))
    values["cache_ttl_s"] = dict(CACHE_TTL_DEFAULTS) | {
        family: _checked(f"[cache] {family}", _seconds(0), ttl) for family, ttl in data.get("cache", {}).items()}
    values["optics_limits"] = _limits(data, "optics")
    values["health_limits"] = _limits(data, "health")
    values["router_name_phrases"] = _router_names(data.get("router_names", {}))
    values["phrases"] = Phrases(**{name: check_phrase(f"[phrases] {name}", text, PHRASE_FIELDS.get(name, None))
                                   for name, text in data.get("phrases", {}).items()})
    query = data.get("query", {})
    if "progress_silence_by_tool" in query:
        values["progress_silence_by_tool"] = _by_tool(query["progress_silence_by_tool"])
    comfort = data.get("comfort", {})
    if "audio" in comfort:
        audio = comfort["audio"]
        try:
            values["comfort_audio"] = audio if audio in ("thinking", "off") else _audio("[comfort] audio", audio, base)
        except ConfigError as exc:
            raise ConfigError(f'{exc} (expected "thinking", "off" or an audio file)') from None
    for key, value in data.get("prompts", {}).items():
        values[f"prompt_{key}"] = _audio(f"[prompts] {key}", value, base)
    routers, warnings = _routers(data.get("routeros", {}), _tables(data, "router", "router"), base, env)
    values["auth"] = _auth(data, _tables(data, "operator", "operator"), base, env)
    settings = Settings(**values, routers=routers, warnings=tuple(warnings))
    _consistent(settings, data)
    return settings


def _api_key(openai: Mapping[str, Any], base: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """The OpenAI key: ``api_key_file``, or ``api_key_env``; the default variable may be unset (a
    simulation needs no key; ``serve`` refuses to start without one), a variable the file names may not."""
    key = _secret("[openai]", openai, "api_key", base, env)
    if "api_key" in openai:
        raise ConfigError("[openai] api_key: the key is a secret and may not be written in the config file; "
                          "use api_key_env or api_key_file")
    if "api_key_file" in openai:
        return {"api_key": key, "api_key_env": "", "api_key_file": str(base / Path(openai["api_key_file"]).expanduser())}
    if "api_key_env" in openai:
        return {"api_key": key, "api_key_env": openai["api_key_env"]}
    return {"api_key": env.get("OPENAI_API_KEY", "")}


def _limits(data: dict[str, Any], section: str) -> dict[str, float]:
    """``[optics]`` or ``[health]``: thresholds by unit (the key's ending), in a sane order."""
    table = data.get(section, {})
    units = {"_dbm": Number(-60, 20, note="dBm"), "_c": Number(-40, 150, note="°C"),
             "_pct": Number(0, 100, note="%"), "_s": _seconds(0, 31_536_000)}
    limits = {}
    for key, value in table.items():
        rule = next((r for end, r in units.items() if key.endswith(end)), Number())
        limits[key] = _checked(f"[{section}] {key}", rule, value)
    if section == "optics":
        merged: dict[str, Any] = {f.name: f.default for f in fields(_imported("optics"))} | limits
        order = ("rx_critical_dbm", "rx_low_dbm", "rx_high_dbm")
        for lower, higher in zip(order, order[1:], strict=False):
            if merged[lower] >= merged[higher]:
                key = lower if lower in limits else higher
                raise ConfigError(f"[optics] {key}: expected rx_critical_dbm < rx_low_dbm < rx_high_dbm, got "
                                  f"{lower} = {_g(merged[lower])} and {higher} = {_g(merged[higher])}")
    return limits


def _router_names(table: Mapping[str, Any]) -> dict[str, Any]:
    """``[router_names]``: ``InventoryPhrases`` fields, phrases checked against ROUTER_NAME_FIELDS."""
    kinds = {f.name: f.type for f in fields(_imported("router_names"))}
    names: dict[str, Any] = {}
    for key, value in table.items():
        where = f"[router_names] {key}"
        if kinds[key] in (int, "int"):
            names[key] = _checked(where, Integer(1, 50), value)
        else:
            names[key] = check_phrase(where, value, ROUTER_NAME_FIELDS.get(key))
    defaults: dict[str, Any] = {f.name: f.default for f in fields(_imported("router_names"))} | names
    if defaults["many_shown"] > defaults["many_threshold"]:
        key = "many_shown" if "many_shown" in names else "many_threshold"
        raise ConfigError(f"[router_names] {key}: many_shown ({defaults['many_shown']}) may not exceed "
                          f"many_threshold ({defaults['many_threshold']})")
    if names:
        try:
            _imported("router_names")(**names)  # its own checks too (many_shown <= many_threshold)
        except ConfigError as exc:
            raise ConfigError(f"[router_names] {exc}") from None
    return names


def tool_names() -> frozenset[str]:
    """The names of the model's tools (``NocTools.specs``: the router tools and cancelar_consulta),
    for ``[[operator]] tools`` and ``progress_silence_by_tool``."""
    from mikrovoice.routeros.fanout import Fleet  # here: both import this module
    from mikrovoice.tools import NocTools

    return frozenset(spec.name for spec in NocTools(Fleet(Settings())).specs)  # no router: no I/O, nothing opened


def _by_tool(table: object) -> dict[str, float]:
    where = "[query] progress_silence_by_tool"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table {{tool = seconds}}, got {_given(table)}")
    known = tool_names()
    by_tool = {}
    for tool, seconds in table.items():
        if tool not in known:
            raise ConfigError(f"{where}: unknown tool {tool!r}; the tools are {sorted(known)}")
        by_tool[tool] = _checked(f"{where} {tool}", _seconds(1, 60), seconds)
    return by_tool


# --------------------------------------------------------------------------- routers


def _routers(defaults: dict[str, Any], entries: list[dict[str, Any]], base: Path,
             env: Mapping[str, str]) -> tuple[tuple[RouterConfig, ...], list[str]]:
    """``[[router]]`` entries over the ``[routeros]`` defaults (username, password, TLS)."""
    default_password = _secret("[routeros]", defaults, "password", base, env) or ""
    shared = _router_options("[routeros]", defaults, base, {"username": "admin", "tls": False, "tls_verify": True,
                                                          "ca_file": None})
    routers: list[RouterConfig] = []
    warnings: list[str] = []
    for number, entry in enumerate(entries, 1):
        named = isinstance(entry.get("name"), str) and entry["name"].strip()
        where = f"[[router]] {entry['name']}" if named else f"[[router]] #{number}"
        _check_keys(where, entry, _ROUTER_KEYS)
        for key in ("name", "host"):
            if key not in entry:
                raise ConfigError(f"{where} {key}: missing; every [[router]] needs 'name' and 'host'")
        name = _checked(f"{where} name", _NAME, entry["name"])
        options = _router_options(where, entry, base, shared)
        password = _secret(where, entry, "password", base, env)
        if "password" in entry:
            password = _checked(f"{where} password", Text("a string", r".*"), entry["password"])
            if password:
                warnings.append(f"{where} password: written in the config file; prefer password_env or "
                                "password_file (a file only its owner can read)")
        aliases = entry.get("aliases", [])
        if not isinstance(aliases, list):
            raise ConfigError(f"{where} aliases: expected a list of names, got {_given(aliases)}")
        routers.append(RouterConfig(
            name=name, host=_checked(f"{where} host", Host(), entry["host"]),
            port=_checked(f"{where} port", _PORT, entry.get("port", 8729 if options["tls"] else 8728)),
            username=options["username"], password=default_password if password is None else password,
            aliases=tuple(_checked(f"{where} aliases", Text("a list of names"), a) for a in aliases),
            site=_checked(f"{where} site", Text("a site name (a string)", r".*"), entry.get("site", "")).strip(),
            tls=options["tls"], tls_verify=options["tls_verify"], ca_file=options["ca_file"],
        ))
    _distinct_router_names(routers)
    return tuple(routers), warnings


def _router_options(where: str, table: Mapping[str, Any], base: Path, inherited: dict[str, Any]) -> dict[str, Any]:
    """username, tls, tls_verify and ca_file of a [[router]] (or the [routeros] defaults)."""
    options = dict(inherited)
    if "username" in table:
        options["username"] = _checked(f"{where} username", _NAME, table["username"])
    for key in ("tls", "tls_verify"):
        if key in table:
            options[key] = _checked(f"{where} {key}", Flag(), table[key])
    if "ca_file" in table:
        ca_file = _path(f"{where} ca_file", table["ca_file"], base)
        try:
            ssl.create_default_context(cafile=str(ca_file))
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"{where} ca_file: {ca_file} holds no usable PEM certificate ({exc})") from None
        options["ca_file"] = str(ca_file)
    return options


def _distinct_router_names(routers: list[RouterConfig]) -> None:
    """No name or alias may name two routers: compared as the inventory does (``fold_name``: case,
    accents and separators folded), so "R-152-1" and "r 152 1" are the same."""
    from mikrovoice.routeros.spoken import fold_name  # here: keeps this module's imports light

    seen: dict[str, tuple[int, str, str]] = {}  # folded -> (router's index, "name" or "alias", as written)
    for i, router in enumerate(routers):
        for label, kind in ((router.name, "name"), *((alias, "alias") for alias in router.aliases)):
            key = "name" if kind == "name" else "aliases"
            folded = fold_name(label)
            if not folded:
                raise ConfigError(f"[[router]] {router.name} {key}: {label!r} has no letter or digit to be named by")
            other, other_kind, other_label = seen.setdefault(folded, (i, kind, label))
            if other == i:
                continue
            if kind == other_kind == "name" and label == other_label:
                raise ConfigError(f"[[router]] {router.name} name: two [[router]] entries share a name ({label!r})")
            raise ConfigError(f"[[router]] {router.name} {key}: {label!r} is the same as router "
                              f"{routers[other].name}'s {other_kind} {other_label!r} (names and aliases are compared "
                              "ignoring case, accents and separators): a caller could not tell them apart")


# --------------------------------------------------------------------------- caller authorisation


def _auth(data: dict[str, Any], entries: list[dict[str, Any]], base: Path, env: Mapping[str, str]) -> AuthSettings:
    """``[auth]`` and the ``[[operator]]`` entries; their consistency with ``require``."""
    if "auth" not in data:
        if entries:
            raise ConfigError("[[operator]]: operators need an [auth] section (require = ...) to mean anything")
        return AuthSettings()
    table = data["auth"]
    if "require" not in table:
        raise ConfigError(f"[auth] require: missing; one of {', '.join(AUTH_MODES)} (\"open\": anyone who reaches "
                          "the listener)")
    values = {key.attr: _checked(f"[auth] {key.key}", key.rule, table[key.key]) for key in AUTH_KEYS if key.key in table}
    auth = AuthSettings(configured=True, **values)
    operators = tuple(_operator(number, entry, auth.pin_length, base, env) for number, entry in enumerate(entries, 1))
    _distinct_operators(operators)
    _operators_fit(auth.require, operators)
    return AuthSettings(configured=True, **values, operators=operators)


def _operator(number: int, entry: dict[str, Any], pin_length: int, base: Path, env: Mapping[str, str]) -> Operator:
    named = isinstance(entry.get("name"), str) and entry["name"].strip()
    where = f"[[operator]] {entry['name']}" if named else f"[[operator]] #{number}"
    _check_keys(where, entry, _OPERATOR_KEYS)
    if "name" not in entry:
        raise ConfigError(f"{where} name: missing; every [[operator]] needs a name")
    name = _checked(f"{where} name", _NAME, entry["name"])
    if "pin" in entry:
        raise ConfigError(f"{where} pin: a PIN is a secret and may not be written in the config file; "
                          "use pin_env or pin_file")
    numbers = entry.get("numbers", [])
    if not isinstance(numbers, list):
        raise ConfigError(f"{where} numbers: expected a list of phone numbers, got {_given(numbers)}")
    phone = Text('a phone number as a string: 2 to 15 digits, "+" first allowed', r"\+?[0-9]{2,15}")
    numbers = [_checked(f"{where} numbers", phone, n) for n in numbers]
    for i, one in enumerate(numbers):
        twice = next((other for other in numbers[:i] if _same_number(one, other)), None)
        if twice is not None:
            raise ConfigError(f"{where} numbers: {one} is {twice} again (numbers are compared as the caller ID is: "
                              "digits only, and the last ten digits when both have ten or more)")
    pin = _secret(where, entry, "pin", base, env) or ""
    if pin and not (pin.isascii() and pin.isdigit() and len(pin) == pin_length):
        source = "pin_env" if "pin_env" in entry else "pin_file"
        raise ConfigError(f"{where} {source}: the PIN must be exactly {pin_length} digits ([auth] pin_length), "
                          "and nothing else")
    tools = entry.get("tools", ["*"])
    if not isinstance(tools, list) or not tools:
        raise ConfigError(f'{where} tools: expected a list of tool names, or ["*"] for all, got {_given(tools)}')
    known = tool_names()
    for tool in tools:
        if tool == "*" and len(tools) > 1:
            raise ConfigError(f'{where} tools: "*" (every tool) stands alone, not with other names')
        if tool != "*" and tool not in known:
            raise ConfigError(f"{where} tools: unknown tool {_given(tool)}; the tools are {sorted(known)}, or \"*\"")
    if len(set(tools)) != len(tools):
        raise ConfigError(f"{where} tools: a tool is listed twice")
    return Operator(name=name, numbers=tuple(numbers), pin=pin, tools=tuple(tools))


def _same_number(a: str, b: str) -> bool:
    """Whether the caller-ID check (``call.auth.same_number``) takes ``a`` and ``b`` for one number."""
    from mikrovoice.call.auth import same_number  # here: auth imports this module

    return same_number(a, b)


def _distinct_operators(operators: Iterable[Operator]) -> None:
    """Names (ignoring case), numbers (as the caller-ID check compares them) and PINs each belong
    to one operator."""
    names: dict[str, str] = {}
    numbers: list[tuple[str, str]] = []  # (number, operator)
    pins: dict[str, str] = {}
    for operator in operators:
        where = f"[[operator]] {operator.name}"
        if operator.name.casefold() in names:
            raise ConfigError(f"{where} name: two [[operator]] entries share a name "
                              f"({names[operator.name.casefold()]!r}, ignoring case)")
        names[operator.name.casefold()] = operator.name
        for phone in operator.numbers:
            owner = next((o for number, o in numbers if _same_number(phone, number)), None)
            if owner is not None:
                raise ConfigError(f"{where} numbers: {phone} is also operator {owner}'s number (numbers are compared "
                                  "as the caller ID is: digits only, and the last ten digits when both have ten or more)")
        numbers += [(phone, operator.name) for phone in operator.numbers]
        if operator.pin:
            if operator.pin in pins:
                raise ConfigError(f"{where} pin: the same PIN as operator {pins[operator.pin]}'s; a PIN must "
                                  "identify one operator")
            pins[operator.pin] = operator.name


#: What each [auth] require needs of every operator: (numbers, PIN) - True: needed; None: one of them.
_NEEDS: dict[str, tuple[bool | None, bool | None]] = {
    "pin": (False, True),
    "caller_id": (True, False),
    "caller_id_and_pin": (True, True),
    "caller_id_or_pin": (None, None),
    "open": (False, False),
}


def _operators_fit(require: str, operators: tuple[Operator, ...]) -> None:
    if require != "open" and not operators:
        raise ConfigError(f'[auth] require: "{require}" needs at least one [[operator]] (or require = "open")')
    numbers, pin = _NEEDS[require]
    for operator in operators:
        where = f"[[operator]] {operator.name}"
        if numbers and not operator.numbers:
            raise ConfigError(f'{where} numbers: missing; [auth] require = "{require}" needs each operator\'s numbers')
        if pin and not operator.pin:
            raise ConfigError(f'{where} pin_env: missing (or pin_file); [auth] require = "{require}" needs each '
                              "operator's PIN")
        if numbers is None and not operator.numbers and not operator.pin:
            raise ConfigError(f'{where} numbers: missing, and no PIN either (pin_env or pin_file); [auth] require = '
                              f'"{require}" needs one of them')


# --------------------------------------------------------------------------- rules between keys


def _consistent(settings: Settings, data: dict[str, Any]) -> None:
    """Rules between keys; the message names the key the file gave (the later one when it gave both)."""

    def given(section: str, *keys: str) -> str:
        table = data.get(section, {})
        return next((f"[{section}] {k}" for k in reversed(keys) if k in table), f"[{section}] {keys[-1]}")

    if settings.dtmf_repeat == settings.dtmf_human:
        raise ConfigError(f"{given('dtmf', 'repeat', 'human')}: repeat and human are both {settings.dtmf_repeat!r}; "
                          "each digit does one thing")
    if settings.reconnect_backoff_max_s < settings.reconnect_backoff_s:
        raise ConfigError(f"{given('openai', 'reconnect_backoff_s', 'reconnect_backoff_max_s')}: reconnect_backoff_max_s "
                          f"({_g(settings.reconnect_backoff_max_s)}) is below reconnect_backoff_s "
                          f"({_g(settings.reconnect_backoff_s)})")
    model_in_url = [p[6:] for p in settings.realtime_url.partition("?")[2].split("&") if p.startswith("model=")]
    if model_in_url and model_in_url[0] != settings.model:
        raise ConfigError(f"[openai] url names model {model_in_url[0]!r} but model is {settings.model!r}: "
                          "drop ?model= from url, model decides")
    if settings.router_timeout_s <= settings.router_connect_timeout_s:
        raise ConfigError(f"[query] router_timeout_s ({_g(settings.router_timeout_s)}) must exceed "
                          f"[routeros] connect_timeout_s ({_g(settings.router_connect_timeout_s)})")
    silences = {"progress_silence_s": settings.progress_silence_s, **{
        f"progress_silence_by_tool {tool}": s for tool, s in settings.progress_silence_by_tool.items()}}
    for key, silence in silences.items():
        if settings.progress_lead_s >= silence:
            raise ConfigError(f"[query] progress_lead_s: expected less than {key} ({_g(silence)}), got "
                              f"{_g(settings.progress_lead_s)}: updates would be asked for all the time")
    _distinct_ports(settings, data)


def _distinct_ports(settings: Settings, data: dict[str, Any]) -> None:
    """The listeners (AudioSocket, chan_websocket, metrics) need their own ports where their hosts
    overlap (the same host, or a wildcard 0.0.0.0 / ::)."""
    listeners = [(f"[{section}] {key}", address) for section, key, address in (
        ("audiosocket", "listen", settings.listen), ("websocket", "listen", settings.websocket_listen),
        ("service", "metrics_listen", settings.metrics_listen)) if address is not None]
    for i, (first, (host1, port1)) in enumerate(listeners):
        for second, (host2, port2) in listeners[i + 1:]:
            if port1 == port2 and _overlap(host1, host2):
                raise ConfigError(f"{second}: port {port2} is also {first}'s ({host1}:{port1}); each listener needs "
                                  "its own port")


def _overlap(host1: str, host2: str) -> bool:
    wildcard = {"0.0.0.0", "::", ""}
    same = {"localhost": "127.0.0.1"}
    return host1 in wildcard or host2 in wildcard or same.get(host1, host1) == same.get(host2, host2)
