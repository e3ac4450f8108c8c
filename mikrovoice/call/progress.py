"""When the caller has waited long enough in silence, and what they are told.

``QuietClock`` knows since when the line has been quiet: nobody speaking (our playout, the
caller) and no model response open. ``ProgressPolicy`` turns that into a deadline and a phrase
with the real counts of the fan-out. Pure apart from ``QuietClock``'s Trio event, which lets a
task wait for the line to change without polling.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from mikrovoice.config import Phrases


@dataclass(frozen=True)
class ProgressPolicy:
    """Speak an update after ``silence_s`` of quiet line while a query runs.

    With a model that starts speaking within ~1 s of ``response.create``, the caller never
    hears more than about ``silence_s + 1`` seconds of dead air (the brief asks for <= 10 s).
    """

    silence_s: float = 6.0

    def due_at(self, quiet_since: float) -> float:
        return quiet_since + self.silence_s

    @staticmethod
    def phrase(phrases: Phrases, done: int, total: int, pending: list[str]) -> str:
        if total == 1 and pending:
            return phrases.progress_one.format(router=pending[0])
        return phrases.progress_many.format(done=done, total=total, pending=len(pending))


class QuietClock:
    def __init__(self) -> None:
        self.since: float | None = trio.current_time()
        self._changed = trio.Event()

    def update(self, busy: bool) -> None:
        if busy and self.since is not None:
            self.since = None
        elif not busy and self.since is None:
            self.since = trio.current_time()
        else:
            return
        self._changed.set()
        self._changed = trio.Event()

    async def wait_quiet(self) -> float:
        while self.since is None:
            await self._changed.wait()
        return self.since

    async def wait_busy(self) -> None:
        while self.since is not None:
            await self._changed.wait()
