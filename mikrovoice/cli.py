"""The ``mikrovoice`` command line: serve, demo, diagram, and the three simulators.

Parses arguments, sets up logging and hands over to one ``trio.run``. Holds no logic of its
own beyond wiring; every subcommand runs until it finishes or is interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import trio

from mikrovoice import __version__
from mikrovoice.config import ConfigError, Settings, load, parse_hostport
from mikrovoice.logs import configure, event
from mikrovoice.net import StartupError

log = logging.getLogger("mikrovoice.service")


def _serve_settings(args: argparse.Namespace) -> Settings:
    """The settings ``serve`` runs with: the file (every check), or the simulators' defaults, and
    the command line's listen addresses. ``ConfigError`` on the first mistake."""
    if args.simulate:
        settings = load(args.config) if args.config else Settings()
    elif args.config:
        settings = load(args.config)
        if not settings.api_key:
            raise ConfigError(f"[openai]: no API key: set {settings.api_key_env or 'OPENAI_API_KEY'} "
                              "(or give api_key_file)")
        if not settings.routers:
            raise ConfigError(f"{args.config} defines no [[router]]")
        if not settings.auth.configured:
            raise ConfigError("[auth] is missing: say who may call (require = \"pin\", \"caller_id\", ...; "
                              "\"open\" lets anyone who reaches the port use the assistant)")
    else:
        raise ConfigError("serve needs --config FILE, or --simulate")
    if args.listen:
        settings = replace(settings, listen=parse_hostport(args.listen))
    if args.websocket_listen:
        settings = replace(settings, websocket_listen=parse_hostport(args.websocket_listen))
    return settings


def _serve(args: argparse.Namespace) -> int:
    from mikrovoice.workers import worker_count

    settings = _serve_settings(args)
    if args.worker is None and worker_count(args.workers) > 1:
        return _supervise(args, settings, worker_count(args.workers))
    return _serve_one(args, settings)


def _serve_one(args: argparse.Namespace, settings: Settings) -> int:
    """One process: the whole service, or worker ``args.worker`` of ``serve --workers``."""
    from mikrovoice.logs import add_observer, remove_observer
    from mikrovoice.ops import Metrics, serve_http
    from mikrovoice.ops.runtime import tune_gc
    from mikrovoice.service import CallService, run_service, start_simulated_peers
    from mikrovoice.workers import STOP_NOW, watch_control, with_simulated_peers

    worker: int | None = args.worker
    for warning in settings.warnings if worker is None else ():  # (a worker's supervisor has said them)
        event(log, "config.warning", level=logging.WARNING, warning=warning)
    if args.simulate and args.simulated_peers:  # a worker: the supervisor's simulators
        settings = with_simulated_peers(settings, args.simulated_peers)
    interrupted = False

    async def main() -> None:
        nonlocal settings
        async with trio.open_nursery() as nursery:
            if args.simulate and not args.simulated_peers:
                settings = await start_simulated_peers(nursery, settings)
            service = CallService(settings)
            service.health.worker = worker
            tune_gc()  # what exists now is never walked again; fewer, shorter pauses (ops/runtime.py)
            metrics = Metrics(tools=[spec.name for spec in service.tools.specs],
                              routers=[router.name for router in settings.routers],
                              const_labels=None if worker is None else {"worker": str(worker)})
            add_observer(metrics.observe)
            try:
                if settings.metrics_listen is not None:
                    host, port = settings.metrics_listen
                    port += worker or 0  # worker i: the configured port + i
                    try:
                        await nursery.start(serve_http, host, port, metrics, service.health)
                    except OSError as exc:
                        raise StartupError(f"cannot listen on {host}:{port} (metrics): {exc.strerror or exc}") from None
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    stop = partial(_stop, service, nursery.cancel_scope)
                    nursery.start_soon(_stop_on_signals, signals, stop)
                    if args.control_fd is not None:
                        nursery.start_soon(watch_control, args.control_fd,
                                           lambda request: stop(request, now=request == STOP_NOW, supervisor=True))
                    await run_service(settings, service, reuse_port=worker is not None)
            finally:
                remove_observer(metrics.observe)
            nursery.cancel_scope.cancel()  # the simulated peers, the signal watcher, /metrics

    def _stop(service: CallService, scope: trio.CancelScope, name: str, *, now: bool, supervisor: bool = False) -> None:
        """Stop as signal ``name`` asks: SIGTERM after the grace, SIGINT at once (with the goodbye);
        ``now``: without waiting. A request of the supervisor to a worker already stopping changes nothing."""
        nonlocal interrupted
        if now:
            event(log, "service.stop_now", level=logging.WARNING, signal=name)
            scope.cancel()
            return
        interrupted = interrupted or name == "SIGINT"
        if service.stop_requested.is_set():
            return
        grace = 0.0 if name == "SIGINT" else None  # Ctrl-C: goodbye now; SIGTERM: the grace
        fields: dict[str, Any] = {"by": "supervisor"} if supervisor else {}
        event(log, "service.stop_requested", signal=name, grace_s=settings.shutdown_grace_s if grace is None else 0,
              **fields)
        service.request_stop(grace)

    trio.run(main)
    return 130 if interrupted else 0


async def _stop_on_signals(signals: AsyncIterator[int], stop: Callable[..., None]) -> None:
    """The first signal stops gracefully (``stop``); a second one stops at once."""
    received = 0
    async for signum in signals:
        received += 1
        stop(signal.Signals(signum).name, now=received > 1)


def _supervise(args: argparse.Namespace, settings: Settings, count: int) -> int:
    """``serve --workers N`` (N > 1): check once, hold the ports, start the simulators once, run the workers."""
    from mikrovoice.net import check_port_free, reserve_port, reuse_port_supported
    from mikrovoice.service import start_simulated_peers
    from mikrovoice.workers import Supervisor, WorkersFailed, hostport, simulated_peers_json, worker_command
    from mikrovoice.workers import log as workers_log

    for warning in settings.warnings:
        event(log, "config.warning", level=logging.WARNING, warning=warning)
    if not reuse_port_supported():
        raise StartupError("--workers needs SO_REUSEPORT (Linux 3.9 or later, a BSD, macOS): run one process")
    metrics_range = None
    if settings.metrics_listen is not None:
        host, first = settings.metrics_listen
        last = first + count - 1
        metrics_range = f"{hostport(host, first)}..{last}"
        if last > 65535:
            raise ConfigError(f"[service] metrics_listen: {count} workers need ports {first}..{last} (worker i on "
                              "the port + i), past 65535")
        for name, address in (("[audiosocket] listen", settings.listen),
                              ("[websocket] listen", settings.websocket_listen)):
            if address is not None and first <= address[1] <= last and _hosts_overlap(host, address[0]):
                raise ConfigError(f"[service] metrics_listen: {count} workers need ports {first}..{last} (worker i "
                                  f"on the port + i), and {name} is port {address[1]}")
    held = []
    try:
        host, port = settings.listen
        port, sockets = reserve_port(host, port, "service.listening")
        held += sockets
        listen = hostport(host, port)
        websocket_listen = None
        if settings.websocket_listen is not None:
            ws_host, ws_port = settings.websocket_listen
            ws_port, sockets = reserve_port(ws_host, ws_port, "service.listening_websocket")
            held += sockets
            websocket_listen = hostport(ws_host, ws_port)
        if settings.metrics_listen is not None:
            host, first = settings.metrics_listen
            for i in range(count):
                check_port_free(host, first + i, f"metrics of worker {i}")

        async def main() -> int:
            async with trio.open_nursery() as nursery:
                peers = None
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    if args.simulate:
                        peers = simulated_peers_json(await start_simulated_peers(nursery, settings))
                    supervisor = Supervisor(count, lambda index, control_fd: worker_command(
                        index=index, control_fd=control_fd, listen=listen, websocket_listen=websocket_listen,
                        config=args.config, simulated_peers=peers, verbose=args.verbose, log_format=args.log_format),
                        pin_cpus=args.pin_cpus)
                    nursery.start_soon(supervisor.watch_signals, signals)
                    event(workers_log, "workers.starting", workers=count, listen=listen, websocket=websocket_listen or "-",
                          metrics=metrics_range or "-", pin_cpus=args.pin_cpus, simulate=args.simulate)
                    try:
                        return await supervisor.run()
                    finally:
                        nursery.cancel_scope.cancel()  # the signal watcher, the simulated peers

        try:
            return trio.run(main)
        except BaseException as raised:  # noqa: B036  # the one failure inside Trio's exception groups
            failure = _only(raised)
            if isinstance(failure, WorkersFailed):
                print(f"mikrovoice: {failure}", file=sys.stderr)
                return failure.status
            raise
    finally:
        for sock in held:
            sock.close()


def _hosts_overlap(host1: str, host2: str) -> bool:
    """Whether two listen hosts can clash on a port: the same, or either a wildcard."""
    wildcard = {"0.0.0.0", "::", ""}
    return host1 in wildcard or host2 in wildcard or host1 == host2


def _check_config(args: argparse.Namespace) -> int:
    from mikrovoice.checkconfig import main as check

    return check(args.file, timeout_s=args.timeout)


def _demo(args: argparse.Namespace) -> int:
    from mikrovoice import demo

    return demo.main(as_json=args.json, virtual_clock=args.virtual_clock,
                     timeline_svg=Path(args.timeline) if args.timeline else None)


def _simulate(args: argparse.Namespace) -> int:
    from mikrovoice.simulation.console import run_simulate

    settings = load(args.config) if args.config else None
    if settings is not None and not settings.routers:
        raise ConfigError(f"{args.config} defines no [[router]]: a simulation needs the router inventory")
    timeline_dir = Path(args.timeline_dir) if args.timeline_dir else None
    return run_simulate(settings, calls=args.calls, seed=args.seed, as_json=args.json, timeline_dir=timeline_dir,
                        shrink=not args.no_shrink, compare=Path(args.compare) if args.compare else None)


def _diagram(args: argparse.Namespace) -> int:
    from mikrovoice.call.diagram import write_diagrams

    for path in write_diagrams(Path(args.out)):
        print(path)
    return 0


def _sim_routers(args: argparse.Namespace) -> int:
    import ssl

    from mikrovoice.sim.routeros import (
        FaultSpecError,
        FleetProfile,
        make_fleet,
        parse_fault_specs,
        serve_fleet,
    )

    def refuse(message: str) -> int:
        print(f"mikrovoice sim routers: {message}", file=sys.stderr)
        return 2

    host, port = parse_hostport(args.listen)
    try:
        routers = make_fleet(FleetProfile(count=args.count, seed=args.seed), password=args.password)
    except ValueError as exc:
        return refuse(f"bad --count: {exc}")
    try:
        faults = parse_fault_specs(args.fault or [], [r.name for r in routers])
    except FaultSpecError as exc:
        return refuse(f"bad --fault: {exc}")
    if args.max_sessions is not None and not 0 <= args.max_sessions <= 1000:
        return refuse(f"--max-sessions must be 0..1000 (RouterOS's range), got {args.max_sessions}")
    if bool(args.tls_cert) != bool(args.tls_key):
        return refuse("--tls-cert and --tls-key go together")
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            return refuse(f"cannot load --tls-cert/--tls-key: {exc}")
    for router in routers:
        router.fault = faults.get(router.name)
        if args.pre_7_18 and not router.pre_7_18:
            router.set_version("7.17.2 (stable)", "2025-02-05 09:10:41")
        if args.max_sessions is not None:
            router.max_sessions = args.max_sessions

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            configs = await nursery.start(partial(serve_fleet, routers, host, port, ssl_context=context))
            for router, config in zip(routers, configs, strict=True):
                print(f"router {config.name:>6}  {config.host}:{config.port}{' api-ssl' if config.tls else ''}  "
                      f"identity={router.identity}  site=\"{router.site}\"  latency={router.latency_s:g}s  "
                      f"sfp={router.sfp_count}  fault={router.fault or '-'}", flush=True)

    trio.run(main)
    return 0


def _sim_model(args: argparse.Namespace) -> int:
    from mikrovoice.sim.realtime import (
        FaultSpecError,
        SimModelConfig,
        TranscriptFile,
        parse_faults,
        serve_model,
    )

    host, port = parse_hostport(args.listen)
    try:
        faults = parse_faults(args.fault or [])
    except FaultSpecError as exc:
        print(f"mikrovoice sim model: bad --fault: {exc}", file=sys.stderr)
        return 2
    if not args.max_session > 0:
        print(f"mikrovoice sim model: --max-session must be > 0 seconds, got {args.max_session:g}", file=sys.stderr)
        return 2
    try:
        transcript = TranscriptFile(args.transcript, full_audio=args.full_audio) if args.transcript else None
    except OSError as exc:
        print(f"mikrovoice sim model: cannot write --transcript {args.transcript}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    config = SimModelConfig(faults=faults, api_key=args.api_key, max_session_s=args.max_session, transcript=transcript)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_model, host, port, config)
            print(f"simulated Realtime API on ws://{host}:{server.port}/v1/realtime", flush=True)

    try:
        trio.run(main)
    finally:
        if transcript is not None:
            transcript.close()
    return 0


#: ``mikrovoice sim model --fault`` syntax (parsed by ``mikrovoice.sim.realtime.parse_faults``).
_MODEL_FAULT_SPECS = """\
  handshake=STATUS         refuse the WebSocket upgrade with this HTTP status (401, 403, 404, 429, 500, 503, ...)
                           and the real service's JSON body
  stall-handshake          accept TCP, never answer the upgrade request
  drop-at=T                close the TCP connection abruptly (no close frame) at T
  drop-on=EVENT[#K]        the same, right after sending the K-th (default 1st) server event EVENT
                           (e.g. drop-on=response.done#2), or on receiving the K-th client event EVENT
                           (e.g. drop-on=conversation.item.create#3)
  silent-at=T              go dead at T: send nothing more, answer no pings, read and discard what comes
  deaf-pings[=T]           answer no pings from T (default 0) on; events flow as before
  refuse-session-update[=K[,K...]]
                           refuse every session.update (or the K-th ones) as the real service refuses a bad
                           voice: error invalid_value, param session.audio.output.voice; the config stays
  refuse-create=K[,K...]   the K-th response.create gets an error server_error
  error-at=T:CODE          send an unprompted error event with this code at T (repeatable); the session goes on
  expire-at=T              expire the session at T: error session_expired, then close 1001
  respond-after-output     a function_call_output item starts a response by itself, as the real service
                           sometimes does (a response.create then collides with it)"""


def _sim_call(args: argparse.Namespace) -> int:
    from mikrovoice.demo import SEED_QUESTIONS
    from mikrovoice.sim.asterisk import AsteriskCaller, CallerScript, Line, Question

    host, port = parse_hostport(args.to)
    questions = [Question(q, r".") for q in args.say] if args.say else SEED_QUESTIONS
    line = Line(args.transport, mode=args.mode, codec=args.codec, control=args.control)
    caller = AsteriskCaller(CallerScript(tuple(questions), silence=args.silence, line=line), record_wav=args.record)
    report = trio.run(caller.call, host, port)
    for result in report.questions:
        print(f"«{result.text}» -> {result.answer or '(sin respuesta)'}  (silencio máx. {result.max_dead_air_s} s)")
    if report.error:
        print(f"error: {report.error}", file=sys.stderr)
    return 0 if report.questions and all(q.answered for q in report.questions) and not report.error else 1


def _workers_arg(text: str) -> int | str:
    from mikrovoice.workers import parse_workers

    try:
        return parse_workers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    from mikrovoice.sim.asterisk import CODECS, MODES, SILENCE_MODES, TRANSPORTS

    parser = argparse.ArgumentParser(prog="mikrovoice", description="Phone voice assistant for MikroTik NOC operators.")
    parser.add_argument("--version", action="version", version=f"mikrovoice {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging: every model event type, router command and leg detail (never a secret)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="text (default) or json: one JSON object per line, the call id and the event's fields "
                             "as keys")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service (AudioSocket listener)")
    serve.add_argument("--config", help="TOML configuration file (see mikrovoice.example.toml)")
    serve.add_argument("--simulate", action="store_true", help="use the simulated model and router fleet")
    serve.add_argument("--listen", help="AudioSocket HOST:PORT (overrides the file)")
    serve.add_argument("--websocket-listen", help="chan_websocket HOST:PORT (overrides the file's [websocket] listen)")
    serve.add_argument("--workers", type=_workers_arg, default=1, metavar="N|auto",
                       help="N worker processes sharing the listening ports (SO_REUSEPORT), supervised: restarted "
                            "when they die, stopped together; worker i serves metrics on [service] metrics_listen's "
                            "port + i. auto: one per CPU. Default 1: one process, no supervisor")
    serve.add_argument("--pin-cpus", action="store_true",
                       help="with --workers: run worker i on the i-th CPU only (sched_setaffinity)")
    # Set by the supervisor on its workers' command lines, never by hand:
    serve.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--control-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--simulated-peers", help=argparse.SUPPRESS)
    serve.set_defaults(run=_serve)

    check = sub.add_parser(
        "check-config", help="validate a configuration, then try each router's login and the model",
        description="Load FILE with every check `serve` makes (exit 2 and one line naming the key on an error), "
                    "then try each router's login and the model's WebSocket at once and print a table. "
                    "Exit 0: all works; 1: something does not answer.")
    check.add_argument("file", metavar="FILE")
    check.add_argument("--timeout", type=float, default=5.0, help="seconds per check (default 5)")
    check.set_defaults(run=_check_config)

    demo = sub.add_parser("demo", help="the seed's acceptance call, end to end on the simulators")
    demo.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    demo.add_argument("--virtual-clock", action="store_true", help="run on Trio's virtual clock (seconds, not a minute)")
    demo.add_argument("--timeline", metavar="FILE.svg", help="also draw the call's timeline as an SVG picture")
    demo.set_defaults(run=_demo)

    simulate = sub.add_parser(
        "simulate", help="property-based call simulations against your configuration",
        description="Generate calls (questions, interjections, hang-ups, slow and broken routers, model "
                    "failures), run each through the real service against simulators of your routers and "
                    "of the model, on a virtual clock, and check the invariants. Exit status 1 on a violation.")
    simulate.add_argument("--calls", type=int, default=200, help="how many calls to generate (default 200)")
    simulate.add_argument("--seed", type=int, default=1, help="the same seed gives the same calls (default 1)")
    simulate.add_argument("--config", help="your TOML configuration: its phrases, timings and router names")
    simulate.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    simulate.add_argument("--timeline-dir", help="write an SVG timeline of each failing call here")
    simulate.add_argument("--no-shrink", action="store_true", help="report failures as found, without shrinking")
    simulate.add_argument("--compare", metavar="BEFORE.json",
                          help="the saved output of an earlier --json run (same seed and calls): print both side by side")
    simulate.set_defaults(run=_simulate)

    diagram = sub.add_parser("diagram", help="export the call machine to statecharts/")
    diagram.add_argument("--out", default="statecharts", help="output folder (default: statecharts)")
    diagram.set_defaults(run=_diagram)

    sim = sub.add_parser("sim", help="run one simulator on its own").add_subparsers(dest="sim", required=True)
    routers = sim.add_parser("routers", help="RouterOS API fleet: router i on PORT+i")
    routers.add_argument("--listen", required=True, help="HOST:PORT of router 0")
    routers.add_argument("--count", type=int, default=12)
    routers.add_argument("--seed", type=int, default=7)
    routers.add_argument("--password", default="", help="password of user admin (default: empty)")
    routers.add_argument("--fault", action="append", metavar="FAULT=NAME[,NAME...]",
                         help="make these routers faulty (repeatable), e.g. --fault black_hole=46.3 --fault "
                              "slow=26.1,59.3; faults: hangs, hangs_after_login, drops_mid_query, refuses_login, "
                              "slow, black_hole, drops_mid_reply, drips, busy")
    routers.add_argument("--pre-7-18", action="store_true",
                         help="answer like RouterOS before 7.18: no !empty for a print without rows")
    routers.add_argument("--max-sessions", type=int, metavar="N",
                         help="API sessions per router (default 20, RouterOS's); beyond: accepted and closed at once")
    routers.add_argument("--tls-cert", metavar="FILE", help="serve API-SSL with this PEM certificate (with --tls-key)")
    routers.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    routers.set_defaults(run=_sim_routers)
    model = sim.add_parser(
        "model", help="OpenAI Realtime GA server with a scripted model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A simulated OpenAI Realtime (GA) server: serves ws://HOST:PORT/v1/realtime, any Bearer key "
                    "(or only --api-key), with a scripted model that answers the seed's questions.",
        epilog="fault SPECs (T: seconds since the session's WebSocket accept; every session gets the same faults):\n"
               + _MODEL_FAULT_SPECS + "\n\nexample: mikrovoice sim model --listen 127.0.0.1:8765 --fault drop-on=response.done#2 "
               "--fault error-at=30:server_error --transcript /tmp/model.jsonl")
    model.add_argument("--listen", required=True, help="HOST:PORT; serves /v1/realtime")
    model.add_argument("--fault", action="append", metavar="SPEC",
                       help="inject a failure of the real service (repeatable; SPECs below)")
    model.add_argument("--transcript", metavar="FILE",
                       help="append every event each session receives and sends to FILE as JSON lines: "
                            '{"t": seconds since the accept, "session": "sess_...", "dir": "in"|"out", "event": {...}} '
                            '(a frame that is not JSON: "event": null and its text under "raw"); audio payloads are '
                            'abbreviated as "<N bytes base64>" unless --full-audio')
    model.add_argument("--full-audio", action="store_true", help="keep the audio payloads in the --transcript")
    model.add_argument("--max-session", type=float, default=3600.0, metavar="SECONDS",
                       help="session length limit: then error session_expired and close 1001 (default 3600, as the real service)")
    model.add_argument("--api-key", help="accept only this Bearer key (default: any)")
    model.set_defaults(run=_sim_model)
    call = sim.add_parser("call", help="an Asterisk caller that dials the service (AudioSocket or chan_websocket)")
    call.add_argument("--to", required=True, help="the service's HOST:PORT (AudioSocket, or chan_websocket)")
    call.add_argument("--say", action="append", help="a question to ask (repeatable; default: the seed's two)")
    call.add_argument("--transport", choices=TRANSPORTS, default="audiosocket")
    call.add_argument("--mode", choices=MODES, default="app",
                      help="AudioSocket: the AudioSocket() app (2 s rule) or Dial(AudioSocket/...) (no timer)")
    call.add_argument("--codec", choices=CODECS, default="slin",
                      help="what the channel carries; ulaw: Dial(AudioSocket) without c(slin), mu-law as slin")
    call.add_argument("--control", choices=("plain-text", "json"), default="plain-text", help="chan_websocket f()")
    call.add_argument("--silence", choices=SILENCE_MODES, default="no_frames",
                      help="what the line sends while the caller is silent (a real Asterisk: nothing)")
    call.add_argument("--record", metavar="FILE.wav", help="record what the caller heard")
    call.set_defaults(run=_sim_call)
    return parser


def _only(exc: BaseException) -> BaseException:
    """The one exception inside (nested) exception groups of one exception each, else ``exc``."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("demo", "simulate", "check-config"):
        configure(logging.DEBUG if args.verbose else logging.INFO, fmt=args.log_format,
                  worker=getattr(args, "worker", None))
    try:
        result: int = args.run(args)
        return result
    except BaseException as raised:  # noqa: B036  # Ctrl-C and start-up failures: one line, no traceback
        exc = _only(raised)
        if isinstance(exc, ConfigError):
            print(f"mikrovoice: configuration error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, KeyboardInterrupt):
            return 130
        if isinstance(exc, StartupError):
            print(f"mikrovoice: {exc}", file=sys.stderr)
            return 1
        raise
