"""Spanish spoken numbers and router names as they come from phone speech (mikrovoice.routeros.spoken)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mikrovoice.routeros.spoken import fold_name, normalise_spoken, parse_spoken_number

# --------------------------------------------------------------------------- an independent reference

_ONES = "cero uno dos tres cuatro cinco seis siete ocho nueve".split()
_TEENS = "diez once doce trece catorce quince dieciséis diecisiete dieciocho diecinueve".split()
_TWENTIES = ("veinte veintiuno veintidós veintitrés veinticuatro veinticinco veintiséis veintisiete veintiocho "
             "veintinueve").split()
_TENS = {3: "treinta", 4: "cuarenta", 5: "cincuenta", 6: "sesenta", 7: "setenta", 8: "ochenta", 9: "noventa"}
_HUNDREDS = ("", "ciento", "doscientos", "trescientos", "cuatrocientos", "quinientos", "seiscientos", "setecientos",
             "ochocientos", "novecientos")
_PLAIN = str.maketrans("áéíóúÁÉÍÓÚ", "aeiouAEIOU")


def spanish(n: int, accents: bool = True, colloquial: bool = False) -> str:
    """``n`` (0..999) in Spanish words, written out from tables rather than parsed rules.

    ``colloquial`` picks the other accepted spellings: "diez y seis", "veinte y uno", "veintiún",
    "doscientas".
    """
    if n == 100:
        return "cien"
    hundreds, rest = divmod(n, 100)
    words = [_HUNDREDS[hundreds]] if hundreds else []
    if colloquial and hundreds > 1:
        words[0] = words[0][:-2] + "as"
    if rest or not hundreds:
        if rest < 10:
            words.append(_ONES[rest])
        elif rest < 20:
            words.append(f"diez y {_ONES[rest - 10]}" if colloquial and rest >= 16 else _TEENS[rest - 10])
        elif rest < 30:
            if colloquial and rest == 21:
                words.append("veintiún")
            else:
                words.append(f"veinte y {_ONES[rest - 20]}" if colloquial and rest > 20 else _TWENTIES[rest - 20])
        else:
            tens, ones = divmod(rest, 10)
            words.append(_TENS[tens] + (f" y {_ONES[ones]}" if ones else ""))
    text = " ".join(words)
    return text if accents else text.translate(_PLAIN)


def dictated(n: int) -> str:
    """``n`` said digit by digit: 152 -> "uno cinco dos"."""
    return " ".join(_ONES[int(d)] for d in str(n))


def test_the_reference_itself() -> None:
    assert [spanish(n) for n in (0, 1, 16, 21, 26, 32, 46, 100, 101, 152, 200, 999)] == [
        "cero", "uno", "dieciséis", "veintiuno", "veintiséis", "treinta y dos", "cuarenta y seis", "cien",
        "ciento uno", "ciento cincuenta y dos", "doscientos", "novecientos noventa y nueve"]
    assert spanish(216, accents=False, colloquial=True) == "doscientas diez y seis"


# --------------------------------------------------------------------------- parse_spoken_number

@pytest.mark.parametrize("text, expected", [
    ("cero", 0), ("uno", 1), ("un", 1), ("una", 1), ("dos", 2), ("quince", 15),
    ("dieciséis", 16), ("dieciseis", 16), ("diez y seis", 16), ("DIECISÉIS", 16), ("dieci seis", 16),
    ("veinte", 20), ("veintiuno", 21), ("veintiún", 21), ("veinte y uno", 21), ("veintidós", 22),
    ("treinta y dos", 32), ("Treinta Y Dos", 32), ("treinta-y-dos", 32), ("cien", 100), ("ciento", 100),
    ("ciento uno", 101), ("ciento cincuenta y dos", 152), ("doscientos", 200), ("doscientas", 200),
    ("quinientos", 500), ("setecientos", 700), ("novecientos noventa y nueve", 999),
    ("  ciento   veinte  ", 120), ("152", 152), ("007", 7),
])
def test_parse_spoken_number(text: str, expected: int) -> None:
    assert parse_spoken_number(text) == expected


@pytest.mark.parametrize("text", [
    "", "   ", "mil", "1000", "ciento dos tres", "uno cinco dos", "cien dos", "diez y uno", "dieci uno", "y",
    "treinta y", "punto", "152.1", "el dos", "dos routers", "٣", "9" * 5000, "veinte y seis y",
])
def test_parse_spoken_number_refuses(text: str) -> None:
    assert parse_spoken_number(text) is None


def test_every_number_parses_back() -> None:
    for n in range(1000):
        for accents in (True, False):
            for colloquial in (False, True):
                text = spanish(n, accents, colloquial)
                assert parse_spoken_number(text) == n, text
                assert parse_spoken_number(text.upper()) == n, text
                assert normalise_spoken(text) == str(n), text


@given(st.integers(0, 999), st.booleans(), st.booleans(), st.sampled_from([str.lower, str.upper, str.title]))
def test_any_spelling_parses_back(n: int, accents: bool, colloquial: bool, case: object) -> None:
    assert callable(case)
    assert parse_spoken_number(case(spanish(n, accents, colloquial))) == n


# --------------------------------------------------------------------------- normalise_spoken

@pytest.mark.parametrize("text, expected", [
    ("152.1", "152.1"),
    ("152 punto 1", "152.1"),
    ("152 . 1", "152.1"),
    ("152 dot 1", "152.1"),
    ("ciento cincuenta y dos punto uno", "152.1"),
    ("Ciento Cincuenta y Dos punto Uno", "152.1"),
    ("el ciento cincuenta y dos punto uno", "152.1"),
    ("el ciento cincuenta y dos punto 1", "152.1"),
    ("el router ciento cincuenta y dos punto uno, por favor", "152.1"),
    ("uno cinco dos punto uno", "152.1"),          # dictation
    ("uno cero punto cero punto cero punto uno", "10.0.0.1"),
    ("veintiséis punto uno", "26.1"),
    ("veinte y seis punto uno", "26.1"),           # 26, never 20 and 6
    ("cuarenta y seis punto tres", "46.3"),
    ("ciento cincuenta y dos uno", "152 1"),       # no "punto": left apart, the inventory decides
    ("dos cinco", "25"),
    ("el 152", "152"),
    ("152.1.", "152.1"),                            # the transcript's full stop
    ("el de la torre norte", "torre norte"),
    ("la Torre Norte", "torre norte"),
    ("en la torre norte", "torre norte"),
    ("el que está en la torre norte", "torre norte"),
    ("los routers del Nodo Centro", "nodo centro"),
    ("el equipo de Bogotá", "bogota"),
    ("R-152-1", "r 152 1"),
    ("r 152 1", "r 152 1"),
    ("core_bogotá", "core bogota"),
    ("punto de acceso", "punto acceso"),            # "punto" not between numbers stays a word
    ("", ""),
    ("el router", ""),
])
def test_normalise_spoken(text: str, expected: str) -> None:
    assert normalise_spoken(text) == expected


@given(st.integers(0, 999), st.integers(0, 999), st.booleans(), st.sampled_from(["", "el ", "el router ", "la "]))
def test_dotted_names_in_words(first: int, second: int, accents: bool, filler: str) -> None:
    text = f"{filler}{spanish(first, accents)} punto {spanish(second, accents)}"
    assert normalise_spoken(text) == f"{first}.{second}"
    assert normalise_spoken(f"{first} punto {spanish(second)}") == f"{first}.{second}"


@given(st.integers(10, 999), st.integers(0, 999))
def test_dictation(first: int, second: int) -> None:
    assert normalise_spoken(f"{dictated(first)} punto {spanish(second)}") == f"{first}.{second}"
    assert normalise_spoken(f"{dictated(first)} punto {dictated(second)}") == f"{first}.{second}"


def test_fold_name() -> None:
    assert fold_name("R-152-1") == fold_name("r 152 1") == fold_name("r_152_1") == "r 152 1"
    assert fold_name("Núcleo Bogotá") == "nucleo bogota"
    assert fold_name("152.1") == "152.1"
    assert fold_name("el de la torre") == "el de la torre"   # folding keeps words and number words
    assert fold_name("dos") == "dos"


@given(st.text())
def test_any_text(text: str) -> None:
    parsed = parse_spoken_number(text)
    assert parsed is None or 0 <= parsed <= 999
    once = normalise_spoken(text)
    assert normalise_spoken(once) == once
    assert fold_name(fold_name(text)) == fold_name(text)


def test_hostile_text() -> None:
    for text in ("x" * 10_000, "uno " * 3000, "9" * 10_000, "🛜📡" * 500, "\x00\x07\u202e\ufeff", "\ud800",
                 "маршрутизатор 152", "路由器 ١٥٢", "ﷺ" * 2000):
        assert isinstance(normalise_spoken(text), str)
        assert isinstance(fold_name(text), str)
        parse_spoken_number(text)
    assert normalise_spoken("uno " * 3000) == "1" * 3000
