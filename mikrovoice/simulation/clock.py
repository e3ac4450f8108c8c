"""A discrete-event clock for whole-call simulations: when every task waits, time jumps to the next deadline.

``trio.testing.MockClock(autojump_threshold=0)`` does the same, but it notices that everything is
blocked one scheduler pass late (a pass to see it, a pass to jump, a pass to wake the sleepers),
which at 50 audio frames a second each way is most of what a simulation costs. ``EventClock``
jumps in the scheduler's own question "how long may I sleep until the next deadline?": no extra
passes. It is only valid where nothing happens outside Trio's own scheduling — no threads, no real
sockets — which is exactly the simulated world of ``simulation.world`` (its network is in memory).
"""

from __future__ import annotations

import math

import trio


class EventClock(trio.abc.Clock):
    def __init__(self) -> None:
        self._now = 0.0

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return self._now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        # Trio asks only when no task can run: nothing can happen before the deadline, so go there.
        if math.isinf(deadline):
            return 86400.0  # nothing scheduled, ever: a deadlock, left for Trio to report as a hang
        self._now = max(self._now, deadline)
        return 0.0
