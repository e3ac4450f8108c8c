"""The scripted model's mind: router names as said, backchannels, resuming an interrupted turn, stable wording."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mikrovoice.sim.brain import (
    ANSWER_DEVICES,
    ANSWER_PROBLEM,
    ANSWER_SFP,
    ANSWER_WAITING,
    HOW_CAN_I_HELP,
    RESUME_PREFIX,
    STILL_QUERYING,
    History,
    ScriptedModel,
    Turn,
    is_backchannel,
    router_names,
)


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
])
def test_router_names_as_the_caller_said_them(question: str, routers: list[str]) -> None:
    assert router_names(question) == routers


@pytest.mark.parametrize(("question", "call"), [
    ("Dame los dispositivos activos del router 152 punto 1", ("dispositivos_activos", {"router": "152.1"})),
    ("Dame los dispositivos activos del router torre norte", ("dispositivos_activos", {"router": "torre norte"})),
    ("el tráfico SFP de los routers 26 punto 1 y 46 punto 3", ("trafico_sfp", {"routers": ["26.1", "46.3"]})),
    ("el tráfico SFP del router torre norte", ("trafico_sfp", {"routers": ["torre norte"]})),
    ("Dame el tráfico de las interfaces SFP de todos los routers", ("trafico_sfp", {})),
    ("Dame el tráfico SFP", ("trafico_sfp", {})),
])
def test_questions_become_function_calls(question: str, call: tuple[str, dict[str, object]]) -> None:
    turn = ask(ScriptedModel(), question)
    assert turn.call == call and turn.text.startswith("Un momento")


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
    assert turn.call == ("trafico_sfp", {"routers": ["26.1"]})
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
    sfp = model.report("trafico_sfp", json.dumps({
        "routers_consultados": 12, "routers_que_respondieron": 10, "total_rx_mbps": 812.4, "total_tx_mbps": 95.6,
        "interfaces": [{"router": "26.1", "interfaz": "sfp1", "rx_mbps": 400.2}], "sin_respuesta": ["46.3", "70.1"]}))
    assert sfp == ("Respondieron 10 de 12 routers. El tráfico SFP total es de 812 megabits por segundo de bajada y 96 de "
                   "subida. El más cargado es el router 26.1, sfp1, con 400. No respondieron: 46.3, 70.1.")
    match = ANSWER_SFP.search(sfp)
    assert match is not None
    assert (match["answered"], match["total"], match["rx_mbps"], match["tx_mbps"], match["missing"]) == ("10", "12", "812", "96", "46.3, 70.1")
    complete = ANSWER_SFP.search(sfp.split(" El más")[0])
    assert complete is not None and complete["missing"] is None
    failed = model.report("trafico_sfp", json.dumps({"error": "timeout"}))
    assert failed == "No pude hacer esa consulta: timeout." and ANSWER_PROBLEM.search(failed)["error"] == "timeout"  # type: ignore[index]
    not_understood = ask(model, "¿Qué hora es?").text
    assert not_understood == "No entendí. Puedo consultar los dispositivos activos de un router o el tráfico SFP."
    assert ANSWER_PROBLEM.search(not_understood)
    assert ANSWER_WAITING.search(ask(model, "Dame el tráfico SFP", call_pending=True).text)
    for text in (devices, sfp, failed, not_understood):  # each answer matches its own pattern only
        hits = [p for p in (ANSWER_DEVICES, ANSWER_SFP, ANSWER_PROBLEM, ANSWER_WAITING) if p.search(text)]
        assert len(hits) == 1, text


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=25), inner, max_size=4),
                    max_leaves=12)
KEYS = st.sampled_from(["router", "dispositivos_activos", "dispositivos", "interfaces", "total_rx_mbps", "total_tx_mbps",
                        "sin_respuesta", "errores", "routers_consultados", "error"])


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["dispositivos_activos", "trafico_sfp", "otra"]),
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
    history.issued("call_1", "trafico_sfp")
    assert history.user_text == "¿y ahora?" and history.pending == {"call_1": "trafico_sfp"}
    assert history.output("call_1", "{}") and not history.output("call_1", "{}")  # one output per call
    assert history.outputs == [("trafico_sfp", "{}")] and not history.output("call_unknown", "{}")


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
    history.call_item("call_1", "trafico_sfp")
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
    history.call_item("call_1", "trafico_sfp")
    history.forget("call_1")
    assert history.pending == {} and not history.output("call_1", "{}")
