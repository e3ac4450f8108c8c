"""Configuration: the TOML file, defaults, and every phrase the caller can hear (Spanish first).

Secrets never live in the file: the OpenAI key comes from ``OPENAI_API_KEY``, a router password
from the file or from the environment variable the file names (``password_env``). Objects that
hold secrets hide them from ``repr`` so that a logged config cannot leak them.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

#: reasoning.effort values of the GA types (openai.types.realtime.RealtimeReasoningEffort).
REASONING_EFFORTS = ("minimal", "low", "medium", "high", "xhigh")


class ConfigError(Exception):
    """The configuration file is missing, malformed, or names something invalid."""


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True)
class Phrases:
    """What the assistant says or is told to say. ``{...}`` fields are filled in by the code."""

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

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name != "api_key")
        return f"Settings({shown})"

    @property
    def realtime_endpoint(self) -> str:
        """The WebSocket URL: ``realtime_url`` plus ``?model=`` from ``model`` (one setting, one model)."""
        base, _, query = self.realtime_url.partition("?")
        params = [p for p in query.split("&") if p and not p.startswith("model=")]
        return base + "?" + "&".join([f"model={self.model}", *params])


_SECTIONS = {
    "audiosocket": {"listen", "inactivity_timeout_s", "partial_frame_timeout_s"},
    "websocket": {"listen"},
    "call": {"min_speech_ms", "greeting_protect_ms"},
    "dtmf": {"repeat", "human"},
    "openai": {"url", "model", "reasoning_effort", "voice", "ping_interval_s", "pong_timeout_s", "connect_timeout_s",
               "audio_chunk_ms", "reconnect_attempts", "reconnect_backoff_s", "reconnect_backoff_max_s",
               "session_recycle_s", "max_audio_lag_ms"},
    "query": {"timeout_s", "router_timeout_s", "router_concurrency", "progress_silence_s", "progress_lead_s",
              "progress_silence_by_tool"},
    "routeros": {"connect_timeout_s", "idle_timeout_s", "commands_per_router", "commands_total", "username",
                 "password_env", "password_file", "tls", "tls_verify", "ca_file"},
    "cache": set(CACHE_TTL_DEFAULTS),
    "router_names": set(),  # checked against InventoryPhrases in load()
    "optics": set(),  # checked against OpticsLimits in load()
    "health": set(),  # checked against HealthLimits in load()
    "comfort": {"audio", "level_dbfs"},
    "phrases": {f.name for f in fields(Phrases)},
    "prompts": {"model_unavailable", "connection_hold"},
}


def _check_keys(where: str, table: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ConfigError(f"[{where}]: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _setting(name: str, value: object) -> dict[str, Any]:
    """One field for ``replace`` by name (the name comes from a checked table)."""
    return {name: value}


def load(path: str | Path, environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    _check_keys("top level", data, set(_SECTIONS) | {"router"})
    for section, allowed in _SECTIONS.items():
        if section not in ("router_names", "optics", "health"):
            _check_keys(section, data.get(section, {}), allowed)
    audiosocket, openai, query = data.get("audiosocket", {}), data.get("openai", {}), data.get("query", {})
    routers = _load_routers(Path(path), data.get("routeros", {}), data.get("router", []), env)
    settings = Settings(
        api_key=env.get("OPENAI_API_KEY", ""),
        routers=routers,
        phrases=replace(Phrases(), **data.get("phrases", {})),
    )
    if "listen" in audiosocket:
        settings = replace(settings, listen=parse_hostport(audiosocket["listen"]))
    for key in ("inactivity_timeout_s", "partial_frame_timeout_s"):
        if key in audiosocket:
            value = float(audiosocket[key])
            if value <= 0:
                raise ConfigError(f"[audiosocket] {key}: must be positive, got {value}")
            settings = replace(settings, **_setting(key, value))
    websocket = data.get("websocket", {})
    if "listen" in websocket:
        settings = replace(settings, websocket_listen=parse_hostport(websocket["listen"]))
    call = data.get("call", {})
    for key in ("min_speech_ms", "greeting_protect_ms"):
        if key in call:
            value = call[key]
            if not isinstance(value, int) or not 0 <= value <= 10_000:
                raise ConfigError(f"[call] {key}: expected milliseconds 0..10000, got {value!r}")
            settings = replace(settings, **_setting(key, value))
    dtmf = data.get("dtmf", {})
    for key in ("repeat", "human"):
        if key in dtmf:
            digit = str(dtmf[key])
            if len(digit) != 1 or digit not in "0123456789*#ABCD":
                raise ConfigError(f"[dtmf] {key}: expected one DTMF digit (0-9 * # A-D), got {digit!r}")
            settings = replace(settings, **_setting(f"dtmf_{key}", digit))
    if settings.dtmf_repeat == settings.dtmf_human:
        raise ConfigError(f"[dtmf] repeat and human are both {settings.dtmf_repeat!r}")
    for key, attr in (("url", "realtime_url"), ("model", "model"), ("voice", "voice"),
                      ("ping_interval_s", "ping_interval_s"), ("pong_timeout_s", "pong_timeout_s"),
                      ("connect_timeout_s", "connect_timeout_s"), ("audio_chunk_ms", "model_audio_chunk_ms"),
                      ("reconnect_attempts", "reconnect_attempts"), ("reconnect_backoff_s", "reconnect_backoff_s"),
                      ("reconnect_backoff_max_s", "reconnect_backoff_max_s"),
                      ("session_recycle_s", "session_recycle_s"), ("max_audio_lag_ms", "max_audio_lag_ms")):
        if key in openai:
            settings = replace(settings, **{attr: openai[key]})
    if "reasoning_effort" in openai:
        effort = str(openai["reasoning_effort"]) or None
        if effort not in (None, *REASONING_EFFORTS):
            raise ConfigError(f"[openai] reasoning_effort: {effort!r} is not one of {list(REASONING_EFFORTS)} (or \"\")")
        settings = replace(settings, reasoning_effort=effort)
    model_in_url = [p[6:] for p in settings.realtime_url.partition("?")[2].split("&") if p.startswith("model=")]
    if model_in_url and model_in_url[0] != settings.model:
        raise ConfigError(f"[openai] url names model {model_in_url[0]!r} but model is {settings.model!r}: "
                          "drop ?model= from url, model decides")
    comfort = data.get("comfort", {})
    if "audio" in comfort:
        audio = str(comfort["audio"])
        if audio not in ("thinking", "off"):
            file = Path(path).parent / audio
            if not file.is_file():
                raise ConfigError(f"[comfort] audio: not 'thinking', 'off' or a file: no such file {file}")
            audio = str(file)
        settings = replace(settings, comfort_audio=audio)
    if "level_dbfs" in comfort:
        level = float(comfort["level_dbfs"])
        if not -60.0 <= level <= -20.0:
            raise ConfigError(f"[comfort] level_dbfs: {level} outside -60..-20 (it must stay below speech)")
        settings = replace(settings, comfort_level_dbfs=level)
    for key, attr in (("timeout_s", "query_timeout_s"), ("router_timeout_s", "router_timeout_s"),
                      ("router_concurrency", "router_concurrency"), ("progress_silence_s", "progress_silence_s"),
                      ("progress_lead_s", "progress_lead_s")):
        if key in query:
            settings = replace(settings, **{attr: query[key]})
    routeros = data.get("routeros", {})
    for key, attr, minimum in (("connect_timeout_s", "router_connect_timeout_s", 0.1),
                               ("idle_timeout_s", "router_idle_timeout_s", 1.0),
                               ("commands_per_router", "router_commands_per_router", 1),
                               ("commands_total", "router_commands_total", 1)):
        if key in routeros:
            value = routeros[key]
            if not isinstance(value, int | float) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"[routeros] {key}: expected a number >= {minimum}, got {value!r}")
            settings = replace(settings, **_setting(attr, value))
    if settings.router_concurrency < 1:
        raise ConfigError(f"[query] router_concurrency: must be >= 1, got {settings.router_concurrency}")
    if settings.router_timeout_s <= settings.router_connect_timeout_s:
        raise ConfigError(f"[query] router_timeout_s ({settings.router_timeout_s:g}) must exceed "
                          f"[routeros] connect_timeout_s ({settings.router_connect_timeout_s:g})")
    ttl = dict(CACHE_TTL_DEFAULTS)
    for family, value in data.get("cache", {}).items():
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"[cache] {family}: expected seconds >= 0, got {value!r}")
        ttl[family] = float(value)
    settings = replace(settings, cache_ttl_s=ttl)
    for section, attr in (("optics", "optics_limits"), ("health", "health_limits")):
        if section in data:
            from mikrovoice.tools.health import HealthLimits  # here: the tools import this module
            from mikrovoice.tools.optics import OpticsLimits

            limits = OpticsLimits if section == "optics" else HealthLimits
            table = data[section]
            _check_keys(section, table, {f.name for f in fields(limits)})
            for key, value in table.items():
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise ConfigError(f"[{section}] {key}: expected a number, got {value!r}")
            settings = replace(settings, **_setting(attr, {k: float(v) for k, v in table.items()}))
    if "router_names" in data:
        from mikrovoice.routeros.inventory import InventoryPhrases  # here: inventory imports this module

        names = data["router_names"]
        _check_keys("router_names", names, {f.name for f in fields(InventoryPhrases)})
        InventoryPhrases(**names)  # a wrong {placeholder} is a ConfigError now, not mid-call
        settings = replace(settings, router_name_phrases=dict(names))
    if "progress_silence_by_tool" in query:
        by_tool = query["progress_silence_by_tool"]
        if not isinstance(by_tool, dict):
            raise ConfigError("[query] progress_silence_by_tool: expected a table {tool = seconds}")
        settings = replace(settings, progress_silence_by_tool={str(k): float(v) for k, v in by_tool.items()})
    prompts = data.get("prompts", {})
    found: dict[str, str] = {}
    for key in ("model_unavailable", "connection_hold"):
        if key in prompts:
            prompt = Path(path).parent / str(prompts[key])
            if not prompt.is_file():
                raise ConfigError(f"[prompts] {key}: no such file {prompt}")
            found[key] = str(prompt)
    settings = replace(settings, prompt_model_unavailable=found.get("model_unavailable"),
                       prompt_connection_hold=found.get("connection_hold"))
    return settings


_ROUTER_KEYS = {"name", "host", "port", "username", "password", "password_env", "password_file", "aliases", "site",
                "tls", "tls_verify", "ca_file"}


def _password(where: str, entry: dict[str, Any], base: Path, env: Any) -> str | None:
    """The password named by ``entry`` (inline, ``password_env`` or ``password_file``), or None if it names none."""
    given = [k for k in ("password", "password_env", "password_file") if k in entry]
    if len(given) > 1:
        raise ConfigError(f"{where}: give only one of password, password_env, password_file (got {given})")
    if "password_env" in entry:
        if entry["password_env"] not in env:
            raise ConfigError(f"{where}: environment variable {entry['password_env']} is not set")
        return str(env[entry["password_env"]])
    if "password_file" in entry:
        file = base / str(entry["password_file"])
        try:
            return file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read password_file {file}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{where}: password_file {file} is not UTF-8 text") from exc
    if "password" in entry:
        return str(entry["password"])
    return None


def _load_routers(path: Path, defaults: dict[str, Any], entries: list[dict[str, Any]], env: Any) -> tuple[RouterConfig, ...]:
    """``[[router]]`` entries over the ``[routeros]`` defaults (username, password, TLS)."""
    base = path.parent
    default_password = _password("[routeros]", defaults, base, env) or ""
    routers = []
    for i, entry in enumerate(entries):
        where = f"router #{i + 1}"
        _check_keys(where, entry, _ROUTER_KEYS)
        if "name" not in entry or "host" not in entry:
            raise ConfigError(f"[[router]] #{i + 1} needs 'name' and 'host'")
        where = f"router {entry['name']}"
        password = _password(where, entry, base, env)
        tls = entry.get("tls", defaults.get("tls", False))
        tls_verify = entry.get("tls_verify", defaults.get("tls_verify", True))
        if not isinstance(tls, bool) or not isinstance(tls_verify, bool):
            raise ConfigError(f"{where}: tls and tls_verify are true or false")
        ca_file = entry.get("ca_file", defaults.get("ca_file"))
        if ca_file is not None:
            ca_file = str(base / str(ca_file))
            if not Path(ca_file).is_file():
                raise ConfigError(f"{where}: ca_file: no such file {ca_file}")
        port = entry.get("port", 8729 if tls else 8728)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ConfigError(f"{where}: port: expected 1..65535, got {port!r}")
        aliases = entry.get("aliases", ())
        if isinstance(aliases, str) or not all(isinstance(a, str) for a in aliases):
            raise ConfigError(f"{where}: aliases: expected a list of names")
        routers.append(RouterConfig(
            name=str(entry["name"]), host=str(entry["host"]), port=port,
            username=str(entry.get("username", defaults.get("username", "admin"))),
            password=default_password if password is None else password,
            aliases=tuple(aliases), site=str(entry.get("site", "")), tls=tls, tls_verify=tls_verify, ca_file=ca_file,
        ))
    names = [r.name for r in routers]
    if len(set(names)) != len(names):
        raise ConfigError("two [[router]] entries share a name")
    return tuple(routers)
