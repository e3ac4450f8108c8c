"""Comfort audio: the generated "thinking" texture and looped files, level, seams, fades, settings."""

import math
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mikrovoice.call import comfort
from mikrovoice.call.comfort import ComfortAudio
from mikrovoice.config import ConfigError, Settings
from mikrovoice.telephony import g711

FRAME = comfort.FRAME_SAMPLES


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, "<i2").astype(np.float64)


def dbfs(x: np.ndarray) -> float:
    return 20 * math.log10(math.sqrt(float(np.mean(x * x))) / 32768)


def window_dbfs(x: np.ndarray, width: int = FRAME) -> np.ndarray:
    """The level of every ``width``-sample window of the loop, at every offset (wrapping)."""
    squares = np.concatenate((x, x[: width - 1])) ** 2
    sums = np.convolve(squares, np.ones(width), mode="valid")
    return 10 * np.log10(np.maximum(sums / width, 1e-12) / 32768**2)


def play(source: ComfortAudio, frames: int) -> np.ndarray:
    return np.concatenate([samples(source.next_frame()) for _ in range(frames)])


# --- levels -------------------------------------------------------------------------------------


def test_levels_and_the_dead_air_line() -> None:
    assert comfort.DEFAULT_LEVEL_DBFS == Settings().comfort_level_dbfs == -36.0
    assert comfort.DEAD_AIR_DBFS == comfort.dead_air_dbfs(-36.0) == -42.0
    assert comfort.dbfs_to_rms(-36.0) == pytest.approx(520.0, abs=1.0)
    assert comfort.rms_dbfs(bytes(320)) == -math.inf
    full_scale_sine = np.round(32767 * np.sin(2 * np.pi * 10 * np.arange(160) / 160)).astype("<i2").tobytes()
    assert comfort.rms_dbfs(full_scale_sine) == pytest.approx(-3.01, abs=0.01)


@pytest.mark.parametrize("level", [-50.0, -36.0, -30.0, -24.0, -20.0])
def test_thinking_is_at_the_level_with_bounded_peaks(level: float) -> None:
    loop = samples(ComfortAudio.thinking(level).loop)
    assert dbfs(loop) == pytest.approx(level, abs=0.1)  # the brief allows 1 dB
    peak_db = 20 * math.log10(float(np.max(np.abs(loop))) / 32768)
    assert peak_db <= level + comfort.CREST_DB + 0.1
    windows = window_dbfs(loop)
    assert windows.min() >= level - 5.0  # never a hole: every 20 ms at any offset is sound
    assert windows.max() <= level + 5.0  # and never a burst


@pytest.mark.parametrize("seed", range(4))
def test_every_seed_stays_above_the_dead_air_line(seed: int) -> None:
    loop = samples(ComfortAudio.thinking(seed=seed).loop)
    assert window_dbfs(loop).min() > comfort.DEAD_AIR_DBFS + 1.0


def test_the_texture_is_noise_in_the_phone_band_not_a_tone() -> None:
    loop = samples(ComfortAudio.thinking().loop)
    spectrum = np.abs(np.fft.rfft(loop)) ** 2
    freqs = np.fft.rfftfreq(loop.size, 1 / 8000)
    band = spectrum[(freqs >= 250) & (freqs <= 3000)].sum() / spectrum.sum()
    assert band > 0.85  # it sounds on a phone line (300-3400 Hz), not a rumble below it
    below_1100 = spectrum[freqs < 1100].sum() / spectrum.sum()
    assert 0.5 < below_1100 < 0.9  # warm, with some air above
    # No pitch: in every 20 ms frame the strongest frequency holds less than half the energy
    # (a busy tone or a vowel's harmonic would hold far more).
    frames = loop.reshape(-1, FRAME)
    power = np.abs(np.fft.rfft(frames, axis=1)[:, 1:]) ** 2
    purity = 2 * power.max(axis=1) / (FRAME * (frames**2).sum(axis=1))
    assert purity.max() < 0.5


def test_the_texture_swells_slowly() -> None:
    """Its loudness moves (it is not a flat hiss) but slowly: 0.5 s averages span a few dB."""
    loop = samples(ComfortAudio.thinking().loop)
    half_seconds = 10 * np.log10((loop.reshape(-1, 4000) ** 2).mean(axis=1))
    assert 2.0 < half_seconds.max() - half_seconds.min() < 8.0
    steps = np.abs(np.diff(half_seconds))
    assert steps.max() < 3.0  # no jumps from one half second to the next


# --- playing: determinism, seam, fades ----------------------------------------------------------


def test_deterministic_for_a_seed() -> None:
    a, b, c = ComfortAudio.thinking(seed=3), ComfortAudio.thinking(seed=3), ComfortAudio.thinking(seed=4)
    frames_a = [a.next_frame() for _ in range(50)]
    assert frames_a == [b.next_frame() for _ in range(50)]
    assert frames_a != [c.next_frame() for _ in range(50)]
    assert all(len(f) == 320 for f in frames_a)


def test_the_loop_has_no_seam() -> None:
    source = ComfortAudio.thinking()
    loop = samples(source.loop)
    assert source.loop_s == pytest.approx(comfort.LOOP_S)
    played = play(source, loop.size // FRAME + 50)  # once round and 1 s into the second time
    assert np.array_equal(played[loop.size + FRAME * 10 :], loop[FRAME * 10 : FRAME * 50])
    # The step from the last sample to the first is an ordinary step of the texture, not a click.
    steps = np.abs(np.diff(loop))
    assert abs(loop[0] - loop[-1]) <= np.percentile(steps, 99.9)
    # And the stretch across the seam has no more high-frequency energy than the texture has anywhere.
    across = np.concatenate((loop[-80:], loop[:80]))
    assert np.abs(np.diff(across)).max() <= steps.max()


def test_it_fades_in_at_first_and_on_restart() -> None:
    source = ComfortAudio.thinking()
    loop = samples(source.loop)
    fade = round(comfort.FADE_IN_S * comfort.RATE)
    head = play(source, 20)
    assert abs(head[0]) < 1.0 and dbfs(head[:FRAME]) < comfort.DEFAULT_LEVEL_DBFS - 15
    ramp = head[:fade] / np.where(loop[:fade] == 0, 1, loop[:fade])
    assert np.all(np.diff(ramp[np.abs(loop[:fade]) > 200]) >= -0.02)  # rising
    assert np.array_equal(head[fade:], loop[fade : 20 * FRAME])  # then the loop itself
    source.restart()  # it resumes where it was, fading in again
    again = play(source, 10)
    assert dbfs(again[:FRAME]) < comfort.DEFAULT_LEVEL_DBFS - 15
    assert np.array_equal(again[fade:], loop[20 * FRAME + fade : 30 * FRAME])


def test_fade_out_goes_to_nothing_and_the_next_start_fades_in() -> None:
    source = ComfortAudio.thinking()
    play(source, 30)
    tail = np.concatenate([samples(f) for f in source.fade_out()])
    assert tail.size == round(comfort.FADE_OUT_S * comfort.RATE)
    assert tail[-1] == 0 and dbfs(tail[-FRAME:]) < dbfs(tail[:FRAME]) - 10
    assert dbfs(samples(source.next_frame())) < comfort.DEFAULT_LEVEL_DBFS - 15


# --- files ----------------------------------------------------------------------------------------


def sine(seconds: float, hz: float = 440.0, amplitude: float = 8000.0, phase: float = 0.0) -> np.ndarray:
    n = np.arange(round(seconds * 8000))
    return np.round(amplitude * np.sin(2 * np.pi * hz * n / 8000 + phase))


def write(path: Path, x: np.ndarray) -> Path:
    pcm = x.astype("<i2").tobytes()
    if path.suffix == ".wav":
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(pcm)
    elif path.suffix == ".ulaw":
        path.write_bytes(g711.slin_to_ulaw(pcm))
    else:
        path.write_bytes(pcm)
    return path


@pytest.mark.parametrize("suffix", [".wav", ".sln", ".raw", ".ulaw"])
def test_a_file_is_scaled_to_the_level(tmp_path: Path, suffix: str) -> None:
    source = ComfortAudio.from_file(write(tmp_path / f"bed{suffix}", sine(1.0)), -30.0)
    assert dbfs(samples(source.loop)) == pytest.approx(-30.0, abs=0.5)
    assert dbfs(play(source, 100)[FRAME * 10 :]) == pytest.approx(-30.0, abs=0.5)


def test_a_file_plays_as_recorded_without_a_level(tmp_path: Path) -> None:
    source = ComfortAudio.from_file(write(tmp_path / "bed.sln", sine(1.0)), None)
    assert dbfs(samples(source.loop)) == pytest.approx(dbfs(sine(1.0)), abs=0.3)  # the cross-fade adds a little
    assert source.level_dbfs == pytest.approx(dbfs(samples(source.loop)), abs=0.01)


def test_a_file_is_never_clipped(tmp_path: Path) -> None:
    spiky = np.zeros(8000)
    spiky[::400] = 30000  # a click track: a high peak for its RMS
    source = ComfortAudio.from_file(write(tmp_path / "clicks.sln", spiky), -20.0)
    assert np.max(np.abs(samples(source.loop))) <= 32767
    assert dbfs(samples(source.loop)) < -20.0  # quieter than asked, rather than distorted


def test_a_file_loops_without_a_click(tmp_path: Path) -> None:
    x = sine(4010 / 8000, hz=200, amplitude=10000, phase=np.pi / 2)  # from +peak to near -peak
    normal_step = 2 * np.pi * 200 / 8000 * 10000
    assert abs(x[0] - x[-1]) > 3 * normal_step  # the raw seam is a click
    source = ComfortAudio.from_file(write(tmp_path / "tone.sln", x), None)
    loop = samples(source.loop)
    assert abs(loop[0] - loop[-1]) <= 1.1 * normal_step
    played = play(source, 2 * loop.size // FRAME + 2)[FRAME * 10 :]
    assert np.abs(np.diff(played)).max() <= 1.1 * normal_step  # also where it wraps, twice


def test_unusable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="comfort audio.*silent"):
        ComfortAudio.from_file(write(tmp_path / "quiet.sln", np.zeros(800)), -36.0)
    with pytest.raises(ConfigError, match="comfort audio.*unknown audio file type"):
        ComfortAudio.from_file(write(tmp_path / "bed.mp3", sine(0.1)), -36.0)
    with pytest.raises(ConfigError, match="comfort audio"):
        ComfortAudio.from_file(tmp_path / "missing.wav", -36.0)


# --- settings -------------------------------------------------------------------------------------


def test_from_settings(tmp_path: Path) -> None:
    assert ComfortAudio.from_settings(replace(Settings(), comfort_audio="off")) is None
    thinking = ComfortAudio.from_settings(replace(Settings(), comfort_level_dbfs=-30.0))
    assert thinking is not None and thinking.name == "thinking"
    assert dbfs(samples(thinking.loop)) == pytest.approx(-30.0, abs=0.1)
    path = write(tmp_path / "bed.wav", sine(0.5))
    from_file = ComfortAudio.from_settings(replace(Settings(), comfort_audio=str(path), comfort_level_dbfs=-40.0))
    assert from_file is not None and from_file.name == str(path)
    assert dbfs(samples(from_file.loop)) == pytest.approx(-40.0, abs=0.5)
