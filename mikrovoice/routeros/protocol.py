"""RouterOS API sentences, sans-IO: bytes in, sentences out; requests in, bytes out.

Length encoding is librouteros's own (``librouteros.protocol``), so the wire format is the one
the reference client speaks. ``SentenceReader`` reassembles sentences from any TCP fragmentation;
``Reply`` and ``Request`` give them meaning (research/routeros.md section 1). Words are decoded
as latin-1, which never fails: RouterOS stores whatever code page Winbox wrote.
This file performs no I/O and knows nothing of Trio or sockets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from librouteros.exceptions import ProtocolError as _LibProtocolError
from librouteros.protocol import decode_length, determine_length, encode_length

ENCODING = "latin-1"
#: A single word larger than this is refused (RouterOS itself supports up to 0xFFFFFFF).
MAX_WORD = 1 << 20
#: A sentence is one reply row: tens of attributes, never thousands. A stream that never ends
#: its sentence is refused here instead of growing the words held without bound.
MAX_SENTENCE_WORDS = 10_000
MAX_SENTENCE_BYTES = 8 * MAX_WORD


class RouterOSProtocolError(Exception):
    """The byte stream is not a valid RouterOS API stream; the connection must be dropped."""


def encode_sentence(words: Iterable[str]) -> bytes:
    out = bytearray()
    for word in words:
        raw = word.encode(ENCODING)
        out += encode_length(len(raw)) + raw
    out += b"\x00"
    return bytes(out)


class SentenceReader:
    """Feed bytes with ``receive_data``; take whole sentences (lists of words) from ``sentences()``.

    ``sentences()`` raises ``RouterOSProtocolError`` for bytes that are not the API protocol: a
    reserved control byte, a word over ``MAX_WORD`` (refused on its length prefix, never awaited),
    a sentence over ``MAX_SENTENCE_WORDS`` or ``MAX_SENTENCE_BYTES``. The sentences that were
    complete before the garbage are returned first, so how TCP cut the stream changes nothing:
    the call that reaches the garbage returns them, and every call after it raises. Call
    ``sentences()`` until it returns ``[]`` after each ``receive_data``.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._words: list[str] = []
        self._sentence_bytes = 0
        self._error: RouterOSProtocolError | None = None

    def receive_data(self, data: bytes | bytearray) -> None:
        if self._error is None:
            self._buffer += data

    @property
    def partial(self) -> bool:
        return bool(self._buffer or self._words)

    def sentences(self) -> list[list[str]]:
        if self._error is not None:
            raise self._error
        done: list[list[str]] = []
        try:
            while (word := self._next_word()) is not None:
                if word == "":
                    if self._words:  # empty sentences are ignored
                        done.append(self._words)
                    self._words = []
                    self._sentence_bytes = 0
                    continue
                self._words.append(word)
                self._sentence_bytes += len(word)
                if len(self._words) > MAX_SENTENCE_WORDS or self._sentence_bytes > MAX_SENTENCE_BYTES:
                    raise RouterOSProtocolError(
                        f"a sentence of more than {MAX_SENTENCE_WORDS} words or {MAX_SENTENCE_BYTES} bytes "
                        f"({len(self._words)} words, {self._sentence_bytes} bytes so far, no end of sentence)"
                    )
        except RouterOSProtocolError as exc:
            self._error = exc
            self._buffer.clear()
            self._words = []
            if not done:
                raise
        return done

    def _next_word(self) -> str | None:
        if not self._buffer:
            return None
        try:
            extra = determine_length(bytes(self._buffer[:1]))
        except _LibProtocolError as exc:
            # 0xF0 announces a 5-byte length (256 MiB and more: over MAX_WORD); 0xF8-0xFF are
            # RouterOS's reserved control bytes, never sent by the API.
            raise RouterOSProtocolError(
                f"control byte 0x{self._buffer[0]:02x} where a word length was expected"
                + (" (a word of 256 MiB or more)" if self._buffer[0] < 0xF8 else "")
            ) from exc
        if len(self._buffer) < 1 + extra:
            return None
        length = decode_length(bytes(self._buffer[: 1 + extra]))
        if length > MAX_WORD:
            raise RouterOSProtocolError(f"word of {length} bytes exceeds the {MAX_WORD}-byte limit")
        end = 1 + extra + length
        if len(self._buffer) < end:
            return None
        word = bytes(self._buffer[1 + extra : end]).decode(ENCODING)
        del self._buffer[:end]
        return word


def split_attribute(word: str) -> tuple[str, str]:
    """``=name=value`` -> (name, value); the value may itself contain ``=``; ``=flag`` has value ""."""
    body = word[1:]
    name, _, value = body.partition("=")
    return name, value


@dataclass(frozen=True)
class Reply:
    """One reply sentence: ``!re``, ``!done``, ``!trap``, ``!empty`` or ``!fatal``."""

    kind: str
    attributes: dict[str, str] = field(default_factory=dict)
    tag: str | None = None

    @classmethod
    def parse(cls, words: list[str]) -> Reply:
        kind = words[0]
        if kind not in ("!re", "!done", "!trap", "!empty", "!fatal"):
            raise RouterOSProtocolError(f"unknown reply word {kind!r}")
        attributes: dict[str, str] = {}
        tag = None
        for word in words[1:]:
            if word.startswith("="):
                name, value = split_attribute(word)
                attributes[name] = value
            elif word.startswith(".tag="):
                tag = word[5:]
            elif kind == "!fatal":
                attributes["message"] = word  # !fatal carries a bare word
            else:
                raise RouterOSProtocolError(f"unexpected word {word!r} in {kind} reply")
        return cls(kind, attributes, tag)

    def encode(self) -> bytes:
        if self.kind == "!fatal":
            words = [self.kind, self.attributes.get("message", "")]
        else:
            words = [self.kind] + [f"={k}={v}" for k, v in self.attributes.items()]
        if self.tag is not None:
            words.append(f".tag={self.tag}")
        return encode_sentence(words)


@dataclass(frozen=True)
class Request:
    """One request sentence: command, ``=attribute=`` words, ``?query`` words, optional ``.tag``."""

    command: str
    attributes: dict[str, str] = field(default_factory=dict)
    queries: tuple[str, ...] = ()
    tag: str | None = None

    @classmethod
    def parse(cls, words: list[str]) -> Request:
        command = words[0]
        if not command.startswith("/"):
            raise RouterOSProtocolError(f"a request must start with a command word, got {command!r}")
        attributes: dict[str, str] = {}
        queries: list[str] = []
        tag = None
        for word in words[1:]:
            if word.startswith("="):
                name, value = split_attribute(word)
                attributes[name] = value
            elif word.startswith("?"):
                queries.append(word)
            elif word.startswith(".tag="):
                tag = word[5:]
            else:
                raise RouterOSProtocolError(f"unexpected word {word!r} in request {command}")
        return cls(command, attributes, tuple(queries), tag)

    def __repr__(self) -> str:  # a /login request holds a password: never show it
        shown = {k: ("***" if k == "password" else v) for k, v in self.attributes.items()}
        return f"Request(command={self.command!r}, attributes={shown!r}, queries={self.queries!r}, tag={self.tag!r})"

    def encode(self) -> bytes:
        words = [self.command] + [f"={k}={v}" for k, v in self.attributes.items()] + list(self.queries)
        if self.tag is not None:
            words.append(f".tag={self.tag}")
        return encode_sentence(words)
