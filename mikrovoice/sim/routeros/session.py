"""One RouterOS API session over any Trio byte stream: login, tags, ``/cancel``, ``/quit``, faults.

Every request runs as its own task (its ``_Job``), so tagged commands interleave their replies as
on a real router (research/routeros.md 1.6). Replies go through one outbox read by one writer
task: a reply is queued whole and synchronously, so a cancelled command can never leave half a
sentence on the wire, and ``/cancel`` queues the target's ``!trap interrupted``, its own ``!done``
and the target's ``!done`` in the manual's order with nothing in between. The session ends quietly
when the client goes away, at any moment; bytes that are not the API protocol end it with one
warning line. Only a bug of the simulator escapes from ``serve``.
"""

from __future__ import annotations

import logging
import math
import secrets
from dataclasses import dataclass, field

import trio

from mikrovoice.logs import event
from mikrovoice.routeros.protocol import Reply, Request, RouterOSProtocolError, SentenceReader
from mikrovoice.sim.routeros import faults
from mikrovoice.sim.routeros.menus import Feed, evaluate, trap
from mikrovoice.sim.routeros.router import SimRouter

log = logging.getLogger("mikrovoice.sim.routers")

#: After ``/quit``, how long the session waits for ``!fatal`` to leave before it closes anyway.
QUIT_FLUSH_S = 5.0
_LOGIN_PARAMS = frozenset({"name", "password", "response"})


@dataclass(eq=False)
class _Job:
    """One command in flight. ``cancelled``: its replies are dropped, ``/cancel`` answered for it."""

    request: Request
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    cancelled: bool = False

    @property
    def tag(self) -> str | None:
        return self.request.tag


@dataclass(frozen=True)
class _Chunk:
    data: bytes
    #: A reply to a data command: the one ``drops_mid_reply`` cuts.
    cuttable: bool


class _Session:
    """One API connection to ``router``; ``peer`` is the client's address as the router's log shows it."""

    def __init__(self, router: SimRouter, stream: trio.abc.Stream, peer: str = "10.1.2.3") -> None:
        self.router = router
        self.stream = stream
        self.peer = peer
        self.logged_in = False
        self.user = ""
        self.challenge: str | None = None
        self.running: list[_Job] = []
        self.closing = False
        self.outbox, self.inbox = trio.open_memory_channel[_Chunk](math.inf)
        self.writer_done = trio.Event()
        self.scope = trio.CancelScope()

    async def serve(self) -> None:
        with self.scope:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self._write_loop)
                if await self._read_loop() == "quit":
                    self.closing = True
                    self.outbox.close()
                    with trio.move_on_after(QUIT_FLUSH_S):
                        await self.writer_done.wait()
                nursery.cancel_scope.cancel()
        if self.logged_in:
            self.router.append_log("system,info,account", f"user {self.user} logged out from {self.peer} via api",
                                   trio.current_time())

    def end(self) -> None:
        """The router hangs up: every task of the session stops, the server closes the stream."""
        self.closing = True
        self.scope.cancel()

    # ------------------------------------------------------------------ bytes in

    async def _read_loop(self) -> str:
        reader = SentenceReader()
        while True:
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return "gone"
            if not data:
                return "gone"  # a half sentence left in the reader is simply dropped
            reader.receive_data(data)
            while True:
                try:
                    sentences = reader.sentences()  # those before any garbage, then its error
                except RouterOSProtocolError as exc:
                    event(log, "router.protocol_error", level=logging.WARNING, router=self.router.name, error=str(exc))
                    return "garbage"
                if not sentences:
                    break
                for words in sentences:
                    self.router.journal.append((trio.current_time(), words))
                    if self.router.fault in ("hangs", "black_hole"):
                        continue  # reads everything, answers nothing
                    if not self._dispatch(words):
                        return "quit"

    def _dispatch(self, words: list[str]) -> bool:
        """Start the command ``words`` ask for; False after ``/quit``."""
        try:
            request = Request.parse(words)
        except RouterOSProtocolError as exc:
            self.send(None, [Reply("!trap", {"message": str(exc)}), Reply("!done")])
            return True
        if self.logged_in and self.router.fault == "hangs_after_login" and request.command in ("/quit", "/cancel"):
            return True  # a hung router takes no notice
        if request.command == "/quit":
            self.send(None, [Reply("!fatal", {"message": "session terminated on request"})])
            return False
        if request.command == "/cancel":
            self._cancel(request)
            return True
        job = _Job(request)
        self.running.append(job)
        self.nursery.start_soon(self._run, job)
        return True

    def _cancel(self, request: Request) -> None:
        unknown = next((a for a in request.attributes if a != "tag"), None)
        if unknown is not None:
            self.send(None, trap(request.tag, f"unknown parameter {unknown}"))
            return
        target = request.attributes.get("tag")
        victims = [job for job in self.running if target is None or job.tag == target]
        for job in victims:
            job.cancelled = True
            job.scope.cancel()
            self.running.remove(job)
        self.send(None, [Reply("!trap", {"category": "2", "message": "interrupted"}, job.tag) for job in victims]
                  + [Reply("!done", tag=request.tag)] + [Reply("!done", tag=job.tag) for job in victims])

    # ------------------------------------------------------------------ commands

    async def _run(self, job: _Job) -> None:
        request, router = job.request, self.router
        with job.scope:
            if request.command != "/login" and router.fault == "hangs_after_login":
                await trio.sleep_forever()
            if request.command != "/login" and router.fault == "drops_mid_query":
                await trio.sleep(min(router.latency_s, 1.0))
                self.end()  # the TCP connection goes away, no !fatal
                return
            await trio.sleep(faults.command_delay(router, request))
            answer = self.answer(request)
            if isinstance(answer, Feed):
                await self._feed(job, answer)
            else:
                self.send(job, answer, final=True)

    async def _feed(self, job: _Job, feed: Feed) -> None:
        start = trio.current_time()
        section = 0
        while feed.batches is None or section < feed.batches:
            offset = feed.first_s + section * feed.period_s
            if feed.ends_s is not None and offset >= feed.ends_s:
                break
            await trio.sleep_until(start + offset)
            rows = feed.rows(section, trio.current_time())
            if rows:
                self.send(job, [Reply("!re", row, job.tag) for row in rows])
            section += 1
        if feed.ends_s is not None:
            await trio.sleep_until(start + feed.ends_s)
        self.send(job, [Reply("!done", tag=job.tag)], final=True)

    def answer(self, request: Request) -> list[Reply] | Feed:
        """What the router says to ``request`` once its delay has passed: replies, or a feed of batches."""
        tag = request.tag
        if request.command == "/login":
            return self._login(request)
        if not self.logged_in:
            return trap(tag, "not logged in")
        return evaluate(self.router, request, trio.current_time())

    def _login(self, request: Request) -> list[Reply]:
        """Post-6.43 plain login. A bare ``/login`` gets an MD5 challenge whose answer always fails,
        as observed on 6.45+ routers (the MD5 method is gone); v7's reply to it is not documented."""
        tag, attributes, router = request.tag, request.attributes, self.router
        unknown = next((a for a in attributes if a not in _LOGIN_PARAMS), None)
        if unknown is not None:
            return trap(tag, f"unknown parameter {unknown}")
        if not attributes:
            self.challenge = secrets.token_hex(16)
            return [Reply("!done", {"ret": self.challenge}, tag)]
        name = attributes.get("name", "")
        ok = ("response" not in attributes and name == router.username
              and attributes.get("password") == router.password and router.fault != "refuses_login")
        event(log, "router.login", router=router.name, user=name, ok=ok)
        now = trio.current_time()
        if not ok:
            router.append_log("system,error,critical", f"login failure for user {name} from {self.peer} via api", now)
            return trap(tag, "invalid user name or password (6)")
        self.logged_in, self.user = True, name
        router.append_log("system,info,account", f"user {name} logged in from {self.peer} via api", now)
        return [Reply("!done", tag=tag)]

    # ------------------------------------------------------------------ bytes out

    def send(self, job: _Job | None, replies: list[Reply], *, final: bool = False) -> None:
        """Queue whole replies (synchronously: nothing can come between them); a cancelled job's are dropped."""
        if self.closing or (job is not None and job.cancelled):
            return
        cuttable = job is not None and job.request.command != "/login"
        self.outbox.send_nowait(_Chunk(b"".join(r.encode() for r in replies), cuttable))
        if final and job in self.running:
            self.running.remove(job)

    async def _write_loop(self) -> None:
        try:
            async for chunk in self.inbox:
                if not await faults.deliver(self.stream, chunk.data, self.router.fault, chunk.cuttable):
                    self.end()
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.end()  # the client went away while we were talking
        finally:
            self.writer_done.set()
