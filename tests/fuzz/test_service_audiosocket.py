"""The AudioSocket listener while hostile clients connect beside a good call (real TCP, virtual clock).

Each example starts the service and the simulated peers, places one good call (a question that
must be answered), and meanwhile opens hypothesis-generated bad connections: random bytes, a valid
UUID then garbage, a message cut short then silence, a reset in the middle of a message. Then a
later call must still be greeted. What each bad connection must come to is predicted by the
codec itself (``AudioSocketCodec``, the same rules the leg applies): a rejection before the call,
a call ended by the protocol error, or a call that simply ends; each with exactly one clear log
line under its call id, and never a crash, a traceback, or a disturbance of the good call.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

import pytest
import trio
from hypothesis import example, given
from hypothesis import strategies as st

from mikrovoice.config import Settings
from mikrovoice.service import serve_calls
from mikrovoice.sim.asterisk import Line
from mikrovoice.telephony.audiosocket import (
    Audio,
    AudioSocketCodec,
    AudioSocketProtocolError,
    CallId,
    Dtmf,
    Hangup,
    Role,
    encode,
)
from mikrovoice.telephony.audiosocket_leg import UUID_TIMEOUT_S
from tests.fuzz.harness import good_call_beside_bad_clients, read_until_closed, reset
from tests.fuzz.hostile import audiosocket_frames, chunked, socket_settings

#: How long a bad client that falls silent waits for the server to close before it hangs up.
SILENT_WAIT_S = UUID_TIMEOUT_S + 3.0
ENDINGS = ("close", "reset", "silence")


@dataclass(frozen=True)
class BadClient:
    with_uuid: bool  # a valid UUID message first
    data: bytes  # then this (garbage, or something that happens to be valid)
    ending: str  # "close" (FIN), "reset" (RST) or "silence" (keeps the connection open)
    delay_s: float  # after the good call starts
    cuts: tuple[int, ...]  # the sizes of its writes


bad_clients = st.builds(
    BadClient,
    with_uuid=st.booleans(),
    data=st.one_of(
        st.binary(max_size=600),
        st.lists(audiosocket_frames(), min_size=1, max_size=4).map(b"".join),
        # valid audio, then one message cut short (what 'silence' must end by the partial timeout)
        st.tuples(st.integers(1, 3), st.integers(1, 322)).map(
            lambda nc: encode(Audio(bytes(320))) * nc[0] + encode(Audio(bytes(320)))[: nc[1]]),
    ),
    ending=st.sampled_from(ENDINGS),
    delay_s=st.sampled_from([0.0, 0.5, 3.0]) | st.floats(0.0, 6.0),
    cuts=st.lists(st.integers(1, 500), min_size=1, max_size=4).map(tuple),
)


def expected(bad: BadClient, index: int) -> tuple[str, str]:
    """(the clear line the server must log for ``bad``, "" for none: a call that simply ended;
    the call id it is logged under, "-" before a UUID)."""
    codec = AudioSocketCodec(Role.SERVER)
    data = (encode(CallId(uuid.UUID(int=index + 1))) if bad.with_uuid else b"") + bad.data
    if data:
        codec.receive_data(data)
    if bad.ending != "silence":
        codec.receive_data(b"")  # a reset is read as the end of the stream, like a close
    call_id = "-"
    try:
        while (message := codec.next_message()) is not None:
            if isinstance(message, CallId):
                call_id = str(message.value)  # garbage may hold a valid UUID message: a call
            elif isinstance(message, Hangup):
                return ("", call_id) if call_id != "-" else ("call.no_uuid", "-")  # a 0x00 hangs up too
    except AudioSocketProtocolError:
        return ("call.bad_peer", call_id) if call_id != "-" else ("call.rejected", "-")
    if call_id == "-":
        return "call.no_uuid", "-"  # silent: nothing within UUID_TIMEOUT_S
    return ("call.bad_peer" if codec.partial else ""), call_id  # a message begun and never finished


async def bad_client(port: int, index: int, bad: BadClient, closed_by_server: dict[int, bool]) -> None:
    await trio.sleep(bad.delay_s)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    data = (encode(CallId(uuid.UUID(int=index + 1))) if bad.with_uuid else b"") + bad.data
    try:
        for piece in chunked(data, list(bad.cuts)):
            await stream.send_all(piece)
        if bad.ending == "reset":
            await trio.sleep(0.05)  # the server has read what was sent: only the end is abrupt
            await reset(stream)
        elif bad.ending == "close":
            await stream.send_eof()
            await read_until_closed(stream, SILENT_WAIT_S)
        else:
            closed_by_server[index] = await read_until_closed(stream, SILENT_WAIT_S)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        closed_by_server[index] = True  # the server closed while we were still writing
    finally:
        await trio.aclose_forcefully(stream)


def check_example(bads: list[BadClient], caplog: pytest.LogCaptureFixture) -> None:
    run = good_call_beside_bad_clients(caplog, serve_calls, replace(Settings(), listen=("127.0.0.1", 0)), Line(),
                                       bads, bad_client)
    good, later, logs, closed_by_server = run.good, run.later, run.logs, run.closed_by_server
    no_call_id = {"call.rejected": 0, "call.no_uuid": 0}
    for index, bad in enumerate(bads):
        line, call_id = expected(bad, index)
        if call_id == "-":
            no_call_id[line] += 1
        else:
            lines = logs.clear_lines(call_id)
            assert lines == ({line: 1} if line else {}), (bad, lines)
        if bad.ending == "silence" and line:
            assert closed_by_server.get(index), f"the server kept a bad connection open: {bad}"
    assert dict(logs.clear_lines("-")) == {k: v for k, v in no_call_id.items() if v}
    for bad_line in ("call.bad_peer",):  # nothing bad logged under the good calls' ids
        assert logs.count(bad_line, good.call_id) == 0 and logs.count(bad_line, later.call_id) == 0


@socket_settings(12)
@given(bads=st.lists(bad_clients, min_size=1, max_size=4))
@example(bads=[BadClient(False, b"", "silence", 0.0, (1,))])  # connects, says nothing: no_uuid after 5 s
@example(bads=[BadClient(True, encode(Audio(bytes(320)))[:100], "silence", 1.0, (7,))])  # cut short: 1 s timeout
@example(bads=[BadClient(True, encode(Audio(bytes(320)))[:100], "reset", 0.5, (50,))])  # reset mid-message
@example(bads=[BadClient(False, bytes.fromhex("10 0140") + bytes(320), "close", 0.0, (500,))])  # audio before the UUID
@example(bads=[BadClient(True, bytes.fromhex("7f ffff") + bytes(100), "silence", 2.0, (3,))])  # unknown kind, 64 KiB
@example(bads=[BadClient(True, encode(Dtmf("5")) + bytes.fromhex("03 0001 ff"), "close", 0.0, (2,))])  # odd digit
def test_hostile_audiosocket_clients_never_disturb_a_good_call(
    bads: list[BadClient], caplog: pytest.LogCaptureFixture
) -> None:
    check_example(bads, caplog)
