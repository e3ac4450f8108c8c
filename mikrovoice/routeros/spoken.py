"""Spanish numbers as people say them on the phone, and names folded the way the inventory indexes them.

Pure text functions over the standard library: no inventory, no I/O, no logging. ``parse_spoken_number``
reads one number 0..999 ("ciento cincuenta y dos"); ``normalise_spoken`` rewrites a whole phrase
("el ciento cincuenta y dos punto uno" -> "152.1"); ``fold_name`` only folds case, accents and
separators. None of them raises, whatever the text (empty, huge, emoji, control characters).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# --------------------------------------------------------------------------- vocabulary (accents folded)

_UNITS = {"un": 1, "uno": 1, "una": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6, "siete": 7,
          "ocho": 8, "nueve": 9}
#: The words a digit-by-digit dictation is made of.
_DIGIT_WORDS = {"cero": 0, **_UNITS}
#: One word, no "y" after it (except "diez y seis", "veinte y uno").
_WHOLE = {"diez": 10, "once": 11, "doce": 12, "trece": 13, "catorce": 14, "quince": 15, "dieciseis": 16,
          "diecisiete": 17, "dieciocho": 18, "diecinueve": 19, "veinte": 20,
          **{f"veinti{word}": 20 + value for word, value in _UNITS.items()}}
_TENS = {"treinta": 30, "cuarenta": 40, "cincuenta": 50, "sesenta": 60, "setenta": 70, "ochenta": 80,
         "noventa": 90}
#: Hundreds that take a tail ("ciento dos"); "cien" stands alone. "sietecientos" and
#: "nuevecientos" are common slips of the tongue, so they are understood too.
_HUNDREDS = {"ciento": 100, "quinientos": 500, "quinientas": 500, "setecientos": 700, "setecientas": 700,
             "sietecientos": 700, "novecientos": 900, "novecientas": 900, "nuevecientos": 900,
             **{f"{word}cient{ending}": 100 * value for word, value in
                (("dos", 2), ("tres", 3), ("cuatro", 4), ("seis", 6), ("ocho", 8)) for ending in ("os", "as")}}
#: A transcript that split "dieciséis" or "veintiuno" in two: "dieci seis", "veinti uno".
_SPLIT_PREFIXES = {"dieci": (10, 6), "veinti": (20, 1)}  # value, lowest unit it takes
#: After "diez y" only 6..9 make a number ("diez y seis" = 16); after "veinte y", 1..9.
_AND_LOWEST = {"diez": 6, "veinte": 1}

#: Words that carry no name: articles, "router", "equipo", "el que está en", "por favor".
#: "por" alone is kept (only "por favor" is a filler).
FILLERS = frozenset({
    "el", "la", "los", "las", "lo", "del", "de", "al", "en", "que", "esta", "estan", "numero",
    "router", "routers", "ruter", "ruters", "equipo", "equipos", "mikrotik", "mikrotiks", "porfa", "porfavor",
})
#: Words (besides ".") that mean the dot between two numbers.
_SEPARATOR_WORDS = frozenset({"punto", "dot"})

_TOKEN = re.compile(r"[0-9]+|\.|[^\W_0-9]+")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def _tokens(text: str) -> list[str]:
    """Lower case, accents dropped; words (letters), ASCII digit runs and "." (everything else separates)."""
    for _ in range(2):  # casefold after compatibility decomposition too: "𝑨" -> "A" -> "a"
        text = unicodedata.normalize("NFKD", text.casefold())
        text = "".join(c for c in text if not unicodedata.combining(c))
    return _TOKEN.findall(text)


def _digits(token: str) -> bool:
    return token.isascii() and token.isdigit()  # a word may hold other scripts' digits ("٣"): not ours


def is_number(text: str) -> bool:
    """``text`` is digits, possibly dotted ("152", "152.1", "10.0.0.1")."""
    return _NUMBER.fullmatch(text) is not None


def fold_name(text: str) -> str:
    """Case, accents and separators folded, nothing else: "R-152-1" and "r 152 1" -> "r 152 1".

    A "." between two digit runs stays ("152.1"); any other run of non-letters, non-digits is one
    space. Number words and filler words are kept as they are (see ``normalise_spoken``).
    """
    return _join(("sep" if t == "." else "num" if _digits(t) else "word", t) for t in _tokens(text))


# --------------------------------------------------------------------------- numbers


def _and_unit(tokens: list[str], i: int, lowest: int) -> int | None:
    """The unit of a "y <unit>" at ``tokens[i]``, if it is at least ``lowest``."""
    if i + 1 < len(tokens) and tokens[i] == "y" and tokens[i + 1] in _UNITS and _UNITS[tokens[i + 1]] >= lowest:
        return _UNITS[tokens[i + 1]]
    return None


def _below_hundred(tokens: list[str], i: int) -> tuple[int, int] | None:
    """1..99 read from ``tokens[i:]``, longest reading: (value, index after it), or None."""
    word = tokens[i]
    if word in _UNITS:
        return _UNITS[word], i + 1
    if word in _WHOLE:
        unit = _and_unit(tokens, i + 1, _AND_LOWEST[word]) if word in _AND_LOWEST else None
        return (_WHOLE[word] + unit, i + 3) if unit is not None else (_WHOLE[word], i + 1)
    if word in _TENS:
        unit = _and_unit(tokens, i + 1, 1)
        return (_TENS[word] + unit, i + 3) if unit is not None else (_TENS[word], i + 1)
    if word in _SPLIT_PREFIXES and i + 1 < len(tokens) and tokens[i + 1] in _UNITS:
        base, lowest = _SPLIT_PREFIXES[word]
        if _UNITS[tokens[i + 1]] >= lowest:
            return base + _UNITS[tokens[i + 1]], i + 2
    return None


def _number(tokens: list[str], i: int) -> tuple[int, int] | None:
    """0..999 in words from ``tokens[i:]``, longest reading: (value, index after it), or None."""
    word = tokens[i]
    if word == "cero":
        return 0, i + 1
    if word == "cien":
        return 100, i + 1
    if word in _HUNDREDS:
        tail = _below_hundred(tokens, i + 1) if i + 1 < len(tokens) else None
        return (_HUNDREDS[word] + tail[0], tail[1]) if tail else (_HUNDREDS[word], i + 1)
    return _below_hundred(tokens, i)


def parse_spoken_number(text: str) -> int | None:
    """One whole number 0..999 in Spanish words or digits, or None.

    Accents and case do not matter; "un"/"una", "veintiún", "diez y seis", "veinte y uno",
    "doscientas" are understood; "ciento" alone reads 100. The text must be exactly one number:
    "ciento dos tres" and digit-by-digit dictation ("uno cinco dos") are None here (see
    ``normalise_spoken``), and so is anything above 999.
    """
    tokens = _tokens(text)
    if len(tokens) == 1 and _digits(tokens[0]):
        return int(tokens[0]) if len(tokens[0].lstrip("0")) <= 3 else None
    if not tokens or tokens[0] == ".":
        return None
    parsed = _number(tokens, 0)
    return parsed[0] if parsed is not None and parsed[1] == len(tokens) else None


# --------------------------------------------------------------------------- phrases


def _drop_fillers(tokens: list[str]) -> list[str]:
    kept = []
    for i, token in enumerate(tokens):
        if token in FILLERS:
            continue
        if (token == "por" and tokens[i + 1:i + 2] == ["favor"]) or (token == "favor" and tokens[i - 1:i] == ["por"]):
            continue
        kept.append(token)
    return kept


def _join(items: Iterable[tuple[str, str]]) -> str:
    """Items (kind, text), kind "num", "sep" or "word", as one string: numbers around a separator
    are joined by "."; a separator that is not between two numbers stays a word ("punto"), or goes
    (".")."""
    out: list[str] = []
    pending: str | None = None  # a separator right after a number, waiting for the next number
    for kind, text in items:
        if kind == "num" and pending is not None:
            out[-1] += "." + text
            pending = None
            continue
        if pending is not None and pending != ".":
            out.append(pending)
        pending = None
        if kind == "sep" and out and is_number(out[-1]):
            pending = text
        elif text != ".":
            out.append(text)
    if pending is not None and pending != ".":
        out.append(pending)
    return " ".join(out)


def normalise_spoken(text: str) -> str:
    """A router name as the caller said it, written the way names are indexed.

    "el ciento cincuenta y dos punto uno", "152 punto 1", "uno cinco dos punto uno" -> "152.1";
    "el de la torre norte" -> "torre norte". The rules, in order:

    1. Case and accents folded; words are runs of letters, numbers runs of digits; anything
       else ("-", "_", ",", emoji) separates words.
    2. Filler words go (``FILLERS``: "el", "la", "de", "del", "router", "equipo", "que", "está",
       "en", "por favor", ...), so "el que está en torre norte" is "torre norte".
    3. Number words become digits, longest reading first: "veinte y seis" is 26 (never 20 and 6),
       "ciento cincuenta y dos" is 152.
    4. Dictation: two or more single-digit words in a row ("cero".."nueve", "un"/"una") are one
       number said digit by digit: "uno cinco dos" -> 152, "uno cero" -> 10. A single-digit word
       right after a longer number is not dictation: "ciento cincuenta y dos uno" -> "152 1".
    5. "punto", "dot" or "." between two numbers is the dot: "152 punto 1" -> "152.1". Elsewhere
       "." goes and "punto" stays a word.
    6. Two numbers with no separator stay apart ("152 1"): whether that meant 152.1 is for the
       inventory to decide, because only it knows whether a router 152.1 exists.
    """
    tokens = _drop_fillers(_tokens(text))
    items: list[tuple[str, str]] = []
    dictating = False  # the last item is a run of single-digit words
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if _digits(token):
            items.append(("num", token))
            dictating, i = False, i + 1
            continue
        if token == "." or token in _SEPARATOR_WORDS:
            items.append(("sep", token))
            dictating, i = False, i + 1
            continue
        parsed = _number(tokens, i)
        if parsed is None:
            items.append(("word", token))
            dictating, i = False, i + 1
            continue
        value, end = parsed
        digit = end == i + 1 and token in _DIGIT_WORDS
        if digit and dictating:
            items[-1] = ("num", items[-1][1] + str(value))
        else:
            items.append(("num", str(value)))
        dictating, i = digit, end
    return _join(items)
