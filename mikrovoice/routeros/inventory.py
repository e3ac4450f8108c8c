"""The router inventory as the NOC names it on the phone: from what the caller said to router names.

``Inventory`` indexes every name, alias and site once; ``resolve`` is dictionary look-ups (fuzzy
matching only on a miss), never raises and never does I/O, whatever the text. ``question`` is the
Spanish sentence the caller hears when a resolution is not exactly one router (``InventoryPhrases``).
Imports the config and ``spoken`` only; never opens a connection, never shows a password.
"""

from __future__ import annotations

import difflib
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, fields

from mikrovoice.config import ConfigError, RouterConfig
from mikrovoice.routeros.spoken import fold_name, is_number, normalise_spoken

#: Longest quote of the caller's words in a question ("No conozco el router '...'").
QUOTE_MAX = 60
#: Suggestions a resolution carries at most.
SUGGESTIONS_MAX = 3
#: difflib similarity (0..1) a name must reach to be suggested.
FUZZY_CUTOFF = 0.6
#: ... and at most this much below the closest one ("torre nrte" suggests Torre Norte, not Torre Sur).
FUZZY_MARGIN = 0.1


@dataclass(frozen=True)
class Resolution:
    """What a spoken router name refers to. ``matches`` are router names in inventory order.

    ``via`` says which rule matched: "name", "alias", "site", "prefix" ("el 152": every 152.x),
    "fuzzy" (nothing matched; ``suggestions`` holds close router or site names, best first) or
    "none" (nothing matched, nothing close).
    """

    spoken: str
    matches: tuple[str, ...]
    suggestions: tuple[str, ...]
    via: str

    @property
    def ok(self) -> bool:
        return len(self.matches) == 1

    @property
    def ambiguous(self) -> bool:
        return len(self.matches) > 1

    @property
    def unknown(self) -> bool:
        return not self.matches


@dataclass(frozen=True)
class InventoryPhrases:
    """What the caller hears about router names. ``{...}`` fields are filled in by ``Inventory``.

    A router in a list of choices or suggestions offers {name} ("152.1"), {site} ("Torre Norte",
    or "") and {router} (``described`` of it: "152.1 (Torre Norte)").
    """

    #: A router with its site, for ``describe``: {name}, {site}.
    described: str = "{name} ({site})"
    #: One router among several the caller may have meant: {name}, {site}, {router}.
    choice: str = "el {router}"
    #: Two to ``many_threshold`` matches: {options} (the ``choice`` of each, joined with ``or_word``).
    ambiguous: str = "¿Cuál de ellos: {options}?"
    #: More than ``many_threshold`` matches, all at one site: {site}, {count}, {first} (the first
    #: ``many_shown`` names, comma separated), {rest} (how many are not named), {spoken}.
    many_site: str = "En {site} hay {count} routers: {first} y otros {rest}. ¿Cuál?"
    #: More than ``many_threshold`` matches otherwise: {count}, {first}, {rest}, {spoken}.
    many: str = "Hay {count} routers con ese nombre: {first} y otros {rest}. ¿Cuál?"
    many_threshold: int = 4
    many_shown: int = 3
    #: Nothing matched: {spoken} (the caller's words, cleaned, at most QUOTE_MAX characters).
    unknown: str = "No conozco el router '{spoken}'."
    #: Nothing matched and the words were empty (or only fillers and symbols).
    unnamed: str = "No entendí el nombre del router."
    #: After ``unknown`` when something is close: {options} (joined with ``or_word``).
    suggest: str = "¿Quizás {options}?"
    #: A suggested router: {name}, {site}, {router}.
    suggestion: str = "el {name}"
    #: A suggested site: {site}.
    suggestion_site: str = "{site}"
    #: After ``unknown`` when nothing is close, with at most ``list_up_to`` routers: {routers}
    #: (every name, joined with ``and_word``), {count}.
    all_routers: str = "Los routers son: {routers}."
    list_up_to: int = 8
    #: ... with more routers: {sites} (the first ``sites_shown`` sites and ``more_sites``), {count}.
    all_sites: str = "Hay routers en {sites}."
    sites_shown: int = 5
    #: The last item of {sites} when some are not named: {rest}.
    more_sites: str = "otros {rest} sitios"
    #: ... with more routers and no sites: {count}.
    count_only: str = "Hay {count} routers configurados."
    #: ... with no router at all.
    empty: str = "No hay routers configurados."
    and_word: str = "y"
    or_word: str = "o"

    def __post_init__(self) -> None:
        router = {"name", "site", "router"}
        allowed = {"described": {"name", "site"}, "choice": router, "ambiguous": {"options"},
                   "many_site": {"site", "count", "first", "rest", "spoken"},
                   "many": {"count", "first", "rest", "spoken"}, "unknown": {"spoken"}, "suggest": {"options"},
                   "suggestion": router, "suggestion_site": {"site"}, "all_routers": {"routers", "count"},
                   "all_sites": {"sites", "count"}, "more_sites": {"rest"}, "count_only": {"count"}}
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, int):
                if value < 1:
                    raise ConfigError(f"inventory phrase {field.name}: expected a number >= 1, got {value}")
                continue
            try:
                used = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
            except ValueError as exc:
                raise ConfigError(f"inventory phrase {field.name}: {exc}: {value!r}") from None
            unknown = used - allowed.get(field.name, set())
            if unknown:
                raise ConfigError(f"inventory phrase {field.name}: unknown field {{{sorted(unknown)[0]}}}; "
                                  f"it may use {sorted(allowed.get(field.name, set())) or 'none'}")
        if self.many_shown > self.many_threshold:
            raise ConfigError(f"inventory phrases: many_shown ({self.many_shown}) exceeds many_threshold "
                              f"({self.many_threshold})")


#: key -> (routers whose name has that key, routers with an alias that has it), inventory order.
_Index = dict[str, tuple[list[str], list[str]]]


def _add(index: _Index, key: str, router: str, is_name: bool) -> None:
    if key:
        found = index.setdefault(key, ([], []))[0 if is_name else 1]
        if router not in found:
            found.append(router)


def _lookup(index: _Index, key: str) -> tuple[tuple[str, ...], str] | None:
    """The routers of ``key`` and the rule: names first, then aliases."""
    entry = index.get(key) if key else None
    if entry is None:
        return None
    names, aliases = entry
    return (tuple(names), "name") if names else (tuple(aliases), "alias")


def _spaced_numbers(key: str) -> bool:
    """"152 1": numbers the caller said with no "punto" between them."""
    parts = key.split(" ")
    return len(parts) > 1 and all(is_number(p) for p in parts)


def _listed(items: list[str], word: str) -> str:
    """"a", "a y b", "a, b y c"."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {word} {items[-1]}" if items else ""


def _quote(spoken: str) -> str:
    """The caller's words fit to be read back: no control or invisible characters, one line, short."""
    text = " ".join("".join(c for c in spoken if not unicodedata.category(c).startswith("C")).split())
    return text if len(text) <= QUOTE_MAX else text[:QUOTE_MAX - 1].rstrip() + "…"


class Inventory:
    """The configured routers, indexed by every way the NOC names them.

    ``resolve`` tries, in order: the exact name; the exact alias; name or alias with case,
    accents and separators folded ("R-152-1" == "r 152 1"); the spoken form normalised
    (``normalise_spoken``: number words, "punto", fillers) equal to a name or alias, or, for
    numbers said with no "punto" ("ciento cincuenta y dos uno" -> "152 1"), to a name or alias
    once dotted ("152.1"); a site (every router there); a lone number "el 152" (every router
    named 152.x). A name wins over an alias of another router that folds the same. Otherwise no
    match, and ``suggestions`` from fuzzy matching (for "152.9": the other 152.x first).
    """

    def __init__(self, routers: Iterable[RouterConfig], phrases: InventoryPhrases | None = None) -> None:
        self.phrases = phrases or InventoryPhrases()
        self.routers: dict[str, RouterConfig] = {}
        for router in routers:
            if router.name in self.routers:
                raise ConfigError(f"two routers are named {router.name!r}")
            self.routers[router.name] = router
        self._exact: _Index = {}
        self._folded: _Index = {}
        self._normalised: _Index = {}
        self._sites: dict[str, list[str]] = {}            # site -> its routers
        self._site_keys: dict[str, list[str]] = {}        # folded or normalised site -> sites
        self._prefix: dict[str, list[str]] = {}           # "152" -> ["152.1", "152.2"]
        self._fuzzy: dict[str, list[str]] = {}            # normalised name, alias or site -> router or site names
        self._key: dict[str, str] = {}                    # router -> its normalised name
        for name, router in self.routers.items():
            for label, is_name in ((name, True), *((alias, False) for alias in router.aliases)):
                _add(self._exact, label.strip(), name, is_name)
                _add(self._folded, fold_name(label), name, is_name)
                key = normalise_spoken(label)
                _add(self._normalised, key, name, is_name)
                if key:
                    self._fuzzy.setdefault(key, []).append(name)
            self._key[name] = key = normalise_spoken(name)
            if is_number(key) and "." in key:
                self._prefix.setdefault(key.partition(".")[0], []).append(name)
            if router.site.strip():
                if router.site not in self._sites:
                    for site_key in {fold_name(router.site), normalise_spoken(router.site)} - {""}:
                        self._site_keys.setdefault(site_key, []).append(router.site)
                        self._fuzzy.setdefault(site_key, []).append(router.site)
                self._sites.setdefault(router.site, []).append(name)
        self._fuzzy_keys = list(self._fuzzy)
        self._longest_key = max(map(len, self._fuzzy_keys), default=0)

    # ----------------------------------------------------------------------- resolving

    def resolve(self, spoken: str) -> Resolution:
        """What ``spoken`` (the caller's words for a router, as the model passed them) names."""
        text = spoken.strip()
        folded = fold_name(text)
        key = normalise_spoken(text)
        found = _lookup(self._exact, text) or _lookup(self._folded, folded) or _lookup(self._normalised, key)
        if found is None and _spaced_numbers(key):
            found = _lookup(self._normalised, key.replace(" ", "."))
        if found is not None:
            return Resolution(spoken, found[0], (), found[1])
        sites = self._site_keys.get(folded) or self._site_keys.get(key)
        if sites:
            members = {name for site in sites for name in self._sites[site]}
            return Resolution(spoken, tuple(n for n in self.routers if n in members), (), "site")
        if key in self._prefix:
            return Resolution(spoken, tuple(self._prefix[key]), (), "prefix")
        suggestions = self._suggest(key.replace(" ", ".") if _spaced_numbers(key) else key)
        return Resolution(spoken, (), suggestions, "fuzzy" if suggestions else "none")

    def _suggest(self, key: str) -> tuple[str, ...]:
        """Router or site names close to ``key``, best first: for "152.9" the routers 152.x, then the
        names, aliases and sites whose normalised form is close (difflib ratio)."""
        if not key or len(key) > 2 * self._longest_key + 8:
            return ()
        found: list[str] = []
        if is_number(key) and "." in key:
            siblings = self._prefix.get(key.partition(".")[0], [])
            found += sorted(siblings, key=lambda n: -difflib.SequenceMatcher(None, key, self._key[n]).ratio())
        matcher = difflib.SequenceMatcher(None, b=key)
        scored: list[tuple[float, int, str]] = []
        for position, candidate in enumerate(self._fuzzy_keys):
            matcher.set_seq1(candidate)
            if matcher.real_quick_ratio() >= FUZZY_CUTOFF and matcher.quick_ratio() >= FUZZY_CUTOFF:
                score = matcher.ratio()
                if score >= FUZZY_CUTOFF:
                    scored.append((-score, position, candidate))
        scored.sort()
        for score, _, candidate in scored:
            if -score >= -scored[0][0] - FUZZY_MARGIN:
                found += self._fuzzy[candidate]
        return tuple(dict.fromkeys(found))[:SUGGESTIONS_MAX]

    # ----------------------------------------------------------------------- describing

    def sites(self) -> dict[str, tuple[str, ...]]:
        """Site -> its routers, both in inventory order (routers with no site are left out)."""
        return {site: tuple(names) for site, names in self._sites.items()}

    def describe(self, name: str) -> str:
        """"152.1 (Torre Norte)", or "152.1" for a router with no site (or not in the inventory)."""
        router = self.routers.get(name)
        if router is None or not router.site:
            return name
        return self.phrases.described.format(name=name, site=router.site)

    def listing(self) -> list[dict[str, str | list[str]]]:
        """Every router for a "list routers and sites" tool: name, site, aliases, host (never a credential)."""
        return [{"name": r.name, "site": r.site, "aliases": list(r.aliases), "host": r.host}
                for r in self.routers.values()]

    def question(self, resolution: Resolution) -> str:
        """What the caller hears back when ``resolution`` is not exactly one router ("" when it is)."""
        p = self.phrases
        matches = resolution.matches
        if resolution.ok:
            return ""
        if resolution.ambiguous:
            if len(matches) > p.many_threshold:
                first = ", ".join(matches[:p.many_shown])
                values = {"count": len(matches), "first": first, "rest": len(matches) - p.many_shown,
                          "spoken": _quote(resolution.spoken)}
                sites = {self.routers[n].site for n in matches if n in self.routers}
                if resolution.via == "site" and len(sites) == 1 and "" not in sites:
                    return p.many_site.format(site=sites.pop(), **values)
                return p.many.format(**values)
            options = [p.choice.format(**self._fields(n)) for n in matches]
            return p.ambiguous.format(options=_listed(options, p.or_word))
        quoted = _quote(resolution.spoken)
        head = p.unknown.format(spoken=quoted) if quoted else p.unnamed
        if resolution.suggestions:
            options = [p.suggestion.format(**self._fields(s)) if s in self.routers else
                       p.suggestion_site.format(site=s) for s in resolution.suggestions]
            return f"{head} {p.suggest.format(options=_listed(options, p.or_word))}"
        return f"{head} {self._overview()}"

    def _fields(self, name: str) -> dict[str, str]:
        router = self.routers.get(name)
        return {"name": name, "site": router.site if router else "", "router": self.describe(name)}

    def _overview(self) -> str:
        """What there is, for a caller who named nothing we know."""
        p = self.phrases
        count = len(self.routers)
        if not count:
            return p.empty
        if count <= p.list_up_to:
            return p.all_routers.format(routers=_listed(list(self.routers), p.and_word), count=count)
        if not self._sites:
            return p.count_only.format(count=count)
        sites = list(self._sites)[:p.sites_shown]
        if len(self._sites) > len(sites):
            sites.append(p.more_sites.format(rest=len(self._sites) - len(sites)))
        return p.all_sites.format(sites=_listed(sites, p.and_word), count=count)
