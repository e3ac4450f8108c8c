"""Configuration: the shipped example loads, mistakes are named, secrets stay out of repr."""

from pathlib import Path

import pytest

from mikrovoice.config import ConfigError, load

ROOT = Path(__file__).resolve().parents[1]
ENV = {"MIKROVOICE_PW_152_1": "pw-one", "MIKROVOICE_PW_26_1": "pw-two", "OPENAI_API_KEY": "sk-secret"}


def test_the_example_loads() -> None:
    settings = load(ROOT / "mikrovoice.example.toml", ENV)
    assert settings.listen == ("0.0.0.0", 9092) and [r.name for r in settings.routers] == ["152.1", "26.1"]
    assert settings.routers[0].password == "pw-one" and settings.api_key == "sk-secret"
    assert settings.phrases.progress_many.format(answered=7, total=12) == "Sigo consultando: 7 de 12 routers ya respondieron."
    assert settings.progress_lead_s == 1.0 and settings.model_audio_chunk_ms == 100
    assert settings.model == "gpt-realtime-2.1" and settings.reasoning_effort == "minimal"
    assert settings.realtime_endpoint == "wss://api.openai.com/v1/realtime?model=gpt-realtime-2.1"
    assert settings.reconnect_attempts == 4 and settings.session_recycle_s == 3300.0
    assert settings.comfort_audio == "thinking" and settings.comfort_level_dbfs == -36.0
    text = repr(settings)
    assert "pw-one" not in text and "sk-secret" not in text


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
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
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
        ("[[router]]\nname='a'\nhost='h'\npassword_file='nope.txt'\n", "cannot read password_file"),
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
