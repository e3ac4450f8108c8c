"""When the caller has waited long enough in silence, and what they are told.

``QuietClock`` knows since when the line has been quiet *as the caller hears it*: neither our
playout nor the caller speaking. ``ProgressPolicy`` turns that into the moment to ask the model for
an update (``lead_s`` before ``silence_s`` is reached, the model's usual delay before its first
audio) and into a phrase with the real counts of the fan-out: routers that answered, routers that
failed, routers still pending — a failed router is never counted as answered. Pure apart from
``QuietClock``'s Trio event, which lets a task wait for the line to change without polling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import trio

from mikrovoice.config import Phrases

#: Up to this many routers still running are named ("Faltan 26.1 y 46.3").
MAX_NAMED_MISSING = 3


@dataclass(frozen=True)
class ProgressPolicy:
    """The caller hears an update after about ``silence_s`` of quiet line while a query runs.

    The request goes out ``lead_s`` earlier, so that a model starting to speak within ``lead_s``
    is heard on time; a request the model refused, or answered without a sound, is made again
    after ``retry_s``. The promise checked by the simulations: no more than ``silence_s`` + 1.5 s
    without speech while a query runs.
    """

    silence_s: float = 6.0
    lead_s: float = 1.0
    retry_s: float = 0.5

    def due_at(self, quiet_since: float) -> float:
        return quiet_since + max(0.0, self.silence_s - self.lead_s)

    @staticmethod
    def phrase(phrases: Phrases, answered: int, failed: int, total: int, pending: list[str],
               wait_left_s: float | None = None, failures: list[tuple[str, str]] | None = None) -> str:
        """The update the caller hears. With ``wait_left_s`` (how long the pending routers may still
        take, at most) it ends with how long the caller may still wait, rounded up to 5 s: two
        updates about the same slow router are never the same words. ``failures`` (router, reason)
        names the failed routers and why, when there are at most ``MAX_NAMED_MISSING``."""
        wait = ""
        if wait_left_s is not None and pending and wait_left_s >= 3:
            wait = " " + phrases.progress_wait.format(seconds=5 * math.ceil(wait_left_s / 5))
        if total == 1 and pending:
            return phrases.progress_one.format(router=pending[0]) + wait
        missing = " y ".join([", ".join(pending[:-1]), pending[-1]] if len(pending) > 1 else pending)
        which = "; ".join(f"{router} {reason}" for router, reason in failures or [])
        fields = {"answered": answered, "done": answered, "failed": failed, "total": total, "pending": len(pending),
                  "missing": missing, "which": which}
        text = phrases.progress_many.format(**fields)
        if failed and failures and len(failures) == failed and failed <= MAX_NAMED_MISSING:
            text += " " + phrases.progress_failed_which.format(**fields)
        elif failed:
            text += " " + phrases.progress_failed.format(**fields)
        if 0 < len(pending) <= MAX_NAMED_MISSING:
            text += " " + phrases.progress_missing.format(**fields)
        return text + wait


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
        self.poke()

    def poke(self) -> None:
        """Wake every task waiting on the line (also when something else they watch changed)."""
        self._changed.set()
        self._changed = trio.Event()

    async def changed(self) -> None:
        await self._changed.wait()

    async def wait_quiet(self) -> float:
        while self.since is None:
            await self._changed.wait()
        return self.since

    async def wait_busy(self) -> None:
        while self.since is not None:
            await self._changed.wait()
