"""Sniff mu-law mislabelled as slin: ``Dial(AudioSocket/host:port/uuid)`` without ``/c(slin)``.

On a G.711 leg, AudioSocket's channel driver sends the caller's mu-law bytes labelled kind 0x10
(slin, 8 kHz), 160 bytes per 20 ms frame; read as slin they are loud noise. ``SlinSniffer`` watches
the kind-0x10 payloads of one call, with their arrival times, and decides within about half a
second of caller audio whether they are genuine slin or mu-law. Pure code: no I/O, no clock (the
caller passes ``at``, seconds on any monotonic clock).

Theory of operation
-------------------
Two kinds of evidence:

1. Byte rate (decisive). Genuine 8 kHz slin is 16000 bytes/s whatever the ptime (320 B per 20 ms,
   160 B per 10 ms, 480 B per 30 ms); mu-law is 8000 bytes/s (160 B per 20 ms). Frames that arrive
   less than ``CLUSTER`` (1 ms) apart arrived together (one read; the burst after a stall) and form a
   cluster; the arrival of a cluster's last frame is an *anchor*: after a stall the last frame of
   the burst is about on time, its first ones are late. A *window* runs from one anchor to a later
   one, over clusters carrying at least ``WINDOW_BYTES`` (160 ms of slin, 320 ms of mu-law); its rate
   is its bytes over its time, leaving out the ``TRIM`` (2) intervals between anchors that took
   longest beyond what their bytes need as slin (a lost frame or a short hole inflates one interval).
   A window ends at each anchor, so windows overlap. The boundary between the formats is the
   geometric middle of their rates, 16000 / sqrt(2) = 11314 B/s. With each frame arriving within
   ``JITTER`` (10 ms) of its time, every window of mu-law measures at most 10700 B/s, holes or not
   (the kept time is at least the kept bytes / 8000 less 6 jitters), and every window of slin at
   least 12800 B/s when no frame is missing. Asterisk sends nothing while the caller is silent, so
   gaps of seconds occur: when more time passed before an anchor than twice its cluster's bytes
   could fill as mu-law (``GAP_FACTOR * bytes / 8000``) plus two jitters, audio is missing and a new
   run of anchors starts (after a stall the burst's bytes do fill its time: not a gap); no window
   spans two runs. Each window weighs as many frames as the cluster it ends with (at most
   ``MAX_WEIGHT``), so that jitter pairing frames does not halve the evidence; the rate says a
   format once windows weighing ``MIN_WINDOWS`` (10) have been measured and at least ``AGREEMENT``
   (80 %) of the weight of all the windows so far agrees. A loss, a hole or a stall beyond the
   jitter model skews only the few windows around it.
2. Content (a veto and a description). The payload bytes are scored as mu-law codes and as slin
   samples: for each frame, the best zero-mean Laplacian amplitude model (scale fitted by maximum
   likelihood over a grid, separately for each reading) gives each reading a likelihood; the score
   is the log-likelihood ratio, mu-law over slin, in nats per byte, over all frames so far. Mu-law
   bytes read as slin make a two-humped mess (a quiet sample's code is 0x7F.. or 0xFF.., so the
   "high byte" is near full scale or near zero), and slin bytes read as mu-law alternate between a
   uniform low byte and a high byte near 0x00 (mu-law's loudest code) or 0xFF: each reading of the
   wrong kind fits badly. Measured: mu-law of speech-like audio (the tone voice, band-limited noise
   at 30-8000 rms, vowels, random tones and dual tones, mu-law silence) scores +0.1 to +5 (a pure
   1 kHz tone, -0.06); genuine slin of the same, of digital silence, line noise and clipped audio
   scores -0.4 to -4.5, but a loud pure tone or full-scale white noise only -0.03 to -0.2. Slin may
   carry anything, so content never decides; a score at or below ``SLIN_SHAPED`` (-0.25) vetoes a
   mu-law verdict (a second guard, against slin that lost a quarter of its frames).

Decision rule, at each frame until decided (then the verdict never changes):

* ULAW when the rate says mu-law and the content is not slin-shaped;
* SLIN when the rate says slin (content is not consulted: mu-law never comes at 16000 B/s);
* SLIN when ``GIVE_UP_FRAMES`` frames (10 s of 20 ms frames) have come without either: the label
  is trusted;
* otherwise UNDECIDED.

Decision times with arrival jitter within 10 ms (worst case found by a targeted search), no loss
and no gap: mu-law with 20 ms frames at frame 27-28 (0.56 s), 30 ms frames at 22 (0.66 s), 10 ms
frames (80 B) at 43-46 (0.46 s); slin with 20 ms frames at 19-21, 10 ms at 27-31, 30 ms at 17. A
gap restarts the run (a window needs 160 ms of slin or 320 ms of mu-law within one run); losses and
stalls add a few frames.

Genuine slin reads as mu-law only if 80 % of its windows lose more than two frames' worth of time
each (holes too short to count as gaps, in about a quarter of its audio, for ten windows and more),
and its samples do not look like slin (natural audio does; white noise and loud pure tones
do not). Genuine slin with jitter up to 10 ms, any ptime, any content, silences and occasional
losses or stalls is never misread (property-tested).
"""

from __future__ import annotations

import enum
import math
import statistics
from bisect import bisect_right
from typing import Final

import numpy as np
from numpy.typing import NDArray

from mikrovoice.telephony import g711

SLIN_BYTES_PER_S: Final = 16000
ULAW_BYTES_PER_S: Final = 8000
#: Tolerated arrival jitter of each frame, either way, seconds.
JITTER: Final = 0.010
#: Bytes a window carries at least: 160 ms of slin, 320 ms of mu-law.
WINDOW_BYTES: Final = 2560
#: Windows needed before the rate says anything, counted by the frames of the cluster each ends
#: with (a window ending with a burst of three frames counts three), at most MAX_WEIGHT each.
MIN_WINDOWS: Final = 10
MAX_WEIGHT: Final = 5
AGREEMENT: Final = 0.8
#: Byte rate between the two formats (their geometric middle).
BOUNDARY_BYTES_PER_S: Final = SLIN_BYTES_PER_S / math.sqrt(2)
#: Content score (nats per byte, mu-law over slin) at or below which samples are slin-shaped.
SLIN_SHAPED: Final = -0.25
#: Content score at or above which samples are mu-law-shaped (for the log).
ULAW_SHAPED: Final = 0.1
GIVE_UP_FRAMES: Final = 500
#: The right G.711 law decodes a frame to a signal at least this many times quieter (mean |x|)
#: than the wrong one (measured: 3.5x for -20 dBFS noise, 4.9x for speech, 30x and more for quiet
#: lines); a frame near full scale decodes about as loud in both and does not vote.
LAW_RATIO: Final = 2.0
#: Frames that must vote for a law (and four times more than for the other) to decide it.
LAW_VOTES: Final = 5
#: Frames arriving less than this apart arrived together (one read, or a burst after a stall).
CLUSTER: Final = 0.001
#: Intervals left out of each window: the two that took longest beyond their bytes' slin time.
TRIM: Final = 2
#: An interval longer than GAP_FACTOR times its bytes' mu-law time, plus two jitters, is a gap.
GAP_FACTOR: Final = 2.0

_SLIN: Final = np.dtype("<i2")
# Laplacian scales tried by the content score: 2**-1 .. 2**15, a quarter octave apart.
_SCALES: Final = 2.0 ** (np.arange(-4, 61) / 4.0)


def _ulaw_log_probabilities() -> NDArray[np.float64]:
    """(scales, 128): log P(a code of magnitude index m), m = 0 quietest, for each Laplacian scale.

    The magnitude cells are the encoder's (g711), for non-negative samples: [0, 3], [4, 11], ...;
    the loudest is open-ended. Each cell's probability is split evenly between its two signs.
    """
    linear = np.arange(32768)
    codes = np.frombuffer(g711.slin_to_ulaw(linear.astype(_SLIN).tobytes()), np.uint8)
    index = 0xFF - codes.astype(np.int64)  # non-negative samples have codes 0x80..0xFF
    low = np.array([linear[index == m].min() for m in range(128)], dtype=np.float64)
    high = np.array([linear[index == m].max() for m in range(128)], dtype=np.float64)
    low_edge = np.where(low == 0, 0.0, low - 0.5)
    high_edge = high + 0.5
    high_edge[-1] = np.inf
    survive_low = np.exp(-np.divide.outer(low_edge, _SCALES))
    survive_high = np.exp(-np.divide.outer(high_edge, _SCALES))
    probability = (survive_low - survive_high).T / 2.0
    return np.log(np.maximum(probability, 1e-300))


def _magnitude_codes() -> NDArray[np.uint8]:
    codes = np.arange(256, dtype=np.uint8)
    return (0x7F - (codes & 0x7F)).astype(np.uint8)


_ULAW_LOG_P: Final = _ulaw_log_probabilities()
_MAGNITUDE: Final = _magnitude_codes()  # mu-law code -> magnitude index, 0 quietest
# Slin sample k under a Laplacian of scale s, integrated over [k - 0.5, k + 0.5]; the two extremes
# take the tails (a clipped sample), so loud clipped audio is not penalised.
_LOG_ZERO: Final = np.log(-np.expm1(-0.5 / _SCALES))
_LOG_SINH: Final = np.log(np.sinh(0.5 / _SCALES))
_LOG_TAIL: Final = math.log(0.5) - 32767.0 / _SCALES


def content_score(payload: bytes | bytearray | memoryview, law: str = "ulaw") -> tuple[float, int]:
    """(log-likelihood ratio in nats, bytes scored): G.711 over slin, for one frame's even part.

    ``law`` "alaw" scores the bytes as A-law codes: each is re-coded to the mu-law code of the
    same sample (the two laws' cells nearly coincide), the slin side is unchanged."""
    data = bytes(payload)
    data = data[: len(data) & ~1]
    if not data:
        return 0.0, 0
    code_bytes = data if law == "ulaw" else g711.slin_to_ulaw(g711.alaw_to_slin(data))
    codes = np.frombuffer(code_bytes, np.uint8)
    counts = np.bincount(_MAGNITUDE[codes], minlength=128).astype(np.float64)
    ulaw = float((_ULAW_LOG_P @ counts).max())
    samples = np.frombuffer(data, _SLIN).astype(np.int64)
    zero = int(np.count_nonzero(samples == 0))
    clipped = int(np.count_nonzero((samples == 32767) | (samples == -32768)))
    middle = samples.size - zero - clipped
    # Sum of |x| over the samples neither zero nor clipped (|-32768| is one more than 32767).
    total = float(np.abs(samples).sum()) - 32767.0 * clipped - float(np.count_nonzero(samples == -32768))
    slin = float((zero * _LOG_ZERO + middle * _LOG_SINH - total / _SCALES + clipped * _LOG_TAIL).max())
    return ulaw - slin, len(data)


class Verdict(enum.Enum):
    """What the caller's kind-0x10 payloads are.

    UNDECIDED: not enough evidence yet; the call keeps treating the payloads as the label says
    (slin) and goes on feeding the sniffer. SLIN: genuine slin at 8 kHz; the call uses the payloads
    as they are and stops feeding. ULAW: mu-law bytes under the slin label (the channel driver
    without ``/c(slin)`` on a G.711 leg); the call decodes every payload from then on with
    ``g711.ulaw_to_slin`` and logs an administrator hint, with ``reason``, to add ``/c(slin)`` to
    the ``Dial(AudioSocket/...)``. A verdict other than UNDECIDED never changes.
    """

    UNDECIDED = "undecided"
    SLIN = "slin"
    ULAW = "ulaw"
    #: A-law bytes under the slin label (an A-law leg: the PSTN's law in Colombia); decode with
    #: ``g711.alaw_to_slin``. Told from mu-law by which law gives the quieter signal: the wrong law
    #: turns speech and silence into loud noise (mean |x| 3.5 to 100 times higher).
    ALAW = "alaw"


class SlinSniffer:
    """Decide, from payload sizes, arrival times and content, whether "slin" is really mu-law."""

    def __init__(self) -> None:
        self.verdict = Verdict.UNDECIDED
        #: ULAW, but the law is not sure yet (see ``feed``): keep feeding.
        self.provisional = False
        #: A short explanation of the verdict, for the log ("" while undecided).
        self.reason = ""
        self._frames = 0
        self._sizes: list[int] = []
        self._last_at: float | None = None
        # Frames arriving less than CLUSTER apart form a cluster; the bytes of the open one.
        self._cluster_bytes = 0
        self._cluster_frames = 0
        # The current run (clusters with no gap between them): for each cluster, its arrival (that of
        # its last frame: an anchor) and the bytes of the clusters after the run's first.
        self._anchor_at: list[float] = []
        self._anchor_bytes: list[int] = []
        self._rates: list[float] = []  # every window's byte rate (untrimmed), in order
        # Windows weighed by the frames of their last cluster (at most MAX_WEIGHT): all, and mu-law's.
        self._weight = 0
        self._ulaw_weight = 0
        self._score = 0.0  # content: total log-likelihood ratio, nats
        self._score_alaw = 0.0  # the same, the bytes taken as A-law
        self._scored = 0  # content: bytes scored
        self._ulaw_votes = 0  # frames that decode quieter as mu-law
        self._alaw_votes = 0  # ... as A-law

    def feed(self, payload: bytes | bytearray | memoryview, at: float) -> Verdict:
        """One kind-0x10 payload that arrived at ``at`` seconds; returns the verdict so far.

        A verdict is final, but for one case: G.711 whose law the first second could not tell
        (loud audio decodes about as loud in both laws) is taken as mu-law *provisionally*; the
        caller keeps feeding while ``provisional``, and the verdict turns to ALAW if quieter audio
        shows it, or becomes final after ``GIVE_UP_FRAMES``."""
        if self.provisional:
            self._frames += 1
            self._weigh_laws(bytes(payload))
            law = self._law()
            if law is not None or self._frames >= GIVE_UP_FRAMES:
                self.provisional = False
                if law is Verdict.ALAW:
                    self.verdict = law
                    self.reason += "; A-law, as quieter audio showed"
            return self.verdict
        if self.verdict is not Verdict.UNDECIDED:
            return self.verdict
        size = len(payload)
        if not size:
            return self.verdict
        self._frames += 1
        self._sizes.append(size)
        score, scored = content_score(payload)
        self._score += score
        self._scored += scored
        # The same bytes as A-law, scored by the same model once re-coded as mu-law.
        self._score_alaw += content_score(payload, "alaw")[0]
        self._weigh_laws(bytes(payload))
        self._measure(size, at)
        self._decide()
        return self.verdict

    def _measure(self, size: int, at: float) -> None:
        last = self._last_at
        at = at if last is None else max(at, last)
        if last is not None and at - last >= CLUSTER:
            self._close_cluster(last)
        self._last_at = at
        self._cluster_bytes += size
        self._cluster_frames += 1

    def _close_cluster(self, at: float) -> None:
        """The frames that arrived together up to ``at`` are complete: a window may end here."""
        size, self._cluster_bytes = self._cluster_bytes, 0
        weight, self._cluster_frames = min(self._cluster_frames, MAX_WEIGHT), 0
        if not self._anchor_at or at - self._anchor_at[-1] > GAP_FACTOR * size / ULAW_BYTES_PER_S + 2 * JITTER:
            # The start, or a gap: more time passed than these bytes could fill even as mu-law, so
            # audio is missing (a silence or a loss); after a stall the burst's bytes fill its time.
            self._anchor_at, self._anchor_bytes = [at], [0]
            return
        self._anchor_at.append(at)
        self._anchor_bytes.append(self._anchor_bytes[-1] + size)
        carried = self._anchor_bytes[-1]
        # The latest earlier anchor after which the frames carry WINDOW_BYTES.
        first = bisect_right(self._anchor_bytes, carried - WINDOW_BYTES, hi=len(self._anchor_bytes) - 1) - 1
        if first < 0:
            return
        times = np.diff(np.asarray(self._anchor_at[first:]))
        sizes = np.diff(np.asarray(self._anchor_bytes[first:], dtype=np.float64))
        # Leave out the TRIM intervals that took longest beyond what their bytes need as slin.
        kept = np.argsort(times - sizes / SLIN_BYTES_PER_S, kind="stable")[: max(1, times.size - TRIM)]
        rate = float(sizes[kept].sum() / times[kept].sum())
        self._rates.append(float(sizes.sum() / times.sum()))  # for the log: untrimmed
        self._weight += weight
        self._ulaw_weight += weight if rate < BOUNDARY_BYTES_PER_S else 0

    def _decide(self) -> None:
        law = self._law()
        score = self._score_alaw if law is Verdict.ALAW else self._score  # the veto, in the law's terms
        content = score / self._scored if self._scored else 0.0
        enough = self._weight >= MIN_WINDOWS
        says_ulaw = enough and self._ulaw_weight >= AGREEMENT * self._weight
        if says_ulaw and content > SLIN_SHAPED:
            self.provisional = law is None  # loud audio: both laws decode it about as loud
            self._settle(law or Verdict.ULAW, f"{self._rate_text()} and {self._content_text(content, law)}")
        elif enough and self._weight - self._ulaw_weight >= AGREEMENT * self._weight:
            self._settle(Verdict.SLIN, f"{self._rate_text()}: slin at 8 kHz")
        elif self._frames >= GIVE_UP_FRAMES:
            why = (
                f"{self._rate_text()} but {self._content_text(content)}"
                if says_ulaw
                else f"no steady byte rate in {self._frames} frames"
            )
            self._settle(Verdict.SLIN, f"{why}: trusting the slin label")

    def _weigh_laws(self, codes: bytes) -> None:
        """A frame's vote: the law that decodes it to a signal LAW_RATIO times quieter (loud
        frames, which both laws decode about as loud, abstain)."""
        as_ulaw = float(np.abs(np.frombuffer(g711.ulaw_to_slin(codes), "<i2").astype(np.float64)).sum())
        as_alaw = float(np.abs(np.frombuffer(g711.alaw_to_slin(codes), "<i2").astype(np.float64)).sum())
        if as_ulaw * LAW_RATIO <= as_alaw:
            self._ulaw_votes += 1
        elif as_alaw * LAW_RATIO <= as_ulaw:
            self._alaw_votes += 1

    def _law(self) -> Verdict | None:
        """Which G.711 law the bytes are, once the frames' votes say it clearly."""
        if self._ulaw_votes >= LAW_VOTES and self._ulaw_votes >= 4 * self._alaw_votes:
            return Verdict.ULAW
        if self._alaw_votes >= LAW_VOTES and self._alaw_votes >= 4 * self._ulaw_votes:
            return Verdict.ALAW
        return None

    def _settle(self, verdict: Verdict, reason: str) -> None:
        self.verdict, self.reason = verdict, reason
        self._sizes, self._anchor_at, self._anchor_bytes, self._rates = [], [], [], []

    def _rate_text(self) -> str:
        size = statistics.median_low(self._sizes)
        if not self._rates:
            return f"{size}-byte frames"
        rate = statistics.median(self._rates)
        return f"{size}-byte frames every {1000 * size / rate:.0f} ms ({rate:.0f} bytes/s)"

    @staticmethod
    def _content_text(score: float, law: Verdict | None = Verdict.ULAW) -> str:
        if law is Verdict.ALAW:
            return "A-law-shaped samples"
        if law is None:
            return "G.711 samples too loud to tell the law yet (taken as μ-law)"
        if score >= ULAW_SHAPED:
            return "μ-law-shaped samples"
        if score <= SLIN_SHAPED:
            return "slin-shaped samples"
        return "samples that look like neither"
