"""Every client event mikrovoice can send is a GA Realtime event, checked against the openai SDK's types.

The SDK (openai==3.57.0, a test-only dependency) ships TypedDicts for every client event
(``RealtimeClientEventParam``). Validated with ``extra="forbid"``, an unknown or beta key fails.
One trap: pydantic validates ``Iterable[...]`` fields lazily (a ``ValidatorIterator``), and the
SDK types message ``content`` and ``response.input`` as ``Iterable``: nothing inside them is
checked until the iterator is consumed. ``strict`` therefore drains every iterator of the
validated value, which runs the strict validation of what is inside; the negative controls
below prove a typo in those places fails too.

The default model must be one the SDK lists and not one it marks deprecated.
"""

import ast
import inspect
import re
import typing
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from openai.types.realtime import RealtimeClientEventParam, RealtimeSessionCreateRequest
from pydantic import ConfigDict, TypeAdapter, ValidationError

from mikrovoice.config import Settings
from mikrovoice.realtime import protocol as rt
from mikrovoice.realtime.conversation import Conversation

STRICT = TypeAdapter(RealtimeClientEventParam, config=ConfigDict(extra="forbid"))
TOOLS = (rt.ToolSpec("trafico_sfp", "Tráfico de los SFP", {"type": "object", "properties": {
    "routers": {"type": "array", "items": {"type": "string"}}}, "required": ["routers"]}),)


def _drain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _drain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, Iterator)):
        return [_drain(v) for v in value]
    return value


def strict(event: rt.JSON) -> None:
    """Raise ValidationError unless ``event`` is a GA client event with no unknown key anywhere."""
    _drain(STRICT.validate_python(event))


def _conversation() -> Conversation:
    c = Conversation()
    c.user_said("item_u1", "¿Cómo están los SFP?")
    c.assistant_said("item_a1", "Consulto los routers, un momento.")
    c.assistant_truncated("item_a1", heard_ms=500, total_ms=2000)
    c.function_called("call_1", "trafico_sfp", '{"routers":["r1"]}')
    c.function_output("call_1", '{"r1":"ok"}')
    c.system_note("El operador está en la sala de equipos.")
    c.function_called("call_2", "trafico_sfp", '{"routers":["r2"]}')  # pending
    return c


def _client_events() -> dict[str, rt.JSON]:
    rules = "Eres el asistente del NOC. Nunca inventes resultados."
    settings = rt.SessionSettings("gpt-realtime-2.1", rules, "marin", TOOLS, reasoning_effort="minimal")
    events = {
        "session.update (reasoning, transcription)": rt.client_session_update(settings),
        "session.update (no reasoning, no transcription)": rt.client_session_update(rt.SessionSettings(
            "gpt-realtime-1.5", rules, "cedar", TOOLS, transcription_model=None, reasoning_effort="minimal")),
        "session.update (no tools)": rt.client_session_update(rt.SessionSettings("gpt-realtime-2.1", "x", "marin", ())),
        "append": rt.client_append_audio(b"\xff" * 160),
        "clear": rt.client_input_audio_clear(),
        "truncate": rt.client_truncate("item_a1", 480),
        "tool output": rt.client_tool_output("call_1", '{"r1":"ok"}'),
        "system note": rt.client_system_note("3 de 5 routers respondieron."),
        "cancel": rt.client_response_cancel(),
        "cancel by id": rt.client_response_cancel("resp_1"),
        "create greeting": rt.client_response_create("greeting", "Saluda.", tool_choice="none"),
        "create progress": rt.client_response_create("progress", "Di: sigo consultando.", tool_choice="none",
                                                     session_instructions=rules),
        "create report": rt.client_response_create("report", "Resume el resultado.", session_instructions=rules,
                                                   metadata={"call_id": "call_1"}),
        "create refusal": rt.client_response_create("refusal"),
        "create turn (required tool)": rt.client_response_create("turn", tool_choice="required"),
        "create out-of-band": rt.client_response_create(
            "progress", "Di exactamente: 'Sigo consultando.'", "none", out_of_band=True,
            input=[rt.system_message("Progreso: 3 de 5.")], metadata={"call_id": "call_2"}),
        "create out-of-band, empty context": rt.client_response_create("progress", "Di: sigo.", out_of_band=True, input=[]),
    }
    for i, event in enumerate(_conversation().replay()):
        events[f"replay {i} {event['item']['type']} {event['item'].get('role', '')}"] = event
    assistant_as_system = Conversation(assistant_as="system")
    assistant_as_system.assistant_said("item_a", "Hola.")
    events["replay assistant as system"] = assistant_as_system.replay()[0]
    return events


EVENTS = _client_events()


def test_replay_covers_every_item_kind() -> None:
    kinds = {(e["item"]["type"], e["item"].get("role")) for name, e in EVENTS.items() if name.startswith("replay")}
    assert kinds == {("message", "user"), ("message", "assistant"), ("message", "system"),
                     ("function_call", None), ("function_call_output", None)}
    assert any(name.startswith("replay") and "function_call" == e["item"]["type"] for name, e in EVENTS.items())


@pytest.mark.parametrize("name", list(EVENTS))
def test_every_client_event_we_send_is_strict_ga(name: str) -> None:
    strict(EVENTS[name])
    strict(rt.renew_event_id(EVENTS[name]))  # what the gate sends again


def test_reasoning_block_is_really_sent() -> None:
    assert EVENTS["session.update (reasoning, transcription)"]["session"]["reasoning"] == {"effort": "minimal"}
    assert "reasoning" not in EVENTS["session.update (no reasoning, no transcription)"]["session"]


def _with(event: rt.JSON, path: tuple[str | int, ...], key: str, value: Any = 1) -> rt.JSON:
    """A deep copy of ``event`` with ``key`` added to the object at ``path``."""
    copy = _drain(event)
    target = copy
    for step in path:
        target = target[step]
    target[key] = value
    return copy


NEGATIVE = {
    "top level": (EVENTS["append"], (), "bogus"),
    "beta session key": (EVENTS["session.update (no tools)"], ("session",), "input_audio_format", "g711_ulaw"),
    "nested session key": (EVENTS["session.update (no tools)"], ("session", "audio", "input", "format"), "bogus"),
    "turn detection key": (EVENTS["session.update (no tools)"], ("session", "audio", "input", "turn_detection"), "bogus"),
    "reasoning key": (EVENTS["session.update (reasoning, transcription)"], ("session", "reasoning"), "bogus"),
    "tool key": (EVENTS["session.update (reasoning, transcription)"], ("session", "tools", 0), "strict", True),
    "response key": (EVENTS["create report"], ("response",), "modalities", ["audio"]),
    "metadata value not a string": (EVENTS["create report"], ("response", "metadata"), "n", 5),
    "content part key (lazy Iterable)": (EVENTS["system note"], ("item", "content", 0), "bogus"),
    "response.input item key (lazy Iterable)": (EVENTS["create out-of-band"], ("response", "input", 0), "bogus"),
    "response.input content key (lazy, nested)": (EVENTS["create out-of-band"], ("response", "input", 0, "content", 0), "bogus"),
    "function_call_output key": (EVENTS["tool output"], ("item",), "bogus"),
}


@pytest.mark.parametrize("name", list(NEGATIVE))
def test_the_check_rejects_a_key_the_sdk_does_not_know(name: str) -> None:
    event, path, key, *value = NEGATIVE[name]
    with pytest.raises(ValidationError):
        strict(_with(event, path, key, *value))


def test_wrong_content_type_for_a_role_is_rejected() -> None:
    """assistant text is output_text; input_text there is not a GA assistant message."""
    event = _drain(EVENTS["replay assistant as system"])
    event["item"] = {"type": "message", "role": "assistant", "content": [{"type": "input_text", "text": "x"}]}
    with pytest.raises(ValidationError):
        strict(event)


# ------------------------------------------------------------------------------ the default model


def _model_field_doc() -> str:
    """The attribute docstring of ``RealtimeSessionCreateRequest.model`` (the API reference text)."""
    tree = ast.parse(inspect.getsource(inspect.getmodule(RealtimeSessionCreateRequest)))  # type: ignore[arg-type]
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RealtimeSessionCreateRequest")
    for statement, following in zip(cls.body, cls.body[1:], strict=False):
        if (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
                and statement.target.id == "model" and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant) and isinstance(following.value.value, str)):
            return following.value.value
    raise AssertionError("no docstring for RealtimeSessionCreateRequest.model")


def _deprecated_models() -> set[str]:
    doc = _model_field_doc()
    _, found, section = doc.partition("Deprecated values:")
    assert found, "the SDK no longer says which models are deprecated: read it again"
    return set(re.findall(r'"([A-Za-z0-9.\-]+)"', section))


def _listed_models() -> set[str]:
    annotation = RealtimeSessionCreateRequest.model_fields["model"].annotation
    literals: set[str] = set()
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is typing.Literal:
            literals.update(typing.get_args(arg))
    return literals


def test_deprecated_models_are_read_from_the_sdk() -> None:
    deprecated = _deprecated_models()
    assert "gpt-realtime" in deprecated and "gpt-realtime-mini" in deprecated  # the list is really read
    assert deprecated <= _listed_models()


def test_default_model_is_listed_and_not_deprecated() -> None:
    model = Settings().model
    assert model in _listed_models()
    assert model not in _deprecated_models()


def test_default_model_gets_its_reasoning_block() -> None:
    settings = Settings()
    assert rt.is_reasoning_model(settings.model) == (settings.model.startswith("gpt-realtime-2"))
    update = rt.client_session_update(rt.SessionSettings(settings.model, "x", settings.voice, TOOLS,
                                                         reasoning_effort=settings.reasoning_effort))
    strict(update)
    if settings.reasoning_effort and rt.is_reasoning_model(settings.model):
        assert update["session"]["reasoning"] == {"effort": settings.reasoning_effort}
