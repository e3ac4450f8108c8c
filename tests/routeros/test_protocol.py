"""RouterOS sentences byte-for-byte (research/routeros.md section 1) and the read-only allowlist."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mikrovoice.routeros import commands
from mikrovoice.routeros.commands import CommandNotAllowed, ReadCommand
from mikrovoice.routeros.protocol import (
    Reply,
    Request,
    RouterOSProtocolError,
    SentenceReader,
    encode_sentence,
)


def test_sentences_from_the_notes() -> None:
    assert encode_sentence(["/system/identity/print"]).hex(" ") == (
        "16 2f 73 79 73 74 65 6d 2f 69 64 65 6e 74 69 74 79 2f 70 72 69 6e 74 00"
    )
    assert Request("/login", {"name": "admin", "password": "secret"}).encode() == bytes.fromhex(
        "062f6c6f67696e0b3d6e616d653d61646d696e103d70617373776f72643d73656372657400"
    )
    assert Reply("!done").encode() == bytes.fromhex("05 21 64 6f 6e 65 00")
    assert Reply("!re", {"name": "R-152-1"}).encode().hex(" ") == "03 21 72 65 0d 3d 6e 61 6d 65 3d 52 2d 31 35 32 2d 31 00"


@pytest.mark.parametrize("length, prefix", [(0x7F, "7f"), (0x80, "8080"), (0x3FFF, "bfff"), (0x4000, "c04000")])
def test_word_lengths(length: int, prefix: str) -> None:
    word = "x" * length
    encoded = encode_sentence([word])
    assert encoded.startswith(bytes.fromhex(prefix))
    reader = SentenceReader()
    reader.receive_data(encoded)
    assert reader.sentences() == [[word]]


def test_reserved_control_byte_is_a_protocol_error() -> None:
    reader = SentenceReader()
    reader.receive_data(b"\xf8abc")
    with pytest.raises(RouterOSProtocolError, match="control byte 0xf8"):
        reader.sentences()


def test_attribute_values_may_contain_equals_and_be_empty() -> None:
    request = Request.parse(["/interface/monitor-traffic", "=interface=sfp1", "=once=", "=comment=a=b", ".tag=7"])
    assert request.attributes == {"interface": "sfp1", "once": "", "comment": "a=b"} and request.tag == "7"
    assert Reply.parse(["!fatal", "session terminated on request"]).attributes["message"] == "session terminated on request"
    with pytest.raises(RouterOSProtocolError):
        Reply.parse(["!bogus"])


words = st.lists(st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255), min_size=1, max_size=300), min_size=1, max_size=6)


@given(st.lists(words, min_size=1, max_size=6), st.integers(min_value=1, max_value=50))
def test_any_fragmentation_yields_the_same_sentences(sentences: list[list[str]], step: int) -> None:
    data = b"".join(encode_sentence(s) for s in sentences)
    reader = SentenceReader()
    got: list[list[str]] = []
    for i in range(0, len(data), step):
        reader.receive_data(data[i : i + step])
        got += reader.sentences()
    assert got == sentences and not reader.partial


def test_only_read_commands_can_be_built() -> None:
    for command in (commands.identity(), commands.interfaces(), commands.monitor_traffic(["sfp1"]), commands.bound_leases()):
        assert command.request.command.endswith(("/print", "/monitor-traffic"))
    for write in (Request("/ip/address/add", {"address": "10.0.0.1/24"}), Request("/system/reboot"),
                  Request("/interface/set", {"numbers": "ether1", "disabled": "yes"}),
                  Request("/interface/monitor-traffic", {"interface": "sfp1"}),
                  Request("/interface/print", {"detail": "", "file": "x"})):
        with pytest.raises(CommandNotAllowed):
            ReadCommand(write)
