"""Recorded prompts: audio the service plays by itself, when there is no model to speak.

Seven prompts. ``model_unavailable``, played when the model cannot be reached (or never comes up),
before we hang up, so that the caller is never cut off in silence. ``connection_hold``, played
while a query runs and the model link is being re-established, when the caller would otherwise
wait longer than the progress cadence without a word. ``pin_request``, ``pin_wrong`` and
``auth_refused``: caller authorisation, which happens before any model session exists. ``busy``:
beyond ``[service] max_calls``. ``shutdown``: the service stops and the call outlived the grace. Their words are ``Phrases.model_unavailable``
and ``Phrases.connection_hold`` (and the phrases of the same names); the bundled recordings (``call/audio/*.ulaw``, 8 kHz G.711 mu-law)
were made with ``espeak-ng -v es-419 -s 175`` and ``sox ... -r 8000 -t ul`` (see docs/model-link.md),
and an operator replaces them with their own voice through ``[prompts]`` in the config.
Files: ``.wav`` (PCM 16-bit mono 8 kHz), ``.sln``/``.raw`` (slin: 16-bit little-endian 8 kHz), ``.ulaw``.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

from mikrovoice.config import ConfigError, Settings
from mikrovoice.telephony import g711

AUDIO = Path(__file__).with_name("audio")
BUNDLED = AUDIO / "model_unavailable.ulaw"
BUNDLED_HOLD = AUDIO / "connection_hold.ulaw"
#: The prompts played without a model: Settings.prompt_<name> or the bundled audio/<name>.ulaw.
SERVICE_PROMPTS = ("pin_request", "pin_wrong", "auth_refused", "busy", "shutdown")


@dataclass(frozen=True)
class Prompts:
    model_unavailable: bytes  # slin, 8 kHz
    connection_hold: bytes = b""  # slin, 8 kHz; empty: say nothing (comfort audio only)
    pin_request: bytes = b""
    pin_wrong: bytes = b""
    auth_refused: bytes = b""
    busy: bytes = b""
    shutdown: bytes = b""

    @classmethod
    def load(cls, settings: Settings) -> Prompts:
        service = {name: read_audio(Path(getattr(settings, f"prompt_{name}") or AUDIO / f"{name}.ulaw"))
                   for name in SERVICE_PROMPTS}
        return cls(read_audio(Path(settings.prompt_model_unavailable or BUNDLED)),
                   read_audio(Path(settings.prompt_connection_hold or BUNDLED_HOLD)), **service)


def read_audio(path: Path) -> bytes:
    """A prompt file as 8 kHz slin; ``ConfigError`` with the reason when it cannot be used."""
    try:
        if path.suffix.lower() == ".wav":
            with wave.open(str(path), "rb") as wav:
                shape = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
                if shape != (1, 2, 8000):
                    raise ConfigError(f"{path}: need 8 kHz 16-bit mono PCM, got {shape[2]} Hz, "
                                      f"{8 * shape[1]}-bit, {shape[0]} channel(s)")
                pcm = wav.readframes(wav.getnframes())
        elif path.suffix.lower() in (".sln", ".raw"):
            pcm = path.read_bytes()
        elif path.suffix.lower() in (".ulaw", ".pcmu", ".ul"):
            pcm = g711.ulaw_to_slin(path.read_bytes())
        else:
            raise ConfigError(f"{path}: unknown audio file type (use .wav, .sln or .ulaw)")
    except (OSError, wave.Error, EOFError) as exc:
        raise ConfigError(f"{path}: cannot read the prompt: {exc}") from exc
    pcm = pcm[: len(pcm) - len(pcm) % 2]
    if not pcm:
        raise ConfigError(f"{path}: the prompt is empty")
    return pcm
