"""The service in-process on loopback, on Trio's virtual clock, and what its log must show.

``run_virtual`` runs one example (a whole call or several) in its own ``trio.run`` on a
``MockClock(autojump_threshold=0)``: real sockets, virtual time (see tests/test_end_to_end.py).
``LogCheck`` reads the records of one example (``caplog``, with the call id on each record as
``mikrovoice.logs.configure`` puts it).
"""

from __future__ import annotations

import logging
import socket
import struct
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio.testing

from mikrovoice.config import Settings
from mikrovoice.demo import DEMO_FLEET, SEED_QUESTIONS
from mikrovoice.logs import CallIdFilter
from mikrovoice.service import ServiceStats, start_simulated_peers
from mikrovoice.sim.asterisk import AsteriskCaller, CallerScript, CallReport, Line

#: The line a connection that never became a good call ends with (one of them, once).
CLEAR_LINES = frozenset({
    "call.rejected",  # AudioSocket: a protocol error before or in the UUID
    "call.no_uuid",  # AudioSocket: closed, or silent, before the UUID
    "call.bad_peer",  # a call whose peer broke the protocol (or went silent mid-message)
    "call.websocket_handshake_failed",  # not a WebSocket upgrade
    "call.websocket_refused",  # an upgrade without the 'media' subprotocol
    "call.no_media_start",  # chan_websocket: no MEDIA_START (closed, or 5 s)
    "call.websocket_format",  # chan_websocket: a MEDIA_START in a format we cannot carry
})
#: ERROR lines a hostile peer may cause; any other ERROR line is a finding.
PEER_ERRORS = frozenset({"call.bad_peer", "call.websocket_format"})
_CALL_ID = CallIdFilter()


def run_virtual(main: Callable[[], Awaitable[None]]) -> None:
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def start_capture(caplog: pytest.LogCaptureFixture) -> None:
    """One example's log: cleared, INFO and up from mikrovoice, each record with its call id."""
    caplog.clear()
    caplog.set_level(logging.INFO, logger="mikrovoice")
    caplog.handler.addFilter(_CALL_ID)


def name_of(record: logging.LogRecord) -> str:
    return str(getattr(record, "event", "") or record.getMessage().split(" ", 1)[0])


@dataclass
class LogCheck:
    records: list[logging.LogRecord]

    def clear_lines(self, call_id: str) -> Counter[str]:
        """The clear lines logged under ``call_id`` ("-": a connection that never had one)."""
        return Counter(name_of(r) for r in self.records
                       if name_of(r) in CLEAR_LINES and getattr(r, "call_id", "-") == call_id)

    def count(self, name: str, call_id: str) -> int:
        return sum(1 for r in self.records if name_of(r) == name and getattr(r, "call_id", "-") == call_id)

    def assert_no_crash(self) -> None:
        """No call crashed, no bug, no traceback, no ERROR line but those a bad peer earns."""
        for r in self.records:
            name = name_of(r)
            assert name not in ("call.crashed", "call.bug", "sim.model.crashed"), r.getMessage()
            assert r.exc_info is None, f"a traceback was logged: {r.getMessage()}"
            if r.levelno >= logging.ERROR and r.name.startswith("mikrovoice"):
                assert name in PEER_ERRORS, f"unexpected ERROR: {r.getMessage()}"


async def reset(stream: trio.SocketStream) -> None:
    """Close with a TCP RST (SO_LINGER 0): the peer's next read fails with ECONNRESET."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await trio.aclose_forcefully(stream)


async def read_until_closed(stream: trio.abc.Stream, within_s: float) -> bool:
    """Read and drop what the server sends until it closes (True) or ``within_s`` passes (False)."""
    with trio.move_on_after(within_s):
        try:
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        return True
    return False


BadClient = Callable[[int, int, Any, dict[int, bool]], Awaitable[None]]


@dataclass
class BesideRun:
    """What ``good_call_beside_bad_clients`` saw: the good call, a later call, the log, and which
    bad connections the server closed by itself."""

    good: CallReport
    later: CallReport
    logs: LogCheck
    closed_by_server: dict[int, bool]


def good_call_beside_bad_clients(
    caplog: pytest.LogCaptureFixture, serve: Callable[..., Awaitable[None]], settings: Settings, line: Line,
    bads: Sequence[Any], bad_client: BadClient,
) -> BesideRun:
    """The service with the simulated peers; a good call (a question that must be answered) beside
    the bad clients (``bad_client(port, index, bad, closed_by_server)``), then a later call on the
    same listener. Checked here, for every transport: no crash, the good call answered, the later
    one greeted, every call ended."""
    start_capture(caplog)
    stats = ServiceStats()
    reports: list[CallReport] = []
    closed_by_server: dict[int, bool] = {}

    async def good_call(port: int) -> None:
        reports.append(await AsteriskCaller(CallerScript((SEED_QUESTIONS[0],), line=line)).call("127.0.0.1", port))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            peers = await start_simulated_peers(nursery, settings, DEMO_FLEET)
            port = await nursery.start(serve, peers, stats)
            async with trio.open_nursery() as calls:
                calls.start_soon(good_call, port)
                for index, bad in enumerate(bads):
                    calls.start_soon(bad_client, port, index, bad, closed_by_server)
            # The listener still takes calls: a later one is greeted.
            later = AsteriskCaller(CallerScript(line=line), call_id=uuid.UUID(int=999))
            reports.append(await later.call("127.0.0.1", port))
            with trio.fail_after(30):  # every call ends: nothing is left open
                for record in list(stats.calls):
                    await record.finished.wait()
            nursery.cancel_scope.cancel()

    run_virtual(main)
    run = BesideRun(reports[0], reports[-1], LogCheck(list(caplog.records)), closed_by_server)
    run.logs.assert_no_crash()
    assert run.good.error is None and run.good.questions[0].answered, "the good call was disturbed"
    assert run.later.error is None and run.later.heard, "the listener no longer greets a call"
    return run
