"""The rest of the world for ``bench/calls.py``: the simulated Realtime model (ws:// and wss://) and the demo's routers.

One Trio process (on a core of its own if the machine has three, else beside the callers, niced):
``sim.realtime.serve_model_stream`` behind two listeners on 127.0.0.1, one plain and one TLS
(``trio.SSLListener`` with a throwaway certificate for 127.0.0.1 signed by a throwaway CA, made
with ``trustme``, else the ``openssl`` CLI); the CA is written to ``--ca-file`` for the service to
trust through ``SSL_CERT_FILE``. The routers are the demo's fleet (``sim.routeros.make_fleet
(DEMO_FLEET)``), served as ``bench/soak.py`` serves them.

Protocol (JSON lines): first ``{"event": "ready", "model_port", "model_tls_port", "routers": [...]}``
on stdout; then every ``stats`` line on stdin is answered with this process's event-loop lag since
the previous one (how late a 50 ms sleep woke: a starved model simulator answers late, though the
service's frames do not depend on it) and the model sessions' count and crashes. It exits when
stdin closes.

    python bench/loadgen/world.py --ca-file FILE [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import ssl
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import trio

from mikrovoice.demo import DEMO_FLEET
from mikrovoice.sim.realtime import ModelLedger, SimModelConfig, serve_model_stream
from mikrovoice.sim.routeros import make_fleet, serve_fleet

ROUTER_PASSWORD = "calls"
LAG_PERIOD_S = 0.05


def server_context(ca_file: Path) -> ssl.SSLContext:
    """A server context for 127.0.0.1; the CA that signed it goes to ``ca_file``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        import trustme
    except ImportError:  # the openssl CLI: one self-signed certificate, its own CA
        work = Path(tempfile.mkdtemp(prefix="mikrovoice-calls-tls-"))
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(work / "key.pem"),
                        "-out", str(ca_file)], check=True, capture_output=True, timeout=60)
        context.load_cert_chain(str(ca_file), str(work / "key.pem"))
        return context
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def lag_loop(lags: list[float]) -> None:
    while True:
        due = trio.current_time() + LAG_PERIOD_S
        await trio.sleep_until(due)
        lags.append(trio.current_time() - due)


async def commands(ledger: ModelLedger, lags: list[float], done: trio.CancelScope) -> None:
    """``stats`` on stdin: one JSON line of what happened since the last one. EOF: exit."""
    stdin = trio.lowlevel.FdStream(os.dup(0))
    buffer = b""
    while True:
        data = await stdin.receive_some(4096)
        if not data:
            done.cancel()
            return
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip() == b"stats":
                taken, lags[:] = list(lags), []
                emit({"event": "stats", "lag_ms": {
                    "n": len(taken), "p50": round(1000 * (percentile(taken, 0.5) or 0), 2),
                    "p99": round(1000 * (percentile(taken, 0.99) or 0), 2),
                    "max": round(1000 * max(taken, default=0.0), 2)},
                    "model_sessions": len(ledger.sessions), "model_crashes": ledger.all_crashes()[:5]})


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def world(ca_file: Path) -> None:
    ledger = ModelLedger()
    config = SimModelConfig()
    lags: list[float] = []

    async def serve(stream: trio.abc.Stream) -> None:
        await serve_model_stream(stream, config, ledger)

    async with trio.open_nursery() as nursery:
        routers = await nursery.start(serve_fleet, make_fleet(DEMO_FLEET, password=ROUTER_PASSWORD))
        plain = await trio.open_tcp_listeners(0, host="127.0.0.1")
        tls_tcp = await trio.open_tcp_listeners(0, host="127.0.0.1")
        context = server_context(ca_file)
        tls = [trio.SSLListener(listener, context, https_compatible=False) for listener in tls_tcp]
        nursery.start_soon(trio.serve_listeners, serve, plain)
        nursery.start_soon(trio.serve_listeners, serve, tls)
        nursery.start_soon(lag_loop, lags)
        emit({"event": "ready", "model_port": plain[0].socket.getsockname()[1],
              "model_tls_port": tls_tcp[0].socket.getsockname()[1],
              "routers": [{k: v for k, v in asdict(r).items() if k != "password"} for r in routers]})
        await commands(ledger, lags, nursery.cancel_scope)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ca-file", required=True, help="where the CA certificate of the wss:// listener goes")
    parser.add_argument("--profile", metavar="FILE", help="cProfile this process into FILE")
    args = parser.parse_args(argv)
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    try:
        trio.run(world, Path(args.ca_file))
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
