"""Router names as people say them on the phone, resolved against the inventory (mikrovoice.routeros.inventory)."""

import time

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mikrovoice.config import ConfigError, RouterConfig
from mikrovoice.routeros.inventory import Inventory, InventoryPhrases, Resolution
from tests.routeros.test_spoken import dictated, spanish


def router(name: str, site: str = "", *aliases: str) -> RouterConfig:
    return RouterConfig(name=name, host=f"10.9.{len(name)}.1", password="s3cret-pw", aliases=aliases, site=site)


#: A small ISP: two routers at Torre Norte, one at Torre Sur, one at Nodo Centro, one without site.
NOC = Inventory([
    router("152.1", "Torre Norte", "R-152-1"),
    router("152.2", "Torre Norte", "R-152-2"),
    router("26.1", "Torre Sur", "R-26-1"),
    router("46.3", "Nodo Centro", "core-bogota", "Núcleo Bogotá"),
    router("125.1", "", "borde"),
])
#: One router per site.
SINGLE = Inventory([router("152.1", "Torre Norte"), router("26.1", "Torre Sur"), router("125.1")])


@pytest.mark.parametrize("spoken, matches, via", [
    ("152.1", ("152.1",), "name"),
    (" 152.1 ", ("152.1",), "name"),
    ("152 punto 1", ("152.1",), "name"),
    ("ciento cincuenta y dos punto uno", ("152.1",), "name"),
    ("Ciento Cincuenta y Dos punto Uno", ("152.1",), "name"),
    ("el ciento cincuenta y dos punto uno", ("152.1",), "name"),
    ("el router ciento cincuenta y dos punto 1 por favor", ("152.1",), "name"),
    ("uno cinco dos punto uno", ("152.1",), "name"),
    ("ciento cincuenta y dos uno", ("152.1",), "name"),   # no "punto", but 152.1 exists
    ("152-1", ("152.1",), "name"),
    ("veintiséis punto uno", ("26.1",), "name"),
    ("veinte y seis punto uno", ("26.1",), "name"),
    ("cuarenta y seis punto tres", ("46.3",), "name"),
    ("R-152-1", ("152.1",), "alias"),
    ("r 152 1", ("152.1",), "alias"),
    ("r-152-2", ("152.2",), "alias"),
    ("Core Bogotá", ("46.3",), "alias"),
    ("nucleo bogota", ("46.3",), "alias"),
    ("el borde", ("125.1",), "alias"),
    ("el de la torre norte", ("152.1", "152.2"), "site"),
    ("Torre Norte", ("152.1", "152.2"), "site"),
    ("en la torre sur", ("26.1",), "site"),
    ("el que está en el nodo centro", ("46.3",), "site"),
    ("el 152", ("152.1", "152.2"), "prefix"),
    ("ciento cincuenta y dos", ("152.1", "152.2"), "prefix"),
    ("el ciento veinticinco", ("125.1",), "prefix"),
    ("152.9", (), "fuzzy"),
    ("torre nrte", (), "fuzzy"),
    ("servidor de correo", (), "none"),
    ("", (), "none"),
])
def test_resolve(spoken: str, matches: tuple[str, ...], via: str) -> None:
    resolution = NOC.resolve(spoken)
    assert (resolution.matches, resolution.via) == (matches, via)
    assert resolution.spoken == spoken


def test_resolution_kinds() -> None:
    assert NOC.resolve("152.1").ok and not NOC.resolve("152.1").ambiguous
    assert NOC.resolve("torre norte").ambiguous and not NOC.resolve("torre norte").ok
    assert NOC.resolve("152.9").unknown and not NOC.resolve("152.9").ok


def test_a_site_with_one_router_is_that_router() -> None:
    resolution = SINGLE.resolve("el de la torre norte")
    assert resolution == Resolution("el de la torre norte", ("152.1",), (), "site")
    assert resolution.ok
    assert SINGLE.question(resolution) == ""


def test_a_site_with_two_routers_asks_which() -> None:
    resolution = NOC.resolve("el de la torre norte")
    assert NOC.question(resolution) == "¿Cuál de ellos: el 152.1 (Torre Norte) o el 152.2 (Torre Norte)?"


def test_a_prefix_with_several_routers_asks_which() -> None:
    assert NOC.question(NOC.resolve("el 152")) == "¿Cuál de ellos: el 152.1 (Torre Norte) o el 152.2 (Torre Norte)?"
    inventory = Inventory([router("152.1", "Torre Norte"), router("152.2"), router("152.3", "Torre Sur")])
    assert inventory.question(inventory.resolve("152")) == (
        "¿Cuál de ellos: el 152.1 (Torre Norte), el 152.2 o el 152.3 (Torre Sur)?")


def test_a_crowded_site() -> None:
    inventory = Inventory([router(f"152.{i}", "Torre Norte") for i in range(1, 7)] + [router("26.1", "Torre Sur")])
    resolution = inventory.resolve("la torre norte")
    assert resolution.matches == tuple(f"152.{i}" for i in range(1, 7))
    assert inventory.question(resolution) == "En Torre Norte hay 6 routers: 152.1, 152.2, 152.3 y otros 3. ¿Cuál?"
    four = Inventory([router(f"152.{i}", "Torre Norte") for i in range(1, 5)])
    assert four.question(four.resolve("torre norte")) == (
        "¿Cuál de ellos: el 152.1 (Torre Norte), el 152.2 (Torre Norte), el 152.3 (Torre Norte) "
        "o el 152.4 (Torre Norte)?")
    mixed = Inventory([router(f"152.{i}", "Torre Norte" if i % 2 else "Torre Sur") for i in range(1, 7)])
    assert mixed.question(mixed.resolve("el 152")) == (
        "Hay 6 routers con ese nombre: 152.1, 152.2, 152.3 y otros 3. ¿Cuál?")


def test_unknown_with_suggestions() -> None:
    resolution = SINGLE.resolve("152.9")
    assert resolution == Resolution("152.9", (), ("152.1",), "fuzzy")
    assert SINGLE.question(resolution) == "No conozco el router '152.9'. ¿Quizás el 152.1?"
    resolution = NOC.resolve("152.9")
    assert resolution.suggestions == ("152.1", "152.2")   # the other 152.x first
    assert NOC.question(resolution) == "No conozco el router '152.9'. ¿Quizás el 152.1 o el 152.2?"
    resolution = NOC.resolve("125.2")
    assert resolution.suggestions == ("125.1", "152.2")
    assert NOC.question(resolution) == "No conozco el router '125.2'. ¿Quizás el 125.1 o el 152.2?"


def test_a_misheard_site_suggests_the_site() -> None:
    resolution = NOC.resolve("torre nrte")
    assert resolution == Resolution("torre nrte", (), ("Torre Norte",), "fuzzy")   # not Torre Sur: farther
    assert NOC.question(resolution) == "No conozco el router 'torre nrte'. ¿Quizás Torre Norte?"
    assert NOC.resolve("core bogot").suggestions == ("46.3",)   # an alias suggests its router's name


def test_unknown_in_a_small_inventory_lists_the_routers() -> None:
    resolution = NOC.resolve("servidor de correo")
    assert NOC.question(resolution) == (
        "No conozco el router 'servidor de correo'. Los routers son: 152.1, 152.2, 26.1, 46.3 y 125.1.")
    assert NOC.question(NOC.resolve("  \x00 ")) == (
        "No entendí el nombre del router. Los routers son: 152.1, 152.2, 26.1, 46.3 y 125.1.")


def test_unknown_in_a_large_inventory_names_the_sites() -> None:
    sites = ["Torre Norte", "Torre Sur", "Nodo Centro"]
    inventory = Inventory([router(f"10.{i}", sites[i % 3]) for i in range(9)])
    assert inventory.question(inventory.resolve("xyz")) == (
        "No conozco el router 'xyz'. Hay routers en Torre Norte, Torre Sur y Nodo Centro.")
    many = Inventory([router(f"10.{i}", f"Sitio {chr(65 + i)}") for i in range(9)])
    assert many.question(many.resolve("xyz")) == (
        "No conozco el router 'xyz'. Hay routers en Sitio A, Sitio B, Sitio C, Sitio D, Sitio E y otros 4 sitios.")
    siteless = Inventory([router(f"10.{i}") for i in range(9)])
    assert siteless.question(siteless.resolve("xyz")) == "No conozco el router 'xyz'. Hay 9 routers configurados."
    empty = Inventory([])
    assert empty.question(empty.resolve("152.1")) == "No conozco el router '152.1'. No hay routers configurados."


def test_the_quoted_words_are_short_and_clean() -> None:
    question = NOC.question(NOC.resolve("xq\x07zz\n\t " + "w" * 200))
    assert question.startswith("No conozco el router 'xqzz " + "w" * 54 + "…'.")


def test_a_name_wins_over_another_routers_alias() -> None:
    inventory = Inventory([router("152.1", "", "core"), router("core")])
    assert inventory.resolve("core").matches == ("core",)
    assert inventory.resolve("CORE").matches == ("core",)
    assert inventory.resolve("152.1").matches == ("152.1",)


def test_describe_sites_listing() -> None:
    assert NOC.describe("152.1") == "152.1 (Torre Norte)"
    assert NOC.describe("125.1") == "125.1"
    assert NOC.describe("no such router") == "no such router"
    assert NOC.sites() == {"Torre Norte": ("152.1", "152.2"), "Torre Sur": ("26.1",), "Nodo Centro": ("46.3",)}
    listing = NOC.listing()
    assert listing[3] == {"name": "46.3", "site": "Nodo Centro", "aliases": ["core-bogota", "Núcleo Bogotá"],
                          "host": "10.9.4.1"}
    assert [entry["name"] for entry in listing] == list(NOC.routers)
    assert "s3cret" not in repr(listing) + repr(NOC.routers) + repr(NOC.resolve("152.1"))


def test_phrases_are_configurable() -> None:
    phrases = InventoryPhrases(choice="{name} en {site}", ambiguous="¿{options}?", or_word="u",
                               unknown="'{spoken}' no existe.", suggest="¿Será {options}?", suggestion="{router}",
                               all_routers="Hay {count}: {routers}.", and_word="&", described="{name}/{site}")
    inventory = Inventory(NOC.routers.values(), phrases)
    assert inventory.question(inventory.resolve("torre norte")) == "¿152.1 en Torre Norte u 152.2 en Torre Norte?"
    assert inventory.question(inventory.resolve("152.9")) == "'152.9' no existe. ¿Será 152.1/Torre Norte u 152.2/Torre Norte?"
    assert inventory.question(inventory.resolve("xyz")) == "'xyz' no existe. Hay 5: 152.1, 152.2, 26.1, 46.3 & 125.1."
    assert inventory.describe("26.1") == "26.1/Torre Sur"


@pytest.mark.parametrize("change, message", [
    ({"ambiguous": "¿Cuál: {opciones}?"}, "inventory phrase ambiguous: unknown field {opciones}"),
    ({"unknown": "No conozco {spoken"}, "inventory phrase unknown:"),
    ({"many_shown": 5}, "many_shown (5) exceeds many_threshold (4)"),
    ({"list_up_to": 0}, "inventory phrase list_up_to: expected a number >= 1"),
])
def test_bad_phrases(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{")):
        InventoryPhrases(**change)  # type: ignore[arg-type]


def test_two_routers_with_one_name() -> None:
    with pytest.raises(ConfigError, match="two routers are named '152.1'"):
        Inventory([router("152.1"), router("152.1")])


# --------------------------------------------------------------------------- properties

_WORDS = ["torre", "norte", "sur", "nodo", "centro", "core", "bogotá", "medellín", "borde", "cliente", "la", "el",
          "dos", "uno", "punto", "y"]
_LABEL = st.one_of(
    st.builds("{}.{}".format, st.integers(0, 255), st.integers(0, 255)),
    st.builds("R-{}-{}".format, st.integers(0, 255), st.integers(0, 255)),
    st.lists(st.sampled_from(_WORDS), min_size=1, max_size=3).map(" ".join),
    st.text(min_size=1, max_size=12),
)


@st.composite
def inventories(draw: st.DrawFn) -> list[RouterConfig]:
    entries = draw(st.lists(st.tuples(_LABEL, st.lists(_LABEL, max_size=3), st.sampled_from(["", "Torre Norte",
                                                                                             "Nodo Centro", "Sur"])),
                            max_size=12))
    owner: dict[str, int] = {}
    for i, (name, aliases, _) in enumerate(entries):
        for label in (name, *aliases):
            assume(label.strip() and owner.setdefault(label.strip(), i) == i)  # every label names one router
    return [RouterConfig(name=name, host="h", aliases=tuple(aliases), site=site) for name, aliases, site in entries]


@given(inventories())
def test_every_name_and_alias_resolves_to_its_router(routers: list[RouterConfig]) -> None:
    inventory = Inventory(routers)
    for config in routers:
        assert inventory.resolve(config.name) == Resolution(config.name, (config.name,), (), "name")
        for alias in config.aliases:
            assert inventory.resolve(alias).matches == (config.name,), alias


@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)), min_size=1, max_size=30, unique=True),
       st.data())
def test_octet_names_resolve_from_any_way_of_saying_them(octets: list[tuple[int, int]], data: st.DataObject) -> None:
    inventory = Inventory([router(f"{a}.{b}") for a, b in octets])
    a, b = data.draw(st.sampled_from(octets))
    first = data.draw(st.sampled_from([str(a), spanish(a), spanish(a, accents=False, colloquial=True).upper()]
                                      + ([dictated(a)] if a >= 10 else [])))
    second = data.draw(st.sampled_from([str(b), spanish(b), spanish(b, colloquial=True)]))
    separator = data.draw(st.sampled_from([" punto ", ".", " . ", " Punto "]))
    filler = data.draw(st.sampled_from(["", "el ", "el router ", "el equipo "]))
    spoken = f"{filler}{first}{separator}{second}"
    assert inventory.resolve(spoken).matches == (f"{a}.{b}",), spoken


def _check(inventory: Inventory, text: str) -> None:
    resolution = inventory.resolve(text)
    assert resolution.spoken == text
    assert [resolution.ok, resolution.ambiguous, resolution.unknown].count(True) == 1
    assert set(resolution.matches) <= set(inventory.routers)
    assert len(resolution.matches) == len(set(resolution.matches))
    assert len(resolution.suggestions) <= 3 and not (resolution.matches and resolution.suggestions)
    assert resolution.via in {"name", "alias", "site", "prefix", "fuzzy", "none"}
    question = inventory.question(resolution)
    assert isinstance(question, str) and (question == "") == resolution.ok


@given(st.text())
def test_any_text_resolves_without_error(text: str) -> None:
    _check(NOC, text)
    _check(Inventory([]), text)


@given(inventories(), st.text())
def test_any_text_against_any_inventory(routers: list[RouterConfig], text: str) -> None:
    _check(Inventory(routers), text)


@pytest.mark.parametrize("text", [
    "x" * 10_000, "ciento cincuenta y dos punto uno " * 300, "9" * 10_000, "1." * 5000, "🛜📡" * 2000,
    "\x00\x01\x1b[2J\u202e\ufeff\ud800", "маршрутизатор сто пятьдесят два", "路由器 ١٥٢.١", "ﷺ" * 2000,
    "torre norte" + " " * 5000, "{spoken} {0} %s",
])
def test_hostile_text(text: str) -> None:
    _check(NOC, text)


def test_five_hundred_routers_are_fast() -> None:
    sites = [f"Torre {i}" for i in range(50)]
    routers = [router(f"{a}.{b}", sites[(a * 10 + b) % 50], f"R-{a}-{b}") for a in range(100, 200) for b in range(1, 6)]
    started = time.perf_counter()
    inventory = Inventory(routers)
    spoken = [f"{spanish(a)} punto {spanish(b)}" for a in range(100, 200) for b in range(1, 6)]
    for text in spoken:
        assert inventory.resolve(text).ok
    hits = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(50):
        assert inventory.resolve(f"torre nrte {i}").unknown
    misses = time.perf_counter() - started
    # Measured about 0.1 s and 0.05 s; a resolver that re-normalises the inventory on every call
    # takes several seconds for the hits.
    assert hits < 1.0 and misses < 1.0, (hits, misses)
