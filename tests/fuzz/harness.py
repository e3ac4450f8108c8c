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
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
import trio
import trio.testing

from mikrovoice.logs import CallIdFilter

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
