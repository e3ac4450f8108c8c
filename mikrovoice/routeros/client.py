"""A Trio RouterOS API client: the thin I/O layer over ``routeros.protocol``.

Why not librouteros's own clients: its blocking ``Api`` cannot be cancelled from Trio (a
thread abandoned on cancel keeps its socket and its limiter token until the socket timeout)
and cannot run on a virtual clock; its ``AsyncApi`` is asyncio-only. We keep librouteros's
length codec (through ``routeros.protocol``) and move bytes with Trio, so a hang-up or a
deadline cancels a router query at once and tests run on ``MockClock``.
Only ``ReadCommand`` objects (the read-only allowlist) can be sent.
"""

from __future__ import annotations

import trio

from mikrovoice.net import Dialer, open_tcp
from mikrovoice.routeros.commands import ReadCommand, check_allowed
from mikrovoice.routeros.protocol import Reply, Request, RouterOSProtocolError, SentenceReader


class RouterError(Exception):
    """A router could not be queried; the message says why, in network-engineer terms."""


class RouterTrap(RouterError):
    """The router answered ``!trap``."""


class RouterOSClient:
    def __init__(self, stream: trio.abc.Stream, name: str) -> None:
        self._stream = stream
        self._reader = SentenceReader()
        self._pending: list[list[str]] = []
        self.name = name

    @classmethod
    async def connect(
        cls, name: str, host: str, port: int, username: str, password: str, dial: Dialer = open_tcp
    ) -> RouterOSClient:
        try:
            stream = await dial(host, port)
        except OSError as exc:
            raise RouterError(f"router {name} ({host}:{port}) unreachable: {exc.strerror or exc}") from exc
        client = cls(stream, name)
        try:
            await client._login(username, password)
        except BaseException:
            await client.aclose()
            raise
        return client

    async def _login(self, username: str, password: str) -> None:
        await self._send(Request("/login", {"name": username, "password": password}))
        replies = await self._read_until_done()
        traps = [r for r in replies if r.kind == "!trap"]
        if traps:
            raise RouterTrap(f"router {self.name}: login refused: {traps[0].attributes.get('message', '?')}")
        if any(r.attributes for r in replies):
            # A pre-6.43 router answers with a challenge (=ret=); we only speak the post-6.43 login.
            raise RouterError(f"router {self.name} wants the legacy MD5 login (RouterOS < 6.43), unsupported")

    async def run(self, command: ReadCommand) -> list[dict[str, str]]:
        """Send one read-only command; return its ``!re`` rows. ``!trap`` raises ``RouterTrap``."""
        check_allowed(command.request)  # the allowlist again, right before the socket
        await self._send(command.request)
        replies = await self._read_until_done()
        traps = [r.attributes.get("message", "?") for r in replies if r.kind == "!trap"]
        if traps:
            raise RouterTrap(f"router {self.name}: {command.request.command}: {', '.join(traps)}")
        return [r.attributes for r in replies if r.kind == "!re"]

    async def _send(self, request: Request) -> None:
        try:
            await self._stream.send_all(request.encode())
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise RouterError(f"router {self.name}: connection lost while sending") from exc

    async def _read_until_done(self) -> list[Reply]:
        replies: list[Reply] = []
        while True:
            while not self._pending:
                try:
                    data = await self._stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise RouterError(f"router {self.name}: connection lost") from exc
                if not data:
                    raise RouterError(f"router {self.name} closed the API connection")
                try:
                    self._reader.receive_data(data)
                    self._pending.extend(self._reader.sentences())
                except RouterOSProtocolError as exc:
                    raise RouterError(f"router {self.name}: bad API stream: {exc}") from exc
            try:
                reply = Reply.parse(self._pending.pop(0))
            except RouterOSProtocolError as exc:
                raise RouterError(f"router {self.name}: {exc}") from exc
            if reply.kind == "!fatal":
                raise RouterError(f"router {self.name} ended the session: {reply.attributes.get('message')}")
            replies.append(reply)
            if reply.kind == "!done":
                return replies

    async def aclose(self) -> None:
        await self._stream.aclose()
