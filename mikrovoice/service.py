"""The service: listeners for Asterisk (AudioSocket, and chan_websocket when configured) that run
one CallSession per call, whichever transport carries it (``telephony.leg``).

A connection's failure is that call's failure: every exception a call raises is logged with
its call id and the listener goes on. The service admits at most ``max_calls`` calls at once (one
more hears the busy prompt), shares one ``Gatekeeper`` (caller authorisation and its lockouts)
among its calls, and stops gracefully (``drain``): it stops accepting, lets the calls finish
for ``shutdown_grace_s``, then has each say goodbye and end. ``start_simulated_peers`` brings up the simulated model
and router fleet in-process (``serve --simulate`` and the demo) and returns the Settings that
point at them.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import trio
from trio_websocket import ConnectionClosed, wrap_server_stream
from wsproto.utilities import ProtocolError

from mikrovoice.call.auth import Gatekeeper
from mikrovoice.call.prompts import Prompts
from mikrovoice.call.session import CallRecord, CallSession
from mikrovoice.config import Settings
from mikrovoice.logs import event
from mikrovoice.net import Dialer, listen_error, open_tcp, open_tcp_listeners
from mikrovoice.ops import Health
from mikrovoice.routeros.fanout import Fleet
from mikrovoice.sim.realtime import SimModelConfig, serve_model
from mikrovoice.sim.routeros import FleetProfile, make_fleet, serve_fleet
from mikrovoice.telephony.audiosocket_leg import AudioSocketLeg
from mikrovoice.telephony.clock import FrameClock
from mikrovoice.telephony.leg import CallerLeg
from mikrovoice.telephony.server import set_nodelay
from mikrovoice.telephony.websocket_leg import WebSocketLeg
from mikrovoice.telephony.websocket_leg import accept as accept_websocket
from mikrovoice.tools import NocTools

log = logging.getLogger("mikrovoice.service")

#: A chan_websocket connection must complete its WebSocket upgrade within this.
HANDSHAKE_TIMEOUT_S = 5.0
#: After the grace period of a stop, the calls still up get this long to say goodbye and end.
GOODBYE_S = 15.0


#: The records of the last this-many calls are kept (tests, the demo, a debugger); a long-running
#: service must not keep every call it ever took (the soak found 2 MiB a minute at 200 calls).
KEEP_CALLS = 1000


@dataclass
class ServiceStats:
    calls: deque[CallRecord] = field(default_factory=lambda: deque(maxlen=KEEP_CALLS))


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
        self.gatekeeper = Gatekeeper(settings.auth)
        self.sessions: set[CallSession] = set()  # the calls in progress (admitted or not yet)
        self.draining = False
        self._idle = trio.Event()  # set whenever no call is in progress
        self._idle.set()
        #: Where calls run: set by ``run`` (``serve``); the listeners hand each connection over to
        #: it, so that stopping the listeners does not stop the calls.
        self.call_nursery: trio.Nursery | None = None
        self.stop_requested = trio.Event()
        self.stop_grace_s = settings.shutdown_grace_s
        self.health = Health(max_calls=settings.max_calls)  # what /healthz reports
        #: One 20 ms playout clock for all the calls over AudioSocket (``telephony.clock``).
        self.clock = FrameClock()

    def request_stop(self, grace_s: float | None = None) -> None:
        """Ask ``run_service`` to stop gracefully (SIGTERM: the configured grace; Ctrl-C: none)."""
        if grace_s is not None:
            self.stop_grace_s = min(self.stop_grace_s, grace_s)
        self.stop_requested.set()

    @property
    def active_calls(self) -> int:
        return len(self.sessions)

    async def handle(self, stream: trio.abc.Stream) -> None:
        """One AudioSocket connection, from its first byte to its end. Never raises (but Cancelled)."""
        settings = self.settings
        leg = AudioSocketLeg(stream, partial_frame_timeout_s=settings.partial_frame_timeout_s,
                             caller_in_uuid=settings.audiosocket_caller_in_uuid, clock=self.clock,
                             batch_frames=settings.model_audio_chunk_ms // 20)
        try:
            await self.handle_leg(leg)
        finally:
            leg.release()  # whatever happened to the call: the clock must let go of its socket

    async def handle_websocket(self, stream: trio.abc.Stream) -> None:
        """One chan_websocket connection: the handshake (subprotocol ``media``), then the call."""
        async with trio.open_nursery() as nursery:
            request = None
            # trio-websocket never returns from a failed upgrade (a request that never ends, or is
            # not an upgrade): our own deadline bounds it.
            with trio.move_on_after(HANDSHAKE_TIMEOUT_S):
                try:
                    request = await wrap_server_stream(nursery, stream, max_message_size=65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionClosed, ProtocolError) as exc:
                    event(log, "call.websocket_handshake_failed", level=logging.WARNING,
                          error=str(exc) or type(exc).__name__)
                    nursery.cancel_scope.cancel()
            if request is None:
                if not nursery.cancel_scope.cancel_called:
                    event(log, "call.websocket_handshake_failed", level=logging.WARNING,
                          error=f"no WebSocket upgrade within {HANDSHAKE_TIMEOUT_S:g} s")
                    nursery.cancel_scope.cancel()
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
        busy = self.active_calls >= self.settings.max_calls or self.draining
        session = CallSession(self.settings, self.tools, leg, self.dial, self.prompts, self.gatekeeper, busy=busy)
        self.stats.calls.append(session.record)
        self.sessions.add(session)
        self.health.active_calls = self.active_calls
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        try:
            await session.run()
        except Exception:  # one call's bug must not take the listener down
            log.exception("call.crashed")  # the call id is still in this task's context
        finally:
            self.sessions.discard(session)
            self.health.active_calls = self.active_calls
            if not self.sessions:
                self._idle.set()

    async def drain(self, grace_s: float, goodbye_s: float = GOODBYE_S) -> None:
        """Stop gracefully (the listeners are already closed): the calls in progress may go on for
        ``grace_s``; then each hears the shutdown prompt and ends (within ``goodbye_s``)."""
        self.draining = self.health.draining = True
        event(log, "service.draining", calls=self.active_calls, grace_s=grace_s)
        with trio.move_on_after(grace_s):
            await self._idle.wait()
        if self.sessions:
            event(log, "service.ending_calls", level=logging.WARNING, calls=self.active_calls)
            for session in list(self.sessions):
                session.shutdown()
            with trio.move_on_after(goodbye_s):
                await self._idle.wait()
        event(log, "service.stopped", calls_left=self.active_calls)


async def _listen(
    where: tuple[str, int], handle: Callable[[trio.abc.Stream], Awaitable[None]],
    task_status: trio.TaskStatus[int], name: str, tidy: Callable[[], Awaitable[None]],
    calls: trio.Nursery | None = None, reuse_port: bool = False, **fields: Any,
) -> None:
    """Serve ``handle`` on TCP at ``where`` (TCP_NODELAY on each connection); ``started()`` gets the bound port.
    ``tidy`` runs beside the listener (the router pool's: idle connections close on time, calls or not).
    Connections run in ``calls`` when given (the service's: closing the listener leaves them be).
    ``reuse_port``: share the port with the other workers of ``serve --workers`` (``SO_REUSEPORT``)."""

    async def handler(stream: trio.SocketStream) -> None:
        set_nodelay(stream)
        await handle(stream)

    host, port = where
    try:
        listeners = await open_tcp_listeners(port, host, reuse_port=reuse_port)
    except OSError as exc:  # in use, not ours, or a name that does not resolve
        raise listen_error(exc, host, port, name) from None
    bound = listeners[0].socket.getsockname()[1]
    event(log, name, host=host, port=bound, **fields)
    task_status.started(bound)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tidy)
        await trio.serve_listeners(handler, listeners, handler_nursery=calls)


async def serve_calls(
    settings: Settings,
    stats: ServiceStats | None = None,
    *,
    dial: Dialer = open_tcp,
    service: CallService | None = None,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen for Asterisk's AudioSocket; ``started()`` hands back the bound port."""
    service = service or CallService(settings, stats, dial)
    await _listen(settings.listen, service.handle, task_status, "service.listening", service.tools.fleet.pool.tidy,
                  service.call_nursery, reuse_port, routers=len(settings.routers), max_calls=settings.max_calls,
                  auth=settings.auth.require,
                  endpoint=settings.realtime_url.split("?", 1)[0], model=settings.model)


async def serve_websocket_calls(
    settings: Settings,
    stats: ServiceStats | None = None,
    *,
    dial: Dialer = open_tcp,
    service: CallService | None = None,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen for Asterisk's chan_websocket (``Dial(WebSocket/...)``); ``started()`` hands back the port."""
    if settings.websocket_listen is None:
        raise ValueError("no [websocket] listen address configured")
    service = service or CallService(settings, stats, dial)
    await _listen(settings.websocket_listen, service.handle_websocket, task_status, "service.listening_websocket",
                  service.tools.fleet.pool.tidy, service.call_nursery, reuse_port, subprotocol="media")


@dataclass(frozen=True)
class Ports:
    audiosocket: int
    websocket: int | None = None


async def run_service(
    settings: Settings, service: CallService, *, reuse_port: bool = False,
    task_status: trio.TaskStatus[Ports] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The whole service until ``service.request_stop()``, then a graceful stop: the listeners close at once
    (Asterisk's next call goes to another instance, or fails over in the dialplan), the calls in
    progress go on for the grace period, then hear the shutdown prompt and end. ``reuse_port``: a
    worker of ``serve --workers``, sharing its ports with the others (``SO_REUSEPORT``)."""
    async with trio.open_nursery() as calls:
        service.call_nursery = calls
        async with trio.open_nursery() as listening:
            audiosocket = await listening.start(partial(serve_calls, settings, service=service, reuse_port=reuse_port))
            websocket = None
            if settings.websocket_listen is not None:
                websocket = await listening.start(partial(serve_websocket_calls, settings, service=service,
                                                          reuse_port=reuse_port))
            service.health.listening = True
            task_status.started(Ports(audiosocket, websocket))
            await service.stop_requested.wait()
            listening.cancel_scope.cancel()
            service.health.listening = False
        await service.drain(service.stop_grace_s)
        calls.cancel_scope.cancel()


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
