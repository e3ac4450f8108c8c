"""How mikrovoice opens its TCP connections and listeners.

Outgoing: a ``Dialer`` is any ``async (host, port) -> trio.abc.Stream``. ``open_tcp`` is the real
one; the simulations pass ``simulation.network.MemoryNetwork.dial`` instead, so the production code
sends the same bytes to the simulators without a kernel socket. Connection failures are ``OSError``.

Listening: ``open_tcp_listeners`` is Trio's, plus ``reuse_port``: the worker processes of
``serve --workers N`` each open their own listener on the same port with ``SO_REUSEPORT`` and
the kernel spreads the incoming connections over them (Linux: by a hash of the connection's
addresses and ports, not by load). ``reserve_port`` is the supervisor's side: it checks once that
nobody else listens on the port, then holds it with a bound socket that never listens (so it
takes no connection) and that only ``SO_REUSEPORT`` sockets of the same user can share.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

Dialer = Callable[[str, int], Awaitable[trio.abc.Stream]]


async def open_tcp(host: str, port: int) -> trio.abc.Stream:
    return await trio.open_tcp_stream(host, port)


class StartupError(Exception):
    """The service cannot start: a listen address in use, not ours, or a name that does not
    resolve. ``mikrovoice`` prints it as one line and exits 1 (no traceback)."""


#: Trio's default: the largest backlog Linux and the BSDs store without overflow.
LISTEN_BACKLOG = 0xFFFF


def reuse_port_supported() -> bool:
    """Whether this system has ``SO_REUSEPORT`` (Linux 3.9+, the BSDs, macOS)."""
    return hasattr(socket, "SO_REUSEPORT")


def _prepare(sock: socket.socket | trio.socket.SocketType, family: int, *, reuse_port: bool,
             reuse_address: bool = True) -> None:
    if reuse_address:  # bind over the TIME_WAIT connections of an earlier process, as Trio does
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)


async def open_tcp_listeners(port: int, host: str | None, *, reuse_port: bool = False) -> list[trio.SocketListener]:
    """Listeners on every address ``host`` resolves to (``trio.open_tcp_listeners`` when not
    ``reuse_port``; with it, the same sockets with ``SO_REUSEPORT`` set before the bind)."""
    if not reuse_port:
        return await trio.open_tcp_listeners(port, host=host)
    addresses = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    listeners: list[trio.SocketListener] = []
    try:
        for family, kind, proto, _, address in addresses:
            try:
                sock = trio.socket.socket(family, kind, proto)
            except OSError as exc:
                if exc.errno == errno.EAFNOSUPPORT:  # an IPv6 address on a host without IPv6
                    continue
                raise
            try:
                _prepare(sock, family, reuse_port=True)
                await sock.bind(address)
                sock.listen(LISTEN_BACKLOG)
            except BaseException:
                sock.close()
                raise
            listeners.append(trio.SocketListener(sock))
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        raise
    if not listeners:
        raise OSError(errno.EAFNOSUPPORT, f"no address of {host!r} can be used on this system")
    return listeners


def listen_error(exc: OSError, host: str, port: int, name: str) -> StartupError:
    """The one line ``serve`` prints when it cannot listen: in use, not ours, or a name that does not resolve."""
    reason = exc.strerror or str(exc)
    if isinstance(exc, socket.gaierror):
        reason = f"cannot resolve {host!r} ({reason})"
    return StartupError(f"cannot listen on {host}:{port} ({name}): {reason}")


def reserve_port(host: str, port: int, name: str) -> tuple[int, list[socket.socket]]:
    """Hold ``host:port`` for listeners with ``reuse_port``: (the port, chosen by the system when
    ``port`` is 0; the sockets to keep open meanwhile and close at the end).

    First a plain bind, as one process would do it, proves that nobody listens there (another
    mikrovoice too, which ``SO_REUSEPORT`` alone would let us join); then bound ``SO_REUSEPORT``
    sockets that never listen keep the port ours while the workers come and go: only sockets with
    ``SO_REUSEPORT`` of the same user can bind it. Except when connections of an earlier process
    linger in TIME_WAIT on the port: then the reservation needs ``SO_REUSEADDR`` too, and another
    program's listener with ``SO_REUSEADDR`` could take the port in a moment when no worker
    listens (a worker then fails to start, and says so). ``StartupError`` (the message ``serve``
    prints for its listeners) when the port is taken or the host does not resolve."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        held: list[socket.socket] = []
        try:
            for family, kind, proto, _, address in addresses:
                with socket.socket(family, kind, proto) as probe:
                    _prepare(probe, family, reuse_port=False)
                    probe.bind(address[:1] + (port,) + address[2:])  # (port 0: any; the reservation chooses)
                where = address[:1] + (port,) + address[2:]
                sock = socket.socket(family, kind, proto)
                held.append(sock)
                _prepare(sock, family, reuse_port=True, reuse_address=False)
                try:
                    sock.bind(where)
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise
                    sock.close()  # only TIME_WAIT connections in the way (nobody listens: the probe said so)
                    sock = held[-1] = socket.socket(family, kind, proto)
                    _prepare(sock, family, reuse_port=True)
                    sock.bind(where)
                port = port or sock.getsockname()[1]  # every address on the port the first one got
        except BaseException:
            for sock in held:
                sock.close()
            raise
    except OSError as exc:
        raise listen_error(exc, host, port, name) from None
    return port, held


def check_port_free(host: str, port: int, name: str) -> None:
    """``StartupError`` unless a listener could bind ``host:port`` now (the message ``serve`` prints)."""
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                                   flags=socket.AI_PASSIVE):
            with socket.socket(family, kind, proto) as probe:
                _prepare(probe, family, reuse_port=False)
                probe.bind(address)
    except OSError as exc:
        raise listen_error(exc, host, port, name) from None


# -- writing and reading without awaiting -------------------------------------------------------
#
# The playout clock (``telephony.clock``) moves every call's frames in one task, and the model link
# writes caller audio as soon as it is ready (``realtime.link``): neither can afford a task switch per
# message, so both write (and the clock reads) a connection's bytes without awaiting when they can.


class RawPipe(Protocol):
    def try_send(self, data: bytes) -> int:
        """Write what fits now; return how many bytes were taken (0: the buffer is full).
        Raises ``trio.BrokenResourceError`` when the peer is gone."""
        ...

    def try_receive(self) -> bytes | None:
        """What has arrived (b"": end of stream, the peer closed); None: nothing yet."""
        ...


class FdPipe:
    """A connected ``trio.SocketStream``'s descriptor, written and read without waiting (Trio's
    sockets are non-blocking). Only while the stream is open: the port detaches before closing."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def try_send(self, data: bytes) -> int:
        try:
            return os.write(self.fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:  # EPIPE, ECONNRESET: the peer is gone
            raise trio.BrokenResourceError(f"write failed: {exc.strerror or exc}") from exc

    def try_receive(self) -> bytes | None:
        try:
            return os.read(self.fd, 65536)
        except BlockingIOError:
            return None
        except OSError:  # ECONNRESET and the like: the connection is over, as after a close
            return b""


def raw_pipe(stream: trio.abc.Stream) -> RawPipe | None:
    """The pipe the clock can use for ``stream``, or None (the per-call playout then)."""
    if isinstance(stream, trio.SocketStream):
        return FdPipe(stream.socket.fileno())
    if callable(getattr(stream, "try_send", None)) and callable(getattr(stream, "try_receive", None)):
        return stream  # type: ignore[return-value]  # SimSocket: a RawPipe of its own
    return None
