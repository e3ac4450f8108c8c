"""ProgressPolicy: when an update is asked for, and what it says (a failed router is not an answer)."""

from mikrovoice.call.progress import ProgressPolicy
from mikrovoice.config import Phrases


def test_the_update_is_asked_for_the_models_latency_before_the_silence_is_reached() -> None:
    policy = ProgressPolicy(silence_s=6.0, lead_s=1.0)
    assert policy.due_at(10.0) == 15.0
    assert ProgressPolicy(silence_s=0.5, lead_s=1.0).due_at(10.0) == 10.0


def test_counts_separate_answered_from_failed() -> None:
    phrases = Phrases()
    assert ProgressPolicy.phrase(phrases, 4, 0, 5, ["26.1"]) == (
        "Sigo consultando: 4 de 5 routers ya respondieron. Faltan 26.1.")
    assert ProgressPolicy.phrase(phrases, 2, 2, 5, ["26.1"]) == (
        "Sigo consultando: 2 de 5 routers ya respondieron. 2 no se pudieron consultar. Faltan 26.1.")
    assert ProgressPolicy.phrase(phrases, 0, 0, 1, ["26.1"]) == "Sigo consultando el router 26.1; todavía no responde."


def test_operator_phrases_may_use_every_field_and_the_old_done_name() -> None:
    phrases = Phrases(progress_many="Van {done}/{total} ({answered} ok, {failed} mal, {pending} en curso).")
    assert ProgressPolicy.phrase(phrases, 3, 1, 6, ["a", "b"]) == (
        "Van 3/6 (3 ok, 1 mal, 2 en curso). 1 no se pudieron consultar. Faltan a y b.")


def test_a_few_missing_routers_are_named_many_are_not() -> None:
    phrases = Phrases()
    assert ProgressPolicy.phrase(phrases, 9, 0, 12, ["26.1", "46.3", "7.1"]).endswith("Faltan 26.1, 46.3 y 7.1.")
    assert "Faltan" not in ProgressPolicy.phrase(phrases, 8, 0, 12, ["26.1", "46.3", "7.1", "9.9"])


def test_while_routers_are_pending_the_update_says_how_long_at_most_so_two_are_never_the_same() -> None:
    phrases = Phrases()
    first = ProgressPolicy.phrase(phrases, 11, 0, 12, ["46.3"], wait_left_s=13.2)
    second = ProgressPolicy.phrase(phrases, 11, 0, 12, ["46.3"], wait_left_s=7.0)
    assert first == "Sigo consultando: 11 de 12 routers ya respondieron. Faltan 46.3. Lo espero como máximo 15 segundos más."
    assert second.endswith("Lo espero como máximo 10 segundos más.") and first != second
    assert ProgressPolicy.phrase(phrases, 0, 0, 1, ["26.1"], wait_left_s=2.0) == (
        "Sigo consultando el router 26.1; todavía no responde.")  # under 3 s: not worth saying
    assert ProgressPolicy.phrase(phrases, 0, 0, 1, ["26.1"], wait_left_s=4.0).endswith("máximo 5 segundos más.")


def test_a_few_failed_routers_are_named_with_their_reason() -> None:
    phrases = Phrases()
    named = ProgressPolicy.phrase(phrases, 9, 1, 12, ["26.1", "59.3"], failures=[("46.3", "no contestó al conectarse")])
    assert named == ("Sigo consultando: 9 de 12 routers ya respondieron. Sin respuesta: 46.3 no contestó al conectarse. "
                     "Faltan 26.1 y 59.3.")
    many = [(f"{n}.1", "no respondió a tiempo") for n in range(4)]
    assert "4 no se pudieron consultar." in ProgressPolicy.phrase(phrases, 8, 4, 12, [], failures=many)
