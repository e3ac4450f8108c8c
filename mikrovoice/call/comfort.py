"""Comfort audio: a soft, clearly non-speech sound the playout sends while nobody speaks in a query.

A long router query (10-60 s) has spoken progress updates every ~6 s; between them the caller
must not hear dead air. ``ComfortAudio`` is an endless source of 20 ms slin frames (8 kHz signed
16-bit little-endian mono) that ``Playout`` sends instead of silence while the session has the
comfort "bed" on and no speech is queued (speech replaces it, never mixes with it).

- ``"thinking"`` (the default): generated here, deterministic for a seed. Two layers of shaped
  noise: a warm band (about 250-1100 Hz, tilted pink) and a quieter airy band (about 1100-3000 Hz),
  each with its own slow swell (periods of 2-5 s); no 20 ms of it is quieter than the level minus
  ``FLOOR_DB``. It sounds like a distant sea or wind in the trees: no pitch, no rhythm of
  syllables, nothing like a busy tone or a voice. The noise is
  shaped in the frequency domain over the whole loop and the swells have a whole number of cycles
  per loop, so the loop is periodic by construction: no seam, no click. Its RMS is the configured
  level; peaks are soft-limited to ``CREST_DB`` above it.
- a file (``.wav`` 16-bit mono 8 kHz, ``.sln``/``.raw`` slin, ``.ulaw``; read by
  ``prompts.read_audio``): DC removed, scaled so its RMS is the configured level (less only if a
  peak would clip), and its end cross-faded into its start so that the loop has no click.
- ``"off"``: ``from_settings`` returns None: no comfort audio, silence as before.

Every (re)start fades in over ``FADE_IN_S`` (``restart``); ``fade_out`` gives the frames of a
short fade when the session turns comfort off gently (a barge-in cuts it at once instead).

Levels are dBFS of RMS with 0 dBFS the RMS of a full-scale square wave (32768): a full-scale sine
is -3 dBFS, the simulator's ToneVoice speech about -18 dBFS, the default comfort level -36 dBFS.
``DEAD_AIR_DBFS`` is where the simulated caller draws the line between sound and dead air.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from mikrovoice.call.prompts import read_audio
from mikrovoice.config import ConfigError, Settings

RATE: Final = 8000
FRAME_SAMPLES: Final = 160  # 20 ms
FRAME_BYTES: Final = 2 * FRAME_SAMPLES
FULL_SCALE: Final = 32768.0
#: The configured level by default (Settings.comfort_level_dbfs), dBFS RMS.
DEFAULT_LEVEL_DBFS: Final[float] = Settings.comfort_level_dbfs
#: A frame quieter than the comfort level by more than this is dead air (see ``dead_air_dbfs``).
DEAD_AIR_MARGIN_DB: Final = 6.0
FADE_IN_S: Final = 0.15
FADE_OUT_S: Final = 0.06
LOOP_S: Final = 16.0  # the generated texture's loop: long enough that nobody notices it repeat
CREST_DB: Final = 13.0  # peaks of the generated texture stay within this much of its RMS
FLOOR_DB: Final = 4.0  # no 20 ms of the generated texture is quieter than its level minus this

# The texture's two layers (band edges in Hz, swell depth) and the airy layer's gain.
WARM_HZ: Final = (250.0, 1100.0)
AIRY_HZ: Final = (1100.0, 3000.0)
WARM_SWELL: Final = 0.25
AIRY_SWELL: Final = 0.4
AIRY_GAIN: Final = 0.6

_PCM: Final = np.dtype("<i2")


def dbfs_to_rms(dbfs: float) -> float:
    """The RMS (in 16-bit sample units) of a level in dBFS."""
    return FULL_SCALE * math.pow(10.0, dbfs / 20.0)


def rms_dbfs(pcm: bytes | bytearray | memoryview) -> float:
    """The RMS level of slin audio in dBFS; -inf for digital silence (or no samples)."""
    samples = np.frombuffer(pcm, _PCM, len(memoryview(pcm).cast("B")) // 2).astype(np.float64)
    if not samples.size:
        return -math.inf
    power = float(np.mean(samples * samples))
    return 10.0 * math.log10(power) - 20.0 * math.log10(FULL_SCALE) if power > 0 else -math.inf


def dead_air_dbfs(level_dbfs: float = DEFAULT_LEVEL_DBFS) -> float:
    """Below this RMS a 20 ms frame is dead air: ``DEAD_AIR_MARGIN_DB`` under the comfort level.

    6 dB is the margin between "the comfort texture is playing" and "nothing is": the texture's
    quietest frames (the trough of a swell, a quiet stretch of noise) stay within 5 dB of its
    level, while line noise and idle-channel hiss on a phone line are -50 dBFS or lower."""
    return level_dbfs - DEAD_AIR_MARGIN_DB


DEAD_AIR_DBFS: Final = dead_air_dbfs()


class ComfortAudio:
    """An endless loop of comfort audio, handed out 20 ms at a time, with fades; not thread-safe."""

    def __init__(self, loop: bytes, *, name: str, level_dbfs: float) -> None:
        if len(loop) < 2:
            raise ValueError("comfort audio needs at least one sample")
        self._loop = np.frombuffer(loop, _PCM, len(loop) // 2)
        self._bytes = self._loop.tobytes()
        self.name = name
        self.level_dbfs = level_dbfs  # the intended RMS level (a file may be quieter: it is never clipped)
        self._position = 0  # next sample of the loop
        self._fade_in = np.sin(np.linspace(0.0, math.pi / 2, round(FADE_IN_S * RATE), endpoint=False)) ** 2
        self._fade_at: int | None = 0  # samples into the fade-in, or None once it is over
        self._fade_out = np.cos(np.linspace(0.0, math.pi / 2, round(FADE_OUT_S * RATE))) ** 2

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_settings(cls, settings: Settings) -> ComfortAudio | None:
        """The comfort audio ``settings`` ask for; None when it is "off". ``ConfigError`` for a bad file."""
        if settings.comfort_audio == "off":
            return None
        if settings.comfort_audio == "thinking":
            return cls.thinking(settings.comfort_level_dbfs)
        return cls.from_file(Path(settings.comfort_audio), settings.comfort_level_dbfs)

    @classmethod
    def thinking(cls, level_dbfs: float = DEFAULT_LEVEL_DBFS, seed: int = 0) -> ComfortAudio:
        """The generated "thinking" texture at ``level_dbfs`` (RMS); the same audio for the same seed."""
        return cls(_thinking_loop(float(level_dbfs), seed), name="thinking", level_dbfs=level_dbfs)

    @classmethod
    def from_file(cls, path: Path, level_dbfs: float | None = DEFAULT_LEVEL_DBFS) -> ComfortAudio:
        """A file looped seamlessly; scaled to ``level_dbfs`` (None: as recorded). ``ConfigError`` if unusable."""
        try:
            pcm = read_audio(Path(path))
        except ConfigError as exc:
            raise ConfigError(f"comfort audio: {exc}") from exc
        samples = np.frombuffer(pcm, _PCM).astype(np.float64)
        samples -= samples.mean()
        if level_dbfs is not None:
            rms = math.sqrt(float(np.mean(samples * samples)))
            if rms < 1.0:
                raise ConfigError(f"comfort audio: {path} is silent")
            gain = dbfs_to_rms(level_dbfs) / rms
            peak = float(np.max(np.abs(samples)))
            samples *= min(gain, 32767.0 / peak)
        loop = _seamless(samples)
        level = level_dbfs if level_dbfs is not None else _dbfs(loop)
        return cls(_to_pcm(loop), name=str(path), level_dbfs=level)

    # ------------------------------------------------------------------ playing

    @property
    def loop_s(self) -> float:
        return self._loop.size / RATE

    @property
    def loop(self) -> bytes:
        """The whole loop, without fades."""
        return self._bytes

    def restart(self) -> None:
        """The next frames fade in (from where the loop was): call when comfort (re)starts."""
        self._fade_at = 0

    def next_frame(self) -> bytes:
        """The next 20 ms (320 bytes of slin), fading in after ``restart`` (and at first)."""
        start, end = self._position, self._position + FRAME_SAMPLES
        size = self._loop.size
        self._position = end % size
        if self._fade_at is None and end <= size:
            return self._bytes[2 * start : 2 * end]  # the common case: a slice of the loop
        frame = self._take(start)
        if self._fade_at is not None:
            ramp = self._fade_in[self._fade_at : self._fade_at + FRAME_SAMPLES]
            frame[: ramp.size] *= ramp
            self._fade_at += FRAME_SAMPLES
            if self._fade_at >= self._fade_in.size:
                self._fade_at = None
        return _to_pcm(frame)

    def fade_out(self) -> list[bytes]:
        """The next ``FADE_OUT_S`` of the loop, fading to nothing, as frames: a gentle stop."""
        frames = []
        fade_at = 0
        while fade_at < self._fade_out.size:
            frame = np.frombuffer(self.next_frame(), _PCM).astype(np.float64)
            ramp = self._fade_out[fade_at : fade_at + FRAME_SAMPLES]
            frame[: ramp.size] *= ramp
            frame[ramp.size :] = 0.0
            frames.append(_to_pcm(frame))
            fade_at += FRAME_SAMPLES
        self._fade_at = 0  # whatever comes next starts with a fade-in
        return frames

    def _take(self, start: int) -> NDArray[np.float64]:
        indices = np.arange(start, start + FRAME_SAMPLES) % self._loop.size
        return self._loop[indices].astype(np.float64)


# ---------------------------------------------------------------------- the generated texture


@functools.lru_cache(maxsize=8)
def _thinking_loop(level_dbfs: float, seed: int) -> bytes:
    """LOOP_S of the "thinking" texture as slin, periodic: its last sample leads into its first."""
    size = round(LOOP_S * RATE)
    rng = np.random.default_rng(seed)
    t = np.arange(size) / size  # one loop = 1.0
    freqs = np.fft.rfftfreq(size, 1.0 / RATE).astype(np.float64)
    warm = _shaped_noise(rng, size, freqs, low_hz=WARM_HZ[0], high_hz=WARM_HZ[1])
    airy = _shaped_noise(rng, size, freqs, low_hz=AIRY_HZ[0], high_hz=AIRY_HZ[1])
    phases = rng.uniform(0.0, 2 * math.pi, 4)
    # Swells: whole numbers of cycles per loop (so the loop stays seamless), periods of 2-5 s.
    warm_swell = 1.0 + WARM_SWELL * (0.7 * np.sin(2 * math.pi * 4 * t + phases[0]) + 0.3 * np.sin(2 * math.pi * 7 * t + phases[1]))
    airy_swell = 1.0 + AIRY_SWELL * (0.7 * np.sin(2 * math.pi * 5 * t + phases[2]) + 0.3 * np.sin(2 * math.pi * 3 * t + phases[3]))
    texture = warm * warm_swell + AIRY_GAIN * airy * airy_swell
    texture /= _rms(texture)
    texture = _lift_troughs(texture, 10.0 ** (-FLOOR_DB / 20.0))
    # Soft-limit the rare noise peaks, then set the level exactly.
    knee = 10.0 ** (CREST_DB / 20.0) * 0.97
    texture = knee * np.tanh(texture / knee)
    texture *= dbfs_to_rms(level_dbfs) / _rms(texture)
    return _to_pcm(texture)


def _lift_troughs(samples: NDArray[np.float64], floor: float) -> NDArray[np.float64]:
    """``samples`` with every 20 ms window's RMS lifted to at least ``floor`` (a smooth, circular gain)."""
    out = samples
    for _ in range(3):
        env = np.sqrt(_circular_mean(out * out, FRAME_SAMPLES))
        gain = _circular_mean(np.maximum(1.0, 1.1 * floor / np.maximum(env, 1e-9)), 2 * FRAME_SAMPLES)
        out = out * gain
    return out


def _circular_mean(values: NDArray[np.float64], width: int) -> NDArray[np.float64]:
    """The centred moving average of ``values`` over ``width`` samples, wrapping around the loop."""
    padded = np.concatenate((values[-width:], values, values[:width]))
    sums = np.cumsum(padded)
    half = width // 2
    start = np.arange(values.size) + width - half
    return (sums[start + width - 1] - sums[start - 1]) / width


def _shaped_noise(
    rng: np.random.Generator, size: int, freqs: NDArray[np.float64], *, low_hz: float, high_hz: float
) -> NDArray[np.float64]:
    """Periodic noise of unit RMS, pinkish, band-limited by gentle (2nd-order) slopes at low and high."""
    spectrum = np.fft.rfft(rng.standard_normal(size))
    f = np.maximum(freqs, 1.0)
    shape = (f / low_hz) ** 2 / np.sqrt(1.0 + (f / low_hz) ** 4)  # high-pass
    shape /= np.sqrt(1.0 + (f / high_hz) ** 4)  # low-pass
    shape /= np.sqrt(f / low_hz)  # pink tilt: -3 dB per octave, warmer
    shape[0] = 0.0
    noise = np.fft.irfft(spectrum * shape, size)
    return noise / _rms(noise)


# ---------------------------------------------------------------------- helpers


def _seamless(samples: NDArray[np.float64]) -> NDArray[np.float64]:
    """A loop of ``samples`` whose end flows into its start: the last 50 ms cross-fade into the first."""
    overlap = min(round(0.05 * RATE), samples.size // 4)
    if overlap < 2:
        return samples
    body = samples[: samples.size - overlap].copy()
    ramp = np.sin(np.linspace(0.0, math.pi / 2, overlap + 2)[1:-1])  # equal power, strictly inside (0, 1)
    body[:overlap] = samples[:overlap] * ramp + samples[samples.size - overlap :] * ramp[::-1]
    return body


def _rms(samples: NDArray[np.float64]) -> float:
    return math.sqrt(float(np.mean(samples * samples)))


def _dbfs(samples: NDArray[np.float64]) -> float:
    rms = _rms(samples)
    return 20.0 * math.log10(rms / FULL_SCALE) if rms > 0 else -math.inf


def _to_pcm(samples: NDArray[np.float64]) -> bytes:
    return np.clip(np.rint(samples), -32768, 32767).astype(_PCM).tobytes()
