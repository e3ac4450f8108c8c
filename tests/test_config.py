"""Configuration: the shipped example loads, mistakes are named, secrets stay out of repr."""

import shutil
from dataclasses import fields, replace
from pathlib import Path

import pytest
import trustme

from mikrovoice.call.progress import ProgressPolicy
from mikrovoice.config import (
    PHRASE_FIELDS,
    ROUTER_NAME_FIELDS,
    AuthSettings,
    ConfigError,
    Phrases,
    Settings,
    check_phrase,
    load,
    tool_names,
)
from mikrovoice.routeros.fanout import Fleet
from mikrovoice.routeros.inventory import InventoryPhrases
from mikrovoice.tools import NocTools

ROOT = Path(__file__).resolve().parents[1]
ENV = {"MIKROVOICE_PW_152_1": "pw-one", "MIKROVOICE_PW_26_1": "pw-two", "OPENAI_API_KEY": "sk-secret",
       "MIKROVOICE_PIN_ANA": "135790"}


def example(tmp_path: Path) -> Path:
    """The shipped example, next to the PIN file it names (mode 600)."""
    path = tmp_path / "mikrovoice.toml"
    shutil.copy(ROOT / "mikrovoice.example.toml", path)
    (tmp_path / "secrets").mkdir()
    pin = tmp_path / "secrets" / "turno-noche.pin"
    pin.write_text("246810\n")
    pin.chmod(0o600)
    return path


def test_the_example_loads(tmp_path: Path) -> None:
    settings = load(example(tmp_path), ENV)
    assert settings.listen == ("127.0.0.1", 9092) and [r.name for r in settings.routers] == ["152.1", "26.1"]
    assert settings.routers[0].password == "pw-one" and settings.api_key == "sk-secret"
    assert settings.phrases.progress_many.format(answered=7, total=12) == "Sigo consultando: 7 de 12 routers ya respondieron."
    assert settings.progress_lead_s == 1.0 and settings.model_audio_chunk_ms == 100
    assert settings.model == "gpt-realtime-2.1" and settings.reasoning_effort == "minimal"
    assert settings.realtime_endpoint == "wss://api.openai.com/v1/realtime?model=gpt-realtime-2.1"
    assert settings.reconnect_attempts == 4 and settings.session_recycle_s == 3300.0
    assert settings.comfort_audio == "thinking" and settings.comfort_level_dbfs == -36.0
    assert settings.auth.configured and settings.auth.require == "pin" and settings.auth.pin_length == 6
    ana, night = settings.auth.operators
    assert (ana.name, ana.numbers, ana.pin, ana.tools) == ("Ana Gómez", ("+573001234567", "+576017654321"), "135790", ("*",))
    assert (night.pin, night.tools) == ("246810", ("listar_routers", "estado_routers", "ping"))
    assert settings.max_calls == 100 and settings.metrics_listen is None and settings.warnings == ()
    text = repr(settings)
    assert "pw-one" not in text and "sk-secret" not in text and "135790" not in text and "246810" not in text


@pytest.mark.parametrize(
    "body, message",
    [
        ("[openai]\nurll = 'x'\n", "unknown key"),
        ("[[router]]\nhost = 'h'\n", "needs 'name' and 'host'"),
        ("[[router]]\nname='a'\nhost='h'\npassword_env='NOPE'\n", "NOPE is not set"),
        ("[audiosocket]\nlisten = 'nohostport'\n", "HOST:PORT"),
        ("[[router]]\nname='a'\nhost='h'\n[[router]]\nname='a'\nhost='i'\n", "share a name"),
        ("not toml ===", "Expected"),
        ("[openai]\nurl = 'wss://x/v1/realtime?model=gpt-realtime'\n", "url names model 'gpt-realtime'"),
        ("[openai]\nreasoning_effort = 'max'\n", "reasoning_effort"),
        ("[comfort]\naudio = 'nope.wav'\n", "no such file"),
        ("[comfort]\nlevel_dbfs = -10\n", "below speech"),
        ("[prompts]\nconnection_hold = 'x.wav'\n", "connection_hold: no such file"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message):
        load(path, {})


def test_the_model_decides_the_url_and_effort_can_be_switched_off(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[openai]\nurl = 'wss://eu.example/v1/realtime?model=gpt-realtime-1.5&x=1'\n"
                    "model = 'gpt-realtime-1.5'\nreasoning_effort = ''\n")
    settings = load(path, {})
    assert settings.realtime_endpoint == "wss://eu.example/v1/realtime?model=gpt-realtime-1.5&x=1"
    assert settings.reasoning_effort is None


def test_the_router_inventory_takes_defaults_sites_tls_and_password_files(tmp_path: Path) -> None:
    (tmp_path / "pw.txt").write_text("clave-de-archivo\n")
    (tmp_path / "pw.txt").chmod(0o600)  # a secret file must be its owner's alone
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.pem"))  # a real certificate: ca_file is loaded
    path = tmp_path / "c.toml"
    path.write_text(
        "[routeros]\nusername = 'noc-ro'\npassword_env = 'PW'\nconnect_timeout_s = 3\ncommands_per_router = 2\n"
        "[cache]\ntraffic = 2\nleases = 0\n"
        "[[router]]\nname = '152.1'\nhost = 'h1'\nsite = 'Torre Norte'\n"
        "[[router]]\nname = '26.1'\nhost = 'h2'\ntls = true\nca_file = 'ca.pem'\npassword_file = 'pw.txt'\n"
        "[[router]]\nname = '46.3'\nhost = 'h3'\ntls = true\ntls_verify = false\nport = 9999\nusername = 'otro'\n")
    settings = load(path, {"PW": "clave-de-entorno"})
    r1, r2, r3 = settings.routers
    assert (r1.username, r1.password, r1.port, r1.site, r1.tls) == ("noc-ro", "clave-de-entorno", 8728, "Torre Norte", False)
    assert (r2.password, r2.port, r2.tls, r2.tls_verify, r2.ca_file) == ("clave-de-archivo", 8729, True, True,
                                                                         str(tmp_path / "ca.pem"))
    assert (r3.username, r3.port, r3.tls_verify) == ("otro", 9999, False)
    assert settings.router_connect_timeout_s == 3 and settings.router_commands_per_router == 2
    assert settings.cache_ttl_s["traffic"] == 2.0 and settings.cache_ttl_s["leases"] == 0.0
    assert settings.cache_ttl_s["interfaces"] == 300.0
    assert "clave" not in repr(settings)


@pytest.mark.parametrize(
    "body, message",
    [
        ("[[router]]\nname='a'\nhost='h'\npassword='x'\npassword_env='Y'\n", "only one of"),
        ("[[router]]\nname='a'\nhost='h'\npassword_file='nope.txt'\n", "password_file: cannot read"),
        ("[[router]]\nname='a'\nhost='h'\ntls='yes'\n", "true or false"),
        ("[[router]]\nname='a'\nhost='h'\nport=70000\n", "1..65535"),
        ("[[router]]\nname='a'\nhost='h'\naliases='x'\n", "list of names"),
        ("[[router]]\nname='a'\nhost='h'\nca_file='none.pem'\n", "ca_file: no such file"),
        ("[routeros]\nconnect_timeout_s = 0\n", "connect_timeout_s"),
        ("[routeros]\ncommands_total = 'many'\n", "commands_total"),
        ("[cache]\ntraffic = -1\n", "seconds >= 0"),
        ("[cache]\ntrafic = 1\n", "unknown key"),
        ("[query]\nrouter_timeout_s = 3\n", "must exceed"),
    ],
)
def test_inventory_mistakes_are_named(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message):
        load(path, {})


def test_the_router_name_questions_are_configurable(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[router_names]\nambiguous = '¿Cuál: {options}?'\n")
    assert load(path, {}).router_name_phrases == {"ambiguous": "¿Cuál: {options}?"}
    path.write_text("[router_names]\nambigous = 'x'\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load(path, {})
    path.write_text("[router_names]\nambiguous = '{nope}'\n")
    with pytest.raises(ConfigError):
        load(path, {})


def test_optics_and_health_thresholds_are_the_operators(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[optics]\nrx_low_dbm = -27\nrx_critical_dbm = -30\n[health]\ncpu_high_pct = 95\n")
    settings = load(path, {})
    assert settings.optics_limits == {"rx_low_dbm": -27.0, "rx_critical_dbm": -30.0}
    assert settings.health_limits == {"cpu_high_pct": 95.0}
    path.write_text("[optics]\nrx_low = -27\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load(path, {})
    path.write_text("[health]\ncpu_high_pct = 'alto'\n")
    with pytest.raises(ConfigError, match="expected a number"):
        load(path, {})


# --------------------------------------------------------------------------- issue 9: every key checked at start


def load_text(tmp_path: Path, body: str, env: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "c.toml"
    path.write_text(body, encoding="utf-8")
    return load(path, env or {})


def error(tmp_path: Path, body: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, body, env)
    message = str(caught.value)
    assert "\n" not in message  # one line
    return message


ROUTER = "[[router]]\nname = '152.1'\nhost = '10.0.152.1'\n"


@pytest.mark.parametrize(
    "body, message",
    [
        # the issue's own cases, word for word
        ('[openai]\nping_interval_s = "15"\n',
         '[openai] ping_interval_s: expected a number of seconds 1..300, got "15" (a string)'),
        ("[query]\ntimeout_s = -5\n", "[query] timeout_s: expected a number of seconds 1..600, got -5"),
        ("[phrases]\nprogress_many = 'Van {answered} de {todos}.'\n",
         "[phrases] progress_many: unknown field {todos}; this phrase may use {answered}, {done}, {failed}, "
         "{missing}, {pending}, {total}, {which}"),
        ("[openai]\nurl = 'https://api.openai.com/v1/realtime'\n",
         '[openai] url: expected a ws:// or wss:// URL with a host, got "https://api.openai.com/v1/realtime" (a string)'),
        (ROUTER + "port = 95036\n", "[[router]] 152.1 port: expected an integer 1..65535, got 95036"),
    ],
)
def test_the_issues_cases_are_named_exactly(tmp_path: Path, body: str, message: str) -> None:
    assert error(tmp_path, body) == message


@pytest.mark.parametrize(
    "body, key, expected",
    [
        # types: a bool is not a number, a float is not an integer, a number is not a string
        ("[openai]\nreconnect_attempts = true\n", "[openai] reconnect_attempts", "got true (a boolean)"),
        ("[openai]\nreconnect_attempts = 2.0\n", "[openai] reconnect_attempts", "expected an integer 0..20"),
        ("[call]\nmin_speech_ms = false\n", "[call] min_speech_ms", "got false (a boolean)"),
        ("[dtmf]\nhuman = 0\n", "[dtmf] human", "as a string"),
        ("[openai]\nmodel = 5\n", "[openai] model", "got 5"),
        ("[routeros]\ntls = 'yes'\n", "[routeros] tls", "expected true or false"),
        ("[openai]\npong_timeout_s = inf\n", "[openai] pong_timeout_s", "got inf"),
        ("[openai]\nping_interval_s = [15]\n", "[openai] ping_interval_s", "got a list of 1"),
        # ranges
        ("[openai]\naudio_chunk_ms = 30\n", "[openai] audio_chunk_ms", "20..100, a multiple of 20"),
        ("[openai]\naudio_chunk_ms = 120\n", "[openai] audio_chunk_ms", "got 120"),
        ("[openai]\nmax_audio_lag_ms = 50\n", "[openai] max_audio_lag_ms", "100..60000"),
        ("[openai]\nreconnect_attempts = 21\n", "[openai] reconnect_attempts", "0..20"),
        ("[openai]\nsession_recycle_s = 3600\n", "[openai] session_recycle_s", ">= 60 and < 3600"),
        ("[openai]\nconnect_timeout_s = 0\n", "[openai] connect_timeout_s", "> 0 and <= 120"),
        ("[audiosocket]\ninactivity_timeout_s = 1\n", "[audiosocket] inactivity_timeout_s", "5..3600"),
        ("[query]\nrouter_concurrency = 0\n", "[query] router_concurrency", "1..1000"),
        ("[routeros]\ncommands_per_router = 2.5\n", "[routeros] commands_per_router", "an integer 1..100"),
        ("[comfort]\nlevel_dbfs = '-36'\n", "[comfort] level_dbfs", "below speech"),
        ("[health]\ncpu_high_pct = 150\n", "[health] cpu_high_pct", "0..100 (%)"),
        ("[optics]\nrx_low_dbm = -30\n", "[optics] rx_low_dbm", "rx_critical_dbm < rx_low_dbm < rx_high_dbm"),
        ("[openai]\nreasoning_effort = 'max'\n", "[openai] reasoning_effort", 'one of "minimal"'),
        ("[openai]\nvoice = ''\n", "[openai] voice", "a voice name"),
        # listen addresses and URLs
        ("[audiosocket]\nlisten = '0.0.0.0:0'\n", "[audiosocket] listen", "HOST:PORT with a port 1..65535"),
        ("[websocket]\nlisten = '0.0.0.0:70000'\n", "[websocket] listen", "got \"0.0.0.0:70000\""),
        ("[service]\nmetrics_listen = '9100'\n", "[service] metrics_listen", "HOST:PORT"),
        ("[audiosocket]\nlisten = '0.0.0.0:9092'\n[websocket]\nlisten = '127.0.0.1:9092'\n", "[websocket] listen",
         "port 9092 is also [audiosocket] listen's"),
        ("[service]\nmetrics_listen = 'localhost:9092'\n", "[service] metrics_listen",
         "port 9092 is also [audiosocket] listen's"),
        ("[openai]\nurl = 'wss:///v1/realtime'\n", "[openai] url", "with a host"),
        ("[openai]\nurl = 'api.openai.com/v1/realtime'\n", "[openai] url", "ws:// or wss://"),
        # rules between keys
        ("[dtmf]\nhuman = '#'\n", "[dtmf] human", "repeat and human are both '#'"),
        ("[openai]\nreconnect_backoff_s = 5\nreconnect_backoff_max_s = 2\n", "[openai] reconnect_backoff_max_s",
         "is below reconnect_backoff_s"),
        ("[query]\nprogress_silence_s = 2\nprogress_lead_s = 2\n", "[query] progress_lead_s", "expected less than"),
        ("[query]\nprogress_silence_by_tool = { ping = 0.5 }\n", "[query] progress_silence_by_tool ping", "1..60"),
        ("[query]\nprogress_silence_by_tool = { sfp_traffic = 5 }\n", "[query] progress_silence_by_tool",
         "unknown tool 'sfp_traffic'"),
        # phrases: fields, templates, phrases used as written
        ("[phrases]\nprogress_one = 'Sigo con {router'\n", "[phrases] progress_one", "not a valid phrase"),
        ("[phrases]\nprogress_wait = 'Faltan } segundos {seconds}'\n", "[phrases] progress_wait", "not a valid phrase"),
        ("[phrases]\nprogress_wait = 'Faltan {} segundos'\n", "[phrases] progress_wait", "unknown field {}"),
        ("[phrases]\nprogress_missing = 'Faltan {missing:d}.'\n", "[phrases] progress_missing", "cannot be filled in"),
        ("[phrases]\nprogress_one = 'Sigo con {router.name}'\n", "[phrases] progress_one", "unknown field {router.name}"),
        ("[phrases]\ngreeting = 'Hola {name}'\n", "[phrases] greeting", "used as written"),
        ("[phrases]\nrouter_timeout = 'no respondió {{a tiempo}}'\n", "[phrases] router_timeout", "used as written"),
        ("[phrases]\ngreeting = ''\n", "[phrases] greeting", "a non-empty string"),
        ("[phrases]\nbusy = 3\n", "[phrases] busy", "got 3"),
        ("[router_names]\nchoice = 'el {nombre}'\n", "[router_names] choice", "unknown field {nombre}; this phrase may "
                                                                             "use {name}, {router}, {site}"),
        ("[router_names]\nunnamed = 'No sé {spoken}'\n", "[router_names] unnamed", "used as written"),
        ("[router_names]\nmany_threshold = '4'\n", "[router_names] many_threshold", "an integer 1..50"),
        ("[router_names]\nmany_shown = 6\n", "[router_names] many_shown", "may not exceed many_threshold (4)"),
        # the file's shape
        ("[query]\ntimeout = 5\n", "[query]", "unknown key(s) ['timeout'] (did you mean 'timeout_s'?)"),
        ("openai = 5\n", "[openai]", "expected a table"),
        ("[router]\nname = 'a'\n", "router", "expected [[router]] entries"),
        ("[[router]]\nname = 'a'\nhost = 'h'\nsitio = 'x'\n", "[[router]] a", "unknown key(s) ['sitio']"),
    ],
)
def test_each_mistake_names_its_key(tmp_path: Path, body: str, key: str, expected: str) -> None:
    message = error(tmp_path, body)
    assert message.startswith(key + ":") or message.startswith(key + " "), message
    assert expected in message, message


def test_integers_are_accepted_where_numbers_are_expected(tmp_path: Path) -> None:
    settings = load_text(tmp_path, "[openai]\nping_interval_s = 20\n[query]\ntimeout_s = 60\n[cache]\ntraffic = 0\n")
    assert settings.ping_interval_s == 20.0 and isinstance(settings.ping_interval_s, float)
    assert settings.query_timeout_s == 60.0 and settings.cache_ttl_s["traffic"] == 0.0


def test_listeners_on_different_hosts_may_share_a_port(tmp_path: Path) -> None:
    settings = load_text(tmp_path, "[audiosocket]\nlisten = '10.0.0.5:9092'\n[websocket]\nlisten = '10.0.0.6:9092'\n"
                                   "[service]\nmetrics_listen = '[::1]:9100'\n")
    assert settings.websocket_listen == ("10.0.0.6", 9092) and settings.metrics_listen == ("::1", 9100)


@pytest.mark.parametrize(
    "body, key, expected",
    [
        (ROUTER + "[[router]]\nname = '152.1'\nhost = 'h2'\n", "[[router]] 152.1 name", "share a name"),
        ("[[router]]\nname = 'R-152-1'\nhost = 'h1'\n[[router]]\nname = 'r 152 1'\nhost = 'h2'\n",
         "[[router]] r 152 1 name", "the same as router R-152-1's name 'R-152-1'"),
        (ROUTER + "[[router]]\nname = '26.1'\nhost = 'h2'\naliases = ['Norte', '152.1']\n", "[[router]] 26.1 aliases",
         "'152.1' is the same as router 152.1's name"),
        (ROUTER + "aliases = ['Torre Norte']\n[[router]]\nname = '26.1'\nhost = 'h2'\naliases = ['TORRE-NORTE']\n",
         "[[router]] 26.1 aliases", "router 152.1's alias 'Torre Norte'"),
        (ROUTER + "aliases = ['--']\n", "[[router]] 152.1 aliases", "no letter or digit"),
        (ROUTER + "aliases = ['ok', 3]\n", "[[router]] 152.1 aliases", "expected a list of names, got 3"),
        ("[[router]]\nname = ''\nhost = 'h'\n", "[[router]] #1 name", "expected a name"),
        ("[[router]]\nname = 'a'\n", "[[router]] a host", "missing"),
        ("[[router]]\nname = 'a'\nhost = 'http://10.0.0.1'\n", "[[router]] a host", "a host name or IP address"),
        ("[[router]]\nname = 'a'\nhost = '10.0.0.1:8728'\n", "[[router]] a host", "the port is its own key"),
        ("[[router]]\nname = 'a'\nhost = 'h'\nport = '8728'\n", "[[router]] a port", 'got "8728" (a string)'),
        ("[[router]]\nname = 'a'\nhost = 'h'\nusername = ''\n", "[[router]] a username", "expected a name"),
        ("[routeros]\nusername = 7\n", "[routeros] username", "got 7"),
        ("[[router]]\nname = 'a'\nhost = 'h'\npassword_env = 'MY-PW'\n", "[[router]] a password_env",
         "an environment variable name"),
        ("[routeros]\npassword_env = 'ROUTERS_PW'\n", "[routeros] password_env", "ROUTERS_PW is not set"),
    ],
)
def test_router_mistakes_name_the_router_and_key(tmp_path: Path, body: str, key: str, expected: str) -> None:
    message = error(tmp_path, body)
    assert message.startswith(key + ":"), message
    assert expected in message, message


def test_an_alias_may_repeat_its_own_routers_name(tmp_path: Path) -> None:
    settings = load_text(tmp_path, ROUTER + "aliases = ['152-1', 'Norte']\n")
    assert settings.routers[0].aliases == ("152-1", "Norte")


# --------------------------------------------------------------------------- files and secrets


def secret_file(tmp_path: Path, name: str, text: str, mode: int = 0o600) -> Path:
    file = tmp_path / name
    file.write_text(text)
    file.chmod(mode)
    return file


@pytest.mark.parametrize("mode, exposure", [(0o644, "readable by others (mode 0644)"),
                                            (0o640, "readable by its group (mode 0640)"),
                                            (0o602, "writable by others (mode 0602)")])
def test_a_secret_file_others_can_touch_is_refused(tmp_path: Path, mode: int, exposure: str) -> None:
    file = secret_file(tmp_path, "pw.txt", "clave-secreta\n", mode)
    message = error(tmp_path, ROUTER + "password_file = 'pw.txt'\n")
    assert message == f"[[router]] 152.1 password_file: {file} is {exposure}: chmod 600 {file}"
    assert "clave-secreta" not in message


@pytest.mark.parametrize(
    "body, key, expected",
    [
        (ROUTER + "password_file = 'none.txt'\n", "[[router]] 152.1 password_file", "No such file"),
        (ROUTER + "password_file = 'empty.txt'\n", "[[router]] 152.1 password_file", "is empty"),
        (ROUTER + "password_file = 'two.txt'\n", "[[router]] 152.1 password_file", "more than one line"),
        ("[openai]\napi_key_file = 'key.txt'\n", "[openai] api_key_file", "readable by others"),
        ("[openai]\napi_key_env = 'MY_OPENAI_KEY'\n", "[openai] api_key_env", "MY_OPENAI_KEY is not set"),
        ("[openai]\napi_key_env = 'A'\napi_key_file = 'k'\n", "[openai] api_key_file", "give only one of"),
        ("[openai]\napi_key = 'sk-live-123'\n", "[openai] api_key", "may not be written in the config file"),
        ("[[router]]\nname='a'\nhost='h'\nca_file='bad.pem'\n", "[[router]] a ca_file", "no usable PEM certificate"),
        ("[prompts]\nbusy = 'none.wav'\n", "[prompts] busy", "no such file"),
        ("[prompts]\npin_request = 'pin.mp3'\n", "[prompts] pin_request", "unknown audio file type"),
        ("[prompts]\nshutdown = 'empty.sln'\n", "[prompts] shutdown", "the prompt is empty"),
        ("[prompts]\nbeep = 'x.wav'\n", "[prompts]", "unknown key(s) ['beep']"),
        ("[comfort]\naudio = 'loop.mp3'\n", "[comfort] audio", 'expected "thinking", "off" or an audio file'),
    ],
)
def test_files_and_variables_must_exist_and_be_usable(tmp_path: Path, body: str, key: str, expected: str) -> None:
    secret_file(tmp_path, "empty.txt", "\n")
    secret_file(tmp_path, "two.txt", "a\nb\n")
    secret_file(tmp_path, "key.txt", "sk-live-123\n", 0o644)
    secret_file(tmp_path, "pin.mp3", "ID3")
    secret_file(tmp_path, "loop.mp3", "ID3")
    secret_file(tmp_path, "empty.sln", "")
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    message = error(tmp_path, body)
    assert message.startswith(key + ":"), message
    assert expected in message and "sk-live-123" not in message, message


def test_secrets_come_from_files_and_named_variables(tmp_path: Path) -> None:
    secret_file(tmp_path, "openai.key", "sk-from-file\n")
    secret_file(tmp_path, "routers.pw", "clave-comun\n")
    settings = load_text(tmp_path, "[openai]\napi_key_file = 'openai.key'\n[routeros]\npassword_file = 'routers.pw'\n"
                         + ROUTER + "[[router]]\nname = '26.1'\nhost = 'h2'\npassword_env = 'PW_26'\n",
                         {"PW_26": "clave-26", "OPENAI_API_KEY": "sk-ignored"})
    assert settings.api_key == "sk-from-file" and settings.api_key_file == str(tmp_path / "openai.key")
    assert [r.password for r in settings.routers] == ["clave-comun", "clave-26"]
    settings = load_text(tmp_path, "[openai]\napi_key_env = 'NOC_KEY'\n", {"NOC_KEY": "sk-noc"})
    assert (settings.api_key, settings.api_key_env) == ("sk-noc", "NOC_KEY")
    # the default variable may be unset: a simulation needs no key (serve refuses to start without one)
    assert load_text(tmp_path, "").api_key == ""


def test_an_inline_router_password_is_accepted_with_a_warning(tmp_path: Path) -> None:
    settings = load_text(tmp_path, ROUTER + "password = 'clave-en-linea'\n[[router]]\nname='lab'\nhost='h'\n"
                                            "password = ''\n")
    assert settings.routers[0].password == "clave-en-linea"
    assert settings.warnings == ("[[router]] 152.1 password: written in the config file; prefer password_env or "
                                 "password_file (a file only its owner can read)",)
    assert "clave-en-linea" not in repr(settings)


def test_prompts_are_checked_audio_files_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    for name in ("pin_request", "pin_wrong", "auth_refused", "busy", "shutdown", "model_unavailable", "connection_hold"):
        (tmp_path / "prompts" / f"{name}.sln").write_bytes(b"\x01\x00" * 800)
    body = "[prompts]\n" + "".join(f"{n} = 'prompts/{n}.sln'\n" for n in
                                   ("pin_request", "pin_wrong", "auth_refused", "busy", "shutdown", "model_unavailable",
                                    "connection_hold"))
    settings = load_text(tmp_path, body)
    assert settings.prompt_busy == str(tmp_path / "prompts" / "busy.sln")
    assert settings.prompt_connection_hold == str(tmp_path / "prompts" / "connection_hold.sln")


# --------------------------------------------------------------------------- [auth], [[operator]], [service]

AUTH_ENV = {"PIN_ANA": "908172", "PIN_BEA": "817263"}


def test_auth_and_operators_are_read(tmp_path: Path) -> None:
    secret_file(tmp_path, "bea.pin", "817263\n")
    settings = load_text(tmp_path, "[auth]\nrequire = 'caller_id_or_pin'\npin_length = 6\nattempts = 2\n"
                                   "digit_timeout_s = 8\nlockout_after = 5\nlockout_s = 600\n"
                                   "[[operator]]\nname = 'Ana'\nnumbers = ['+573001234567']\npin_env = 'PIN_ANA'\n"
                                   "tools = ['ping', 'estado_routers']\n"
                                   "[[operator]]\nname = 'Bea'\npin_file = 'bea.pin'\n"
                                   "[[operator]]\nname = 'Caro'\nnumbers = ['3109876543']\n"
                                   "[service]\nmax_calls = 20\nshutdown_grace_s = 0\nmetrics_listen = '127.0.0.1:9100'\n",
                         AUTH_ENV)
    auth = settings.auth
    assert (auth.configured, auth.require, auth.attempts, auth.digit_timeout_s, auth.lockout_after, auth.lockout_s) == (
        True, "caller_id_or_pin", 2, 8.0, 5, 600.0)
    assert [(o.name, o.numbers, o.pin, o.tools) for o in auth.operators] == [
        ("Ana", ("+573001234567",), "908172", ("ping", "estado_routers")), ("Bea", (), "817263", ("*",)),
        ("Caro", ("3109876543",), "", ("*",))]
    assert (settings.max_calls, settings.shutdown_grace_s, settings.metrics_listen) == (20, 0.0, ("127.0.0.1", 9100))
    assert "908172" not in repr(settings) and "817263" not in repr(settings)
    assert load_text(tmp_path, "").auth == AuthSettings()  # no [auth]: not configured (serve refuses that)


OPERATOR = "[[operator]]\nname = 'Ana'\nnumbers = ['+573001234567']\npin_env = 'PIN_ANA'\n"


@pytest.mark.parametrize(
    "body, key, expected",
    [
        ("[auth]\npin_length = 6\n", "[auth] require", "missing"),
        ("[auth]\nrequire = 'password'\n", "[auth] require", 'one of "pin", "caller_id"'),
        ("[auth]\nrequire = 'open'\npin_length = 3\n", "[auth] pin_length", "4..12"),
        ("[auth]\nrequire = 'open'\nattempts = 0\n", "[auth] attempts", "1..10"),
        ("[auth]\nrequire = 'open'\ndigit_timeout_s = 0\n", "[auth] digit_timeout_s", "> 0 and <= 60"),
        ("[auth]\nrequire = 'open'\nlockout_after = 101\n", "[auth] lockout_after", "1..100"),
        ("[auth]\nrequire = 'open'\nlockout_s = -1\n", "[auth] lockout_s", "0..604800"),
        ("[service]\nmax_calls = 0\n", "[service] max_calls", "1..10000"),
        ("[service]\nshutdown_grace_s = 3601\n", "[service] shutdown_grace_s", "0..3600"),
        # consistency of require with the operators
        ("[auth]\nrequire = 'pin'\n", "[auth] require", 'needs at least one [[operator]]'),
        (OPERATOR, "[[operator]]", "need an [auth] section"),
        ("[auth]\nrequire = 'pin'\n[[operator]]\nname = 'Ana'\nnumbers = ['3001']\n", "[[operator]] Ana pin_env",
         "needs each operator's PIN"),
        ("[auth]\nrequire = 'caller_id'\n[[operator]]\nname = 'Ana'\npin_env = 'PIN_ANA'\n", "[[operator]] Ana numbers",
         "needs each operator's numbers"),
        ("[auth]\nrequire = 'caller_id_and_pin'\n[[operator]]\nname = 'Ana'\nnumbers = ['3001']\n",
         "[[operator]] Ana pin_env", "needs each operator's PIN"),
        ("[auth]\nrequire = 'caller_id_or_pin'\n[[operator]]\nname = 'Ana'\n", "[[operator]] Ana numbers",
         "no PIN either"),
        # each operator's keys
        ("[auth]\nrequire = 'pin'\n[[operator]]\nnumbers = ['3001']\n", "[[operator]] #1 name", "missing"),
        ("[auth]\nrequire = 'pin'\n[[operator]]\nname = 'Ana'\npin = '123456'\n", "[[operator]] Ana pin",
         "may not be written in the config file"),
        ("[auth]\nrequire = 'pin'\n[[operator]]\nname = 'Ana'\npin_env = 'PIN_NOPE'\n", "[[operator]] Ana pin_env",
         "PIN_NOPE is not set"),
        ("[auth]\nrequire = 'pin'\n[[operator]]\nname = 'Ana'\npin_file = 'pin.txt'\n", "[[operator]] Ana pin_file",
         "readable by others (mode 0644)"),
        ("[auth]\nrequire = 'pin'\npin_length = 4\n" + OPERATOR, "[[operator]] Ana pin_env", "exactly 4 digits"),
        ("[auth]\nrequire = 'pin'\n[[operator]]\nname = 'Ana'\npin_env = 'PIN_LETTERS'\n", "[[operator]] Ana pin_env",
         "exactly 6 digits"),
        ("[auth]\nrequire = 'open'\n[[operator]]\nname = 'Ana'\nnumbers = '3001'\n", "[[operator]] Ana numbers",
         "expected a list of phone numbers"),
        ("[auth]\nrequire = 'open'\n[[operator]]\nname = 'Ana'\nnumbers = [3001234567]\n", "[[operator]] Ana numbers",
         "as a string"),
        ("[auth]\nrequire = 'open'\n[[operator]]\nname = 'Ana'\nnumbers = ['300-123']\n", "[[operator]] Ana numbers",
         'a phone number as a string: 2 to 15 digits, "+" first allowed'),
        ("[auth]\nrequire = 'open'\n[[operator]]\nname = 'Ana'\nnumbers = ['+573001234567', '3001234567']\n",
         "[[operator]] Ana numbers", "3001234567 is +573001234567 again"),
        ("[auth]\nrequire = 'open'\n[[operator]]\nname = 'Ana'\ntools = ['pingg']\n", "[[operator]] Ana tools",
         "unknown tool \"pingg\" (a string)"),
        ("[auth]\nrequire = 'open'\n[[operator]]\nname = 'Ana'\ntools = ['*', 'ping']\n", "[[operator]] Ana tools",
         "stands alone"),
        ("[auth]\nrequire = 'open'\n[[operator]]\nname = 'Ana'\ntools = []\n", "[[operator]] Ana tools",
         "a list of tool names"),
        ("[auth]\nrequire = 'open'\n[[operator]]\nname = 'Ana'\nmail = 'a@b'\n", "[[operator]] Ana",
         "unknown key(s) ['mail']"),
        # duplicates
        ("[auth]\nrequire = 'pin'\n" + OPERATOR + "[[operator]]\nname = 'ANA'\npin_env = 'PIN_BEA'\n",
         "[[operator]] ANA name", "share a name"),
        ("[auth]\nrequire = 'pin'\n" + OPERATOR + "[[operator]]\nname = 'Bea'\nnumbers = ['3001234567']\n"
         "pin_env = 'PIN_BEA'\n", "[[operator]] Bea numbers", "3001234567 is also operator Ana's number"),
        ("[auth]\nrequire = 'pin'\n" + OPERATOR + "[[operator]]\nname = 'Bea'\npin_env = 'PIN_ANA_TOO'\n",
         "[[operator]] Bea pin", "the same PIN as operator Ana's"),
    ],
)
def test_auth_mistakes_name_their_key(tmp_path: Path, body: str, key: str, expected: str) -> None:
    secret_file(tmp_path, "pin.txt", "123456\n", 0o644)
    env = AUTH_ENV | {"PIN_LETTERS": "90817a", "PIN_ANA_TOO": "908172"}
    message = error(tmp_path, body, env)
    assert message.startswith(key + ":") or message.startswith(key + " "), message
    assert expected in message, message
    assert "908172" not in message and "90817a" not in message  # never a PIN


# --------------------------------------------------------------------------- the tables stay true to the code


def test_phrase_fields_are_those_the_code_fills_in() -> None:
    every = {f.name for f in fields(Phrases)}
    assert set(PHRASE_FIELDS) <= every
    defaults = Phrases()
    for name in every:  # the defaults pass their own rules
        check_phrase(name, getattr(defaults, name), PHRASE_FIELDS.get(name))
    # progress.py fills in every field PHRASE_FIELDS allows its phrases
    using_all = {name: " ".join(f"{{{f}}}" for f in sorted(PHRASE_FIELDS[name]))
                 for name in ("progress_many", "progress_missing", "progress_failed", "progress_failed_which",
                              "progress_one", "progress_wait")}
    phrases = replace(defaults, **using_all)
    ProgressPolicy.phrase(phrases, 3, 1, 5, ["46.3"], wait_left_s=20, failures=[("59.3", "no respondió")])
    ProgressPolicy.phrase(phrases, 3, 2, 6, ["46.3"], wait_left_s=20)
    ProgressPolicy.phrase(phrases, 0, 0, 1, ["46.3"], wait_left_s=20)


def test_router_name_fields_agree_with_the_inventory() -> None:
    every = set().union(*ROUTER_NAME_FIELDS.values())
    for name, allowed in ROUTER_NAME_FIELDS.items():
        InventoryPhrases(**{name: " ".join(f"{{{f}}}" for f in sorted(allowed))})
        for other in every - allowed:
            with pytest.raises(ConfigError):
                InventoryPhrases(**{name: f"{{{other}}}"})
    for f in fields(InventoryPhrases):
        if f.name not in ROUTER_NAME_FIELDS and isinstance(f.default, str):
            check_phrase(f.name, f.default, None)  # used as written, and indeed without braces


def test_tool_names_are_the_models_tools() -> None:
    assert tool_names() == {spec.name for spec in NocTools(Fleet(Settings())).specs}
    assert {"ping", "estado_routers", "cancelar_consulta"} <= tool_names()
