"""The answer cache on the virtual clock: TTL, age, coalescing, a cancelled leader, shared failures."""

import pytest
import trio
import trio.testing

from mikrovoice.routeros import commands
from mikrovoice.routeros.cache import AnswerCache
from mikrovoice.routeros.commands import ReadCommand
from mikrovoice.routeros.errors import Reason, RouterFailure


class Router:
    def __init__(self, delay: float = 1.0, fail: bool = False) -> None:
        self.delay, self.fail, self.asked = delay, fail, 0

    async def fetch(self, router: str, command: ReadCommand) -> list[dict[str, str]]:
        self.asked += 1
        await trio.sleep(self.delay)
        if self.fail:
            raise RouterFailure(Reason.TIMEOUT, "simulated")
        return [{"router": router, "n": str(self.asked)}]


async def test_a_fresh_answer_is_served_with_its_age_and_an_old_one_is_asked_again(autojump_clock: trio.testing.MockClock) -> None:
    router = Router()
    cache = AnswerCache(router.fetch, {"traffic": 5.0})
    first = await cache.get("152.1", commands.monitor_traffic(["sfp1"]))
    assert not first.cached and trio.current_time() == 1.0
    await trio.sleep(3)
    second = await cache.get("152.1", commands.monitor_traffic(["sfp1"]))
    assert second.cached and second.rows == first.rows and second.age_s(trio.current_time()) == 3.0
    await trio.sleep(2.5)
    third = await cache.get("152.1", commands.monitor_traffic(["sfp1"]))
    assert not third.cached and third.rows[0]["n"] == "2" and router.asked == 2
    # another router, another command: separate entries; ping is never cached
    await cache.get("26.1", commands.monitor_traffic(["sfp1"]))
    await cache.get("26.1", commands.ping("8.8.8.8", 1))
    await cache.get("26.1", commands.ping("8.8.8.8", 1))
    assert router.asked == 5


async def test_ten_callers_at_once_cost_one_query(autojump_clock: trio.testing.MockClock) -> None:
    router = Router(delay=2.0)
    cache = AnswerCache(router.fetch, {"traffic": 0.0})  # coalescing holds even without caching
    answers = []

    async def caller() -> None:
        answers.append(await cache.get("152.1", commands.monitor_traffic(["sfp1"])))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(caller)
    assert router.asked == 1 and trio.current_time() == 2.0
    assert sum(a.coalesced for a in answers) == 9 and len({id(a.rows) for a in answers}) == 1
    assert cache.stats.fetches == 1 and cache.stats.coalesced == 9


async def test_a_cancelled_leader_hands_over_to_a_waiting_asker(autojump_clock: trio.testing.MockClock) -> None:
    router = Router(delay=4.0)
    cache = AnswerCache(router.fetch, {"traffic": 5.0})
    got = []

    async def follower() -> None:
        await trio.sleep(1)
        got.append(await cache.get("152.1", commands.monitor_traffic(["sfp1"])))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follower)
        with trio.move_on_after(2):  # the leader's caller hangs up
            await cache.get("152.1", commands.monitor_traffic(["sfp1"]))
    assert router.asked == 2 and got[0].rows[0]["n"] == "2"
    assert trio.current_time() == 6.0  # the follower led from t=2, answered at t=6


async def test_a_failure_is_shared_by_those_waiting_and_never_cached(autojump_clock: trio.testing.MockClock) -> None:
    router = Router(fail=True)
    cache = AnswerCache(router.fetch, {"resource": 60.0})
    failures = []

    async def caller() -> None:
        try:
            await cache.get("46.3", commands.resource())
        except RouterFailure as failure:
            failures.append(failure.reason)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(caller)
    assert failures == [Reason.TIMEOUT] * 3 and router.asked == 1
    with pytest.raises(RouterFailure):
        await cache.get("46.3", commands.resource())
    assert router.asked == 2
