"""The old design, re-created as the baseline of bench/dead_air.py: a synchronous bridge that blocks on the router.

The seed's system (``handle_incoming_call.py``, /work/shared/seed/000_*.txt) bridged an Asterisk
call to the OpenAI Realtime API with blocking sockets and threads, and ran the model's tool call
inline: ``result = self.mikrotik_client.query(pregunta, timeout)`` in the thread that also reads
the model's WebSocket. While the routers think, nobody reads that socket, so the server's pings go
unanswered (no pong), and after the server's keepalive timeout the link is closed; when the query
returns, sending its result fails ("Connection is already closed") and the assistant never speaks
again. (The seed's later "fix" ran the query in a thread but waited for it with ``time.sleep`` in
a loop in that same reading thread: the WebSocket stayed unread just the same.)

This module is that design, small and faithful, as its own process:

- ``socketserver.ThreadingTCPServer`` accepts AudioSocket connections (Asterisk's ``AudioSocket()``
  app: ``01 00 10`` + UUID, then ``10`` slin frames; EOF is the hang-up), one thread per call;
- per call, a blocking WebSocket client (wsproto over a plain socket; pings are answered when the
  socket is read, as websocket-client does) opens a Realtime session: G.711 mu-law both ways,
  server VAD, one tool (``dispositivos_activos``), a greeting;
- an uplink thread forwards every caller frame as one ``input_audio_buffer.append``;
- a playout thread paces the model's audio to Asterisk, 20 ms per frame, and sends nothing when it
  has nothing (no comfort audio: the old bridge had none);
- the call's main thread reads the model's events; on a function call it queries the router with
  librouteros (blocking, ``/ip/dhcp-server/lease/print``), inline, then sends the output and asks
  for a response. That is the blocking this baseline exists to measure.

    python bench/baseline/blocking_bridge.py --listen 127.0.0.1:9092 --model-url ws://127.0.0.1:8765/v1/realtime \
        --routers routers.json

``routers.json``: ``{"152.1": {"host": "127.0.0.1", "port": 8728}, ...}``; the API key comes from
``OPENAI_API_KEY``, the routers' user from ``--router-user`` and their password from the variable
named by ``--router-password-env``. It prints ``baseline.listening port=N`` once it accepts calls
and runs until SIGTERM. Nothing in the product imports this.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import queue
import signal
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import librouteros
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

from mikrovoice.telephony.g711 import slin_to_ulaw, ulaw_to_slin

log = logging.getLogger("baseline")

FRAME_BYTES = 320  # 20 ms of 8 kHz 16-bit audio
FRAME_S = 0.020
SILENCE = bytes(FRAME_BYTES)
KIND_HANGUP, KIND_UUID, KIND_SLIN = 0x00, 0x01, 0x10
INSTRUCTIONS = (
    "Eres el asistente telefónico del NOC de un ISP con routers MikroTik. Antes de consultar, di "
    "'Un momento, estoy consultando esa información para ti' y usa la herramienta."
)
GREETING = 'Saluda al usuario. Di exactamente: "Hola, soy el asistente del NOC. ¿Qué quieres consultar?"'
DEVICES_TOOL = {
    "type": "function", "name": "dispositivos_activos",
    "description": "Dispositivos activos (leases DHCP 'bound') de un router MikroTik.",
    "parameters": {"type": "object", "properties": {"router": {"type": "string"}}, "required": ["router"]},
}


class LinkClosed(Exception):
    """The model's WebSocket is closed (by the server, or the TCP connection ended)."""


class BlockingWebSocket:
    """A WebSocket client over a blocking socket (wsproto): a ping is answered only when ``receive``
    reads it, as websocket-client and the other synchronous clients do. ``send`` may be called from
    another thread than ``receive``."""

    def __init__(self, url: str, api_key: str, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        self._sock = socket.create_connection((host, port), timeout=timeout_s)
        self._sock.settimeout(None)
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._lock = threading.Lock()  # wsproto's state and the socket's writes
        self._text: list[str] = []
        self._pending: deque[Any] = deque()  # events read and not yet handled
        self.closed = False
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        self._write(self._ws.send(Request(host=f"{host}:{port}", target=target,
                                          extra_headers=[(b"Authorization", f"Bearer {api_key}".encode())])))
        while True:
            self._read()
            while self._pending:
                event = self._pending.popleft()
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, (RejectConnection, RejectData)):
                    raise LinkClosed(f"the server refused the WebSocket upgrade: {event!r}")

    def _write(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            self.closed = True
            raise LinkClosed("Connection is already closed") from exc

    def _read(self) -> None:
        """One blocking read off the socket; what it completes joins ``_pending``."""
        if self.closed:
            raise LinkClosed("Connection is already closed")
        try:
            data = self._sock.recv(65536)
        except OSError:
            data = b""
        with self._lock:
            self._ws.receive_data(data or None)
            self._pending.extend(self._ws.events())
        if not data:
            self.closed = True  # what wsproto made of the EOF is in _pending, then nothing more

    def send(self, event: dict[str, Any]) -> None:
        if self.closed:
            raise LinkClosed("Connection is already closed")
        with self._lock:
            self._write(self._ws.send(Message(data=json.dumps(event, ensure_ascii=False))))

    def receive(self) -> dict[str, Any]:
        """The next server event; pings met on the way are answered now."""
        while True:
            if not self._pending:
                self._read()
            while self._pending:
                event = self._pending.popleft()
                if isinstance(event, Ping):
                    with self._lock:
                        self._write(self._ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self.closed = True
                    with self._lock:
                        try:
                            self._sock.sendall(self._ws.send(event.response()))
                        except (OSError, LocalProtocolError):
                            pass  # the TCP connection ended without a close frame
                    raise LinkClosed(f"the server closed the WebSocket ({event.code} {event.reason})")
                elif isinstance(event, TextMessage):
                    self._text.append(event.data)
                    if event.message_finished:
                        text, self._text = "".join(self._text), []
                        parsed: dict[str, Any] = json.loads(text)
                        return parsed
            if self.closed:
                raise LinkClosed("Connection is already closed")

    def close(self) -> None:
        """A close frame if the link is still open, then the socket shut both ways (which also wakes
        a thread blocked reading it). Any thread; more than once is harmless."""
        if not self.closed:
            self.closed = True
            with self._lock:
                try:
                    self._sock.sendall(self._ws.send(CloseConnection(code=1000)))
                except (OSError, LocalProtocolError):
                    pass  # already gone: shutting down is all that is left
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


class RouterClient:
    """The old ``mikrotik_client``: librouteros, one connection per query, blocking until it answers."""

    def __init__(self, routers: dict[str, dict[str, Any]], username: str, password: str, timeout_s: float) -> None:
        self.routers, self.username, self.password, self.timeout_s = routers, username, password, timeout_s

    def active_devices(self, router: str) -> dict[str, Any]:
        where = self.routers.get(router)
        if where is None:
            return {"error": f"No conozco el router {router}"}
        api = librouteros.connect(where["host"], self.username, self.password, port=int(where["port"]),
                                  timeout=self.timeout_s, encoding="latin-1")
        try:
            leases = [row for row in api.path("ip", "dhcp-server", "lease") if row.get("status") == "bound"]
        finally:
            api.close()
        devices = [{"ip": r.get("address", ""), "mac": r.get("mac-address", ""), "nombre": r.get("host-name", "")}
                   for r in leases]
        return {"router": router, "dispositivos_activos": len(leases), "dispositivos": devices[:10]}


class BlockingCall:
    """One call: the AudioSocket connection, the model's WebSocket, and the three threads between them."""

    def __init__(self, sock: socket.socket, model_url: str, api_key: str, routers: RouterClient) -> None:
        self.sock, self.model_url, self.api_key, self.routers = sock, model_url, api_key, routers
        self.call_id = "?"
        self.playout: queue.Queue[bytes] = queue.Queue()
        self.ended = threading.Event()
        self.write_lock = threading.Lock()
        self.ws: BlockingWebSocket | None = None

    def read_exact(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def read_message(self) -> tuple[int, bytes]:
        header = self.read_exact(3)
        return header[0], self.read_exact(int.from_bytes(header[1:], "big"))

    def run(self) -> None:
        try:
            kind, payload = self.read_message()
            if kind != KIND_UUID or len(payload) != 16:
                return
            self.call_id = str(uuid.UUID(bytes=payload))
            log.info("call.start call=%s", self.call_id)
            self.ws = BlockingWebSocket(self.model_url, self.api_key)
            self.ws.send({"type": "session.update", "session": {
                "type": "realtime", "instructions": INSTRUCTIONS, "output_modalities": ["audio"],
                "audio": {"input": {"format": {"type": "audio/pcmu"},
                                    "turn_detection": {"type": "server_vad", "create_response": True}},
                          "output": {"format": {"type": "audio/pcmu"}}},
                "tools": [DEVICES_TOOL], "tool_choice": "auto"}})
            self.ws.send({"type": "response.create", "response": {"instructions": GREETING}})
            threading.Thread(target=self.uplink, daemon=True).start()
            threading.Thread(target=self.play, daemon=True).start()
            self.model_events()
            self.ended.wait()  # the caller hangs up; the old bridge never did
        except (EOFError, OSError, LinkClosed) as exc:
            log.info("call.error call=%s error=%r", self.call_id, exc)
        finally:
            if self.ws is not None:
                self.ws.close()
            self.sock.close()
            log.info("call.end call=%s", self.call_id)

    def model_events(self) -> None:
        """The call's main loop: the model's events, the tool call run inline (the blocking)."""
        assert self.ws is not None
        while not self.ended.is_set():
            try:
                event = self.ws.receive()
            except LinkClosed as exc:
                if not self.ended.is_set():
                    log.error("model.link_closed call=%s error=%s", self.call_id, exc)
                return  # the assistant is mute from here on; the caller has to hang up
            kind = event.get("type")
            if kind == "response.output_audio.delta":
                slin = ulaw_to_slin(base64.b64decode(event["delta"]))
                for i in range(0, len(slin), FRAME_BYTES):
                    self.playout.put(slin[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\x00"))
            elif kind == "input_audio_buffer.speech_started":
                self.flush_playout()
            elif kind == "response.function_call_arguments.done":
                self.execute_function(event["name"], event["call_id"], event["arguments"])
            elif kind == "error":
                log.warning("model.error call=%s error=%s", self.call_id, event.get("error"))

    def execute_function(self, name: str, call_id: str, arguments: str) -> None:
        assert self.ws is not None
        started = time.monotonic()
        log.info("tool.start call=%s tool=%s arguments=%s", self.call_id, name, arguments)
        try:
            args = json.loads(arguments)
            result = (self.routers.active_devices(str(args.get("router"))) if name == "dispositivos_activos"
                      else {"error": f"herramienta desconocida {name}"})
        except Exception as exc:  # the old bridge told the model what went wrong
            result = {"error": str(exc), "response": "Error al consultar la información."}
        log.info("tool.done call=%s seconds=%.1f", self.call_id, time.monotonic() - started)
        try:
            self.ws.send({"type": "conversation.item.create", "item": {
                "type": "function_call_output", "call_id": call_id, "output": json.dumps(result, ensure_ascii=False)}})
            self.ws.send({"type": "response.create"})
        except LinkClosed as exc:
            log.error("tool.output_lost call=%s error=%s", self.call_id, exc)

    def uplink(self) -> None:
        """Caller audio to the model, one append per 20 ms frame; EOF is the caller's hang-up."""
        assert self.ws is not None
        forwarding = True
        try:
            while True:
                kind, payload = self.read_message()
                if kind == KIND_HANGUP:
                    break
                if kind == KIND_SLIN and forwarding:
                    try:
                        self.ws.send({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(slin_to_ulaw(payload)).decode("ascii")})
                    except LinkClosed as exc:
                        log.error("model.append_failed call=%s error=%s", self.call_id, exc)
                        forwarding = False
        except (EOFError, OSError):
            pass
        finally:
            self.ended.set()
            self.ws.close()  # the hang-up ends the model session (and wakes the thread reading it)

    def flush_playout(self) -> None:
        while True:
            try:
                self.playout.get_nowait()
            except queue.Empty:
                return

    def play(self) -> None:
        """The model's audio to Asterisk at real-time rate, 20 ms per frame; digital silence while
        there is none (what the caller hears of a bridge that sends nothing, too)."""
        deadline = time.monotonic()
        while not self.ended.is_set():
            try:
                frame = self.playout.get_nowait()
            except queue.Empty:
                frame = SILENCE
            deadline = max(deadline + FRAME_S, time.monotonic() - FRAME_S)
            time.sleep(max(0.0, deadline - time.monotonic()))
            try:
                with self.write_lock:
                    self.sock.sendall(bytes((KIND_SLIN,)) + len(frame).to_bytes(2, "big") + frame)
            except OSError:
                return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT for AudioSocket")
    parser.add_argument("--model-url", required=True)
    parser.add_argument("--routers", required=True, help="JSON file: {name: {host, port}}")
    parser.add_argument("--router-user", default="admin")
    parser.add_argument("--router-password-env", default="ROUTER_PASSWORD")
    parser.add_argument("--router-timeout-s", type=float, default=120.0, help="librouteros' socket timeout")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, _, port = args.listen.rpartition(":")
    with open(args.routers, encoding="utf-8") as file:
        routers = RouterClient(json.load(file), args.router_user, os.environ.get(args.router_password_env, ""),
                               args.router_timeout_s)
    api_key = os.environ.get("OPENAI_API_KEY", "")

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            BlockingCall(self.request, args.model_url, api_key, routers).run()

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    with socketserver.ThreadingTCPServer((host, int(port)), Handler) as server:
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
        print(f"baseline.listening host={host} port={server.server_address[1]}", flush=True)
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
