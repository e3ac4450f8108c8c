"""ApiSession, the sans-IO multiplexer: exact bytes out, replies routed by tag, login states."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mikrovoice.routeros import commands
from mikrovoice.routeros.commands import CommandNotAllowed, ReadCommand
from mikrovoice.routeros.connection import (
    BUSY_DETAIL,
    LEGACY_LOGIN_DETAIL,
    ApiSession,
    SessionState,
    SessionStateError,
    trap_failure,
)
from mikrovoice.routeros.errors import Reason, RouterFailure
from mikrovoice.routeros.protocol import Reply, Request

LOGIN_BYTES = b"\x06/login\x0b=name=admin\x10=password=secret\x06.tag=1\x00"
DONE_1 = b"\x05!done\x06.tag=1\x00"


def ready() -> ApiSession:
    session = ApiSession()
    assert session.login("admin", "secret") == (1, LOGIN_BYTES)
    assert session.state is SessionState.LOGGING_IN
    assert session.receive_data(DONE_1) == [1]
    assert session.take(1).result() == []
    assert session.state.value == "ready"
    return session


def reply(kind: str, tag: str | None, **attributes: str) -> bytes:
    return Reply(kind, attributes, tag).encode()


def test_login_then_a_tagged_command_byte_for_byte() -> None:
    session = ready()
    tag, data = session.send(commands.identity())
    assert tag == 2
    assert data == b"\x16/system/identity/print\x0f=.proplist=name\x06.tag=2\x00"
    assert session.receive_data(b"\x03!re\x0b=name=R-152\x06.tag=2\x00") == []
    assert not session.finished(2)
    assert session.receive_data(b"\x05!done\x06.tag=2\x00") == [2]
    assert session.take(2).result() == [{"name": "R-152"}]
    with pytest.raises(SessionStateError, match="tag 2 has no command"):
        session.finished(2)


def test_interleaved_replies_fed_one_byte_at_a_time_reach_their_own_tags() -> None:
    session = ready()
    assert session.send(commands.interfaces())[0] == 2
    assert session.send(commands.bound_leases())[0] == 3
    assert session.send(commands.identity())[0] == 4
    stream = b"".join([
        reply("!re", "3", address="10.0.0.1"),
        reply("!re", "2", name="ether1"),
        reply("!empty", "4"),
        reply("!re", "3", address="10.0.0.2"),
        reply("!done", "4"),
        reply("!re", "2", name="sfp1"),
        reply("!done", "3"),
        reply("!done", "2"),
    ])
    finished: list[int] = []
    for i in range(len(stream)):
        finished += session.receive_data(stream[i:i + 1])
    assert finished == [4, 3, 2]
    assert session.take(2).result() == [{"name": "ether1"}, {"name": "sfp1"}]
    assert session.take(3).result() == [{"address": "10.0.0.1"}, {"address": "10.0.0.2"}]
    assert session.take(4).result() == []  # !empty is no row
    assert session.state is SessionState.READY


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=12))
def test_any_fragmentation_gives_the_same_answers(cuts: list[int]) -> None:
    session = ready()
    session.send(commands.interfaces())
    session.send(commands.identity())
    stream = reply("!re", "3", name="R") + reply("!re", "2", name="ether1") + reply("!done", "3") + reply("!done", "2")
    position, finished = 0, []
    for cut in cuts:
        finished += session.receive_data(stream[position:position + cut])
        position += cut
    finished += session.receive_data(stream[position:])
    assert finished == [3, 2]
    assert session.take(2).result() == [{"name": "ether1"}]
    assert session.take(3).result() == [{"name": "R"}]


def test_a_missing_menu_is_two_traps_then_done() -> None:
    session = ready()
    session.send(commands.wireless_registrations())
    finished = session.receive_data(
        reply("!trap", "2", category="0", message="no such command or directory (wireless)")
        + reply("!trap", "2", message="no such command prefix") + reply("!done", "2"))
    assert finished == [2]
    with pytest.raises(RouterFailure) as caught:
        session.take(2).result()
    assert caught.value.reason is Reason.MISSING
    assert caught.value.detail == "no such command or directory (wireless), no such command prefix"
    assert session.state is SessionState.READY  # a trap is an answer, not a broken connection


@pytest.mark.parametrize(("messages", "reason"), [
    (["no such command"], Reason.MISSING),
    (["no such command prefix"], Reason.MISSING),
    (["not enough permissions (9)"], Reason.PERMISSION),
    (["input does not match any value of interface (sfp9)"], Reason.TRAP),
    (["no such item (4)", "failure: busy"], Reason.TRAP),
])
def test_trap_reasons(messages: list[str], reason: Reason) -> None:
    failure = trap_failure(messages)
    assert (failure.reason, failure.detail) == (reason, ", ".join(messages))


def test_fatal_ends_the_session_and_every_command_in_flight() -> None:
    session = ready()
    session.send(commands.interfaces())
    session.send(commands.identity())
    finished = session.receive_data(reply("!re", "2", name="ether1") + b"\x06!fatal\x1dsession terminated on request\x00"
                                    + reply("!done", "2"))
    assert finished == [2, 3]
    assert session.state is SessionState.CLOSED
    for tag in (2, 3):
        answer = session.take(tag)
        assert answer.failure is not None
        assert (answer.failure.reason, answer.failure.detail) == (
            Reason.DROPPED, "the router ended the session: session terminated on request")
        assert answer.heard_back and not answer.stale
    with pytest.raises(SessionStateError, match="can't send in state 'closed'"):
        session.send(commands.identity())


@pytest.mark.parametrize(("data", "detail"), [
    (reply("!re", "9", name="x"), "!re reply for tag 9, which has no command in flight"),
    (reply("!done", None), "untagged !done reply (every request of ours is tagged)"),
    (reply("!done", "r1"), "!done reply tagged 'r1', not one of our tags"),
    (b"\x04!hey\x00", "unknown reply word '!hey'"),
    (b"\xf8garbage", "control byte 0xf8 where a word length was expected"),
    (reply("!done", "2") + reply("!done", "2"), "!done reply for tag 2, which has no command in flight"),
])
def test_what_no_command_of_ours_explains_is_a_protocol_error(data: bytes, detail: str) -> None:
    session = ready()
    session.send(commands.identity())
    assert session.receive_data(data) == [2]
    assert session.state is SessionState.CLOSED
    assert session.closed_by is not None
    assert (session.closed_by.reason, session.closed_by.detail) == (Reason.PROTOCOL, detail)


def test_replies_to_a_cancelled_tag_are_discarded_until_its_done() -> None:
    session = ready()
    session.send(commands.ping("10.0.0.1", 10))
    session.send(commands.identity())
    cancel_tag, data = session.cancel(2)
    assert (cancel_tag, data) == (4, b"\x07/cancel\x06=tag=2\x06.tag=4\x00")
    assert session.in_flight == [3]
    finished = session.receive_data(
        reply("!re", "2", seq="0") + reply("!done", "4") + reply("!trap", "2", category="2", message="interrupted")
        + reply("!re", "3", name="R") + reply("!done", "2") + reply("!done", "3"))
    assert finished == [3]
    assert session.take(3).result() == [{"name": "R"}]
    assert session.state is SessionState.READY
    with pytest.raises(SessionStateError):
        session.finished(2)
    # after its !done the cancelled tag is forgotten: one more reply for it is a protocol error
    session.receive_data(reply("!re", "2", seq="1"))
    assert session.closed_by is not None and session.closed_by.reason is Reason.PROTOCOL


def test_login_refused_legacy_and_busy() -> None:
    refused = ApiSession()
    refused.login("admin", "wrong")
    assert refused.receive_data(reply("!trap", "1", message="invalid user name or password (6)") + DONE_1) == [1]
    failure = refused.take(1).failure
    assert failure is not None
    assert (failure.reason, failure.detail) == (Reason.LOGIN, "login refused: invalid user name or password (6)")
    assert refused.state is SessionState.CLOSED

    legacy = ApiSession()
    legacy.login("admin", "pw")
    legacy.receive_data(reply("!done", "1", ret="93b438ec9b80057c06dd9fe67d56aa9a"))
    failure = legacy.take(1).failure
    assert failure is not None and (failure.reason, failure.detail) == (Reason.LOGIN, LEGACY_LOGIN_DETAIL)

    busy = ApiSession()
    busy.login("admin", "pw")
    assert busy.receive_data(b"") == [1]
    failure = busy.take(1).failure
    assert failure is not None and (failure.reason, failure.detail) == (Reason.BUSY, BUSY_DETAIL)
    assert BUSY_DETAIL == ("closed the connection before answering the login: max-sessions reached, "
                           "or /ip service restricts our address")


def test_a_password_outside_latin1_goes_out_as_its_utf8_bytes_and_never_in_a_repr() -> None:
    session = ApiSession()
    tag, data = session.login("noc", "contraseña€")
    secret = "contraseña€".encode()
    assert data == b"\x06/login\x09=name=noc" + bytes([10 + len(secret)]) + b"=password=" + secret + b"\x06.tag=1\x00"
    session.receive_data(b"")
    answer = session.take(tag)
    assert "contrase" not in repr(answer) and "contrase" not in repr(session.__dict__)


def test_eof_before_any_reply_is_stale_and_after_one_is_not() -> None:
    session = ready()
    session.send(commands.identity())
    assert session.receive_data(b"") == [2]
    stale = session.take(2)
    assert stale.failure is not None and stale.failure.detail == "connection closed by the router"
    assert stale.stale

    session = ready()
    session.send(commands.interfaces())
    session.send(commands.identity())
    session.receive_data(reply("!re", "2", name="ether1") + b"\x03!re")
    assert session.receive_data(b"") == [2, 3]
    for tag in (2, 3):
        answer = session.take(tag)
        assert answer.failure is not None and not answer.stale
        assert (answer.failure.reason, answer.failure.detail) == (
            Reason.DROPPED, "connection closed by the router in the middle of a reply")


def test_states_guard_the_methods() -> None:
    session = ApiSession()
    with pytest.raises(SessionStateError, match="can't send in state 'new'"):
        session.send(commands.identity())
    session.login("admin", "")
    with pytest.raises(SessionStateError, match="can't login in state 'logging in'"):
        session.login("admin", "")
    with pytest.raises(SessionStateError, match="can't cancel in state 'logging in'"):
        session.cancel(1)


def test_the_allowlist_is_checked_again_right_before_the_bytes() -> None:
    session = ready()
    smuggled = object.__new__(ReadCommand)
    object.__setattr__(smuggled, "request", Request("/system/reboot"))
    with pytest.raises(CommandNotAllowed, match="/system/reboot is not in mikrovoice's read-only allowlist"):
        session.send(smuggled)
    # nothing was left pending by the refused request, and it used no tag
    assert session.in_flight == []
    assert session.send(commands.identity())[0] == 2


def test_only_the_router_closing_on_a_silent_connection_is_stale() -> None:
    reset = ready()
    reset.send(commands.identity())
    assert reset.connection_lost("connection reset while sending: [Errno 104]") == [2]
    assert reset.take(2).stale

    ours = ready()
    ours.send(commands.identity())
    assert ours.abort("idle for 60 s") == [2]
    answer = ours.take(2)
    assert answer.failure is not None and (answer.failure.reason, answer.failure.detail) == (Reason.DROPPED, "idle for 60 s")
    assert not answer.stale

    garbage = ready()
    garbage.send(commands.identity())
    garbage.receive_data(b"\xf8")
    assert not garbage.take(2).stale
