"""Settings and strategies shared by the hostile-input properties.

Settings follow tests/simulation/test_properties.py: the same examples every run (``derandomize``),
so a red run is a change's doing and reproducible at once; ``MIKROVOICE_FUZZ_RANDOM=1`` explores
at random instead, and ``MIKROVOICE_FUZZ_SCALE=20`` runs twenty times as many examples (a longer
fuzzing session: ``MIKROVOICE_FUZZ_RANDOM=1 MIKROVOICE_FUZZ_SCALE=20 pytest tests/fuzz``).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SCALE = float(os.environ.get("MIKROVOICE_FUZZ_SCALE", "1"))
RANDOM = bool(os.environ.get("MIKROVOICE_FUZZ_RANDOM"))


def _examples(n: int) -> int:
    return max(1, round(n * SCALE))


def decoder_settings(examples: int = 300) -> settings:
    """Pure decoders: hundreds of examples in well under a second each."""
    return settings(max_examples=_examples(examples), deadline=None, derandomize=not RANDOM, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def socket_settings(examples: int = 12) -> settings:
    """Real sockets on the virtual clock: a whole call per example, so a few examples each.
    ``caplog`` is cleared by each example itself (hence function_scoped_fixture)."""
    return settings(max_examples=_examples(examples), deadline=None, derandomize=not RANDOM, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


# --------------------------------------------------------------------------- numbers and text

#: Integers a parser meets in hostile text: C limits, Python's 4300-digit str->int limit, and beyond.
HUGE_INTS = st.sampled_from([
    2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30, -(10**30),
    10**4299,  # 4300 digits: the most str() and int() convert (sys.get_int_max_str_digits)
])
NUMBER_TEXT = st.one_of(
    st.integers().map(str),
    HUGE_INTS.map(str),
    st.integers(4290, 6000).map(lambda n: "9" * n),  # over Python's int-from-str limit
    st.integers(4290, 6000).map(lambda n: "-" + "1" * n),
    st.sampled_from(["", "-", "+1", "1.5", "1e999", "-1e999", "NaN", "nan", "Infinity", "-Infinity", "0x10",
                     "1_000", "٣", "²", "¹²", "1 2", " 1", "1\n", "true", "null", "-0", "00"]),
)
#: Text with what a decoder must survive: NUL, controls, lone surrogates, non-BMP, RTL marks.
NASTY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40) | st.sampled_from(
    ["\x00", "\ud800", "\udfff", "a\udc80b", "\U0001f4a9", "\u202e", "\r\n", " ", "\t", "=", ":", "{", "\\"]
)

# --------------------------------------------------------------------------- JSON

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), HUGE_INTS, st.floats(), st.text(max_size=12), NASTY_TEXT,
)
#: Any JSON value Python's json can write (NaN and Infinity included, as Python's json reads them).
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


def nested(depth: int, opener: str = "[") -> str:
    closer = {"[": "]", "{": "}"}[opener]
    if opener == "{":
        return '{"a":' * depth + "1" + closer * depth
    return opener * depth + closer * depth


#: Text a JSON reader must refuse or survive: truncations, deep nesting, huge literals, non-JSON.
HOSTILE_JSON_TEXT = st.one_of(
    JSON_VALUES.map(json.dumps),
    st.integers(100, 200_000).map(nested),
    st.integers(100, 50_000).map(lambda d: nested(d, "{")),
    st.integers(100, 200_000).map(lambda d: "[" * d),  # unclosed
    st.integers(4290, 6000).map(lambda n: '{"type":"x","n":' + "9" * n + "}"),
    st.sampled_from(["", " ", "null", "[]", "{}", "NaN", "{\"type\":", "\x00", "\ufeff{}", '{"type":"\\ud800"}',
                     '{"type":1}', '{"type":null}', "1e999", '"\\u0000"', "[" + "1," * 1000 + "1]"]),
    st.text(max_size=60),
)


def json_paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into a JSON value, the root ``()`` first."""
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from json_paths(inner, prefix + (key,))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from json_paths(inner, prefix + (i,))


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


@st.composite
def mutated(draw: st.DrawFn, template: Any, keys: st.SearchStrategy[str] | None = None) -> Any:
    """``template`` (a real message's shape) with one to four faults: a member deleted, a value
    replaced by any JSON value (wrong type, huge, NaN, nested), a member added, a list emptied."""
    value = copy.deepcopy(template)
    extra_keys = keys if keys is not None else st.text(max_size=12)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(list(json_paths(value))))
        target = _at(value, path)
        op = draw(st.sampled_from(["delete", "replace", "replace", "add", "type"]))
        if not path:
            if op in ("replace", "type"):
                value = draw(JSON_VALUES)
            elif isinstance(value, dict):
                value[draw(extra_keys)] = draw(JSON_VALUES)
            continue
        parent, last = _at(value, path[:-1]), path[-1]
        if op == "delete":
            del parent[last]
        elif op == "add" and isinstance(target, dict):
            target[draw(extra_keys)] = draw(JSON_VALUES)
        elif op == "type":  # the same value, as another JSON type
            parent[last] = draw(st.sampled_from([str(target), [target], {"value": target}, None, 0, True, 1.5]))
        else:
            parent[last] = draw(JSON_VALUES)
    return value


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` in pieces of the sizes ``cuts`` (cycled; each at least one byte)."""
    pieces, position, i = [], 0, 0
    while position < len(data):
        size = max(1, cuts[i % len(cuts)]) if cuts else len(data)
        pieces.append(data[position : position + size])
        position, i = position + size, i + 1
    return pieces


CUTS = st.lists(st.integers(1, 700), min_size=1, max_size=30)

# --------------------------------------------------------------------------- AudioSocket

_INTERESTING_KINDS = st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x04, 0x0F, *range(0x10, 0x19), 0x19, 0x7F, 0x80, 0xFE,
                                      0xFF])


@st.composite
def audiosocket_frames(draw: st.DrawFn) -> bytes:
    """One TLV that may lie: any kind, a declared length that may not match what follows."""
    kind = draw(_INTERESTING_KINDS | st.integers(0, 255))
    payload = draw(st.binary(max_size=400))
    declared = draw(st.sampled_from([len(payload), 0, 1, 16, 320, 0xFFFF]) | st.integers(0, 0xFFFF))
    return bytes((kind,)) + declared.to_bytes(2, "big") + payload
