"""How mikrovoice opens its outgoing TCP connections: one seam, so a simulation can use its own network.

A ``Dialer`` is any ``async (host, port) -> trio.abc.Stream``. ``open_tcp`` is the real one; the
simulations pass ``simulation.network.MemoryNetwork.dial`` instead, so the production code sends the
same bytes to the simulators without a kernel socket. Connection failures are ``OSError``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

Dialer = Callable[[str, int], Awaitable[trio.abc.Stream]]


async def open_tcp(host: str, port: int) -> trio.abc.Stream:
    return await trio.open_tcp_stream(host, port)


class StartupError(Exception):
    """The service cannot start: a listen address in use, not ours, or a name that does not
    resolve. ``mikrovoice`` prints it as one line and exits 1 (no traceback)."""
