"""Scenarios read as stories, map to the caller's script, and replay exactly."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mikrovoice.routeros.inventory import Inventory
from mikrovoice.routeros.spoken import parse_spoken_number
from mikrovoice.sim.brain import ScriptedModel
from mikrovoice.sim.realtime import ModelFaults
from mikrovoice.simulation.console import default_settings
from mikrovoice.simulation.scenario import (
    Ask,
    Backchannel,
    BargeIn,
    Digit,
    RouterBehaviour,
    Scenario,
    number_words,
    spoken_router,
)
from mikrovoice.simulation.strategies import scenarios, seeded_fleet
from mikrovoice.simulation.world import simulate_call

SETTINGS = default_settings()
HEALTHY = tuple(RouterBehaviour(r.name) for r in SETTINGS.routers)


def test_a_story_names_only_what_differs_from_a_healthy_patient_call() -> None:
    scenario = Scenario(
        asks=(Ask("sfp_all"),),
        routers=tuple(RouterBehaviour(r.name, 40.0) if r.name == "26.1" else RouterBehaviour(r.name) for r in SETTINGS.routers),
        hangup_at_s=12.3,
    )
    assert scenario.story() == ("caller (line noise) asks the SFP traffic of all routers; router 26.1 takes 40 s; "
                                "caller hangs up at 12.3 s")


def test_every_kind_of_event_is_told() -> None:
    scenario = Scenario(
        asks=(Ask("devices", ("152.1",), patience_s=20.0), Ask("unknown_router", ("999.9",)), Ask("nonsense")),
        interjections=(Backchannel(0, 3.0), BargeIn(1, 0.5), Digit(2, 1.0, "#")),
        silence="no_frames",
        routers=(RouterBehaviour("152.1", fault="refuses_login"), RouterBehaviour("26.1", fault="unreachable")),
        model=ModelFaults(refuse_creates=frozenset({2, 3}), refusal_echoes_event_id=False),
    )
    story = scenario.story()
    for part in ("silent phone: no frames", "the active devices of 152.1 (waits at most 20 s)",
                 "an unknown router '999.9'", "something no tool answers", "caller says 'ajá' 3 s after question 1",
                 "speaks over the assistant", "presses # 1 s after question 3", "router 152.1 refuses the login",
                 "router 26.1 is unreachable", "2nd, 3rd response.create with server_error (error without event_id)"):
        assert part in story, part
    assert Scenario(uuid_bytes=7).story() == "caller (line noise) hangs up after sending 7 of the UUID message's 19 bytes"


def test_the_script_says_what_the_story_says() -> None:
    scenario = Scenario(asks=(Ask("sfp_some", ("26.1", "46.3")),), interjections=(BargeIn(0, 0.4),), silence="silence",
                        hangup_at_s=30.0)
    script = scenario.script()
    assert script.questions[0].text == "Dame el tráfico SFP de los routers 26 punto 1 y 46 punto 3"
    assert script.interjections[0].over_speech and script.interjections[0].delay_s == 0.4
    assert (script.silence, script.hangup_at_s, script.uuid_bytes) == ("silence", 30.0, None)
    assert spoken_router("torre-norte_2") == "torre norte 2" and spoken_router("152.1") == "152 punto 1"


def test_the_same_scenario_replays_the_same_call() -> None:
    scenario = Scenario(asks=(Ask("devices", ("26.1",)),), interjections=(Backchannel(0, 1.5),),
                        routers=tuple(RouterBehaviour(r.name, 7.0) for r in SETTINGS.routers), seed=11)
    first, second = simulate_call(scenario, SETTINGS), simulate_call(scenario, SETTINGS)
    assert first.record is not None and second.record is not None
    assert [(h.start, h.end, h.text) for h in first.caller.heard] == [(h.start, h.end, h.text) for h in second.caller.heard]
    assert first.record.state_times == second.record.state_times
    assert first.simulated_s == second.simulated_s


# --------------------------------------------------------------------------- the NOC questions


def test_numbers_are_said_as_a_colombian_says_them() -> None:
    said = {0: "cero", 1: "uno", 16: "dieciséis", 22: "veintidós", 26: "veintiséis", 30: "treinta",
            46: "cuarenta y seis", 100: "cien", 101: "ciento uno", 152: "ciento cincuenta y dos",
            249: "doscientos cuarenta y nueve", 500: "quinientos", 999: "novecientos noventa y nueve"}
    for number, words in said.items():
        assert number_words(number) == words
        assert parse_spoken_number(words) == number  # the production reader agrees


def test_router_names_said_in_words_resolve_to_the_router() -> None:
    inventory = Inventory(SETTINGS.routers)
    for router in SETTINGS.routers:
        words = spoken_router(router.name, "words")
        assert not any(c.isdigit() for c in words)
        assert inventory.resolve(words).matches == (router.name,), words


def test_every_new_question_is_told_and_asked() -> None:
    asks = {
        Ask("health", ("46.3",)): ("¿Está caído el router 46 punto 3?", "whether 46.3 are up"),
        Ask("health", ("26.1", "121.2", "188.2"), naming="site", site="La Calera"):
            ("¿Cómo están los routers de La Calera?", "(by site: La Calera)"),
        Ask("health_all"): ("¿Cómo están todos los routers?", "how all routers are"),
        Ask("who_has", subject="172.25.129.10", expected="a bound lease of 152.1"):
            ("¿Quién tiene la IP 172.25.129.10?", "who has 172.25.129.10 [a bound lease of 152.1]"),
        Ask("who_has", subject="00:00:5E:00:53:01", expected="nobody"):
            ("¿Quién tiene la MAC 00:00:5E:00:53:01?", "[nobody]"),
        Ask("pppoe", subject="juan.perez"): ("¿El cliente pppoe juan.perez está conectado?", "PPPoE user juan.perez"),
        Ask("optics", ("152.1",), subject="sfp-sfpplus1", naming="words"):
            ("¿Cómo está la óptica del sfp-sfpplus1 del router ciento cincuenta y dos punto uno?", "(said in words)"),
        Ask("optics", ("26.1",)): ("¿Cómo está la óptica de los SFP del router 26 punto 1?", "the SFPs of 26.1"),
        Ask("ping", ("26.1",), subject="8.8.8.8", variant=3):
            ("Haz ping desde el router 26 punto 1 al 8.8.8.8 con 3 paquetes", "a ping from 26.1 to 8.8.8.8 (3 packets)"),
        Ask("log", ("59.3",), subject="la interfaz"):
            ("¿Qué dice el log del router 59 punto 3 sobre la interfaz?", "the log of 59.3 about la interfaz"),
        Ask("list_routers"): ("¿Qué routers hay?", "which routers there are"),
        Ask("list_routers", site="Nodo Lisboa"): ("¿Qué routers hay en Nodo Lisboa?", "the routers of Nodo Lisboa"),
        Ask("ambiguous_router", ("26.1", "121.2", "188.2"), site="La Calera"):
            ("Dame la lista de dispositivos activos del router de La Calera", "'the router of La Calera' (it has 3)"),
    }
    model = ScriptedModel()
    for ask, (text, story) in asks.items():
        assert ask.text() == text and story in ask.describe(), (ask.text(), ask.describe())
        turn = model.decide(user_text=text, tool_outputs=[], instructions=None, call_pending=False)
        assert turn.call is not None and turn.call[0] == (ask.tool() or "dispositivos_activos"), text


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
@given(st.data())
def test_questions_about_things_name_what_the_routers_hold(data: st.DataObject) -> None:
    scenario = data.draw(scenarios(SETTINGS))
    fleet = seeded_fleet(scenario.seed, SETTINGS)
    for ask in scenario.asks:
        if ask.kind == "who_has" and ask.expected != "nobody":
            owner = ask.expected.rsplit(" of ", 1)[1].split(",")[0]
            tables = [*fleet[owner].leases, *fleet[owner].arp, *fleet[owner].ppp_active]
            assert any(ask.subject in (r.get("address"), r.get("mac-address")) for r in tables), ask
        elif ask.kind == "who_has":
            assert ask.expected == "nobody"
            assert not any(ask.subject in (r.get("address"), r.get("mac-address"))
                           for router in fleet.values() for r in (*router.leases, *router.arp)), ask
        elif ask.kind == "pppoe":
            owners = [n for n, router in fleet.items() for r in router.ppp_active if r["name"] == ask.subject]
            assert owners == ([ask.expected.removeprefix("connected to ")] if ask.expected != "nobody" else []), ask
        elif ask.kind == "optics" and ask.subject:
            assert ask.subject in fleet[ask.routers[0]].optics, ask
        elif ask.kind in ("ambiguous_router",) or ask.naming == "site":
            assert {r.name for r in SETTINGS.routers if r.site == ask.site} == set(ask.routers), ask
