"""``mikrovoice check-config FILE``: the configuration's checks, then whether what it names works.

``load`` checks the file first: a mistake is one line on stderr and exit status 2, as for every
command. Then, all at once and each within ``timeout_s``: every router's TCP connection, TLS when
configured, login and ``/system/identity/print``, through mikrovoice's own RouterOS client (read
only: nothing else is sent); and the model: the WebSocket handshake to
``Settings.realtime_endpoint`` with the key, made by ``RealtimeLink`` exactly as a call makes it,
until ``session.created`` (no ``session.update``, no audio, no response), then a clean close. A
table says what works and what does not, why, and how long it took; exit status 0 when all
works, 1 otherwise. No secret is ever printed: not a password, not the key (an OpenAI refusal
quotes part of a wrong key: that part is cut out).
"""

from __future__ import annotations

import re
import ssl
import sys
from dataclasses import dataclass

import trio

from mikrovoice.config import ConfigError, RouterConfig, Settings, load
from mikrovoice.net import Dialer, open_tcp
from mikrovoice.realtime.link import LinkClosed, RealtimeLink
from mikrovoice.realtime.protocol import ServerError, ServerEvent, SessionCreated
from mikrovoice.routeros import commands
from mikrovoice.routeros.client import RouterConnection, tls_context
from mikrovoice.routeros.errors import RouterFailure

#: How long the model link may take to close cleanly after the check.
CLOSE_GRACE_S = 2.0


@dataclass(frozen=True)
class CheckRow:
    """One line of the table: ``what`` was checked ("router 152.1"), ``where`` (its address),
    whether it works, the result (what it said, or why not: "login: ...") and how long it took
    (to the answer, or to the failure)."""

    what: str
    where: str
    ok: bool
    result: str
    ms: int


async def check(settings: Settings, timeout_s: float = 5.0, *, dial: Dialer = open_tcp) -> list[CheckRow]:
    """Every router and the model, all at once; one row each, routers first, in the file's order."""
    rows: list[CheckRow | None] = [None] * (len(settings.routers) + 1)

    async def one(i: int) -> None:
        if i < len(settings.routers):
            rows[i] = await check_router(settings.routers[i], timeout_s, dial=dial)
        else:
            rows[i] = await check_model(settings, timeout_s, dial=dial)

    async with trio.open_nursery() as nursery:
        for i in range(len(rows)):
            nursery.start_soon(one, i)
    secrets = [settings.api_key, *(r.password for r in settings.routers)]
    return [_scrubbed(row, secrets) for row in rows if row is not None]


async def check_router(router: RouterConfig, timeout_s: float, *, dial: Dialer = open_tcp) -> CheckRow:
    """Connect, log in and ask the identity (``timeout_s`` for the connection and login, and again
    for the answer); the failure's ``Reason`` and detail when it does not work."""
    what, where = f"router {router.name}", f"{router.host}:{router.port}" + (" tls" if router.tls else "")
    started = trio.current_time()

    def row(ok: bool, result: str) -> CheckRow:
        return CheckRow(what, where, ok, result, round((trio.current_time() - started) * 1000))

    try:
        tls = tls_context(router) if router.tls else None
    except (ssl.SSLError, OSError) as exc:
        return row(False, f"tls: cannot use ca_file {router.ca_file}: {exc}")
    try:
        connection = await RouterConnection.open(router, dial=dial, tls=tls, timeout_s=timeout_s)
    except RouterFailure as failure:
        return row(False, f"{failure.reason.value}: {failure.detail}")
    try:
        with trio.move_on_after(timeout_s):
            found = (await connection.run(commands.identity())).result()
            identity = "".join(c for c in (found[0].get("name", "") if found else "") if c.isprintable())[:60]
            return row(True, f"logged in as {router.username}; identity {identity or '?'}")
        return row(False, f"timeout: logged in, but no answer to /system/identity/print within {timeout_s:g} s")
    except RouterFailure as failure:
        return row(False, f"{failure.reason.value}: {failure.detail}")
    finally:
        await connection.aclose("check-config done")


async def check_model(settings: Settings, timeout_s: float, *, dial: Dialer = open_tcp) -> CheckRow:
    """The WebSocket handshake with the key, until ``session.created`` (or the refusal, an error
    event, the link closing, or ``timeout_s``); then the link is closed."""
    what, where = f"model {settings.model}", settings.realtime_url.partition("?")[0]
    if not settings.api_key:
        source = f"file {settings.api_key_file}" if settings.api_key_file else (
            f"environment variable {settings.api_key_env}")
        return CheckRow(what, where, False, f"no API key: {source} is not set", 0)
    link = RealtimeLink(settings.realtime_endpoint, settings.api_key, connect_timeout_s=timeout_s,
                        ping_interval_s=settings.ping_interval_s, pong_timeout_s=settings.pong_timeout_s, dial=dial)
    send, receive = trio.open_memory_channel[ServerEvent](64)
    closed: LinkClosed | None = None
    first: ServerEvent | None = None
    started = trio.current_time()

    async def run() -> None:
        nonlocal closed
        async with send:
            closed = await link.run(send)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        with trio.move_on_after(timeout_s):
            async for event in receive:
                if isinstance(event, SessionCreated | ServerError):
                    first = event
                    break
        ms = round((trio.current_time() - started) * 1000)
        with trio.move_on_after(CLOSE_GRACE_S):
            await link.aclose()
        nursery.cancel_scope.cancel()
    if isinstance(first, SessionCreated):
        return CheckRow(what, where, True, "session.created", ms)
    if isinstance(first, ServerError):
        return CheckRow(what, where, False, f"error {first.code}: {first.message}", ms)
    if closed is not None and not closed.by_us:
        return CheckRow(what, where, False, closed.reason.replace(f"{where} ", "", 1), ms)  # where: its own column
    return CheckRow(what, where, False, f"timeout: no session.created within {timeout_s:g} s", ms)


_QUOTED_KEY = re.compile(r"(Incorrect API key provided: )\S+")


def _scrubbed(row: CheckRow, secrets: list[str]) -> CheckRow:
    """The row without any secret: the ones we hold, and the part of a key an OpenAI refusal quotes."""
    result = _QUOTED_KEY.sub(r"\1(not shown)", row.result)
    for secret in secrets:
        if len(secret) >= 4:
            result = result.replace(secret, "(not shown)")
    return CheckRow(row.what, row.where, row.ok, result, row.ms)


def render(rows: list[CheckRow]) -> str:
    """The table: check, where, ok or FAILED, milliseconds, result."""
    cells = [("check", "where", "status", "ms", "result")]
    cells += [(r.what, r.where, "ok" if r.ok else "FAILED", str(r.ms), r.result) for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(4)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d:>{widths[3]}}  {e}"
                     for a, b, c, d, e in cells)


def notes(settings: Settings) -> list[str]:
    """What ``serve`` would refuse, and what the file does that ``load`` advises against."""
    found = []
    if not settings.auth.configured:
        found.append("no [auth] section: serve refuses to start without one (require = \"open\" is a choice too)")
    if not settings.routers:
        found.append("no [[router]]: serve refuses to start without one")
    return found + list(settings.warnings)


def main(path: str, *, timeout_s: float = 5.0) -> int:
    """Check the file at ``path``; print the table. Exit status: 0 all works, 1 something does not,
    2 the configuration is invalid (one line on stderr)."""
    try:
        settings = load(path)
    except ConfigError as exc:
        print(f"mikrovoice: configuration error: {exc}", file=sys.stderr)
        return 2
    auth = f'[auth] require = "{settings.auth.require}"' if settings.auth.configured else "no [auth]"
    print(f"{path}: valid ({len(settings.routers)} router(s), {len(settings.auth.operators)} operator(s), {auth})")
    rows = trio.run(check, settings, timeout_s)
    print(render(rows))
    failed = sum(not r.ok for r in rows)
    print(f"{len(rows) - failed} of {len(rows)} checks work" + (f"; {failed} failed" if failed else ""))
    for note in notes(settings):
        print(f"warning: {note}")
    return 1 if failed else 0
