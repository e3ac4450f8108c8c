"""The telephone leg of a call, whichever transport carries it: what the call needs, nothing more.

A call (``mikrovoice.call.session``) does not know whether Asterisk reached it over AudioSocket
(``telephony.audiosocket_leg``) or chan_websocket (``telephony.websocket_leg``). It sees a
``CallerLeg``: a start (the call's id, the caller's number when the transport tells it), then
``receive()`` events in the caller's order — 8 kHz mu-law audio for the model (the leg decodes,
resamples, and fixes a mislabelled codec), DTMF digits, and the end of the leg — and three ways
back: ``play(playout)`` moves the playout's frames to Asterisk at the transport's pace,
``barge_in(playout)`` drops what the caller has not heard yet and says how much of each item
they did hear, ``hang_up()`` ends the call from our side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from mikrovoice.telephony.server import Playout, Truncation


@dataclass(frozen=True)
class LegStart:
    call_id: str
    caller_id: str | None = None
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CallerAudio:
    """The caller's audio as the model takes it: 8 kHz mu-law."""

    ulaw: bytes
    loud_ms: int = 0  # of it, how many ms were loud enough to be speech (for barge-in)
    read_at: float | None = None  # when it was read off the connection (for the ADDED_IN timing)


@dataclass(frozen=True)
class Digit:
    """A DTMF digit, normalised: ``0-9 * # A-D``, or ``X`` for a hook flash (RFC 4733 event 16)."""

    digit: str


#: Asterisk reads our audio as it plays it. A write that cannot go out for this long means a peer
#: that stopped reading (broken, or a client that never reads to hold a call slot): the call ends.
WRITE_STALL_S = 5.0


class PeerStalled(Exception):
    """The peer read none of our audio for ``WRITE_STALL_S``; ``play`` raises it."""


@dataclass(frozen=True)
class LegEnded:
    """The leg is gone: the caller hung up (``error`` False), or the peer broke the protocol,
    went silent past the inactivity timeout, or the connection failed (``error`` True)."""

    reason: str
    error: bool = False


LegEvent = CallerAudio | Digit | LegEnded

KNOWN_DIGITS = frozenset("0123456789*#ABCDX")


def normalise_digit(raw: str) -> str | None:
    """Asterisk forwards ``a``-``d`` from SIP INFO in lower case: the same keys as ``A``-``D``.
    Returns None for anything that is not a digit a phone can send (the call logs it and goes on)."""
    digit = raw.upper() if raw in ("a", "b", "c", "d") else raw
    return digit if digit in KNOWN_DIGITS else None


class CallerLeg(Protocol):
    transport: str

    async def start(self) -> LegStart | None:
        """The call's first message (UUID, MEDIA_START); None: no call (already logged)."""
        ...

    async def receive(self) -> LegEvent:
        """The next event from the caller's side; after ``LegEnded``, do not call again."""
        ...

    async def play(self, playout: Playout) -> None:
        """Move the playout's audio to Asterisk until cancelled; a broken connection returns."""
        ...

    def expect_audio(self, frames: int) -> None:
        """A hint: the call has nothing to do with the caller's audio until ``frames`` more 20 ms
        frames came (the model's next chunk); a leg may hand them over together (or ignore this)."""
        ...

    def barge_in(self, playout: Playout) -> list[Truncation]:
        """Drop all queued speech now; for each item dropped, what the caller heard of it."""
        ...

    async def hang_up(self) -> None:
        """We end the call (after the playout has stopped): the transport's hang-up message."""
        ...

    async def aclose(self) -> None:
        ...
