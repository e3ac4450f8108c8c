"""The Trio RouterOS client: one persistent API connection per router, shared through tags.

``RouterConnection`` moves bytes between one TCP (or TLS, API-SSL) stream and an ``ApiSession``
(``routeros.connection``, sans-IO). ``RouterPool`` keeps one connection per router for the whole
process, opened on first use, closed when idle, replaced when broken, with a per-router and a
global limit on commands in flight. It starts no task: a caller waiting for its answer reads for
everyone ("whoever waits reads"), so the pool can live in a plain object used from many calls'
nurseries. Only ``ReadCommand``s (the read-only allowlist) can be sent; every failure is a
``RouterFailure``; no password ever reaches a log line, a message or a repr.
"""

from __future__ import annotations

import errno
import logging
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field

import trio

from mikrovoice.config import RouterConfig
from mikrovoice.logs import event
from mikrovoice.net import Dialer, open_tcp
from mikrovoice.routeros.commands import ReadCommand, login
from mikrovoice.routeros.connection import Answer, ApiSession, SessionState
from mikrovoice.routeros.errors import Reason, RouterFailure
from mikrovoice.routeros.protocol import Request

log = logging.getLogger("mikrovoice.routeros")

RECEIVE_SIZE = 65536
#: How long a sentence (a command or a /cancel) may take to leave; past that the connection is
#: stuck (a partial sentence may be on the wire) and is dropped.
SEND_GRACE_S = 1.0
CANCEL_GRACE_S = 1.0
#: Ciphers when the certificate is not verified: every strong suite, anonymous DH included (a
#: router's api-ssl without a certificate speaks only ADH). Not "DEFAULT:ADH": DEFAULT removes aNULL
#: with "!", which OpenSSL never lets a later "ADH" add back (checked on OpenSSL 3.0: no ADH suite).
UNVERIFIED_CIPHERS = "HIGH:!PSK:!SRP:@SECLEVEL=0"


@dataclass
class PoolStats:
    """Counters of a ``RouterPool`` (all routers together)."""

    #: dials that reached the router (TCP, and TLS when configured, up)
    connects: int = 0
    #: logins the router accepted
    logins: int = 0
    #: connections opened to replace one that broke (an idle close is not counted)
    reconnects: int = 0
    #: command sentences written (a stale retry counts twice; /login and /cancel not counted)
    commands: int = 0
    #: /cancel sentences written for commands whose caller gave up
    cancels_sent: int = 0
    #: logged-in connections that broke: EOF, reset, garbage, !fatal, or a /cancel that could not leave
    connections_dropped: int = 0
    #: connections logged in and kept by the pool now
    open_connections: int = 0


def tls_context(config: RouterConfig) -> ssl.SSLContext:
    """The client context for API-SSL. With ``tls_verify`` the certificate must chain to ``ca_file``
    (or the system store) and name ``config.host`` (a DNS name, or an IP address SAN when the host
    is an address). Without it nothing is checked and anonymous DH is allowed, as RouterOS uses when
    api-ssl has no certificate (research/routeros.md 1.7)."""
    if config.tls_verify:
        return ssl.create_default_context(cafile=config.ca_file)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers(UNVERIFIED_CIPHERS)
    return context


def shown_words(request: Request, tag: int | str | None = None) -> str:
    """The request's words as they go on the wire, for a debug line: any password attribute
    masked as ``Request.__repr__`` masks it (``***``)."""
    words = [request.command]
    words += [f"={k}={'***' if 'password' in k.lower() else v}" for k, v in request.attributes.items()]
    words += list(request.queries)
    if tag is not None:
        words.append(f".tag={tag}")
    return " ".join(words)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _os_error_text(exc: OSError) -> str:
    """The errno text of a failed dial (trio wraps the per-address errors in one OSError)."""
    found: list[str] = []

    def walk(error: BaseException | None) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        elif isinstance(error, OSError):
            if error.errno is not None and error.errno in errno.errorcode:
                found.append(os.strerror(error.errno))
            elif error.strerror:
                found.append(error.strerror)
            walk(error.__cause__)

    walk(exc)
    return "; ".join(dict.fromkeys(found)) or str(exc) or type(exc).__name__


class RouterConnection:
    """One logged-in API session to one router; several commands in flight at once, by tag."""

    def __init__(self, config: RouterConfig, stream: trio.abc.Stream, stats: PoolStats) -> None:
        self.config = config
        self._stream = stream
        self._stats = stats
        self._session = ApiSession()
        self._send_lock = trio.StrictFIFOLock()
        #: held by the one task that reads the stream and dispatches for every tag
        self._receive_lock = trio.Lock()
        self._waiters: dict[int, trio.Event] = {}
        self._closed = False
        self._closed_by_us = False
        self._logged_in = False
        #: commands whose callers are waiting now, and since when nobody is
        self.in_flight = 0
        self.idle_since = trio.current_time()

    @classmethod
    async def open(cls, config: RouterConfig, *, dial: Dialer = open_tcp, tls: ssl.SSLContext | None = None,
                   timeout_s: float = 5.0, stats: PoolStats | None = None) -> RouterConnection:
        """Dial, TLS handshake (when ``tls``) and login, all within ``timeout_s``."""
        stats = stats if stats is not None else PoolStats()
        where = f"{config.host}:{config.port}"
        with trio.move_on_after(timeout_s) as connect_scope:
            event(log, "router.dialing", level=logging.DEBUG, router=config.name, host=config.host, port=config.port,
                  tls=tls is not None)
            began = trio.current_time()
            try:
                stream = await dial(config.host, config.port)
            except OSError as exc:
                raise RouterFailure(Reason.UNREACHABLE, f"cannot connect to {where}: {_os_error_text(exc)}") from None
            dialled = handshaken = trio.current_time()
            try:
                if tls is not None:
                    stream = await cls._handshake(stream, tls, config.host, where)
                    handshaken = trio.current_time()
                stats.connects += 1
                connection = cls(config, stream, stats)
                await connection._login()
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
            stats.logins += 1
            event(log, "router.connect_timing", level=logging.DEBUG, router=config.name, tcp_ms=_ms(dialled - began),
                  tls_ms=_ms(handshaken - dialled) if tls is not None else None,
                  login_ms=_ms(trio.current_time() - handshaken))
            event(log, "router.connected", router=config.name, host=config.host, port=config.port, tls=tls is not None)
            return connection
        assert connect_scope.cancelled_caught
        raise RouterFailure(Reason.CONNECT_TIMEOUT, f"{where}: no TCP connection, TLS handshake and login "
                                                    f"within {timeout_s:g} s")

    @staticmethod
    async def _handshake(stream: trio.abc.Stream, context: ssl.SSLContext, host: str, where: str) -> trio.SSLStream[
            trio.abc.Stream]:
        tls_stream = trio.SSLStream(stream, context, server_hostname=host)
        try:
            await tls_stream.do_handshake()
        except (ssl.SSLError, trio.BrokenResourceError) as exc:
            cause = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
            why = str(cause) if cause is not None else "the router closed the connection during the handshake"
            raise RouterFailure(Reason.TLS, f"TLS handshake with {where} failed: {why}") from None
        return tls_stream

    async def _login(self) -> None:
        tag, data = self._session.login(self.config.username, self.config.password)
        event(log, "router.send", level=logging.DEBUG, router=self.config.name,
              words=shown_words(login(self.config.username, ""), tag))
        await self._send(data, shield=False)
        await self._await_answer(tag)
        answer = self._session.take(tag)
        if answer.failure is not None:
            raise RouterFailure(answer.failure.reason, answer.failure.detail) from None
        self._logged_in = True

    @property
    def usable(self) -> bool:
        return not self._closed and self._session.state is SessionState.READY

    @property
    def broken(self) -> bool:
        """Closed by the router's doing (not by ours: idle, shutdown)."""
        return self._session.state is SessionState.CLOSED and not self._closed_by_us

    async def run(self, command: ReadCommand) -> Answer:
        """Send ``command`` and wait for its answer. Cancelled (the caller's deadline, a hang-up):
        the router is told to ``/cancel`` the tag, the connection keeps serving the others."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self.in_flight += 1
        try:
            tag, data = self._session.send(command)
            self._stats.commands += 1
            sent_at = trio.current_time()
            if log.isEnabledFor(logging.DEBUG):  # the words are built only for a debug log
                event(log, "router.send", level=logging.DEBUG, router=self.config.name,
                      words=shown_words(command.request, tag), in_flight=self.in_flight)
            await self._send(data, shield=True)
            try:
                await self._await_answer(tag)
            except trio.Cancelled:
                await self._abandon(tag)
                raise
            answer = self._session.take(tag)
            event(log, "router.reply", level=logging.DEBUG, router=self.config.name, tag=tag,
                  command=answer.command, rows=len(answer.rows),
                  failure=answer.failure.reason.value if answer.failure else None,
                  elapsed_ms=_ms(trio.current_time() - sent_at))
            return answer
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self.idle_since = trio.current_time()

    # ------------------------------------------------------------------ bytes out

    async def _send(self, data: bytes, *, shield: bool, grace_s: float = SEND_GRACE_S) -> bool:
        """Write one sentence. Shielded: within ``grace_s`` even if the caller is cancelled, since a
        sentence cut in half would poison the connection for everyone. False: the connection is gone."""
        with trio.CancelScope(shield=shield) as scope:
            if shield:
                scope.deadline = trio.current_time() + grace_s
            try:
                async with self._send_lock:
                    await self._stream.send_all(data)
                return True
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._finished(self._session.connection_lost(f"connection reset while sending: {exc}"))
        if scope.cancelled_caught:
            self._finished(self._session.abort(f"a sentence could not be sent within {grace_s:g} s"))
        await self._after_close()
        return False

    async def _abandon(self, tag: int) -> None:
        """The caller of ``tag`` is gone: cancel it on the router, or drop the connection if we can't."""
        if self._session.finished(tag):
            self._session.take(tag)  # answered (or the connection died) just as the caller gave up
            return
        cancel_tag, data = self._session.cancel(tag)
        if await self._send(data, shield=True, grace_s=CANCEL_GRACE_S):
            self._stats.cancels_sent += 1
            event(log, "router.cancel", router=self.config.name, tag=tag, cancel_tag=cancel_tag)
        else:
            event(log, "router.cancel_failed", level=logging.WARNING, router=self.config.name, tag=tag,
                  detail=self._session.closed_by.detail if self._session.closed_by else "")

    # ------------------------------------------------------------------ bytes in: whoever waits reads

    async def _await_answer(self, tag: int) -> None:
        """Until ``tag`` is finished: read for everyone if nobody is reading, else wait to be woken."""
        while not self._session.finished(tag):
            try:
                self._receive_lock.acquire_nowait()
            except trio.WouldBlock:
                woken = self._waiters[tag] = trio.Event()
                try:
                    await woken.wait()
                finally:
                    if self._waiters.get(tag) is woken:
                        del self._waiters[tag]
                continue
            try:
                await self._read_until(tag)
            finally:
                self._receive_lock.release()
                self._wake_all()  # somebody else takes over reading (or learns its answer came)

    async def _read_until(self, tag: int) -> None:
        while not self._session.finished(tag):
            try:
                # atomic under cancellation: data is either returned or left in the stream
                data = await self._stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._finished(self._session.connection_lost(f"connection reset: {str(exc) or type(exc).__name__}"))
            else:
                self._finished(self._session.receive_data(data))
            if self._session.state is SessionState.CLOSED:
                await self._after_close()

    def _finished(self, tags: list[int]) -> None:
        for tag in tags:
            woken = self._waiters.pop(tag, None)
            if woken is not None:
                woken.set()

    def _wake_all(self) -> None:
        for woken in self._waiters.values():
            woken.set()
        self._waiters.clear()

    # ------------------------------------------------------------------ closing

    async def _after_close(self) -> None:
        """The session closed (the router's doing, or a sentence we could not send): close the stream."""
        if self._closed:
            return
        self._closed = True
        self._wake_all()
        failure = self._session.closed_by
        if self._logged_in and failure is not None:
            self._stats.connections_dropped += 1
            event(log, "router.dropped", level=logging.WARNING, router=self.config.name, reason=failure.reason.value,
                  detail=failure.detail, in_flight=self.in_flight)
        await trio.aclose_forcefully(self._stream)

    async def aclose(self, why: str = "closed by mikrovoice") -> None:
        """Close the connection ourselves; commands still in flight fail with Reason.DROPPED."""
        if self._closed:
            return
        self._closed = True
        self._closed_by_us = True
        self._finished(self._session.abort(why))
        self._wake_all()
        await trio.aclose_forcefully(self._stream)


@dataclass
class _ConnectAttempt:
    """One dial + login that concurrent first users of a router share."""

    done: trio.Event = field(default_factory=trio.Event)
    failure: RouterFailure | None = None


@dataclass
class _RouterSlot:
    config: RouterConfig
    limiter: trio.CapacityLimiter
    tls: ssl.SSLContext | None
    connection: RouterConnection | None = None
    connecting: _ConnectAttempt | None = None
    #: the previous connection broke: the next one is a reconnect
    lost: bool = False


class RouterPool:
    """One persistent connection per router, shared by every caller of the process."""

    def __init__(self, routers: Iterable[RouterConfig], *, dial: Dialer = open_tcp, connect_timeout_s: float = 5.0,
                 idle_timeout_s: float = 60.0, per_router: int = 4, total: int = 256) -> None:
        self._dial = dial
        self._connect_timeout_s = connect_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._total = trio.CapacityLimiter(total)
        self._slots = {
            r.name: _RouterSlot(r, trio.CapacityLimiter(per_router), tls_context(r) if r.tls else None) for r in routers
        }
        self._closed = False
        self.stats = PoolStats()

    async def run(self, router: str, command: ReadCommand) -> list[dict[str, str]]:
        """The ``!re`` rows of ``command`` on ``router``. The deadline is the caller's own cancel scope."""
        if self._closed:
            raise trio.ClosedResourceError("the router pool is closed")
        slot = self._slots.get(router)
        if slot is None:
            raise ValueError(f"no router named {router!r} in the inventory")
        await self._sweep()
        # fixed order: the router's own limit first, so a busy router holds no global slot while it waits
        async with slot.limiter, self._total:
            connection, reused = await self._connection(slot)
            event(log, "router.connection", level=logging.DEBUG, router=router, reused=reused,
                  in_flight=connection.in_flight)
            answer = await connection.run(command)
            if answer.stale and reused:
                # the connection had died while idle (router reboot, NAT timeout): reads are
                # idempotent, so ask once more on a fresh connection
                event(log, "router.stale_retry", router=router, detail=answer.failure.detail if answer.failure else "")
                await self._discard(slot, connection)
                connection, _ = await self._connection(slot)
                answer = await connection.run(command)
            if not connection.usable:
                await self._discard(slot, connection)
            return answer.result()

    async def _connection(self, slot: _RouterSlot) -> tuple[RouterConnection, bool]:
        """The router's connection, and whether it was already open; opened once for concurrent callers."""
        reused = True
        while True:
            connection = slot.connection
            if connection is not None:
                if connection.usable:
                    return connection, reused
                await self._discard(slot, connection)
                continue
            reused = False
            attempt = slot.connecting
            if attempt is not None:
                await attempt.done.wait()
                if attempt.failure is not None:
                    raise RouterFailure(attempt.failure.reason, attempt.failure.detail)
                continue  # opened (or its opener was cancelled: then one of us dials again)
            attempt = slot.connecting = _ConnectAttempt()
            try:
                connection = await RouterConnection.open(slot.config, dial=self._dial, tls=slot.tls,
                                                         timeout_s=self._connect_timeout_s, stats=self.stats)
            except RouterFailure as failure:
                attempt.failure = failure
                event(log, "router.connect_failed", level=logging.WARNING, router=slot.config.name,
                      reason=failure.reason.value, detail=failure.detail)
                raise
            else:
                if slot.lost:
                    self.stats.reconnects += 1
                    slot.lost = False
                slot.connection = connection
                self.stats.open_connections += 1
            finally:
                # waiters wake to the connection, the failure, or (opener cancelled) an empty slot
                slot.connecting = None
                attempt.done.set()
            if self._closed:
                await self._discard(slot, connection, "the router pool is closed")
                raise trio.ClosedResourceError("the router pool is closed")

    async def _discard(self, slot: _RouterSlot, connection: RouterConnection, why: str = "closed by mikrovoice") -> None:
        if slot.connection is connection:
            slot.connection = None
            self.stats.open_connections -= 1
            slot.lost = slot.lost or connection.broken
        await connection.aclose(why)

    async def _sweep(self) -> None:
        """Close connections idle for ``idle_timeout_s`` and forget broken ones (checked on every run)."""
        now = trio.current_time()
        for slot in list(self._slots.values()):
            connection = slot.connection
            if connection is None:
                continue
            if not connection.usable:
                await self._discard(slot, connection)
            elif connection.in_flight == 0 and now - connection.idle_since >= self._idle_timeout_s:
                event(log, "router.idle_closed", router=slot.config.name, idle_s=round(now - connection.idle_since, 3))
                await self._discard(slot, connection, f"idle for {self._idle_timeout_s:g} s")

    async def tidy(self) -> None:
        """Run forever: close idle connections on time even when no question comes to sweep them.

        The service runs this beside its listeners; a pool without it still closes idle
        connections, at its next use."""
        while True:
            await trio.sleep(max(1.0, self._idle_timeout_s / 4))
            if self._closed:
                return
            await self._sweep()

    async def aclose(self) -> None:
        """Close every connection; commands still in flight fail with Reason.DROPPED."""
        self._closed = True
        for slot in self._slots.values():
            if slot.connection is not None:
                await self._discard(slot, slot.connection, "the router pool is closed")
