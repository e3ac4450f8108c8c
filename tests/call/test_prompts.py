"""Recorded prompts: the bundled recording, operator files, and clear errors for unusable ones."""

import wave
from pathlib import Path

import pytest

from mikrovoice.call.prompts import BUNDLED, Prompts, read_audio
from mikrovoice.config import ConfigError, Settings
from mikrovoice.telephony import g711


def test_the_bundled_recording_is_a_few_seconds_of_speech() -> None:
    pcm = Prompts.load(Settings()).model_unavailable
    assert 3.0 < len(pcm) / 16000 < 10.0
    assert pcm == g711.ulaw_to_slin(BUNDLED.read_bytes())


def test_wav_sln_and_ulaw_files(tmp_path: Path) -> None:
    pcm = bytes(range(256)) * 10
    with wave.open(str(tmp_path / "p.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(pcm)
    (tmp_path / "p.sln").write_bytes(pcm)
    (tmp_path / "p.ulaw").write_bytes(g711.slin_to_ulaw(pcm))
    assert read_audio(tmp_path / "p.wav") == read_audio(tmp_path / "p.sln") == pcm
    assert read_audio(tmp_path / "p.ulaw") == g711.ulaw_to_slin(g711.slin_to_ulaw(pcm))
    settings = Settings(prompt_model_unavailable=str(tmp_path / "p.sln"))
    assert Prompts.load(settings).model_unavailable == pcm


def test_unusable_files_are_configuration_errors(tmp_path: Path) -> None:
    with wave.open(str(tmp_path / "cd.wav"), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(44100)
        wav.writeframes(bytes(400))
    (tmp_path / "empty.sln").write_bytes(b"")
    (tmp_path / "song.mp3").write_bytes(b"ID3")
    with pytest.raises(ConfigError, match="need 8 kHz 16-bit mono PCM, got 44100 Hz"):
        read_audio(tmp_path / "cd.wav")
    with pytest.raises(ConfigError, match="empty"):
        read_audio(tmp_path / "empty.sln")
    with pytest.raises(ConfigError, match="unknown audio file type"):
        read_audio(tmp_path / "song.mp3")
    with pytest.raises(ConfigError, match="cannot read"):
        read_audio(tmp_path / "missing.wav")
