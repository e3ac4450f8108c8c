"""RouterOS API words, sentences and the tagged session on hostile bytes from a router.

Contract (``routeros.protocol``, ``routeros.connection``): ``SentenceReader`` yields sentences or
raises ``RouterOSProtocolError``, whatever the cutting, holding at most one word and one sentence
of bounded size (a declared length over ``MAX_WORD`` is refused on its prefix alone, not awaited);
``ApiSession.receive_data`` never raises: garbage closes the session with ``Reason.PROTOCOL`` and
fails every command in flight, so the router's task ends with a ``RouterFailure``.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from librouteros.protocol import encode_length

from mikrovoice.routeros import commands
from mikrovoice.routeros.connection import ApiSession, SessionState
from mikrovoice.routeros.errors import Reason, RouterFailure
from mikrovoice.routeros.protocol import (
    MAX_SENTENCE_BYTES,
    MAX_SENTENCE_WORDS,
    MAX_WORD,
    Reply,
    Request,
    RouterOSProtocolError,
    SentenceReader,
    encode_sentence,
)
from tests.fuzz.hostile import CUTS, NASTY_TEXT, chunked, decoder_settings

#: Length prefixes of 1 to 5 bytes: every control-byte class (0x00-0x7F one byte, 0x80 two, 0xC0
#: three, 0xE0 four, 0xF0 five), the reserved 0xF8-0xFF, and lengths at each class's edges.
PREFIXES = st.one_of(
    st.sampled_from([0, 1, 0x7F, 0x80, 0x3FFF, 0x4000, 0x1FFFFF, 0x200000, 0xFFFFFFF, MAX_WORD, MAX_WORD + 1])
    .map(encode_length),
    st.integers(0xF0, 0xFF).flatmap(lambda b: st.binary(min_size=4, max_size=4).map(lambda rest: bytes((b,)) + rest)),
    st.integers(0x80, 0xEF).flatmap(lambda b: st.binary(max_size=3).map(lambda rest: bytes((b,)) + rest)),
)
#: A word that may lie about its length.
HOSTILE_WORDS = st.tuples(PREFIXES | st.integers(0, 40).map(encode_length), st.binary(max_size=60)).map(b"".join)
HOSTILE_STREAMS = st.one_of(
    st.binary(max_size=1500),
    st.lists(HOSTILE_WORDS | st.just(b"\x00"), max_size=20).map(b"".join),
)


def read_all(pieces: list[bytes]) -> tuple[list[list[str]], str | None]:
    reader = SentenceReader()
    out: list[list[str]] = []
    try:
        for piece in pieces:
            reader.receive_data(piece)
            while got := reader.sentences():
                out += got
            assert len(reader._buffer) <= 4 + MAX_WORD  # at most one word, not yet complete
    except RouterOSProtocolError as exc:
        assert str(exc)
        return out, str(exc)
    return out, None


@decoder_settings(500)
@given(HOSTILE_STREAMS, CUTS)
@example(b"\xf8\x00\x00\x00\x01a", [1])  # a reserved control byte
@example(b"\xf0\x10\x00\x00\x00", [2])  # a 5-byte prefix: 256 MiB announced
@example(b"\xef\xff\xff\xff", [4])  # 0x0FFFFFFF announced: refused at once, never awaited
@example(encode_sentence(["!done", ".tag=2"]) + b"\xf8", [13])  # was: the sentence lost when read with the garbage
def test_any_bytes_in_any_cutting_read_alike_or_raise_the_protocol_error(data: bytes, cuts: list[int]) -> None:
    whole = read_all([data])
    assert read_all(chunked(data, cuts)) == whole
    assert read_all([bytes((b,)) for b in data]) == whole


@decoder_settings(100)
@given(st.sampled_from([MAX_WORD + 1, 0x200000, 0xFFFFFFF]), st.integers(0, 4))
def test_a_huge_declared_length_is_refused_on_its_prefix(length: int, body: int) -> None:
    reader = SentenceReader()
    reader.receive_data(encode_length(length) + bytes(body))
    try:
        reader.sentences()
    except RouterOSProtocolError as exc:
        assert "exceeds" in str(exc)
    else:
        raise AssertionError("a word longer than MAX_WORD must be refused before its bytes arrive")


def test_an_endless_sentence_is_refused() -> None:
    """Words without the end of the sentence: refused at MAX_SENTENCE_WORDS, not kept forever."""
    reader = SentenceReader()
    word = encode_length(1) + b"a"
    try:
        for _ in range(MAX_SENTENCE_WORDS // 1000 + 1):
            reader.receive_data(word * 1000)
            reader.sentences()
    except RouterOSProtocolError as exc:
        assert "sentence" in str(exc)
    else:
        raise AssertionError("an unbounded sentence must be refused")
    reader = SentenceReader()
    big = encode_length(MAX_WORD) + bytes(MAX_WORD)
    try:
        for _ in range(MAX_SENTENCE_BYTES // MAX_WORD + 1):
            reader.receive_data(big)
            reader.sentences()
    except RouterOSProtocolError as exc:
        assert "sentence" in str(exc)
    else:
        raise AssertionError("an unbounded sentence must be refused")


_words = st.text(st.characters(codec="latin-1"), min_size=1, max_size=300) | st.integers(0x3FF0, 0x4010).map(
    lambda n: "x" * n
)


@decoder_settings(150)
@given(st.lists(st.lists(_words, min_size=1, max_size=6), max_size=5), st.lists(st.integers(0, 10**6), max_size=10))
def test_sentences_split_anywhere_read_back(sentences: list[list[str]], splits: list[int]) -> None:
    data = b"".join(encode_sentence(words) for words in sentences)
    points = sorted({s % (len(data) + 1) for s in splits} | {0, len(data)})
    assert read_all([data[a:b] for a, b in zip(points, points[1:], strict=False)]) == (sentences, None)


REPLY_KINDS = st.sampled_from(["!re", "!done", "!trap", "!empty", "!fatal"])
TAGS = st.one_of(
    st.sampled_from(["1", "2", "3", "4", "99", "0", "", "-1", " 2", "2 ", "+2", "02", "²", "¹", "2\x00", "٣".encode().decode("latin-1")]),
    st.integers(4290, 6000).map(lambda n: "2" * n),  # over Python's int-from-str limit
    st.text(st.characters(codec="latin-1"), max_size=8),
)
_latin1 = st.characters(codec="latin-1")
ATTRIBUTES = st.one_of(
    st.tuples(st.text(_latin1, max_size=8), st.text(_latin1, max_size=20)).map(lambda kv: f"={kv[0]}={kv[1]}"),
    st.sampled_from(["=", "==", "=message=", "=ret=abc", "message", "=.tag=2"]),
    NASTY_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass").decode("latin-1")),
)


@st.composite
def replies(draw: st.DrawFn) -> bytes:
    words = [draw(REPLY_KINDS | st.sampled_from(["!", "!res", "/login", "", "re"]))]
    words += draw(st.lists(ATTRIBUTES, max_size=4))
    if draw(st.booleans()):
        words.append(".tag=" + draw(TAGS))
    words = [w for w in words if w]
    return encode_sentence(words) if words else b"\x00"


ROUTER_STREAMS = st.lists(replies() | HOSTILE_WORDS | st.just(b"\x00"), max_size=12).map(b"".join)


def _logged_in_with_commands() -> tuple[ApiSession, list[int]]:
    session = ApiSession()
    session.login("admin", "secret")
    assert session.receive_data(b"\x05!done\x06.tag=1\x00") == [1]
    session.take(1)
    tags = [session.send(commands.identity())[0], session.send(commands.interfaces())[0]]
    tag3 = session.send(commands.resource())[0]
    session.cancel(tag3)
    return session, tags


@decoder_settings(600)
@given(ROUTER_STREAMS, CUTS, st.booleans(), st.booleans())
@example(Reply("!done", tag="²").encode(), [5], False, True)  # '²'.isdigit() but int('²') fails: was a ValueError
@example(Reply("!done", tag="2" * 5000).encode(), [64], False, True)  # int() of 5000 digits: was a ValueError
@example(Reply("!re", {"name": "x"}, "\xb9").encode(), [1], True, True)  # a superscript one, during the login
def test_the_session_never_raises_and_fails_its_commands_with_a_reason(
    data: bytes, cuts: list[int], during_login: bool, then_eof: bool
) -> None:
    if during_login:
        session, tags = ApiSession(), [1]
        session.login("admin", "secret")
    else:
        session, tags = _logged_in_with_commands()
    finished: list[int] = []
    for piece in chunked(data, cuts) + ([b""] if then_eof else []):
        got = session.receive_data(piece)
        assert all(isinstance(tag, int) for tag in got)
        finished += got
    assert len(finished) == len(set(finished)) and set(finished) <= set(tags)
    if session.state is SessionState.CLOSED:
        assert isinstance(session.closed_by, RouterFailure) and session.closed_by.reason in (
            Reason.PROTOCOL, Reason.DROPPED, Reason.BUSY, Reason.LOGIN)
        assert session.in_flight == []
    for tag in finished:
        answer = session.take(tag)
        assert answer.failure is None or isinstance(answer.failure, RouterFailure)
        assert all(isinstance(k, str) and isinstance(v, str) for row in answer.rows for k, v in row.items())
    if then_eof:
        assert session.state is SessionState.CLOSED and session.in_flight == []


def test_answers_before_garbage_in_the_same_read_are_kept() -> None:
    """A command the router finished before its garbage succeeds however TCP cut the two (it failed
    with Reason.PROTOCOL when both arrived in one read); the commands still in flight fail."""
    session, (identity_tag, interfaces_tag) = _logged_in_with_commands()
    data = Reply("!re", {"name": "R-152"}, str(identity_tag)).encode() + Reply("!done", tag=str(identity_tag)).encode()
    assert sorted(session.receive_data(data + b"\xf8garbage")) == [identity_tag, interfaces_tag]
    assert session.take(identity_tag).result() == [{"name": "R-152"}]
    failure = session.take(interfaces_tag).failure
    assert failure is not None and failure.reason is Reason.PROTOCOL and "0xf8" in failure.detail


@decoder_settings(200)
@given(st.lists(st.text(_latin1, min_size=1, max_size=30) | ATTRIBUTES | REPLY_KINDS, min_size=1, max_size=8))
def test_reply_and_request_parsers_raise_only_the_protocol_error(words: list[str]) -> None:
    """Words as the reader gives them (never empty): parsed, or refused; what parses encodes back."""
    for parse in (Reply.parse, Request.parse):
        try:
            parsed = parse(words)
        except RouterOSProtocolError:
            continue
        if isinstance(parsed, Reply) and parsed.kind == "!fatal":
            continue  # encoded as its bare message word only
        assert parse(read_all([parsed.encode()])[0][0]) == parsed
