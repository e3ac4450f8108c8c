"""One playout clock for every call of a process, and the non-blocking pipes it moves bytes with.

A call over AudioSocket sends a 20 ms frame every 20 ms and receives one every 20 ms. Done with a
task per call, each frame costs the event loop two or three task switches (the write's checkpoint,
the sleep to the next deadline, the wake-up on the read), and at a few hundred calls those
switches, not the audio, are what the process spends its core on (issue 10's profile: Trio
scheduling 30 %, socket calls 32 %). So one ``FrameClock`` per process serves them all: it wakes
``SLOTS`` times per 20 ms and, each time, *ticks* the ports on that slot (a quarter of the calls:
the work is spread over the period, and each call keeps its place, so its frames stay 20 ms apart).
A port's tick reads what its socket has (without waiting), writes one frame (without waiting), and
wakes the call's own tasks only when they have something to do: a batch of caller audio, a
digit, the end of the call, or a write that must wait for the socket (a full buffer: that call's
task finishes it, awaiting, and the tick skips the call meanwhile).

Structured concurrency still holds where it matters: each call's tasks (reader, player) live in
that call's nursery and own the call's decisions; the clock only moves bytes and never blocks.
It is a Trio *system task*, started by the first port attached and ending when the last one
leaves, so nothing has to start it and it never outlives the calls. A port's tick must not raise:
the clock catches anything that does and hands it to that port (``failed``), so one call's bug
cannot stop the others' audio.

A stream can join only if it can be written and read without awaiting (``net.raw_pipe``: a
``trio.SocketStream`` through its file descriptor, or the simulation's in-memory ``SimSocket``). Any other stream (TLS, a test's memory stream) keeps the per-call
playout (``Playout.run``).
"""

from __future__ import annotations

import contextvars
import select
from typing import Protocol

import trio

from mikrovoice.telephony.audiosocket import FRAME_SECONDS
from mikrovoice.timings import CLOCK_RESTARTS

#: Ticks per frame period; each port is served on one of them (the least loaded when it attaches).
SLOTS = 4
#: A clock that wakes later than this behind its schedule restarts it from now (never bursts).
MAX_LAG_S = 0.1


class ClockPort(Protocol):
    def tick(self, deadline: float) -> None:
        """Move this call's bytes for one frame period; ``deadline`` is this tick's due time."""
        ...

    def failed(self, error: Exception) -> None:
        """``tick`` raised ``error``: end this call's use of the clock (and tell its tasks)."""
        ...

    def peer_closed(self) -> None:
        """The peer hung up (its FIN arrived): read what is left now, without waiting for the tick."""
        ...


class FrameClock:
    """The process's playout clock: ``attach`` a port, ``detach`` it before its stream closes."""

    def __init__(self, period_s: float = FRAME_SECONDS, slots: int = SLOTS) -> None:
        self.period_s = period_s
        self._slots: list[dict[ClockPort, None]] = [{} for _ in range(slots)]
        self._slot_of: dict[ClockPort, int] = {}
        self._running = False
        self.restarts = 0  # times the schedule restarted after a stall longer than MAX_LAG_S
        #: Hang-ups are not left to the next tick (up to 20 ms): the ports' descriptors are in an
        #: epoll set of their own, for EPOLLRDHUP only (the peer's FIN; never mere data), which
        #: the clock waits on between ticks. (None: no descriptor attached.)
        self._hangups: select.epoll | None = None
        self._port_of_fd: dict[int, ClockPort] = {}

    @property
    def ports(self) -> int:
        return len(self._slot_of)

    def attach(self, port: ClockPort, fd: int | None = None) -> None:
        """``fd``: the port's socket, watched for the peer's hang-up between ticks."""
        if port in self._slot_of:
            return
        if fd is not None and hasattr(select, "epoll"):
            if self._hangups is None:
                self._hangups = select.epoll()
            self._hangups.register(fd, select.EPOLLRDHUP | select.EPOLLONESHOT)
            self._port_of_fd[fd] = port
        slot = min(range(len(self._slots)), key=lambda i: len(self._slots[i]))
        self._slots[slot][port] = None
        self._slot_of[port] = slot
        if not self._running:
            self._running = True
            # a fresh context: the clock is no call's (the call id in a log line is the port's own)
            trio.lowlevel.spawn_system_task(self._run, name="mikrovoice.playout_clock", context=contextvars.Context())

    def detach(self, port: ClockPort) -> None:
        slot = self._slot_of.pop(port, None)
        if slot is not None:
            del self._slots[slot][port]
        for fd in [fd for fd, known in self._port_of_fd.items() if known is port]:
            del self._port_of_fd[fd]
            if self._hangups is not None:
                try:
                    self._hangups.unregister(fd)
                except OSError:  # already closed: the kernel dropped it from the set
                    pass

    async def _run(self) -> None:
        step = self.period_s / len(self._slots)
        deadline = trio.current_time()
        slot = 0
        try:
            while self._slot_of:
                # Every slot that is due, in this one step: a clock that woke late catches up at
                # once rather than one event-loop pass per slot (each pass also runs every other
                # task that is ready, so a busy loop would keep it behind for good).
                now = trio.current_time()
                while deadline <= now and self._slot_of:
                    self._tick(slot, deadline)
                    for _ in self._slots:  # on to the next slot that has calls (one call: a wake per 20 ms)
                        slot = (slot + 1) % len(self._slots)
                        deadline += step
                        if self._slots[slot]:
                            break
                    now = trio.current_time()
                if now - deadline > MAX_LAG_S:  # a stall (a GC pause, a starved CPU): never burst to catch up
                    self.restarts += 1
                    CLOCK_RESTARTS.value += 1
                    deadline = now
                await self._until(deadline)
        finally:
            self._running = False
            if self._hangups is not None and not self._port_of_fd:
                self._hangups.close()
                self._hangups = None

    def _tick(self, slot: int, deadline: float) -> None:
        for port in list(self._slots[slot]):
            try:
                port.tick(deadline)
            except Exception as exc:  # one call's bug: that call ends, the others go on
                self.detach(port)
                port.failed(exc)

    async def _until(self, deadline: float) -> None:
        """Sleep until the next tick; meanwhile, hand each hang-up to its port at once."""
        hangups = self._hangups
        if hangups is None or not self._port_of_fd:
            await trio.sleep_until(deadline)
            return
        with trio.move_on_at(deadline):
            while True:
                await trio.lowlevel.wait_readable(hangups.fileno())
                for fd, _ in hangups.poll(0):
                    port = self._port_of_fd.get(fd)
                    if port is None:
                        continue
                    try:
                        port.peer_closed()
                    except Exception as exc:
                        self.detach(port)
                        port.failed(exc)
