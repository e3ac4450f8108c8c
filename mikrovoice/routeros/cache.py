"""Answers shared between calls: a TTL cache per router and command, and request coalescing.

Ten callers asking the same thing at the same moment cost one command to each router: the first
asker (the *leader*) sends it, the others wait for its answer. A fresh answer (younger than its
command family's TTL, ``Settings.cache_ttl_s``) is served from the cache with its age, so the
caller can be told how old the data is. Failures are shared with the askers who were waiting
for them but never cached: the next question asks the router again.

Structured concurrency holds: there is no task of the cache's own. If the leader is cancelled
(its caller hung up, its deadline passed) the flight is abandoned and a waiting asker becomes the
new leader, inside its own deadline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from mikrovoice.routeros.commands import ReadCommand
from mikrovoice.routeros.errors import RouterFailure

Rows = list[dict[str, str]]
Fetch = Callable[[str, ReadCommand], Awaitable[Rows]]
#: Beyond this many entries, expired ones are dropped, then the oldest.
MAX_ENTRIES = 20_000


@dataclass(frozen=True)
class Answer:
    rows: Rows
    #: when the router answered (trio clock)
    fetched_at: float
    #: served from the cache (an earlier question's answer) rather than asked for this one
    cached: bool = False
    #: another asker's command, in flight when this one asked, answered both
    coalesced: bool = False

    def age_s(self, now: float) -> float:
        return max(0.0, now - self.fetched_at)


@dataclass
class _Flight:
    done: trio.Event = field(default_factory=trio.Event)
    answer: Answer | None = None
    failure: RouterFailure | None = None


@dataclass
class CacheStats:
    fetches: int = 0
    hits: int = 0
    coalesced: int = 0


class AnswerCache:
    def __init__(self, fetch: Fetch, ttl_s: dict[str, float]) -> None:
        self._fetch = fetch
        self.ttl_s = dict(ttl_s)
        self._answers: dict[tuple[str, str], Answer] = {}
        self._flights: dict[tuple[str, str], _Flight] = {}
        self.stats = CacheStats()

    def _ttl(self, command: ReadCommand) -> float:
        return self.ttl_s.get(command.family, 0.0) if command.family else 0.0

    async def get(self, router: str, command: ReadCommand) -> Answer:
        """The rows of ``command`` on ``router``: cached if fresh, else shared with a flight in the air,
        else asked for. Raises the router's ``RouterFailure``."""
        key = (router, command.key)
        ttl = self._ttl(command)
        while True:
            now = trio.current_time()
            cached = self._answers.get(key)
            if cached is not None and now - cached.fetched_at <= ttl:
                self.stats.hits += 1
                return Answer(cached.rows, cached.fetched_at, cached=True)
            flight = self._flights.get(key)
            if flight is None:
                return await self._lead(key, router, command, ttl)
            await flight.done.wait()
            if flight.failure is not None:
                self.stats.coalesced += 1
                raise RouterFailure(flight.failure.reason, flight.failure.detail)
            if flight.answer is not None:
                self.stats.coalesced += 1
                return Answer(flight.answer.rows, flight.answer.fetched_at, coalesced=True)
            # The leader was cancelled before an answer: ask again (maybe leading this time).

    async def _lead(self, key: tuple[str, str], router: str, command: ReadCommand, ttl: float) -> Answer:
        flight = self._flights[key] = _Flight()
        self.stats.fetches += 1
        try:
            rows = await self._fetch(router, command)
        except RouterFailure as failure:
            flight.failure = failure
            raise
        else:
            flight.answer = Answer(rows, trio.current_time())
            if ttl > 0:
                self._store(key, flight.answer)
            return flight.answer
        finally:
            del self._flights[key]
            flight.done.set()

    def _store(self, key: tuple[str, str], answer: Answer) -> None:
        self._answers[key] = answer
        if len(self._answers) > MAX_ENTRIES:
            now = trio.current_time()
            longest = max(self.ttl_s.values(), default=0.0)
            for old in [k for k, a in self._answers.items() if now - a.fetched_at > longest]:
                del self._answers[old]
            while len(self._answers) > MAX_ENTRIES:
                del self._answers[next(iter(self._answers))]
