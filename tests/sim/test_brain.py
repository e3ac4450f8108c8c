"""The scripted model's mind: router names as said, backchannels, resuming an interrupted turn, stable wording."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mikrovoice.config import RouterConfig, Settings
from mikrovoice.routeros.fanout import Fleet, Outcome
from mikrovoice.routeros.inventory import Inventory
from mikrovoice.sim.brain import (
    ANSWER_CLARIFY,
    ANSWER_DEVICES,
    ANSWER_PROBLEM,
    ANSWER_SFP,
    ANSWER_WAITING,
    ANSWERS,
    HOW_CAN_I_HELP,
    RESUME_PREFIX,
    STILL_QUERYING,
    History,
    ScriptedModel,
    Turn,
    is_backchannel,
    router_names,
)
from mikrovoice.tools import NocTools


def ask(model: ScriptedModel, text: str, call_pending: bool = False) -> Turn:
    return model.decide(user_text=text, tool_outputs=[], instructions=None, call_pending=call_pending)


@pytest.mark.parametrize(("question", "routers"), [
    ("Dame los dispositivos activos del router 152 punto 1", ["152.1"]),
    ("¿Cuántos dispositivos activos tiene el router 152.1?", ["152.1"]),
    ("dispositivos activos del router 7 punto 12, por favor", ["7.12"]),
    ("Dame los dispositivos activos del router torre norte", ["torre norte"]),
    ("Dame los dispositivos activos del Router La Dorada.", ["La Dorada"]),
    ("el tráfico SFP de los routers 26 punto 1 y 46 punto 3", ["26.1", "46.3"]),
    ("el tráfico SFP de los routers 26 punto 1, 46 punto 3 y torre sur por favor", ["26.1", "46.3", "torre sur"]),
    ("Dame el tráfico de las interfaces SFP de todos los routers", []),
    ("Dame el tráfico SFP", []),
    ("el tráfico SFP de los routers, por favor", []),
    # numbers said in words are passed as said (the inventory reads them); their "y" is no list's
    ("¿Está caído el router ciento cincuenta y dos punto uno?", ["ciento cincuenta y dos punto uno"]),
    ("de los routers cuarenta y seis punto tres y veintiséis punto uno", ["cuarenta y seis punto tres", "veintiséis punto uno"]),
    # a site, with its preposition dropped (and its own article kept)
    ("¿Cómo están los routers de la torre norte?", ["torre norte"]),
    ("¿Cómo están los routers de La Calera?", ["La Calera"]),
    ("Dame la lista de dispositivos activos del router de Nodo Lisboa", ["Nodo Lisboa"]),
    # the rest of the question is not part of the name
    ("Haz ping desde el router 26 punto 1 al 8.8.8.8", ["26.1"]),
    ("Haz ping desde el router torre norte a 10.0.0.1", ["torre norte"]),
    ("¿Qué dice el log del router 59 punto 3 sobre la interfaz?", ["59.3"]),
    ("¿El router 46 punto 3 está caído?", ["46.3"]),
])
def test_router_names_as_the_caller_said_them(question: str, routers: list[str]) -> None:
    assert router_names(question) == routers


@pytest.mark.parametrize(("question", "call"), [
    ("Dame los dispositivos activos del router 152 punto 1", ("dispositivos_activos", {"router": "152.1"})),
    ("Dame la lista de dispositivos activos del router ciento cincuenta y dos punto uno",
     ("dispositivos_activos", {"router": "ciento cincuenta y dos punto uno"})),
    ("Dame los dispositivos activos del router torre norte", ("dispositivos_activos", {"router": "torre norte"})),
    ("el tráfico SFP de los routers 26 punto 1 y 46 punto 3",
     ("trafico_interfaces", {"routers": ["26.1", "46.3"], "interfaces": "sfp"})),
    ("el tráfico SFP del router torre norte", ("trafico_interfaces", {"routers": ["torre norte"], "interfaces": "sfp"})),
    ("Dame el tráfico de las interfaces SFP de todos los routers", ("trafico_interfaces", {"interfaces": "sfp"})),
    ("Dame el tráfico SFP", ("trafico_interfaces", {"interfaces": "sfp"})),
    ("¿Está caído el router 46 punto 3?", ("estado_routers", {"routers": ["46.3"]})),
    ("¿Está caído el router ciento cincuenta y dos punto uno?",
     ("estado_routers", {"routers": ["ciento cincuenta y dos punto uno"]})),
    ("¿Cómo están los routers de la torre norte?", ("estado_routers", {"routers": ["torre norte"]})),
    ("¿Cómo están los routers 26 punto 1 y 46 punto 3?", ("estado_routers", {"routers": ["26.1", "46.3"]})),
    ("¿Cómo están todos los routers?", ("estado_routers", {})),
    ("¿Quién tiene la IP 192.168.70.15?", ("quien_tiene", {"ip": "192.168.70.15"})),
    ("¿Quién tiene la MAC AA:BB:CC:DD:EE:FF?", ("quien_tiene", {"mac": "AA:BB:CC:DD:EE:FF"})),
    ("¿Quién tiene la IP 172.16.3.20 en el router 152 punto 1?",
     ("quien_tiene", {"ip": "172.16.3.20", "routers": ["152.1"]})),
    ("¿El cliente pppoe juan.perez está conectado?", ("sesion_pppoe", {"usuario": "juan.perez"})),
    ("¿El cliente pppoe ferreteria.el.sol está conectado?", ("sesion_pppoe", {"usuario": "ferreteria.el.sol"})),
    ("¿Cómo está la óptica del sfp-sfpplus1 del router 152 punto 1?",
     ("optica_sfp", {"routers": ["152.1"], "interfaces": "sfp-sfpplus1"})),
    ("¿Cómo está la óptica de los SFP del router 26 punto 1?", ("optica_sfp", {"routers": ["26.1"]})),
    ("Haz ping desde el router 26 punto 1 al 8.8.8.8", ("ping", {"router": "26.1", "destino": "8.8.8.8"})),
    ("Haz ping desde el router 26 punto 1 al 8.8.8.8 con 10 paquetes",
     ("ping", {"router": "26.1", "destino": "8.8.8.8", "cantidad": 10})),
    ("¿Qué dice el log del router 59 punto 3 sobre la interfaz?",
     ("log_router", {"router": "59.3", "tema": "interfaz"})),
    ("¿Qué dice el log del router 59 punto 3 sobre pppoe?", ("log_router", {"router": "59.3", "tema": "pppoe"})),
    ("¿Qué dice el log del router 59 punto 3?", ("log_router", {"router": "59.3"})),
    ("¿Qué routers hay?", ("listar_routers", {})),
    ("¿Qué routers hay en la torre norte?", ("listar_routers", {"sitio": "torre norte"})),
])
def test_questions_become_function_calls(question: str, call: tuple[str, dict[str, object]]) -> None:
    turn = ask(ScriptedModel(), question)
    assert turn.call == call and turn.text.startswith("Un momento")


@pytest.mark.parametrize(("question", "answer"), [
    ("Haz ping al 8.8.8.8", "¿Desde qué router hago el ping?"),
    ("Haz ping desde el router 26 punto 1", "¿A qué dirección IP hago el ping?"),
    ("¿Qué dice el log?", "¿De qué router quieres ver el log?"),
    ("¿Quién tiene esa dirección?", "¿Qué IP o qué MAC busco?"),
])
def test_what_is_missing_is_asked_for(question: str, answer: str) -> None:
    turn = ask(ScriptedModel(), question)
    assert (turn.text, turn.call) == (answer, None)


def test_devices_without_a_router_are_asked_for() -> None:
    turn = ask(ScriptedModel(), "Dame los dispositivos activos")
    assert turn.call is None and turn.text == "¿De qué router quieres los dispositivos activos?"


@pytest.mark.parametrize("text", ["ajá", "aja", "Sí.", "si", "ok", "Okey", "mmm", "Mmmmm...", "claro", "dale", "listo",
                                  "sí, claro", "ok dale", "¡Listo!"])
def test_backchannels(text: str) -> None:
    assert is_backchannel(text)


@pytest.mark.parametrize("text", ["", "no", "sí, dame el tráfico SFP", "sí sí sí", "claro que no", "hola", "router"])
def test_not_backchannels(text: str) -> None:
    assert not is_backchannel(text)


def test_a_backchannel_while_a_call_is_pending_is_answered_briefly() -> None:
    turn = ask(ScriptedModel(), "ajá", call_pending=True)
    assert (turn.text, turn.call) == (STILL_QUERYING, None) == ("Sí, sigo consultando.", None)


def test_a_backchannel_is_not_a_question() -> None:
    turn = ask(ScriptedModel(), "ok")
    assert turn.call is None
    assert not ANSWER_PROBLEM.search(turn.text) and not ANSWER_WAITING.search(turn.text)


def test_a_real_question_while_a_call_is_pending_still_waits() -> None:
    turn = ask(ScriptedModel(), "Dame el tráfico SFP", call_pending=True)
    assert turn.call is None
    assert turn.text == "Sigo esperando el resultado de la consulta anterior; te aviso apenas llegue."


def test_an_interrupted_answer_resumes_with_its_unissued_call() -> None:
    model = ScriptedModel()
    answer = ask(model, "Dame los dispositivos activos del router 152 punto 1")
    model.cancelled(answer, reason="turn_detected", call_issued=False)
    resumed = ask(model, "ajá")
    assert resumed.text == RESUME_PREFIX + answer.text == "Como te decía: " + answer.text
    assert resumed.call == ("dispositivos_activos", {"router": "152.1"})
    assert ask(model, "ajá").text != resumed.text  # resumed once, then forgotten


def test_an_interrupted_answer_whose_call_was_issued_resumes_without_it() -> None:
    model = ScriptedModel()
    answer = ask(model, "Dame el tráfico SFP de todos los routers")
    model.cancelled(answer, reason="turn_detected", call_issued=True)
    resumed = ask(model, "sí", call_pending=True)
    assert resumed.text == RESUME_PREFIX + answer.text and resumed.call is None


def test_a_question_after_an_interruption_forgets_it() -> None:
    model = ScriptedModel()
    answer = ask(model, "Dame los dispositivos activos del router 152 punto 1")
    model.cancelled(answer, reason="turn_detected", call_issued=False)
    turn = ask(model, "el tráfico SFP del router 26 punto 1")
    assert turn.call == ("trafico_interfaces", {"routers": ["26.1"], "interfaces": "sfp"})
    assert ask(model, "ajá").text == "Dime, ¿qué quieres consultar?"  # nothing left to resume


def test_an_interrupted_report_resumes_and_still_reads_as_an_answer() -> None:
    model = ScriptedModel()
    output = json.dumps({"router": "152.1", "dispositivos_activos": 3, "dispositivos": [{"nombre": "a"}, {"ip": "10.0.0.9"}]})
    report = model.decide(user_text=None, tool_outputs=[("dispositivos_activos", output)], instructions="Resume.",
                          call_pending=False)
    model.cancelled(report, reason="turn_detected", call_issued=False)
    resumed = ask(model, "mmm")
    assert resumed.text == RESUME_PREFIX + report.text and resumed.call is None
    match = ANSWER_DEVICES.search(resumed.text)
    assert match is not None and (match["router"], match["count"]) == ("152.1", "3")
    # cut off again while resuming: it is resumed once more, without stacking the prefix
    model.cancelled(resumed, reason="turn_detected", call_issued=False)
    assert ask(model, "ajá").text == RESUME_PREFIX + report.text


@pytest.mark.parametrize("instructions", ['Saluda al usuario. Di exactamente: "Hola, soy el asistente del NOC."',
                                          'La consulta sigue en curso. Di exactamente, sin añadir resultados: "Van 3 de 12."'])
def test_quoted_lines_are_spoken_verbatim_and_never_resumed(instructions: str) -> None:
    model = ScriptedModel()
    turn = model.decide(user_text=None, tool_outputs=[], instructions=instructions, call_pending=True)
    assert turn.text == instructions.split('"')[1] and turn.call is None
    model.cancelled(turn, reason="turn_detected", call_issued=False)
    assert ask(model, "ajá", call_pending=True).text == STILL_QUERYING


def test_a_client_cancelled_turn_is_not_resumed() -> None:
    model = ScriptedModel()
    answer = ask(model, "Dame los dispositivos activos del router 152 punto 1")
    model.cancelled(answer, reason="client_cancelled", call_issued=False)
    assert not ask(model, "ajá").text.startswith(RESUME_PREFIX)


def test_the_wording_other_code_matches() -> None:
    model = ScriptedModel()
    devices = model.report("dispositivos_activos", json.dumps(
        {"router": "152.1", "dispositivos_activos": 12, "dispositivos": [{"nombre": "cam-1"}, {"ip": "10.1.1.5"}]}))
    assert devices == "El router 152.1 tiene 12 dispositivos activos, por ejemplo cam-1, 10.1.1.5."
    sfp = model.report("trafico_interfaces", json.dumps({
        "routers_consultados": 12, "routers_que_respondieron": 10, "total_rx_mbps": 812.4, "total_tx_mbps": 95.6,
        "interfaces": [{"router": "26.1", "interfaz": "sfp1", "rx_mbps": 400.2}],
        "sin_respuesta": {"46.3": "no respondió a tiempo", "70.1": "rechazó el usuario o la contraseña de consulta"}}))
    assert sfp == ("Respondieron 10 de 12 routers. El tráfico SFP total es de 812 megabits por segundo de bajada y 96 de "
                   "subida. El más cargado es el router 26.1, sfp1, con 400. No respondieron: 46.3, 70.1.")
    match = ANSWER_SFP.search(sfp)
    assert match is not None
    assert (match["answered"], match["total"], match["rx_mbps"], match["tx_mbps"], match["missing"]) == ("10", "12", "812", "96", "46.3, 70.1")
    complete = ANSWER_SFP.search(sfp.split(" El más")[0])
    assert complete is not None and complete["missing"] is None
    failed = model.report("trafico_interfaces", json.dumps({"error": "timeout"}))
    assert failed == "No pude hacer esa consulta: timeout." and ANSWER_PROBLEM.search(failed)["error"] == "timeout"  # type: ignore[index]
    not_understood = ask(model, "¿Qué hora es?").text
    assert not_understood.startswith("No entendí. Puedo consultar")
    assert ANSWER_PROBLEM.search(not_understood)
    assert ANSWER_WAITING.search(ask(model, "Dame el tráfico SFP", call_pending=True).text)
    for text in (devices, sfp, failed, not_understood):  # each answer matches its own pattern only
        hits = [p for p in (*ANSWERS.values(), ANSWER_PROBLEM, ANSWER_CLARIFY, ANSWER_WAITING) if p.search(text)]
        assert len(hits) == 1, text


def test_routers_cut_by_the_deadline_are_among_those_that_did_not_answer() -> None:
    text = ScriptedModel().report("trafico_interfaces", json.dumps({
        "routers_consultados": 3, "routers_que_respondieron": 1, "total_rx_mbps": 10.0, "total_tx_mbps": 1.0,
        "interfaces": [], "sin_respuesta": {"46.3": "no respondió a tiempo"}, "sin_terminar": ["59.3"]}))
    match = ANSWER_SFP.search(text)
    assert match is not None and match["missing"] == "46.3, 59.3"


def test_a_router_that_did_not_answer_is_explained() -> None:
    output = {"router": "46.3", "estado": "desconocido", "error": "el router 46.3 no respondió a tiempo"}
    for tool in ("dispositivos_activos", "ping", "log_router"):
        text = ScriptedModel().report(tool, json.dumps(output))
        assert text == "No pude hacer esa consulta: el router 46.3 no respondió a tiempo."


def test_the_inventorys_question_back_is_read_as_it_is() -> None:
    question = "¿Cuál de ellos: el 26.1 (La Calera), el 121.2 (La Calera) o el 188.2 (La Calera)?"
    text = ScriptedModel().report("dispositivos_activos", json.dumps({"error": question}))
    assert text == question and ANSWER_CLARIFY.search(text) and not ANSWER_PROBLEM.search(text)


def test_the_inventorys_questions_are_recognised() -> None:
    inventory = Inventory([RouterConfig(name, f"10.0.0.{i}", site=site) for i, (name, site) in enumerate(
        [("152.1", "Torre Norte"), ("26.1", "La Calera"), ("121.2", "La Calera"), ("46.1", "Nodo Lisboa"),
         ("46.3", "Nodo Lisboa"), ("59.3", "Nodo Lisboa"), ("174.2", "Nodo Lisboa"), ("156.3", "Nodo Lisboa")])])
    for spoken in ("999.9", "La Calera", "Nodo Lisboa", "el 46", "", "ciento cincuenta y dos punto nueve"):
        resolution = inventory.resolve(spoken)
        assert not resolution.ok, spoken
        assert ANSWER_CLARIFY.search(inventory.question(resolution)), inventory.question(resolution)


# The new tools' answers are their output's ``resumen`` (written by the production tools), said as
# written: these outputs come from the tools' own ``report``, so a changed sentence shows here.
HEALTH_DATA = {"en_linea": True, "version": "7.20.5", "placa": "RB5009", "cpu_pct": 7.0, "memoria_libre_pct": 60,
               "encendido_hace": "3 semanas y 2 días"}
TOOL_OUTCOMES: list[tuple[str, dict[str, Any], dict[str, tuple[str, dict[str, Any], tuple[str, ...]]]]] = [
    ("estado_routers", {"routers": ["46.3"]}, {"46.3": ("ok", HEALTH_DATA, ())}),
    ("estado_routers", {"routers": ["46.3"]}, {"46.3": ("unknown", {}, ("no respondió a tiempo",))}),
    ("estado_routers", {"routers": ["26.1", "46.3", "59.3"]},
     {"26.1": ("ok", HEALTH_DATA, ()), "46.3": ("degraded", HEALTH_DATA, ("CPU al 93%",)),
      "59.3": ("unknown", {}, ("rechazó el usuario o la contraseña de consulta",))}),
    ("quien_tiene", {"ip": "172.16.3.20", "routers": ["26.1", "46.3"]},
     {"26.1": ("ok", {"encontrado": [{"ip": "172.16.3.20", "mac": "AA:BB:CC:00:11:22", "nombre": "Galaxy-A14",
                                      "lease": "bound", "puerto": "ether3"}]}, ()),
      "46.3": ("ok", {"encontrado": []}, ())}),
    ("quien_tiene", {"mac": "AA:BB:CC:00:11:22", "routers": ["26.1"]}, {"26.1": ("ok", {"encontrado": []}, ())}),
    ("quien_tiene", {"mac": "AA:BB:CC:00:11:22", "routers": ["26.1"]},
     {"26.1": ("ok", {"encontrado": [{"ip": "", "mac": "AA:BB:CC:00:11:22"}]}, ())}),
    ("sesion_pppoe", {"usuario": "juan.perez", "routers": ["26.1", "46.3"]},
     {"26.1": ("ok", {"sesiones": [{"usuario": "juan.perez", "ip": "100.64.1.2", "mac": "6C:3B:6B:00:00:01",
                                    "servicio": "pppoe", "conectado_hace": "2 días y 3 horas"}]}, ()),
      "46.3": ("unknown", {}, ("no está alcanzable por la red",))}),
    ("sesion_pppoe", {"usuario": "juan.perez", "routers": ["26.1", "46.3"]},
     {"26.1": ("ok", {"sesiones": []}, ()), "46.3": ("unknown", {}, ("no está alcanzable por la red",))}),
    ("optica_sfp", {"routers": ["152.1"], "interfaces": "sfp-sfpplus1"},
     {"152.1": ("ok", {"puertos": [{"interfaz": "sfp-sfpplus1", "enlace": True, "rx_dbm": -9.5, "tx_dbm": -3.4,
                                    "temperatura_c": 34.0, "veredicto": "bien"}]}, ())}),
    ("optica_sfp", {"routers": ["152.1"], "interfaces": "sfp1"},
     {"152.1": ("ok", {"puertos": [{"interfaz": "sfp1", "enlace": False, "modulo": False,
                                    "veredicto": "sin módulo SFP"}]}, ())}),
    ("optica_sfp", {"routers": ["152.1", "26.1"], "interfaces": "sfp"},
     {"152.1": ("degraded", {"puertos": [{"interfaz": "sfp1", "enlace": True, "rx_dbm": -26.0, "tx_dbm": -3.0,
                                          "temperatura_c": 40.0, "veredicto": "recepción -26 dBm, crítica"}]},
                ("sfp1: recepción -26 dBm, crítica",)),
      "26.1": ("ok", {"puertos": []}, ())}),
    ("ping", {"router": "26.1", "destino": "8.8.8.8", "cantidad": 4},
     {"26.1": ("ok", {"destino": "8.8.8.8", "enviados": 4, "recibidos": 4, "perdida_pct": 0, "rtt_promedio_ms": 10.5,
                      "rtt_max_ms": 12.0}, ())}),
    ("ping", {"router": "26.1", "destino": "192.0.2.1", "cantidad": 4},
     {"26.1": ("degraded", {"destino": "192.0.2.1", "enviados": 4, "recibidos": 0, "perdida_pct": 100},
               ("192.0.2.1 no respondió ningún ping",))}),
    ("log_router", {"router": "59.3", "tema": "interfaz", "lineas": 8},
     {"59.3": ("ok", {"coincidencias": 2, "lineas": [{"hora": "14:33:34", "temas": "interface,info",
                                                      "mensaje": "ether10 link up (speed 1G, full duplex)"}]}, ())}),
    ("log_router", {"router": "59.3", "tema": "ospf", "lineas": 8}, {"59.3": ("ok", {"coincidencias": 0, "lineas": []}, ())}),
]


def _tool_output(tool: str, arguments: dict[str, Any], outcomes: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]],
                 timed_out: float | None = None) -> dict[str, Any]:
    tools = NocTools(Fleet(Settings(routers=tuple(RouterConfig(n, f"10.0.0.{i}", site="Torre Norte") for i, n in
                                                  enumerate(["152.1", "26.1", "46.3", "59.3"])))))
    call = tools.parse_call("call_1", tool, json.dumps(arguments))  # the arguments as the tool checks them
    assert call.problem is None, call.problem
    fan = tools.plan(call)
    for router, (status, data, reasons) in outcomes.items():
        fan.outcomes[router] = Outcome(router, status, data, reasons)
    return tools.report(call, fan, timed_out)


@pytest.mark.parametrize(("tool", "arguments", "outcomes"), TOOL_OUTCOMES)
def test_a_new_tools_answer_is_its_summary_said_as_written(
        tool: str, arguments: dict[str, Any], outcomes: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]]) -> None:
    for timed_out in (None, 30.0):
        output = _tool_output(tool, arguments, outcomes, timed_out)
        text = ScriptedModel().report(tool, json.dumps(output))
        assert text == output["resumen"].strip()
        hits = [name for name, pattern in ANSWERS.items() if pattern.search(text)]
        assert hits == [tool], text
        assert not any(p.search(text) for p in (ANSWER_PROBLEM, ANSWER_CLARIFY, ANSWER_WAITING)), text


def test_the_routers_listing_is_said_as_written() -> None:
    output = _tool_output("listar_routers", {}, {})
    text = ScriptedModel().report("listar_routers", json.dumps(output))
    assert text == output["resumen"] and [n for n, p in ANSWERS.items() if p.search(text)] == ["listar_routers"]
    site = _tool_output("listar_routers", {"sitio": "torre norte"}, {})
    assert ANSWERS["listar_routers"].search(ScriptedModel().report("listar_routers", json.dumps(site)))


def test_answers_in_numbers_can_be_read_back() -> None:
    health = ANSWERS["estado_routers"].search(_tool_output(*TOOL_OUTCOMES[2])["resumen"])
    assert health is not None and (health["total"], health["ok"]) == ("3", "1")
    ping = ANSWERS["ping"].search(_tool_output(*TOOL_OUTCOMES[11])["resumen"])
    assert ping is not None and ping.group("router", "target", "received", "sent") == ("26.1", "8.8.8.8", "4", "4")
    who = ANSWERS["quien_tiene"].search(_tool_output(*TOOL_OUTCOMES[3])["resumen"])
    assert who is not None and who.group("what", "other", "router") == ("172.16.3.20", "AA:BB:CC:00:11:22", "26.1")
    nobody = ANSWERS["quien_tiene"].search(_tool_output(*TOOL_OUTCOMES[4])["resumen"])
    assert nobody is not None and nobody.group("answered", "nobody") == ("1", "AA:BB:CC:00:11:22")


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=25), inner, max_size=4),
                    max_leaves=12)
KEYS = st.sampled_from(["router", "dispositivos_activos", "dispositivos", "interfaces", "total_rx_mbps", "total_tx_mbps",
                        "sin_respuesta", "sin_terminar", "routers_consultados", "error", "resumen", "estado"])


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from([*ANSWERS, "cancelar_consulta", "otra"]),
       output=st.dictionaries(KEYS, JSON, max_size=6) | JSON)
def test_any_tool_output_gets_words_never_an_exception(name: str, output: object) -> None:
    text = ScriptedModel().report(name, json.dumps(output))
    assert isinstance(text, str) and text


# --------------------------------------------------------------------------- what the model reads from a conversation's items


def test_the_live_conversation_a_question_then_the_models_own_call() -> None:
    history = History()
    history.heard("Dame el tráfico SFP")
    user_text, outputs = history.take()
    assert (user_text, outputs) == ("Dame el tráfico SFP", [])
    history.heard("¿y ahora?")  # the caller speaks while the model's call is made: not answered by it
    history.issued("call_1", "trafico_interfaces")
    assert history.user_text == "¿y ahora?" and history.pending == {"call_1": "trafico_interfaces"}
    assert history.output("call_1", "{}") and not history.output("call_1", "{}")  # one output per call
    assert history.outputs == [("trafico_interfaces", "{}")] and not history.output("call_unknown", "{}")


@pytest.mark.parametrize("assistant", [
    lambda h: h.assistant_item("Un momento, consulto los dispositivos activos del router 152.1."),
    lambda h: h.system_item("El asistente dijo: Un momento, consulto los dispositivos activos del router 152.1."),
])
def test_a_replay_is_continued_not_repeated(assistant: Any) -> None:
    """user question, assistant preamble, function_call without output: nothing is owed but the
    call's result; when it comes, it is reported once."""
    model, history = ScriptedModel(), History()
    history.system_item("Llamada en curso.")  # an ordinary note changes nothing
    history.heard("Dame los dispositivos activos del router 152 punto 1")
    assistant(history)
    history.call_item("call_old", "dispositivos_activos")
    assert history.user_text is None and history.pending == {"call_old": "dispositivos_activos"}

    def respond() -> Turn:
        user_text, outputs = history.take()
        return model.decide(user_text=user_text, tool_outputs=outputs, instructions=None, call_pending=bool(history.pending))

    assert respond() == Turn(STILL_QUERYING, kind="ack")  # not the question again, not a second call
    output = json.dumps({"router": "152.1", "dispositivos_activos": 3, "dispositivos": [{"nombre": "cam"}]})
    assert history.output("call_old", output)
    report = respond()
    assert report.kind == "report" and ANSWER_DEVICES.search(report.text)["count"] == "3"  # type: ignore[index]
    assert respond().text == HOW_CAN_I_HELP  # reported once


def test_a_replayed_answer_after_an_output_means_it_was_reported() -> None:
    history = History()
    history.heard("Dame el tráfico SFP")
    history.call_item("call_1", "trafico_interfaces")
    history.output("call_1", "{}")
    history.assistant_item("Respondieron 3 de 3 routers. ...")
    assert history.take() == (None, [])
    history.heard("¿Y los dispositivos del router 7?")  # asked after the last answer: still owed
    assert history.take() == ("¿Y los dispositivos del router 7?", [])


def test_an_empty_assistant_turn_answers_nothing() -> None:
    history = History()
    history.heard("hola")
    history.assistant_item("  ")
    assert history.user_text == "hola"


def test_a_deleted_call_is_no_longer_pending() -> None:
    history = History()
    history.call_item("call_1", "trafico_interfaces")
    history.forget("call_1")
    assert history.pending == {} and not history.output("call_1", "{}")
