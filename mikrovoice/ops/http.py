"""A small HTTP/1.1 server for operations: ``/metrics`` (Prometheus) and ``/healthz``.

Trio moves the bytes, h11 parses and frames HTTP (sans-IO). ``GET`` and ``HEAD`` only:

- ``/metrics``: 200, ``Metrics.render()`` (OpenMetrics when the Accept header asks for it);
- ``/healthz``: ``Health.status()`` as JSON: 200 ``ok``, 503 ``starting`` or ``draining`` (a worker of
  ``serve --workers`` also says its ``worker`` index and ``pid``, and serves on the metrics port + its index);
- any other path 404, any other method 405, a malformed request 400 (then the connection closes).

It never trusts the peer: each connection lives at most ``connection_timeout_s`` (a slowloris
client or one that never reads cannot pin a task), request heads and bodies are bounded, at most
``max_connections`` are served at once (more are closed unanswered), and no peer behaviour ends
the server: a connection's failure is logged and only that connection closes.
"""

from __future__ import annotations

import json
import logging

import h11
import trio

from mikrovoice.logs import event
from mikrovoice.ops.metrics import Health, Metrics

log = logging.getLogger("mikrovoice.ops")

MAX_CONNECTIONS = 64
CONNECTION_TIMEOUT_S = 10.0
#: Request line plus headers.
MAX_HEAD_BYTES = 16 * 1024
#: A GET has no business sending a body; one larger than this is refused (413) and the connection closed.
MAX_BODY_BYTES = 64 * 1024
RECEIVE_SIZE = 16 * 1024

_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            413: b"Content Too Large", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


class _Closed(Exception):
    """The peer closed the connection, or it broke."""


class HttpServer:
    """Serves connections (``handle``) for one ``Metrics`` and one ``Health``."""

    def __init__(self, metrics: Metrics, health: Health, *, max_connections: int = MAX_CONNECTIONS,
                 connection_timeout_s: float = CONNECTION_TIMEOUT_S) -> None:
        self.metrics = metrics
        self.health = health
        self.max_connections = max_connections
        self.connection_timeout_s = connection_timeout_s
        self.open_connections = 0
        #: connections closed unanswered because ``max_connections`` were open
        self.refused = 0
        #: connections closed by their deadline
        self.timed_out = 0

    async def handle(self, stream: trio.abc.Stream) -> None:
        """Serve one connection until the peer closes it, an error, or the deadline; never raises."""
        if self.open_connections >= self.max_connections:
            self.refused += 1
            event(log, "ops.http_refused", level=logging.DEBUG, open=self.open_connections)
            await trio.aclose_forcefully(stream)
            return
        self.open_connections += 1
        try:
            with trio.move_on_after(self.connection_timeout_s) as deadline:
                await self._serve(stream)
            if deadline.cancelled_caught:
                self.timed_out += 1
                event(log, "ops.http_timeout", level=logging.DEBUG, after_s=self.connection_timeout_s)
        except _Closed:
            pass
        except Exception as exc:  # a bug here must cost one connection, never the server
            event(log, "ops.http_failed", level=logging.WARNING, error=f"{type(exc).__name__}: {exc}")
        finally:
            self.open_connections -= 1
            await trio.aclose_forcefully(stream)

    async def _serve(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        while True:
            try:
                request = await self._next_event(conn, stream)
                if not isinstance(request, h11.Request):
                    return  # ConnectionClosed (or nothing we can answer)
                body = 0
                while True:
                    part = await self._next_event(conn, stream)
                    if isinstance(part, h11.Data):
                        body += len(part.data)
                        if body > MAX_BODY_BYTES:
                            await self._send(conn, stream, 413, b"request body too large\n", close=True)
                            return
                    elif isinstance(part, h11.EndOfMessage):
                        break
                    else:
                        return
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint if exc.error_status_hint in _REASONS else 400
                event(log, "ops.http_bad_request", level=logging.DEBUG, status=status, error=str(exc)[:120])
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._send(conn, stream, status, b"bad request\n", close=True)
                return
            await self._answer(conn, stream, request)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # MUST_CLOSE: HTTP/1.0, "Connection: close", or an error
            conn.start_next_cycle()

    async def _answer(self, conn: h11.Connection, stream: trio.abc.Stream, request: h11.Request) -> None:
        method = request.method.upper()
        path = request.target.split(b"?", 1)[0]
        extra: list[tuple[bytes, bytes]] = []
        content_type = b"text/plain; charset=utf-8"
        if method not in (b"GET", b"HEAD"):
            status, body = 405, b"method not allowed\n"
            extra.append((b"Allow", b"GET, HEAD"))
        elif path == b"/metrics":
            accept = b", ".join(value for name, value in request.headers if name == b"accept")
            rendered, kind = self.metrics.render(accept.decode("latin-1"))
            status, body, content_type = 200, rendered, kind.encode("latin-1")
        elif path == b"/healthz":
            status, document = self.health.status()
            body = json.dumps(document).encode() + b"\n"
            content_type = b"application/json"
        else:
            status, body = 404, b"not found\n"
        event(log, "ops.http_request", level=logging.DEBUG, method=method.decode("latin-1")[:16],
              path=path.decode("latin-1")[:80], status=status, bytes=len(body))
        await self._send(conn, stream, status, body, content_type=content_type, extra=extra,
                         head=method == b"HEAD")

    async def _send(self, conn: h11.Connection, stream: trio.abc.Stream, status: int, body: bytes, *,
                    content_type: bytes = b"text/plain; charset=utf-8", extra: list[tuple[bytes, bytes]] | None = None,
                    close: bool = False, head: bool = False) -> None:
        headers = [(b"Content-Type", content_type), (b"Content-Length", str(len(body)).encode()),
                   (b"Cache-Control", b"no-store"), *(extra or [])]
        if close:
            headers.append((b"Connection", b"close"))
        try:
            data = conn.send(h11.Response(status_code=status, headers=headers, reason=_REASONS.get(status, b"")))
            if not head:
                data = (data or b"") + (conn.send(h11.Data(data=body)) or b"")
            data = (data or b"") + (conn.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            return  # h11 cannot frame an answer in this state: just close
        try:
            await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise _Closed() from None

    @staticmethod
    async def _next_event(conn: h11.Connection, stream: trio.abc.Stream) -> object:
        while True:
            next_event = conn.next_event()
            if next_event is not h11.NEED_DATA:
                return next_event
            try:
                data = await stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            conn.receive_data(bytes(data))


async def serve_http(host: str | None, port: int, metrics: Metrics, health: Health, *,
                     max_connections: int = MAX_CONNECTIONS, connection_timeout_s: float = CONNECTION_TIMEOUT_S,
                     task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``/metrics`` and ``/healthz`` on ``host:port`` until cancelled; ``started()`` hands
    back the bound port (useful with port 0)."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    server = HttpServer(metrics, health, max_connections=max_connections,
                        connection_timeout_s=connection_timeout_s)
    bound = listeners[0].socket.getsockname()[1]
    event(log, "ops.http_listening", host=host or "*", port=bound)
    task_status.started(bound)
    await trio.serve_listeners(server.handle, listeners)
