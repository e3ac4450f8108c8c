"""One RouterOS API session, sans-IO: numeric tags, replies routed by tag, and the login state.

``ApiSession`` turns requests into bytes and bytes into per-tag answers. Every request carries
``.tag=N`` (``/login`` and ``/cancel`` included) and is checked by ``commands.check_allowed``
right before it is encoded. Replies: ``!re`` rows and ``!trap``s collect under their tag until its
``!done`` (several traps before one ``!done`` for a missing menu), ``!empty`` is ignored, replies to
a tag we cancelled are discarded, ``!fatal`` ends the session; a reply for a tag we never sent (or
already finished) or an untagged one is a protocol error, which ends the session too.
This file performs no I/O and knows nothing of Trio, sockets or clocks: the caller moves the bytes.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, replace

from mikrovoice.routeros.commands import ReadCommand, cancel, check_allowed, login
from mikrovoice.routeros.errors import Reason, RouterFailure
from mikrovoice.routeros.protocol import Reply, Request, RouterOSProtocolError, SentenceReader

#: What a router that closes the connection instead of answering ``/login`` is most likely doing.
BUSY_DETAIL = ("closed the connection before answering the login: max-sessions reached, "
               "or /ip service restricts our address")
LEGACY_LOGIN_DETAIL = "legacy MD5 login unsupported (RouterOS < 6.43)"
#: Trap messages (prefixes) of a menu or command the router does not have (research/routeros.md 1.8).
MISSING_TRAPS = ("no such command or directory", "no such command prefix", "no such command")
PERMISSION_TRAP = "not enough permissions"
#: Our tags: ``1``, ``2``, ... (ASCII digits; 18 of them outlast any session).
_TAG = re.compile(r"[0-9]{1,18}")


class SessionState(enum.Enum):
    NEW = "new"                # nothing sent yet: the only thing to send is /login
    LOGGING_IN = "logging in"  # /login sent, its !done not yet received
    READY = "ready"            # logged in: commands and /cancel may be sent
    CLOSED = "closed"          # login refused, !fatal, EOF, reset, garbage or closed by us: nothing more


#: What each method may be called in (anything else is a bug of the I/O layer: ``SessionStateError``).
ALLOWED_IN = {
    "login": {SessionState.NEW},
    "send": {SessionState.READY},
    "cancel": {SessionState.READY},
}


class SessionStateError(RuntimeError):
    """The I/O layer asked for something the session's state forbids: a bug, never a router's fault."""


def trap_failure(messages: list[str]) -> RouterFailure:
    """The failure for the ``!trap`` messages of one command (all of them, joined with ", ")."""
    detail = ", ".join(messages)
    if any(m.startswith(MISSING_TRAPS) for m in messages):
        return RouterFailure(Reason.MISSING, detail)
    if any(m.startswith(PERMISSION_TRAP) for m in messages):
        return RouterFailure(Reason.PERMISSION, detail)
    return RouterFailure(Reason.TRAP, detail)


@dataclass(frozen=True)
class Answer:
    """The end of one tagged command: its ``!re`` rows, or why it failed."""

    tag: int
    command: str
    rows: list[dict[str, str]]
    failure: RouterFailure | None
    #: whether any sentence arrived on the connection after this request was sent
    heard_back: bool
    #: the router closed or reset the connection (EOF, reset: not !fatal, garbage or our own close)
    peer_closed: bool = False

    @property
    def stale(self) -> bool:
        """The router closed or reset the connection before it said a word after our request: the
        connection was most likely dead already when the request left (reads can be retried)."""
        return self.peer_closed and not self.heard_back

    def result(self) -> list[dict[str, str]]:
        if self.failure is not None:
            raise self.failure
        return self.rows


@dataclass
class _Pending:
    command: str  # the command word only: a request may hold a password, it is never kept
    heard_mark: int
    rows: list[dict[str, str]] = field(default_factory=list)
    traps: list[str] = field(default_factory=list)
    failure: RouterFailure | None = None
    finished: bool = False
    heard_back: bool = False
    peer_closed: bool = False


class ApiSession:
    """One API session: ``login``/``send``/``cancel`` give (tag, bytes) to write; ``receive_data``
    takes what was read (``b""`` is EOF) and returns the tags it finished; ``take`` hands an answer out."""

    def __init__(self) -> None:
        self.state = SessionState.NEW
        #: why the session closed (None while it is open)
        self.closed_by: RouterFailure | None = None
        self._reader = SentenceReader()
        self._next_tag = 1
        self._login_tag: int | None = None
        self._pending: dict[int, _Pending] = {}
        self._discarded: set[int] = set()
        self._heard = 0  # sentences received so far

    # ------------------------------------------------------------------ requests out

    def login(self, username: str, password: str) -> tuple[int, bytes]:
        self._require("login")
        tag, data = self._emit(login(username, password))
        self._login_tag = tag
        self.state = SessionState.LOGGING_IN
        return tag, data

    def send(self, command: ReadCommand) -> tuple[int, bytes]:
        self._require("send")
        return self._emit(command.request)

    def cancel(self, tag: int) -> tuple[int, bytes]:
        """Ask the router to stop ``tag``; its late replies (and the /cancel's own) are discarded.
        The answer of ``tag`` is then ``take``n by nobody."""
        self._require("cancel")
        pending = self._pending.get(tag)
        if pending is None or pending.finished:
            raise SessionStateError(f"tag {tag} is not a command in flight; nothing to cancel")
        del self._pending[tag]
        cancel_tag, data = self._emit(cancel(str(tag)))
        del self._pending[cancel_tag]
        self._discarded.update((tag, cancel_tag))
        return cancel_tag, data

    def _emit(self, request: Request) -> tuple[int, bytes]:
        tag = self._next_tag
        tagged = replace(request, tag=str(tag))
        check_allowed(tagged)  # the allowlist again, right before the bytes exist
        self._next_tag += 1
        self._pending[tag] = _Pending(request.command, self._heard)
        return tag, tagged.encode()

    def _require(self, action: str) -> None:
        if self.state not in ALLOWED_IN[action]:
            raise SessionStateError(f"can't {action} in state {self.state.value!r}")

    # ------------------------------------------------------------------ replies in

    def receive_data(self, data: bytes | bytearray) -> list[int]:
        """Feed bytes read from the router (``b""``: the router closed). Returns the finished tags."""
        if self.state is SessionState.CLOSED:
            return []
        if not data:
            partial = " in the middle of a reply" if self._reader.partial else ""
            return self._close(Reason.DROPPED, f"connection closed by the router{partial}", eof=True)
        finished: list[int] = []
        try:
            self._reader.receive_data(data)
            while self.closed_by is None and (sentences := self._reader.sentences()):
                for words in sentences:
                    self._heard += 1
                    finished += self._dispatch(Reply.parse(words))
                    if self.closed_by is not None:  # !fatal, or a refused login: the rest is moot
                        break
        except RouterOSProtocolError as exc:
            finished += self._close(Reason.PROTOCOL, str(exc))
        return finished

    def connection_lost(self, detail: str) -> list[int]:
        """The transport broke (reset, TLS error, send failed): every command in flight fails."""
        return self._close(Reason.DROPPED, detail)

    def abort(self, detail: str) -> list[int]:
        """We close the session ourselves (idle, shutdown, a /cancel we could not send, a timeout)."""
        return self._close(Reason.DROPPED, detail, ours=True)

    def _dispatch(self, reply: Reply) -> list[int]:
        if reply.kind == "!fatal":
            return self._close(Reason.DROPPED, f"the router ended the session: {reply.attributes.get('message', '')}",
                               peer_closed=False)
        if reply.tag is None:
            raise RouterOSProtocolError(f"untagged {reply.kind} reply (every request of ours is tagged)")
        if _TAG.fullmatch(reply.tag) is None:  # not str.isdigit(): '²' is a digit int() refuses
            shown = reply.tag if len(reply.tag) <= 40 else reply.tag[:40] + "..."
            raise RouterOSProtocolError(f"{reply.kind} reply tagged {shown!r}, not one of our tags")
        tag = int(reply.tag)
        if tag in self._discarded:
            if reply.kind == "!done":
                self._discarded.discard(tag)
            return []
        pending = self._pending.get(tag)
        if pending is None or pending.finished:
            raise RouterOSProtocolError(f"{reply.kind} reply for tag {tag}, which has no command in flight")
        if reply.kind == "!re":
            pending.rows.append(reply.attributes)
        elif reply.kind == "!trap":
            pending.traps.append(reply.attributes.get("message", "?"))
        elif reply.kind == "!done":
            self._finish(tag, pending, reply)
            return [tag]
        return []  # !empty: no rows, the !done follows

    def _finish(self, tag: int, pending: _Pending, done: Reply) -> None:
        pending.finished = True
        pending.heard_back = True
        if tag != self._login_tag:
            if pending.traps:
                pending.failure = trap_failure(pending.traps)
            return
        self._login_tag = None
        if pending.traps:
            pending.failure = RouterFailure(Reason.LOGIN, f"login refused: {', '.join(pending.traps)}")
        elif "ret" in done.attributes:
            pending.failure = RouterFailure(Reason.LOGIN, LEGACY_LOGIN_DETAIL)
        if pending.failure is None:
            self.state = SessionState.READY
        else:
            self.state = SessionState.CLOSED
            self.closed_by = pending.failure

    def _close(self, reason: Reason, detail: str, *, eof: bool = False, ours: bool = False,
               peer_closed: bool = True) -> list[int]:
        if self.state is SessionState.CLOSED:
            return []
        if self.state is SessionState.LOGGING_IN and reason is Reason.DROPPED and not ours:
            # the router went away instead of answering /login: it refuses the session
            reason, detail = Reason.BUSY, BUSY_DETAIL if eof else f"{BUSY_DETAIL} ({detail})"
        self.state = SessionState.CLOSED
        self.closed_by = RouterFailure(reason, detail)
        finished = []
        for tag, pending in self._pending.items():
            if not pending.finished:
                pending.finished = True
                pending.failure = RouterFailure(reason, detail)
                pending.heard_back = self._heard > pending.heard_mark
                pending.peer_closed = reason is Reason.DROPPED and peer_closed and not ours
                finished.append(tag)
        self._discarded.clear()
        return finished

    # ------------------------------------------------------------------ answers out

    def finished(self, tag: int) -> bool:
        pending = self._pending.get(tag)
        if pending is None:
            raise SessionStateError(f"tag {tag} has no command (never sent, cancelled, or already taken)")
        return pending.finished

    def take(self, tag: int) -> Answer:
        """The answer of a finished command; the tag is forgotten."""
        if not self.finished(tag):
            raise SessionStateError(f"tag {tag} has not finished yet")
        p = self._pending.pop(tag)
        return Answer(tag, p.command, p.rows, p.failure, p.heard_back, p.peer_closed)

    @property
    def in_flight(self) -> list[int]:
        """Tags sent and not yet finished (cancelled tags excluded)."""
        return [tag for tag, p in self._pending.items() if not p.finished]
