"""The promises about what the tools tell the model, each shown to catch the failure it exists for.

One call per tool runs through the real service (``simulate_call``) and keeps every promise; then
what a party recorded is doctored, one lie at a time (a router that cannot answer called "ok", a
count that includes it, an English reason, a wrong MAC, a made-up log line, a write on the wire...),
and exactly the matching promise must flag it. A few product breaks, monkeypatched, too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from mikrovoice.routeros import fanout
from mikrovoice.routeros.commands import ReadCommand
from mikrovoice.routeros.protocol import Request
from mikrovoice.sim import brain
from mikrovoice.simulation import invariants
from mikrovoice.simulation.console import default_settings
from mikrovoice.simulation.scenario import NO_ANSWER_FAULTS, UNREACHABLE, Ask, RouterBehaviour, Scenario
from mikrovoice.simulation.strategies import seeded_fleet
from mikrovoice.simulation.world import CallObservation, ToolOutput, simulate_call
from mikrovoice.tools.devices import ActiveDevices

SETTINGS = default_settings()
NAMES = [r.name for r in SETTINGS.routers]
SEED = 5  # its fleet: 26.1 with a weak SFP and one without light, 121.2 with a critical one
FLEET = seeded_fleet(SEED, SETTINGS)


def routers(**behaviour: tuple[float, str | None]) -> tuple[RouterBehaviour, ...]:
    special = {name.replace("_", "."): value for name, value in behaviour.items()}
    return tuple(RouterBehaviour(n, *special.get(n, (0.2, None))) for n in NAMES)


def bound_lease(router: str) -> dict[str, str]:
    return next(r for r in FLEET[router].leases if r["status"] == "bound")


PPP_USER = FLEET["188.2"].ppp_active[0]["name"]
#: One call per tool; Nodo Lisboa's 46.1 refuses the login and 59.3 is unreachable.
TROUBLE = routers(**{"46_1": (0.2, "refuses_login"), "59_3": (0.2, UNREACHABLE)})
CALLS = {
    "estado_routers": Ask("health", ("59.3", "46.1", "174.2", "156.3"), naming="site", site="Nodo Lisboa"),
    "quien_tiene": Ask("who_has", subject=bound_lease("26.1")["address"]),
    "quien_tiene_mac": Ask("who_has", subject=bound_lease("147.3")["mac-address"]),
    "sesion_pppoe": Ask("pppoe", subject=PPP_USER),
    "optica_sfp": Ask("optics", ("26.1",)),
    "ping": Ask("ping", ("26.1",), subject="8.8.8.8", variant=3),
    "log_router": Ask("log", ("188.2",), subject="la interfaz"),
    "dispositivos_activos": Ask("devices", ("152.1",), naming="words"),
    "dispositivos_activos_down": Ask("devices", ("46.1",)),
    "trafico_interfaces": Ask("sfp_all"),
    "listar_routers": Ask("list_routers"),
}


@pytest.fixture(scope="module")
def calls() -> dict[str, CallObservation]:
    return {name: simulate_call(Scenario(asks=(ask,), routers=TROUBLE, seed=SEED), SETTINGS)
            for name, ask in CALLS.items()}


def output(obs: CallObservation) -> dict[str, Any]:
    (told,) = invariants.tool_outputs(obs)
    assert told.data is not None
    return told.data


def doctored(obs: CallObservation, change: Callable[[dict[str, Any]], None]) -> CallObservation:
    """``obs`` as if the model had received the output ``change`` made of the real one."""
    outputs = []
    for told in obs.tool_outputs:
        data = json.loads(told.output)
        change(data)
        outputs.append(replace(told, output=json.dumps(data, ensure_ascii=False)))
    return replace(obs, tool_outputs=outputs)


def test_every_tool_keeps_every_promise_and_its_answer_is_heard(calls: dict[str, CallObservation]) -> None:
    for name, obs in calls.items():
        assert invariants.check(obs) == {}, name
        tool = name.removesuffix("_mac").removesuffix("_down")
        (told,) = invariants.tool_outputs(obs)
        assert told.tool == tool
        answer = brain.ANSWERS[tool] if not name.endswith("_down") else brain.ANSWER_PROBLEM
        assert [h.text for h in obs.caller.heard if answer.search(h.text)], name


def test_the_world_keeps_what_the_model_was_told(calls: dict[str, CallObservation]) -> None:
    obs = calls["estado_routers"]
    (kept,) = obs.tool_outputs
    assert isinstance(kept, ToolOutput) and kept.call_id == obs.record.tool_calls[0].call_id  # type: ignore[union-attr]
    data = output(obs)
    assert data["routers_consultados"] == 4 and data["routers_que_respondieron"] == 2
    assert data["sin_respuesta"] == {"46.1": "rechazó el usuario o la contraseña de consulta",
                                     "59.3": "no está alcanzable por la red"}


def test_the_faults_that_keep_a_router_from_answering() -> None:
    from mikrovoice.sim.routeros import SILENT_FAULTS
    assert NO_ANSWER_FAULTS == SILENT_FAULTS | {UNREACHABLE}


# --------------------------------------------------------------------------- status_honest


def _entry(data: dict[str, Any], router: str) -> dict[str, Any]:
    return next(e for e in data["routers"] if e["router"] == router)


@pytest.mark.parametrize(("lie", "words"), [
    (lambda d: _entry(d, "46.1").update(estado="ok"), "says router 46.1 is 'ok'; it cannot answer (refuses_login)"),
    (lambda d: _entry(d, "59.3").update(estado="degradado"), "says router 59.3 is 'degradado'"),
    (lambda d: _entry(d, "46.1").update(motivo="login refused: invalid user name or password (6)"),
     "gives router 46.1 no reason in the caller's words"),
    (lambda d: _entry(d, "59.3").pop("motivo"), "gives router 59.3 no reason"),
    (lambda d: d["sin_respuesta"].update({"46.1": ""}), "router 46.1 did not answer, with no reason"),
    (lambda d: d.update(sin_respuesta=["46.1", "59.3"]), "sin_respuesta is not a router -> reason object"),
    (lambda d: d.update(routers_que_respondieron=3), "counts 3 routers that answered"),
    (lambda d: d["sin_respuesta"].pop("46.1"), "counts 46.1 among the routers that answered"),
    (lambda d: d.update(routers_consultados=12), "counts 2 of 12 routers; 4 were asked"),
])
def test_status_honest_catches(calls: dict[str, CallObservation], lie: Callable[[dict[str, Any]], None],
                               words: str) -> None:
    obs = doctored(calls["estado_routers"], lie)
    found = invariants.check(obs)
    # (a router called "ok" without a word of data is also no true output)
    assert "status_honest" in found and set(found) <= {"status_honest", "output_true"}, found
    assert any(words in problem for problem in found["status_honest"]), found


def test_status_honest_catches_a_one_router_tool(calls: dict[str, CallObservation]) -> None:
    obs = calls["dispositivos_activos_down"]
    assert output(obs)["error"] == "el router 46.1 rechazó el usuario o la contraseña de consulta"
    english = doctored(obs, lambda d: d.update(error="el router 46.1 login refused (6)"))
    assert "gives router 46.1 no reason in the caller's words" in invariants.status_honest(english)[0]
    healthy = doctored(obs, lambda d: d.update(estado="ok", dispositivos_activos=0, dispositivos=[]))
    assert "says router 46.1 is 'ok'; it cannot answer" in invariants.status_honest(healthy)[0]


def test_status_honest_catches_a_product_that_tells_the_technical_detail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fanout, "reason_text", lambda phrases, reason: f"{reason.value} error")
    obs = simulate_call(Scenario(asks=(CALLS["estado_routers"],), routers=TROUBLE, seed=SEED), SETTINGS)
    found = invariants.check(obs)
    assert "status_honest" in found and "no reason in the caller's words: 'login error'" in " ".join(
        found["status_honest"])


# --------------------------------------------------------------------------- output_true


def _first(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda d: d[key][0]


@pytest.mark.parametrize(("call", "lie", "words"), [
    ("dispositivos_activos", lambda d: d.update(dispositivos_activos=d["dispositivos_activos"] + 1), "bound leases"),
    ("dispositivos_activos", lambda d: d["dispositivos"][0].update(ip="172.31.0.99"), "is no bound lease of 152.1"),
    ("quien_tiene", lambda d: d["encontrado"][0].update(mac="02:00:00:00:00:01"), "router 26.1 has no"),
    ("quien_tiene", lambda d: d["encontrado"][0].update(router="152.1"), "router 152.1 has no"),
    ("quien_tiene", lambda d: d.update(encontrado=[]), "router 26.1 answered and has"),
    ("quien_tiene", lambda d: d["encontrado"][0].update(router="46.1"), "router 46.1, which did not answer"),
    ("quien_tiene_mac", lambda d: d["encontrado"][0].update(ip="172.16.0.1"), "router 147.3 has no 172.16.0.1"),
    ("sesion_pppoe", lambda d: d["sesiones"][0].update(ip="100.64.0.1"), "has no PPPoE session of"),
    ("sesion_pppoe", lambda d: d.update(sesiones=[], conectado=False), "router 188.2 answered and has"),
    ("sesion_pppoe", lambda d: d.update(conectado=False), "conectado is False with 1 sessions"),
    ("estado_routers", lambda d: _entry(d, "174.2").update(cpu_pct=99.0), "CPU is"),
    ("estado_routers", lambda d: _entry(d, "174.2").update(en_linea=False), "en_linea is False"),
    ("estado_routers", lambda d: _entry(d, "156.3").update(version="6.49.1"), "the output says '6.49.1'"),
    ("ping", lambda d: d.update(enviados=4), "3 pings were asked"),
    ("ping", lambda d: d.update(recibidos=d["recibidos"] - 1), "echoes from 8.8.8.8"),
    ("optica_sfp", lambda d: next(p for p in d["puertos"] if p["interfaz"] == "sfp-sfpplus1").update(veredicto="bien"),
     "yet the verdict is 'bien'"),
    ("optica_sfp", lambda d: next(p for p in d["puertos"] if p["interfaz"] == "sfp-sfpplus1").update(rx_dbm=-8.0),
     "receives -23.077"),
    ("optica_sfp", lambda d: next(p for p in d["puertos"] if p["interfaz"] == "sfp-sfpplus2").update(
        veredicto="recepción -40 dBm, crítica"), "rx-loss true"),
    ("log_router", lambda d: d["lineas"][0].update(mensaje="sfp-sfpplus9 link down"), "log has no line"),
    ("log_router", lambda d: d["lineas"].extend(d["lineas"][:1] * 8), "lines, 8 were asked"),
    ("trafico_interfaces", lambda d: d["interfaces"][0].update(rx_mbps=d["interfaces"][0]["rx_mbps"] * 2), "receives"),
    ("trafico_interfaces", lambda d: d["interfaces"][0].update(interfaz="ether1"), "is no SFP"),
    ("listar_routers", lambda d: d.update(routers_en_inventario=11), "the inventory has 12 routers"),
])
def test_output_true_catches(calls: dict[str, CallObservation], call: str, lie: Callable[[dict[str, Any]], None],
                             words: str) -> None:
    obs = doctored(calls[call], lie)
    found = invariants.check(obs)
    assert set(found) == {"output_true"}, found
    assert any(words in problem for problem in found["output_true"]), found


def test_output_true_judges_the_verdict_by_the_limits(calls: dict[str, CallObservation]) -> None:
    ports = {p["interfaz"]: p for p in output(calls["optica_sfp"])["puertos"]}
    assert "baja" in ports["sfp-sfpplus1"]["veredicto"] and "pérdida de señal" in ports["sfp-sfpplus2"]["veredicto"]
    assert invariants.output_true(calls["optica_sfp"]) == []


def test_output_true_catches_a_tool_that_counts_every_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    every = ReadCommand(Request("/ip/dhcp-server/lease/print", {".proplist": "address,mac-address,status"}))

    async def every_lease(self: ActiveDevices, ask: Any, args: dict[str, Any]) -> fanout.RouterAnswer:
        rows = await ask(every)  # waiting leases too
        return fanout.RouterAnswer({"dispositivos_activos": len(rows), "dispositivos": []})

    monkeypatch.setattr(ActiveDevices, "query", every_lease)
    obs = simulate_call(Scenario(asks=(CALLS["dispositivos_activos"],), routers=TROUBLE, seed=SEED), SETTINGS)
    found = invariants.check(obs)
    assert "output_true" in found and "bound leases" in found["output_true"][0]
    assert "answer_true" in found  # the caller heard the wrong count too


# --------------------------------------------------------------------------- progress_consistent


def test_progress_that_counts_a_failed_router_in_any_query_is_caught(calls: dict[str, CallObservation]) -> None:
    obs = calls["estado_routers"]
    query = obs.record.queries[0]  # type: ignore[union-attr]
    heard = obs.caller.heard[-1]
    fake = replace(heard, text="Sigo consultando: 3 de 4 routers ya respondieron.", start=query.started_at + 0.01,
                   end=query.started_at + 0.02)
    lying = replace(obs, caller=replace(obs.caller, heard=[*obs.caller.heard, fake]))
    found = invariants.check(lying)
    assert set(found) == {"progress_consistent"}, found
    assert any("only 2 could" in p and "failed routers counted as answered" in p for p in found["progress_consistent"])
    assert any("the estado_routers output says 2" in p for p in found["progress_consistent"])
    wrong_total = replace(fake, text="Sigo consultando: 1 de 12 routers ya respondieron.")
    flagged = invariants.progress_consistent(replace(obs, caller=replace(obs.caller, heard=[*obs.caller.heard, wrong_total])))
    assert flagged == [f"progress at {obs.t(fake.start):.2f} s said 1 of 12 routers; the estado_routers query asked 4"]


# --------------------------------------------------------------------------- read_only


@pytest.mark.parametrize(("words", "expected"), [
    (["/system/reboot"], ["not in mikrovoice's read-only allowlist", "'reboot' changes the router"]),
    (["/ip/address/add", "=address=10.0.0.1/24", "=interface=ether1"], ["allowlist", "'add' changes the router"]),
    (["/ppp/secret/print"], ["allowlist", "reads a menu that holds secrets"]),
    (["/user/print"], ["allowlist", "reads a menu that holds secrets"]),
    (["/interface/monitor-traffic", "=interface=ether1"], ["must carry ['once']", "without =once="]),
    (["/ping", "=address=8.8.8.8", "=count=100"], ["bad value for count", "a ping of 100 packets"]),
    (["/quit"], ["/quit is not in mikrovoice's read-only allowlist"]),
    (["/system/script/run", "=number=0"], ["allowlist", "'run' changes the router", "secrets"]),
    (["/export"], ["allowlist", "'export' changes the router"]),
])
def test_read_only_catches(calls: dict[str, CallObservation], words: list[str], expected: list[str]) -> None:
    obs = calls["listar_routers"]
    assert invariants.read_only(obs) == []
    journal = obs.routers["152.1"].journal
    journal.append((obs.started_at + 2.0, words))
    try:
        found = invariants.read_only(obs)
    finally:
        journal.pop()
    assert len(found) == len(expected) and all(e in f for e, f in zip(expected, found, strict=True)), found


def test_read_only_also_judges_on_its_own(monkeypatch: pytest.MonkeyPatch, calls: dict[str, CallObservation]) -> None:
    # An allowlist that let a write through would still be caught by the write-verb check.
    monkeypatch.setattr(invariants, "ALLOWED_COMMANDS", invariants.ALLOWED_COMMANDS | {"/interface/set"})
    monkeypatch.setattr(invariants, "check_allowed", lambda request: None)
    obs = calls["listar_routers"]
    obs.routers["152.1"].journal.append((obs.started_at + 2.0, ["/interface/set", "=numbers=ether1", "=disabled=yes"]))
    try:
        assert invariants.read_only(obs) == [
            "router 152.1 received ['/interface/set', '=numbers=ether1', '=disabled=yes'] at 2.00 s: 'set' changes "
            "the router"]
    finally:
        obs.routers["152.1"].journal.pop()


# --------------------------------------------------------------------------- call_ends


def test_a_router_still_asked_after_the_call_ended_is_caught(calls: dict[str, CallObservation]) -> None:
    obs = calls["dispositivos_activos"]
    assert obs.record is not None and invariants.call_ends(obs) == []
    journal = obs.routers["152.1"].journal
    journal.append((obs.record.ended_at + 1.0, ["/cancel", "=tag=7"]))  # cancelling is what it may do
    assert invariants.call_ends(obs) == []
    journal.append((obs.record.ended_at + 1.0, ["/ip/arp/print", "=.proplist=address"]))
    try:
        assert invariants.call_ends(obs) == ["router 152.1 was sent /ip/arp/print after the call ended"]
    finally:
        del journal[-2:]
