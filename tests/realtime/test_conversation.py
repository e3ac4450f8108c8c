"""The conversation ledger: what a reconnect replays into the new session, in order, within budget."""

import pytest

from mikrovoice.realtime import protocol as rt
from mikrovoice.realtime.conversation import Conversation


def items(events: list[rt.JSON]) -> list[rt.JSON]:
    assert all(e["type"] == "conversation.item.create" and rt.sent_event_kind(e["event_id"]) == "replay" for e in events)
    assert len({e["event_id"] for e in events}) == len(events)
    return [e["item"] for e in events]


def user(text: str) -> rt.JSON:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def assistant(text: str) -> rt.JSON:
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}


def system(text: str) -> rt.JSON:
    return {"type": "message", "role": "system", "content": [{"type": "input_text", "text": text}]}


def call(call_id: str, name: str = "trafico_sfp", arguments: str = "{}") -> rt.JSON:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}


def output(call_id: str, text: str) -> rt.JSON:
    return {"type": "function_call_output", "call_id": call_id, "output": text}


def a_call() -> Conversation:
    """A greeting, a question, a tool call answered, a second question whose call is still running."""
    c = Conversation()
    c.assistant_said("item_a1", "Hola, soy el asistente del NOC.")
    c.user_started("item_u1")
    c.assistant_said("item_a2", "Un momento, consulto los routers.")  # the transcript of item_u1 comes late
    c.user_said("item_u1", "¿Cómo está el tráfico de los SFP?")
    c.function_called("call_1", "trafico_sfp", '{"routers":["r1"]}')
    c.function_output("call_1", '{"r1":"ok"}')
    c.assistant_said("item_a3", "r1 está bien.")
    c.system_note("El operador pidió detalle.")
    c.user_said("item_u2", "¿Y el r2?")
    c.function_called("call_2", "trafico_sfp", '{"routers":["r2"]}')
    return c


def test_replay_in_order_with_every_item_kind() -> None:
    assert items(a_call().replay()) == [
        assistant("Hola, soy el asistente del NOC."),
        user("¿Cómo está el tráfico de los SFP?"),  # where the caller spoke, not where the transcript came
        assistant("Un momento, consulto los routers."),
        call("call_1", arguments='{"routers":["r1"]}'),
        output("call_1", '{"r1":"ok"}'),
        assistant("r1 está bien."),
        system("El operador pidió detalle."),
        user("¿Y el r2?"),
        call("call_2", arguments='{"routers":["r2"]}'),  # pending: no output, so the later one matches
    ]


def test_replayed_items_carry_no_ids_and_no_positions() -> None:
    for event in a_call().replay():
        assert set(event) == {"type", "event_id", "item"}
        assert "id" not in event["item"]


def test_pending_calls_and_outputs() -> None:
    c = a_call()
    assert c.pending_calls == ("call_2",)
    assert c.function_output("call_2", "{}") and c.pending_calls == ()
    assert not c.function_output("call_unknown", "{}")
    assert all(i.get("call_id") != "call_unknown" for i in c.items())


def test_a_call_seen_twice_is_kept_once() -> None:
    c = Conversation()
    c.function_called("call_1", "x", "{}")
    c.function_called("call_1", "x", "{}")  # output_item.done, then response.done
    assert c.items() == [call("call_1", "x")]


def test_caller_turn_without_transcript_is_not_replayed() -> None:
    c = Conversation()
    c.user_started("item_u1")
    c.user_said("item_u2", "   ")
    c.assistant_said("item_a1", "")
    assert c.replay() == []


def test_kind_mismatch_is_a_bug() -> None:
    c = Conversation()
    c.user_started("item_1")
    with pytest.raises(ValueError):
        c.assistant_said("item_1", "x")


# ---------------------------------------------------------------------------- barge-in


def test_truncated_turn_keeps_what_was_heard() -> None:
    c = Conversation()
    c.assistant_said("item_a", "El router uno está bien y el router dos tiene errores en el puerto")
    c.assistant_truncated("item_a", heard_ms=1000, total_ms=4000)  # a quarter: 16 of 66 characters
    assert c.items() == [assistant("El router uno… [interrumpido]")]


def test_truncate_before_the_transcript_and_estimated_length() -> None:
    c = Conversation(chars_per_second=10.0, interrupted_marker="[cut]")
    c.assistant_truncated("item_a", heard_ms=1000)  # the truncate is sent before the transcript arrives
    c.assistant_said("item_a", "uno dos tres cuatro cinco seis siete ocho")  # 41 chars: 4.1 s at 10/s
    assert c.items() == [assistant("uno dos… [cut]")]


def test_heard_it_all_or_nothing() -> None:
    c = Conversation()
    c.assistant_said("item_a", "Todo bien.")
    c.assistant_truncated("item_a", heard_ms=5000, total_ms=4000)
    c.assistant_said("item_b", "Nada oído.")
    c.assistant_truncated("item_b", heard_ms=0, total_ms=4000)
    assert c.items() == [assistant("Todo bien.")]


def test_assistant_turns_as_system_notes() -> None:
    c = Conversation(assistant_as="system", assistant_label="Asistente: ")
    c.assistant_said("item_a", "Hola.")
    assert c.items() == [system("Asistente: Hola.")]


# ---------------------------------------------------------------------------- budget


def test_over_budget_the_oldest_turns_go_first() -> None:
    c = Conversation()
    c.user_said("u1", "a" * 50)
    c.assistant_said("a1", "b" * 50)
    c.user_said("u2", "c" * 10)
    c.assistant_said("a2", "d" * 10)
    assert items(c.replay(max_chars=69)) == [user("c" * 10), assistant("d" * 10)]  # with b*50: 70
    assert items(c.replay(max_chars=70)) == [assistant("b" * 50), user("c" * 10), assistant("d" * 10)]
    assert items(c.replay(max_chars=0)) == []
    assert len(c.replay(max_chars=119)) == 3 and len(c.replay(max_chars=120)) == 4 == len(c.replay())


def test_nothing_older_than_a_turn_that_did_not_fit() -> None:
    c = Conversation()
    c.user_said("u1", "x")  # small, but older than a dropped turn: dropped too
    c.assistant_said("a1", "y" * 100)
    c.user_said("u2", "z" * 10)
    assert items(c.replay(max_chars=20)) == [user("z" * 10)]


def test_a_call_and_its_output_go_together() -> None:
    c = Conversation()
    c.function_called("call_1", "t", "{}")
    c.function_output("call_1", "o" * 40)  # 43 characters with name and arguments
    c.user_said("u1", "q" * 10)
    assert items(c.replay(max_chars=52)) == [user("q" * 10)]
    assert items(c.replay(max_chars=53)) == [call("call_1", "t"), output("call_1", "o" * 40), user("q" * 10)]


def test_a_pending_call_is_never_dropped() -> None:
    c = Conversation()
    c.user_said("u1", "pregunta larga " * 10)
    c.function_called("call_1", "t", '{"routers":["r1","r2","r3"]}')
    c.assistant_said("a1", "Consultando.")
    assert items(c.replay(max_chars=5)) == [call("call_1", "t", '{"routers":["r1","r2","r3"]}')]


def test_replay_is_deterministic() -> None:
    assert a_call().items() == a_call().items()
    first, second = a_call().replay(max_chars=80), a_call().replay(max_chars=80)
    assert [e["item"] for e in first] == [e["item"] for e in second]
