"""An in-memory TCP network for whole-call simulations: same bytes as real sockets, no kernel, exact time.

``MemoryNetwork.listen(host, port, handler)`` registers a server (a simulator, or the service
itself); ``dial(host, port)`` (a ``mikrovoice.net.Dialer``) opens a connection to it and starts
``handler(server_end)`` in the network's nursery, or raises ``ConnectionRefusedError`` when nothing
listens there. ``SimSocket`` behaves like a TCP stream where it matters: ``b""`` after the peer
closes, ``BrokenResourceError`` when writing to a closed peer, and every byte in order. The network
keeps a record of every connection, so a simulation can prove that nothing was left open and that
no server task crashed or outlived its connection. It knows nothing about the protocols it carries.
"""

from __future__ import annotations

import errno
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

Handler = Callable[[trio.abc.Stream], Awaitable[None]]


class SimSocket(trio.abc.Stream):
    """One end of a simulated TCP connection."""

    def __init__(self, name: str, on_close: Callable[[], None] = lambda: None) -> None:
        self.name = name
        self.on_close = on_close
        self.peer: SimSocket | None = None
        self.closed_at: float | None = None
        self.bytes_received = 0
        self._inbound = bytearray()
        self._eof = False  # the peer closed: after the buffered bytes, receive_some returns b""
        self._lot = trio.lowlevel.ParkingLot()

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        # A cancel point, not a schedule point: the bytes are in the peer's buffer at once, as they
        # are in a socket's send buffer; yielding here would only add a scheduler step per message.
        await trio.lowlevel.checkpoint_if_cancelled()
        self.try_send(data)

    def try_send(self, data: bytes | bytearray | memoryview) -> int:
        """Write without waiting (the playout clock's, and ``send_all``'s): all of it, as a socket's
        send buffer would take one frame."""
        if self.closed:
            raise trio.ClosedResourceError("this end of the connection is closed")
        peer = self.peer
        assert peer is not None
        if peer.closed:
            raise trio.BrokenResourceError(f"{peer.name} closed the connection (EPIPE)")
        if data:
            peer._inbound += data
            peer._lot.unpark_all()
        return len(data)

    def try_receive(self) -> bytes | None:
        """``receive_some`` without waiting (the playout clock's read): None when nothing arrived."""
        if self.closed:
            raise trio.ClosedResourceError("this end of the connection is closed")
        if not self._inbound:
            return b"" if self._eof else None
        data = bytes(self._inbound)
        self._inbound.clear()
        self.bytes_received += len(data)
        return data

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._inbound or self._eof or self.closed:
            await trio.lowlevel.checkpoint()
        while not self._inbound and not self._eof and not self.closed:
            await self._lot.park()  # a checkpoint of its own
        if self.closed:
            raise trio.ClosedResourceError("this end of the connection is closed")
        if not self._inbound:
            return b""
        size = len(self._inbound) if max_bytes is None else min(max_bytes, len(self._inbound))
        data = bytes(self._inbound[:size])
        del self._inbound[:size]
        self.bytes_received += size
        return data

    async def aclose(self) -> None:
        if not self.closed:
            self.closed_at = trio.current_time()
            self._inbound.clear()
            self._lot.unpark_all()
            if self.peer is not None:
                self.peer._eof = True
                self.peer._lot.unpark_all()
            self.on_close()
        await trio.lowlevel.checkpoint()


def socket_pair(client: str, server: str, on_close: Callable[[], None] = lambda: None) -> tuple[SimSocket, SimSocket]:
    a, b = SimSocket(client, on_close), SimSocket(server, on_close)
    a.peer, b.peer = b, a
    return a, b


@dataclass
class Connection:
    """One TCP connection: who dialled whom, its two ends, and how its server task ended."""

    client: SimSocket
    server: SimSocket
    host: str
    port: int
    service: str
    opened_at: float
    handler_done_at: float | None = None
    crash: str | None = None  # what escaped the server's handler: "RuntimeError('...')" (leaves of a group)
    crash_traceback: str | None = None

    @property
    def open_ends(self) -> list[str]:
        return [end.name for end in (self.client, self.server) if not end.closed]


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


@dataclass
class MemoryNetwork:
    nursery: trio.Nursery
    connections: list[Connection] = field(default_factory=list)
    refused: list[tuple[float, str, int]] = field(default_factory=list)
    _servers: dict[tuple[str, int], tuple[str, Handler]] = field(default_factory=dict)
    _changed: trio.Event = field(default_factory=trio.Event)

    def _poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    @property
    def settled(self) -> bool:
        """Every connection is closed at both ends and every server task has returned."""
        return all(c.handler_done_at is not None and not c.open_ends for c in self.connections)

    async def wait_settled(self) -> None:
        while not self.settled:
            await self._changed.wait()

    def listen(self, host: str, port: int, handler: Handler, service: str) -> None:
        self._servers[(host, port)] = (service, handler)

    def unlisten(self, host: str, port: int) -> None:
        self._servers.pop((host, port), None)

    async def dial(self, host: str, port: int) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        if (host, port) not in self._servers:
            self.refused.append((trio.current_time(), host, port))
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"Connection refused ({host}:{port})")
        service, handler = self._servers[(host, port)]
        client, server = socket_pair(f"client of {service}", service, self._poke)
        connection = Connection(client, server, host, port, service, trio.current_time())
        self.connections.append(connection)
        self.nursery.start_soon(self._serve, connection, handler)
        return client

    async def _serve(self, connection: Connection, handler: Handler) -> None:
        try:
            await handler(connection.server)
        except Exception as exc:  # a server process would have died: record it, as its OS closes its sockets
            connection.crash = "; ".join(repr(leaf) for leaf in leaves(exc))
            connection.crash_traceback = "".join(traceback.format_exception(exc)).rstrip()
            await trio.aclose_forcefully(connection.server)
        finally:
            connection.handler_done_at = trio.current_time()
            self._poke()

    def services(self) -> dict[tuple[str, int], str]:
        return {address: service for address, (service, _) in self._servers.items()}
