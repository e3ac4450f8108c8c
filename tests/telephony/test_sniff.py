"""The slin sniffer: mu-law under the slin label is found within a second; genuine slin never is."""

import math
import re
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from mikrovoice.sim.voice import speak
from mikrovoice.telephony import g711
from mikrovoice.telephony.sniff import GIVE_UP_FRAMES, SLIN_SHAPED, SlinSniffer, Verdict, content_score

RATE = 8000
_rng = np.random.default_rng(2026)


def pcm(samples: NDArray[np.float64]) -> bytes:
    return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()


def band_noise(seconds: float, rms: float, low: float = 300.0, high: float = 3400.0) -> bytes:
    n = int(RATE * seconds)
    spectrum = np.fft.rfft(_rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[(freqs < low) | (freqs > high)] = 0
    noise = np.fft.irfft(spectrum, n)
    return pcm(noise / noise.std() * rms)


def vowel(seconds: float, rms: float, f0: float = 120.0) -> bytes:
    """Harmonics of f0 shaped by three formants (700, 1200, 2600 Hz): an 'a'-like vowel."""
    t = np.arange(int(RATE * seconds)) / RATE
    out = np.zeros_like(t)
    for k in range(1, int(3400 / f0)):
        f = k * f0
        gain = sum(math.exp(-(((f - formant) / width) ** 2)) for formant, width in ((700, 130), (1200, 150), (2600, 200)))
        out += (gain + 0.05) * np.sin(2 * np.pi * f * t + _rng.uniform(0, 2 * np.pi))
    return pcm(out / out.std() * rms)


def tone(freq: float, seconds: float, amplitude: float) -> bytes:
    return pcm(amplitude * np.sin(2 * np.pi * freq * np.arange(int(RATE * seconds)) / RATE))


def repeat_to(audio: bytes, size: int) -> bytes:
    return (audio * (size // len(audio) + 1))[:size]


SECONDS = 4.0
#: Speech-like audio at 8 kHz, as slin.
SPEECH_LIKE = {
    "tone voice": repeat_to(speak("hola router 26.1, interfaz ether1 caida"), 2 * int(RATE * SECONDS)),
    "band-limited noise": band_noise(SECONDS, 3000),
    "quiet band-limited noise": band_noise(SECONDS, 200),
    "vowel": vowel(SECONDS, 3000),
    "loud vowel": vowel(SECONDS, 12000),
}
#: Everything a genuine slin caller may send.
SLIN_CONTENT = {
    **SPEECH_LIKE,
    "1 kHz tone": tone(1000, SECONDS, 8000),
    "3.3 kHz tone": tone(3300, SECONDS, 8000),
    "digital silence": bytes(2 * int(RATE * SECONDS)),
    "line noise": pcm(_rng.normal(0, 30, int(RATE * SECONDS))),
    "loud clipped vowel": vowel(SECONDS, 60000),
    "clipped square wave": tone(440, SECONDS, 200000),
    "white noise": _rng.integers(0, 256, 2 * int(RATE * SECONDS), dtype=np.uint8).tobytes(),
    # The worst case for the content score: mu-law bytes, but arriving at slin's byte rate.
    "mu-law bytes at 16000 B/s": g711.slin_to_ulaw(band_noise(2 * SECONDS, 3000)),
}


def frames(audio: bytes, size: int, count: int) -> list[bytes]:
    audio = repeat_to(audio, size * count)
    return [audio[i * size : (i + 1) * size] for i in range(count)]


def arrivals(count: int, ptime: float, jitter: Callable[[int], float]) -> list[float]:
    """Send times every ptime, each delayed by jitter(k); TCP keeps them in order."""
    out: list[float] = []
    for k in range(count):
        at = 100.0 + k * ptime + jitter(k)
        out.append(max(at, out[-1]) if out else at)
    return out


def verdicts(payloads: Sequence[bytes], times: Sequence[float]) -> tuple[list[Verdict], SlinSniffer]:
    sniffer = SlinSniffer()
    return [sniffer.feed(p, at) for p, at in zip(payloads, times, strict=True)], sniffer


def first(verdict: Verdict, seen: list[Verdict]) -> int:
    """The 1-based frame at which ``verdict`` was first returned; the verdict never changes after."""
    index = seen.index(verdict)
    assert set(seen[:index]) <= {Verdict.UNDECIDED} and set(seen[index:]) == {verdict}
    return index + 1


def uniform_jitter(seed: int) -> Callable[[int], float]:
    rng = np.random.default_rng(seed)
    return lambda _k: float(rng.uniform(-0.010, 0.010))


# --- mu-law under the slin label -------------------------------------------------------------


@pytest.mark.parametrize("name", SPEECH_LIKE)
@pytest.mark.parametrize("seed", range(3))
def test_mu_law_of_speech_like_audio_is_found_within_50_frames(name: str, seed: int) -> None:
    payloads = frames(g711.slin_to_ulaw(SPEECH_LIKE[name]), 160, 80)
    seen, sniffer = verdicts(payloads, arrivals(80, 0.020, uniform_jitter(seed)))
    assert first(Verdict.ULAW, seen) <= 50
    assert re.fullmatch(r"160-byte frames every 20 ms \((7[5-9]\d\d|8[0-5]\d\d) bytes/s\) and "
                        r"(μ-law-shaped samples|G\.711 samples too loud to tell the law yet \(taken as μ-law\))",
                        sniffer.reason)
    # Loud audio (-9 dBFS) decodes about as loud in both laws: mu-law is then provisional, and it
    # stays mu-law (a mu-law line never turns A-law).
    assert sniffer.provisional == (name == "loud vowel") or not sniffer.provisional
    assert seen[-1] is Verdict.ULAW


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", [n for n in SPEECH_LIKE if n != "loud vowel"])
def test_a_law_of_speech_like_audio_is_found_within_50_frames(name: str, seed: int) -> None:
    # An A-law leg (Colombia's PSTN law) with Dial(AudioSocket/...) and no c(slin).
    payloads = frames(g711.slin_to_alaw(SPEECH_LIKE[name]), 160, 80)
    seen, sniffer = verdicts(payloads, arrivals(80, 0.020, uniform_jitter(seed)))
    assert first(Verdict.ALAW, seen) <= 50 and Verdict.ULAW not in seen
    assert sniffer.reason.endswith("and A-law-shaped samples") and not sniffer.provisional


def test_loud_a_law_is_taken_as_mu_law_until_quieter_audio_shows_the_law() -> None:
    loud = g711.slin_to_alaw(SPEECH_LIKE["loud vowel"])
    quiet = g711.slin_to_alaw(SPEECH_LIKE["vowel"])
    payloads = frames(loud, 160, 60) + frames(quiet, 160, 60)
    seen, sniffer = verdicts(payloads, arrivals(120, 0.020, uniform_jitter(0)))
    ulaw_at, alaw_at = seen.index(Verdict.ULAW), seen.index(Verdict.ALAW)
    assert ulaw_at < 50 and 60 <= alaw_at < 80 and seen[alaw_at:] == [Verdict.ALAW] * (len(seen) - alaw_at)
    assert set(seen[:ulaw_at]) == {Verdict.UNDECIDED} and set(seen[ulaw_at:alaw_at]) == {Verdict.ULAW}
    assert not sniffer.provisional
    assert sniffer.reason.endswith("; A-law, as quieter audio showed")


@pytest.mark.parametrize("silence", [b"\xff" * 160, b"\x7f" * 160, b"\xff\x7f" * 80, b"\xfe\xff\x7f\x7e" * 40])
def test_mu_law_silence_is_found_by_its_rate_alone(silence: bytes) -> None:
    seen, sniffer = verdicts([silence] * 60, arrivals(60, 0.020, uniform_jitter(1)))
    assert first(Verdict.ULAW, seen) <= 50
    assert sniffer.reason.startswith("160-byte frames every 20 ms")


@pytest.mark.parametrize(("ptime", "within"), [(0.010, 70), (0.030, 30)])
def test_mu_law_at_other_ptimes(ptime: float, within: int) -> None:
    size = int(8000 * ptime)
    payloads = frames(g711.slin_to_ulaw(SPEECH_LIKE["vowel"]), size, 100)
    seen, sniffer = verdicts(payloads, arrivals(100, ptime, uniform_jitter(4)))
    assert first(Verdict.ULAW, seen) <= within
    assert sniffer.reason.startswith(f"{size}-byte frames every {ptime * 1000:.0f} ms")


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(SPEECH_LIKE)),
    st.lists(st.floats(min_value=-0.010, max_value=0.010), min_size=50, max_size=50),
)
def test_mu_law_is_found_within_50_frames_whatever_the_jitter(name: str, jitter: list[float]) -> None:
    payloads = frames(g711.slin_to_ulaw(SPEECH_LIKE[name]), 160, 50)
    seen, _ = verdicts(payloads, arrivals(50, 0.020, jitter.__getitem__))
    assert seen[-1] is Verdict.ULAW


def test_mu_law_in_talk_spurts_with_long_silences_between() -> None:
    """Asterisk sends nothing while the caller is silent: gaps of seconds must not count."""
    payloads = frames(g711.slin_to_ulaw(SPEECH_LIKE["tone voice"]), 160, 60)
    times, at = [], 100.0
    for k in range(60):
        at += 0.020 + (2.5 if k and k % 25 == 0 else 0.0)
        times.append(at)
    seen, _ = verdicts(payloads, times)
    assert first(Verdict.ULAW, seen) <= 50


def test_mu_law_read_in_bursts() -> None:
    """A server that reads five frames at a time every 100 ms still measures 8000 bytes/s."""
    payloads = frames(g711.slin_to_ulaw(SPEECH_LIKE["vowel"]), 160, 80)
    seen, _ = verdicts(payloads, [100.0 + 0.1 * (k // 5 + 1) for k in range(80)])
    assert first(Verdict.ULAW, seen) <= 50


def test_mu_law_after_a_stall_and_its_burst() -> None:
    payloads = frames(g711.slin_to_ulaw(SPEECH_LIKE["band-limited noise"]), 160, 80)
    times = arrivals(80, 0.020, lambda k: 0.25 if k == 5 else 0.0)  # frames 5..17 arrive together
    seen, _ = verdicts(payloads, times)
    assert first(Verdict.ULAW, seen) <= 50


# --- genuine slin ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SLIN_CONTENT)
@pytest.mark.parametrize(("ptime", "within"), [(0.010, 60), (0.020, 40), (0.030, 25)])
def test_genuine_slin_of_any_content_is_slin(name: str, ptime: float, within: int) -> None:
    size = int(16000 * ptime)
    payloads = frames(SLIN_CONTENT[name], size, 150)
    seen, sniffer = verdicts(payloads, arrivals(150, ptime, uniform_jitter(len(name))))
    assert first(Verdict.SLIN, seen) <= within
    assert re.fullmatch(rf"{size}-byte frames every \d+ ms \(\d+ bytes/s\): slin at 8 kHz", sniffer.reason)


def test_the_reason_for_slin_names_its_rate() -> None:
    seen, sniffer = verdicts(frames(SLIN_CONTENT["vowel"], 320, 30), [100.0 + 0.02 * k for k in range(30)])
    assert Verdict.SLIN in seen
    assert sniffer.reason == "320-byte frames every 20 ms (16000 bytes/s): slin at 8 kHz"


@st.composite
def slin_streams(draw: st.DrawFn) -> tuple[list[bytes], list[float]]:
    """Genuine slin as Asterisk sends it: any ptime, any content, jitter within 10 ms each way,
    silences (no frames) of 0.2 s and more, at most one lost frame in any eight, stalls of up to
    200 ms (the frames held up arrive together), all placed by Hypothesis."""
    ptime = draw(st.sampled_from([0.010, 0.020, 0.030]))
    size = int(16000 * ptime)
    count = draw(st.integers(min_value=20, max_value=160))
    content = draw(st.sampled_from([*sorted(SLIN_CONTENT), "any bytes"]))
    if content == "any bytes":
        pattern = draw(st.binary(min_size=size, max_size=4 * size))
        payloads = frames(pattern, size, count)
    else:
        payloads = frames(SLIN_CONTENT[content], size, count)
    jitter = draw(st.lists(st.floats(min_value=-0.010, max_value=0.010), min_size=count, max_size=count))
    silences = draw(st.dictionaries(st.integers(1, count - 1), st.floats(min_value=0.2, max_value=5.0), max_size=4))
    stalls = draw(st.dictionaries(st.integers(0, count - 1), st.floats(min_value=0.0, max_value=0.2), max_size=3))
    lost: set[int] = set()
    for k in sorted(draw(st.sets(st.integers(0, count - 1), max_size=count // 8))):
        if all(abs(k - other) >= 8 for other in lost):
            lost.add(k)
    sent: list[bytes] = []
    times: list[float] = []
    at = 100.0
    for k in range(count):
        at += ptime + silences.get(k, 0.0)
        if k in lost:
            continue
        arrival = at + jitter[k] + stalls.get(k, 0.0)
        times.append(max(arrival, times[-1]) if times else arrival)
        sent.append(payloads[k])
    return sent, times


@settings(max_examples=400, deadline=None)
@given(slin_streams())
def test_genuine_slin_is_never_taken_for_mu_law(stream: tuple[list[bytes], list[float]]) -> None:
    seen, _ = verdicts(*stream)
    assert Verdict.ULAW not in seen and Verdict.ALAW not in seen
    if Verdict.SLIN in seen:
        first(Verdict.SLIN, seen)  # and it never changes


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([(0.010, 60), (0.020, 40), (0.030, 25)]),
    st.sampled_from(sorted(SLIN_CONTENT)),
    st.lists(st.floats(min_value=-0.010, max_value=0.010), min_size=60, max_size=60),
)
def test_genuine_slin_is_slin_soon_whatever_the_jitter(
    ptime_within: tuple[float, int], name: str, jitter: list[float]
) -> None:
    ptime, within = ptime_within
    seen, _ = verdicts(frames(SLIN_CONTENT[name], int(16000 * ptime), within), arrivals(within, ptime, jitter.__getitem__))
    assert seen[-1] is Verdict.SLIN


def test_slin_that_lost_every_other_frame_is_not_taken_for_mu_law() -> None:
    """160-byte slin frames every 20 ms look like mu-law by rate: the slin shape of the samples vetoes."""
    payloads = frames(SPEECH_LIKE["vowel"], 160, 2 * GIVE_UP_FRAMES)[::2]
    seen, sniffer = verdicts(payloads, arrivals(len(payloads), 0.020, uniform_jitter(9)))
    assert first(Verdict.SLIN, seen) == GIVE_UP_FRAMES
    assert re.fullmatch(
        r"160-byte frames every 20 ms \(\d+ bytes/s\) but slin-shaped samples: trusting the slin label",
        sniffer.reason,
    )


def test_without_timing_the_label_is_trusted() -> None:
    payloads = frames(g711.slin_to_ulaw(SPEECH_LIKE["vowel"]), 160, GIVE_UP_FRAMES)
    seen, sniffer = verdicts(payloads, [100.0] * GIVE_UP_FRAMES)  # all in one burst: no rate
    assert first(Verdict.SLIN, seen) == GIVE_UP_FRAMES
    assert sniffer.reason == f"no steady byte rate in {GIVE_UP_FRAMES} frames: trusting the slin label"


def test_a_verdict_never_changes() -> None:
    sniffer = SlinSniffer()
    slin = frames(SLIN_CONTENT["vowel"], 320, 40)
    for k, payload in enumerate(slin):
        sniffer.feed(payload, 100.0 + 0.02 * k)
    assert sniffer.verdict is Verdict.SLIN
    reason = sniffer.reason
    for k, payload in enumerate(frames(g711.slin_to_ulaw(SPEECH_LIKE["vowel"]), 160, 200)):
        assert sniffer.feed(payload, 101.0 + 0.02 * k) is Verdict.SLIN
    assert sniffer.reason == reason


def test_empty_payloads_and_clocks_going_backwards_are_harmless() -> None:
    sniffer = SlinSniffer()
    assert sniffer.feed(b"", 100.0) is Verdict.UNDECIDED
    assert sniffer.reason == ""
    payloads = frames(g711.slin_to_ulaw(SPEECH_LIKE["vowel"]), 160, 60)
    times = arrivals(60, 0.020, lambda k: -0.5 if k == 30 else 0.0)  # one timestamp from the past
    assert first(Verdict.ULAW, [sniffer.feed(p, at) for p, at in zip(payloads, times, strict=True)]) <= 50


# --- the content score -----------------------------------------------------------------------


def score(audio: bytes, size: int) -> float:
    total = scored = 0.0
    for payload in frames(audio, size, len(audio) // size):
        llr, count = content_score(payload)
        total, scored = total + llr, scored + count
    return total / scored


@pytest.mark.parametrize("name", SPEECH_LIKE)
def test_mu_law_bytes_score_mu_law_shaped(name: str) -> None:
    assert score(g711.slin_to_ulaw(SPEECH_LIKE[name]), 160) > 0.1


@pytest.mark.parametrize(
    "name", [*SPEECH_LIKE, "digital silence", "line noise", "loud clipped vowel", "clipped square wave"]
)
def test_natural_slin_scores_slin_shaped(name: str) -> None:
    assert score(SLIN_CONTENT[name], 320) <= SLIN_SHAPED
