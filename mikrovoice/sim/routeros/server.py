"""Listeners: one RouterOS API service per simulated router, over TCP (API) or TLS (API-SSL).

``serve_router_stream`` serves one connection from any Trio stream (a TCP connection, an
``SSLStream``, or an in-memory stream in a simulated world) and applies the service's
``max-sessions``. RouterOS's behaviour beyond the limit is not documented (research/routeros.md
1.7); this simulator accepts the TCP connection and closes it at once without a word, which is
what a client sees from a router whose API service is saturated or restarting. ``busy`` routers
have a limit of 0. ``serve_fleet`` starts one listener per router and hands back the
``RouterConfig`` list that reaches them.
"""

from __future__ import annotations

import logging
import ssl
from functools import partial

import trio

from mikrovoice.config import RouterConfig
from mikrovoice.logs import event
from mikrovoice.sim.routeros.data import NOC_ADDRESS
from mikrovoice.sim.routeros.router import SimRouter
from mikrovoice.sim.routeros.session import _Session

log = logging.getLogger("mikrovoice.sim.routers")


def peer_address(stream: trio.abc.Stream) -> str:
    """The client's IP address (for the router's log), or the NOC's when the stream has no socket."""
    inner = getattr(stream, "transport_stream", stream)
    sock = getattr(inner, "socket", None)
    try:
        return str(sock.getpeername()[0]) if sock is not None else NOC_ADDRESS
    except OSError:
        return NOC_ADDRESS


async def serve_router_stream(router: SimRouter, stream: trio.abc.Stream, *, peer: str | None = None) -> None:
    """One API connection (TCP, TLS or in-memory) to ``router``, until the client or the router ends it."""
    limit = 0 if router.fault == "busy" else router.max_sessions
    if router.sessions >= limit:
        event(log, "router.session_refused", router=router.name, sessions=router.sessions, max_sessions=limit)
        await trio.aclose_forcefully(stream)
        return
    if router.started_at is None:
        router.started_at = trio.current_time()
    router.sessions += 1
    try:
        await _Session(router, stream, peer or peer_address(stream)).serve()
    finally:
        router.sessions -= 1
        await trio.aclose_forcefully(stream)


async def serve_router(
    router: SimRouter, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen for ``router``'s API (API-SSL with ``ssl_context``); ``started`` hands back the port."""
    async def handler(stream: trio.SocketStream) -> None:
        peer = peer_address(stream)
        served: trio.abc.Stream = stream if ssl_context is None else trio.SSLStream(stream, ssl_context, server_side=True)
        try:
            await serve_router_stream(router, served, peer=peer)
        except Exception as exc:  # a simulator bug ends that connection, never the router's listener
            event(log, "router.crashed", level=logging.ERROR, router=router.name, peer=peer, error=repr(exc))

    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handler, listeners)


async def serve_fleet(
    routers: list[SimRouter], host: str = "127.0.0.1", base_port: int = 0, *,
    ssl_context: ssl.SSLContext | None = None, ca_file: str | None = None,
    task_status: trio.TaskStatus[list[RouterConfig]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Router i listens on ``base_port + i`` (any free ports when ``base_port`` is 0).

    ``task_status.started`` hands back the ``RouterConfig`` list that reaches the fleet: names,
    the identity as an alias, sites, and ``tls`` when serving API-SSL (verified against
    ``ca_file`` when one is given; a simulator's certificate is usually self-signed).
    """
    async with trio.open_nursery() as nursery:
        configs = []
        for i, router in enumerate(routers):
            serve = partial(serve_router, router, host, base_port + i if base_port else 0, ssl_context=ssl_context)
            port = await nursery.start(serve)
            configs.append(RouterConfig(router.name, host, port, router.username, router.password,
                                        aliases=(router.identity,), site=router.site, tls=ssl_context is not None,
                                        tls_verify=ssl_context is None or ca_file is not None, ca_file=ca_file))
        task_status.started(configs)
