"""RouterFleet: the configured routers, name resolution, and the parallel fan-out with progress.

A fan-out runs one task per router in its own nursery, at most ``concurrency`` at once (a
``CapacityLimiter``), each bounded by ``router_timeout_s``. Results land in a ``FanOut`` as they
arrive, so a caller that cancels the fan-out (deadline, hang-up) still has every answer that
came in, and knows exactly which routers did not answer. No per-router failure escapes.
"""

from __future__ import annotations

import difflib
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from mikrovoice.config import RouterConfig
from mikrovoice.logs import event
from mikrovoice.net import Dialer, open_tcp
from mikrovoice.routeros.client import RouterError, RouterOSClient

log = logging.getLogger("mikrovoice.routers")


class UnknownRouter(LookupError):
    pass


def normalise_router_name(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"\brouter\b", " ", text)
    text = re.sub(r"\s*(punto|dot)\s*", ".", text)
    text = re.sub(r"[\s_\-]+", ".", text.strip())
    return text.strip(".")


@dataclass
class FanOut:
    """What a fan-out has gathered so far: results, errors, and the routers still pending."""

    routers: tuple[str, ...]
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    started_at: float = 0.0
    #: When each router's task began (after the limiter) and ended, for timelines.
    router_started: dict[str, float] = field(default_factory=dict)
    router_finished: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.routers)

    @property
    def done(self) -> int:
        return len(self.results) + len(self.errors)

    @property
    def answered(self) -> int:
        return len(self.results)

    @property
    def failed(self) -> int:
        return len(self.errors)

    @property
    def pending(self) -> list[str]:
        return [r for r in self.routers if r not in self.results and r not in self.errors]


Query = Callable[[RouterOSClient], Awaitable[Any]]


class RouterFleet:
    def __init__(
        self, routers: tuple[RouterConfig, ...], concurrency: int = 32, router_timeout_s: float = 60.0,
        dial: Dialer = open_tcp,
    ):
        self.routers = {r.name: r for r in routers}
        self._dial = dial
        self._limiter = trio.CapacityLimiter(max(1, concurrency))
        self.router_timeout_s = router_timeout_s
        self._index: dict[str, str] = {}
        for router in routers:
            for alias in (router.name, *router.aliases):
                self._index[normalise_router_name(alias)] = router.name

    def similar(self, name: str, limit: int = 3) -> list[str]:
        """Configured routers whose name (or an alias) is close to ``name``: what the caller may have meant."""
        keys = difflib.get_close_matches(normalise_router_name(name), list(self._index), n=limit * 2, cutoff=0.6)
        return list(dict.fromkeys(self._index[k] for k in keys))[:limit]

    def resolve(self, name: str) -> str:
        key = normalise_router_name(name)
        if key in self._index:
            return self._index[key]
        raise UnknownRouter(name)

    async def _one(self, name: str, query: Query, fan: FanOut) -> None:
        config = self.routers[name]
        try:
            async with self._limiter:
                fan.router_started[name] = trio.current_time()
                with trio.fail_after(self.router_timeout_s):
                    client = await RouterOSClient.connect(
                        name, config.host, config.port, config.username, config.password, self._dial
                    )
                    try:
                        fan.results[name] = await query(client)
                    finally:
                        with trio.CancelScope(shield=True), trio.move_on_after(1):
                            await client.aclose()
        except trio.TooSlowError:
            fan.errors[name] = f"no answer within {self.router_timeout_s:g} s"
        except RouterError as exc:
            fan.errors[name] = str(exc)
        fan.router_finished[name] = trio.current_time()
        fields: dict[str, Any] = {"router": name, "outcome": "error" if name in fan.errors else "ok", "done": fan.done,
                                  "total": fan.total, "elapsed_s": round(trio.current_time() - fan.started_at, 2)}
        if name in fan.errors:
            fields["error"] = fan.errors[name]
        event(log, "router.answered", **fields)

    async def fan_out(self, fan: FanOut, query: Query) -> None:
        """Query every router of ``fan`` in parallel; returns when all have answered or failed."""
        fan.started_at = trio.current_time()
        async with trio.open_nursery() as nursery:
            for name in fan.routers:
                nursery.start_soon(self._one, name, query, fan)
