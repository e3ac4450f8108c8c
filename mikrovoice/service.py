"""The service: listeners for Asterisk (AudioSocket, and chan_websocket when configured) that run
one CallSession per call, whichever transport carries it (``telephony.leg``).

A connection's failure is that call's failure: every exception a call raises is logged with
its call id and the listener goes on. ``start_simulated_peers`` brings up the simulated model
and router fleet in-process (``serve --simulate`` and the demo) and returns the Settings that
point at them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import trio
from trio_websocket import ConnectionClosed, wrap_server_stream
from wsproto.utilities import ProtocolError

from mikrovoice.call.prompts import Prompts
from mikrovoice.call.session import CallRecord, CallSession
from mikrovoice.config import Settings
from mikrovoice.logs import event
from mikrovoice.net import Dialer, open_tcp
from mikrovoice.routeros.fanout import Fleet
from mikrovoice.sim.realtime import SimModelConfig, serve_model
from mikrovoice.sim.routeros import FleetProfile, make_fleet, serve_fleet
from mikrovoice.telephony.audiosocket_leg import AudioSocketLeg
from mikrovoice.telephony.leg import CallerLeg
from mikrovoice.telephony.server import set_nodelay
from mikrovoice.telephony.websocket_leg import WebSocketLeg
from mikrovoice.telephony.websocket_leg import accept as accept_websocket
from mikrovoice.tools import NocTools

log = logging.getLogger("mikrovoice.service")


@dataclass
class ServiceStats:
    calls: list[CallRecord] = field(default_factory=list)


class CallService:
    """The calls of one process: shared settings, tools and stats; ``handle`` runs one call to its end."""

    def __init__(
        self, settings: Settings, stats: ServiceStats | None = None, dial: Dialer = open_tcp,
        prompts: Prompts | None = None,
    ) -> None:
        self.settings = settings
        self.stats = stats if stats is not None else ServiceStats()
        self.dial = dial
        self.prompts = prompts or Prompts.load(settings)
        self.tools = NocTools(Fleet(settings, dial))

    async def handle(self, stream: trio.abc.Stream) -> None:
        """One AudioSocket connection, from its first byte to its end. Never raises (but Cancelled)."""
        await self.handle_leg(AudioSocketLeg(stream, partial_frame_timeout_s=self.settings.partial_frame_timeout_s))

    async def handle_websocket(self, stream: trio.abc.Stream) -> None:
        """One chan_websocket connection: the handshake (subprotocol ``media``), then the call."""
        async with trio.open_nursery() as nursery:
            try:
                request = await wrap_server_stream(nursery, stream, max_message_size=65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionClosed, ProtocolError) as exc:
                event(log, "call.websocket_handshake_failed", level=logging.WARNING, error=str(exc) or type(exc).__name__)
                await trio.aclose_forcefully(stream)
                return
            try:
                ws = await accept_websocket(request)
            except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionClosed, ProtocolError) as exc:
                event(log, "call.websocket_handshake_failed", level=logging.WARNING, error=str(exc) or type(exc).__name__)
                ws = None
            if ws is not None:
                await self.handle_leg(WebSocketLeg(ws))
            nursery.cancel_scope.cancel()
        await trio.aclose_forcefully(stream)

    async def handle_leg(self, leg: CallerLeg) -> None:
        """One call on any transport, to its end. Never raises (but Cancelled)."""
        session = CallSession(self.settings, self.tools, leg, self.dial, self.prompts)
        self.stats.calls.append(session.record)
        try:
            await session.run()
        except Exception:  # one call's bug must not take the listener down
            log.exception("call.crashed")  # the call id is still in this task's context


async def _listen(
    where: tuple[str, int], handle: Callable[[trio.abc.Stream], Awaitable[None]],
    task_status: trio.TaskStatus[int], name: str, tidy: Callable[[], Awaitable[None]], **fields: Any,
) -> None:
    """Serve ``handle`` on TCP at ``where`` (TCP_NODELAY on each connection); ``started()`` gets the bound port.
    ``tidy`` runs beside the listener (the router pool's: idle connections close on time, calls or not)."""

    async def handler(stream: trio.SocketStream) -> None:
        set_nodelay(stream)
        await handle(stream)

    host, port = where
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    event(log, name, host=host, port=bound, **fields)
    task_status.started(bound)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tidy)
        await trio.serve_listeners(handler, listeners)


async def serve_calls(
    settings: Settings,
    stats: ServiceStats | None = None,
    *,
    dial: Dialer = open_tcp,
    service: CallService | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen for Asterisk's AudioSocket; ``started()`` hands back the bound port."""
    service = service or CallService(settings, stats, dial)
    await _listen(settings.listen, service.handle, task_status, "service.listening", service.tools.fleet.pool.tidy,
                  routers=len(settings.routers),
                  endpoint=settings.realtime_url.split("?", 1)[0], model=settings.model)


async def serve_websocket_calls(
    settings: Settings,
    stats: ServiceStats | None = None,
    *,
    dial: Dialer = open_tcp,
    service: CallService | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen for Asterisk's chan_websocket (``Dial(WebSocket/...)``); ``started()`` hands back the port."""
    if settings.websocket_listen is None:
        raise ValueError("no [websocket] listen address configured")
    service = service or CallService(settings, stats, dial)
    await _listen(settings.websocket_listen, service.handle_websocket, task_status, "service.listening_websocket",
                  service.tools.fleet.pool.tidy, subprotocol="media")


async def start_simulated_peers(
    nursery: trio.Nursery, settings: Settings, profile: FleetProfile = FleetProfile(),
    model_config: SimModelConfig = SimModelConfig(), router_password: str = "",
) -> Settings:
    """Start the simulated model and router fleet on loopback; return Settings that use them."""
    routers = await nursery.start(serve_fleet, make_fleet(profile, password=router_password))
    server = await nursery.start(serve_model, "127.0.0.1", 0, model_config)
    return replace(
        settings,
        routers=tuple(routers),
        realtime_url=f"ws://127.0.0.1:{server.port}/v1/realtime",
        api_key=settings.api_key or "sk-simulated",
    )
