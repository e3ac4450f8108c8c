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
    ],
)
def test_mistakes_are_named(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message):
        load(path, {})
