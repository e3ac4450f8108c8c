"""The fleet and the fan-out: one question to many routers, in parallel, each within its deadline.

``Fleet`` holds what the calls of a process share: the inventory (names as people say them),
the pool (one connection per router, per-router and global limits) and the answer cache
(TTL and coalescing). ``Fleet.fan_out`` runs one task per router of a ``FanOut`` in its own
nursery, at most ``router_concurrency`` at once for this call, each inside its own deadline.
Every router ends with an ``Outcome``: ``ok`` or ``degraded`` (it answered; degraded means the
data itself is worrying, with the reasons) or ``unknown`` (it did not answer, with the reason
the caller hears and the technical detail the log keeps). A router that did not answer is never a
healthy zero. Outcomes land in the ``FanOut`` as they arrive, so a question cut short by its own
deadline or by the caller's hang-up still has every answer that came in, and the spoken progress
counts are the counts of the final answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from mikrovoice.config import Phrases, Settings
from mikrovoice.logs import event
from mikrovoice.net import Dialer, open_tcp
from mikrovoice.routeros.cache import AnswerCache, Rows
from mikrovoice.routeros.client import RouterPool
from mikrovoice.routeros.commands import CommandNotAllowed, ReadCommand
from mikrovoice.routeros.errors import Reason, RouterFailure
from mikrovoice.routeros.inventory import Inventory, InventoryPhrases

log = logging.getLogger("mikrovoice.routers")

OK, DEGRADED, UNKNOWN = "ok", "degraded", "unknown"
#: What the model reads for each status (the tool outputs are in Spanish).
STATUS_WORDS = {OK: "ok", DEGRADED: "degradado", UNKNOWN: "desconocido"}


def reason_text(phrases: Phrases, reason: Reason) -> str:
    """The words the caller hears for ``reason`` (``Phrases.router_<reason>``)."""
    return str(getattr(phrases, f"router_{reason.value}"))


@dataclass
class RouterAnswer:
    """What a tool made of one router's replies: its data and, if worrying, why (Spanish)."""

    data: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return DEGRADED if self.problems else OK


@dataclass(frozen=True)
class Outcome:
    router: str
    status: str  # OK, DEGRADED or UNKNOWN
    data: dict[str, Any]
    #: Spanish, for the caller: why degraded (the problems) or why unknown (the failure)
    reasons: tuple[str, ...] = ()
    #: technical, for the log only
    detail: str = ""
    #: the age of the oldest cached answer used, if any was cached (seconds)
    age_s: float | None = None
    reason: Reason | None = None


class Ask:
    """A router query's one way to the router: commands through the cache, their age tracked."""

    def __init__(self, fleet: Fleet, router: str) -> None:
        self._fleet = fleet
        self.router = router
        self.age_s: float | None = None

    async def __call__(self, command: ReadCommand) -> Rows:
        answer = await self._fleet.cache.get(self.router, command)
        if answer.cached:
            age = answer.age_s(trio.current_time())
            self.age_s = age if self.age_s is None else max(self.age_s, age)
        return answer.rows

    async def gather(self, *commands: ReadCommand | IfPresent) -> list[Rows | None]:
        """Several commands at once (the router runs tagged commands in parallel; the pool bounds
        how many): their rows in order, None for an ``IfPresent`` whose menu is missing. The first
        failure cancels the others and is raised."""
        rows: list[Rows | None] = [None] * len(commands)
        failures: list[RouterFailure] = []

        async def one(index: int, item: ReadCommand | IfPresent, scope: trio.CancelScope) -> None:
            try:
                rows[index] = await (self.optional(item.command) if isinstance(item, IfPresent) else self(item))
            except RouterFailure as failure:
                failures.append(failure)
                scope.cancel()

        async with trio.open_nursery() as nursery:
            for index, item in enumerate(commands):
                nursery.start_soon(one, index, item, nursery.cancel_scope)
        if failures:
            raise failures[0]
        return rows

    async def optional(self, command: ReadCommand) -> Rows | None:
        """The rows, or None when this router does not have the menu (a package it lacks)."""
        try:
            return await self(command)
        except RouterFailure as failure:
            if failure.reason is Reason.MISSING:
                return None
            raise


@dataclass(frozen=True)
class IfPresent:
    """For ``Ask.gather``: this command's menu may be missing on the router (its rows are then None)."""

    command: ReadCommand


RouterQuery = Callable[[Ask], Awaitable[RouterAnswer]]


@dataclass
class FanOut:
    """One question's routers and what each has answered so far."""

    routers: tuple[str, ...]
    #: one router's deadline (connection, login and commands), seconds
    router_timeout_s: float = 20.0
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    started_at: float = 0.0
    router_started: dict[str, float] = field(default_factory=dict)
    router_finished: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.routers)

    @property
    def done(self) -> int:
        return len(self.outcomes)

    @property
    def answered(self) -> int:
        """Routers that answered (ok or degraded)."""
        return sum(1 for o in self.outcomes.values() if o.status != UNKNOWN)

    @property
    def failed(self) -> int:
        """Routers that could not be asked (unknown)."""
        return sum(1 for o in self.outcomes.values() if o.status == UNKNOWN)

    @property
    def pending(self) -> list[str]:
        return [r for r in self.routers if r not in self.outcomes]

    def slow(self, now: float, after_s: float) -> list[str]:
        """Pending routers that have been running for more than ``after_s``."""
        return [r for r in self.pending if r in self.router_started and now - self.router_started[r] > after_s]

    def wait_left_s(self, now: float) -> float:
        """How long, at most, the pending routers may still take (their own deadlines)."""
        ends = [self.router_started.get(r, now) + self.router_timeout_s for r in self.pending]
        return max(0.0, max(ends, default=now) - now)


class Fleet:
    """The routers of one process: inventory, connection pool, answer cache, and the fan-out."""

    def __init__(self, settings: Settings, dial: Dialer = open_tcp) -> None:
        self.settings = settings
        self.phrases = settings.phrases
        self.inventory = Inventory(settings.routers, InventoryPhrases(**settings.router_name_phrases))
        self.pool = RouterPool(settings.routers, dial=dial, connect_timeout_s=settings.router_connect_timeout_s,
                               idle_timeout_s=settings.router_idle_timeout_s,
                               per_router=settings.router_commands_per_router, total=settings.router_commands_total)
        self.cache = AnswerCache(self.pool.run, settings.cache_ttl_s)

    async def fan_out(self, fan: FanOut, query: RouterQuery) -> None:
        """Ask every router of ``fan`` in parallel; returns when each has an outcome. Never raises
        for a router's failure; a cancel (the question's deadline, the caller's hang-up) stops all."""
        fan.started_at = trio.current_time()
        limiter = trio.CapacityLimiter(max(1, self.settings.router_concurrency))
        async with trio.open_nursery() as nursery:
            for name in fan.routers:
                nursery.start_soon(self._one, fan, name, query, limiter)

    async def _one(self, fan: FanOut, name: str, query: RouterQuery, limiter: trio.CapacityLimiter) -> None:
        async with limiter:
            started = fan.router_started[name] = trio.current_time()
            ask = Ask(self, name)
            outcome: Outcome
            with trio.move_on_after(fan.router_timeout_s) as deadline:
                try:
                    answer = await query(ask)
                except RouterFailure as failure:
                    outcome = Outcome(name, UNKNOWN, {}, (reason_text(self.phrases, failure.reason),), failure.detail,
                                      reason=failure.reason)
                except (ValueError, CommandNotAllowed) as exc:  # the router's data made us build a refused command
                    outcome = Outcome(name, UNKNOWN, {}, (reason_text(self.phrases, Reason.PROTOCOL),),
                                      f"its reply led to a command outside the allowlist: {exc}", reason=Reason.PROTOCOL)
                else:
                    outcome = Outcome(name, answer.status, answer.data, tuple(answer.problems), age_s=ask.age_s)
            if deadline.cancelled_caught:
                outcome = Outcome(name, UNKNOWN, {}, (reason_text(self.phrases, Reason.TIMEOUT),),
                                  f"no answer within {fan.router_timeout_s:g} s", reason=Reason.TIMEOUT)
        now = fan.router_finished[name] = trio.current_time()
        fan.outcomes[name] = outcome
        fields: dict[str, Any] = {"router": name, "status": outcome.status, "done": fan.done, "total": fan.total,
                                  "elapsed_s": round(now - started, 2)}
        if outcome.status == UNKNOWN:
            fields["reason"] = outcome.reason.value if outcome.reason else ""
            fields["detail"] = outcome.detail
        elif outcome.status == DEGRADED:
            fields["problems"] = "; ".join(outcome.reasons)
        if outcome.age_s is not None:
            fields["cached_age_s"] = round(outcome.age_s, 1)
        event(log, "router.answered", level=logging.WARNING if outcome.status == UNKNOWN else logging.INFO, **fields)
