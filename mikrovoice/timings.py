"""Three timings of the audio path, kept per process at the cost of one bisect per observation.

They are observed tens of thousands of times a second at full load (one per frame sent), so they
are not ``prometheus_client`` histograms (a lock and several attribute lookups each): each is a
plain list of bucket counts, a sum and a maximum, read by the metrics collector
(``ops.metrics``) when ``/metrics`` is scraped, and by the benchmarks.

- ``FRAME_LATENESS``: each 20 ms frame to Asterisk, the moment it was written minus its deadline
  on the playout clock (``telephony.clock``). What a caller hears as jitter.
- ``ADDED_IN``: caller audio, from the clock tick that read the frame completing a model chunk to
  that ``input_audio_buffer.append`` written to the model's socket: the service's own delay on the
  way in (the wait for the tick, and for the chunk to fill, are the design's and not counted).
- ``ADDED_OUT``: model audio, from an ``output_audio.delta`` read off the model's WebSocket to its
  first frame written to Asterisk, less the designed wait for the tick that plays it (and for the
  audio queued before it): the decoding and enqueuing, plus the frame's lateness within its tick.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

#: Upper bounds of the buckets, in seconds (the last bucket is +Inf).
BOUNDS: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25,
                             1.0)


@dataclass
class Timing:
    name: str
    help: str
    labels: tuple[tuple[str, str], ...] = ()
    counts: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS) + 1))
    sum: float = 0.0
    max: float = 0.0

    def observe(self, seconds: float) -> None:
        if seconds < 0.0:
            seconds = 0.0
        self.counts[bisect_left(BOUNDS, seconds)] += 1
        self.sum += seconds
        if seconds > self.max:
            self.max = seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """The q-quantile, interpolated linearly within its bucket (None: nothing observed).
        Within the last bucket (past 1 s) the maximum stands in for its upper bound."""
        total = self.count
        if not total:
            return None
        rank = q * total
        below = 0
        for i, n in enumerate(self.counts):
            if n and below + n >= rank:
                low = BOUNDS[i - 1] if i else 0.0
                high = BOUNDS[i] if i < len(BOUNDS) else max(self.max, low)
                return min(low + (high - low) * (rank - below) / n, self.max)
            below += n
        return self.max

    def reset(self) -> None:
        self.counts = [0] * (len(BOUNDS) + 1)
        self.sum = self.max = 0.0


FRAME_LATENESS = Timing("mikrovoice_frame_lateness_seconds",
                        "Each 20 ms frame to Asterisk: written minus its deadline on the playout clock.")
_ADDED_HELP = ("The service's own delay on the audio path, the designed waits excluded. in: the tick that read "
               "the caller's frame completing a model chunk -> its input_audio_buffer.append written; out: an "
               "output_audio.delta read -> its first frame written to Asterisk.")
ADDED_IN = Timing("mikrovoice_added_latency_seconds", _ADDED_HELP, (("direction", "in"),))
ADDED_OUT = Timing("mikrovoice_added_latency_seconds", _ADDED_HELP, (("direction", "out"),))
ALL = (FRAME_LATENESS, ADDED_IN, ADDED_OUT)


@dataclass
class Count:
    name: str
    help: str
    value: int = 0


#: The playout clock's troubles (``telephony.clock``), counted per process.
CLOCK_RESTARTS = Count("mikrovoice_playout_clock_restarts_total",
                       "Times the playout clock woke more than 100 ms late and restarted its schedule "
                       "(every call then missed at least one frame).")
WRITE_STALLS = Count("mikrovoice_playout_write_stalls_total",
                     "Frames a caller's socket could not take at once (its send buffer full): the call's "
                     "own task finished the write, and the call skipped its ticks meanwhile.")
COUNTS = (CLOCK_RESTARTS, WRITE_STALLS)


class TimingsCollector:
    """The three timings as Prometheus histograms (``_bucket``, ``_sum``, ``_count``), plus a gauge
    of each one's maximum since the process started (``..._max_seconds``)."""

    def __init__(self, timings: tuple[Timing, ...] = ALL, counts: tuple[Count, ...] = COUNTS) -> None:
        self.timings = timings
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        families: dict[str, HistogramMetricFamily] = {}
        maxima: dict[str, GaugeMetricFamily] = {}
        for timing in self.timings:
            names = [k for k, _ in timing.labels]
            values = [v for _, v in timing.labels]
            family = families.get(timing.name)
            if family is None:
                family = families[timing.name] = HistogramMetricFamily(timing.name, timing.help, labels=names)
                maxima[timing.name] = GaugeMetricFamily(timing.name.removesuffix("_seconds") + "_max_seconds",
                                                        f"Largest observation so far of {timing.name}.", labels=names)
            cumulative, buckets = 0, []
            for bound, n in zip((*BOUNDS, float("inf")), timing.counts, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            family.add_metric(values, buckets, timing.sum)
            maxima[timing.name].add_metric(values, timing.max)
        for name, family in families.items():
            yield family
            yield maxima[name]
        for count in self.counts:
            yield CounterMetricFamily(count.name.removesuffix("_total"), count.help, value=count.value)
