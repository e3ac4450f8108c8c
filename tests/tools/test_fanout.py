"""Fan-out semantics on the virtual clock: deadlines per router and per question, outcomes that never
pass a silent router off as a healthy zero, progress counts, sharing between calls, cancellation."""

import trio
import trio.testing

from tests.tools.harness import routers, world

TWELVE = ("152.1", "26.1", "46.3", "59.3", "71.2", "88.1", "90.1", "101.2", "120.3", "133.1", "140.2", "200.1")


async def test_a_black_hole_costs_the_connect_timeout_not_a_minute(autojump_clock: trio.testing.MockClock) -> None:
    fleet = routers(*TWELVE[:4], latency_s=0.5)
    fleet[2].fault = "hangs"  # accepts TCP, never says a word
    async with world(fleet) as w:
        start = trio.current_time()
        output, fan = await w.ask("estado_routers")
        assert trio.current_time() - start == 5.0  # [routeros] connect_timeout_s, not router_timeout_s
    outcome = fan.outcomes["46.3"]
    assert outcome.status == "unknown" and outcome.reasons == ("no contestó al conectarse",)
    assert "login" in outcome.detail or "connect" in outcome.detail
    assert output["routers_consultados"] == 4 and output["routers_que_respondieron"] == 3
    assert output["sin_respuesta"] == {"46.3": "no contestó al conectarse"}
    assert "46.3 (no contestó al conectarse)" in output["resumen"]


async def test_each_failure_has_its_spanish_reason_and_is_never_counted_as_answered(
        autojump_clock: trio.testing.MockClock) -> None:
    fleet = routers(*TWELVE[:6], latency_s=0.3)
    fleet[1].fault = "refuses_login"
    fleet[2].fault = "hangs_after_login"
    fleet[3].fault = "drops_mid_query"
    async with world(fleet, unreachable=("88.1",)) as w:
        output, fan = await w.ask("trafico_interfaces")
        assert trio.current_time() == 30.0  # hangs_after_login: the router's own deadline
    reasons = {name: o.reasons[0] for name, o in fan.outcomes.items() if o.status == "unknown"}
    assert reasons == {"26.1": "rechazó el usuario o la contraseña de consulta", "46.3": "no respondió a tiempo",
                       "59.3": "cortó la conexión a mitad de la respuesta", "88.1": "no está alcanzable por la red"}
    assert fan.answered == 2 and fan.failed == 4 and output["routers_que_respondieron"] == 2
    assert {r["router"] for r in output["interfaces"]} <= {"152.1", "71.2"}
    assert all(r["estado"] == "desconocido" for r in output["routers"][:4])


async def test_the_question_deadline_reports_what_arrived(autojump_clock: trio.testing.MockClock) -> None:
    fleet = routers(*TWELVE[:3], latency_s=0.5)
    fleet[2].latency_s = 12.0
    async with world(fleet) as w:
        output, fan = await w.ask("trafico_interfaces", timeout_s=8.0)
        assert trio.current_time() == 8.0
    assert fan.pending == ["46.3"] and output["sin_terminar"] == ["46.3"]
    assert output["routers_que_respondieron"] == 2 and "se cortó a los 8 segundos" in output["resumen"]


async def test_ten_calls_asking_the_same_cost_one_query_per_router(autojump_clock: trio.testing.MockClock) -> None:
    fleet = routers(*TWELVE, latency_s=1.5)
    async with world(fleet) as w:
        outputs = []

        async def caller() -> None:
            outputs.append((await w.ask("trafico_interfaces"))[0])

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(caller)
        took = trio.current_time() - start
        assert w.tools.fleet.pool.stats.connects == 12
    assert took < 3.5  # one call's time (interface list + monitor), not ten
    for name in TWELVE:
        monitors = [s for s in w.wire(name) if s[0] == "/interface/monitor-traffic"]
        assert len(monitors) == (1 if w.routers[name].sfp_count else 0), (name, len(monitors))
        assert sum(1 for s in w.wire(name) if s[0] == "/interface/print") == 1
    assert len({o["total_rx_mbps"] for o in outputs}) == 1 and outputs[0]["routers_que_respondieron"] == 12


async def test_a_cached_answer_says_how_old_it_is(autojump_clock: trio.testing.MockClock) -> None:
    fleet = routers("152.1", latency_s=0.5)
    async with world(fleet) as w:
        first, _ = await w.ask("dispositivos_activos", router="152.1")
        await trio.sleep(10)
        second, _ = await w.ask("dispositivos_activos", router="152.1")
        await trio.sleep(25)  # leases: 30 s
        third, _ = await w.ask("dispositivos_activos", router="152.1")
    assert "datos_de_hace_s" not in first and 10 <= second["datos_de_hace_s"] <= 13 and "datos_de_hace_s" not in third
    assert first["dispositivos_activos"] == second["dispositivos_activos"]


async def test_a_caller_hanging_up_cancels_the_router_commands(autojump_clock: trio.testing.MockClock) -> None:
    fleet = routers("152.1", "26.1", latency_s=0.2)
    async with world(fleet) as w:
        call = w.tools.parse_call("c", "ping", '{"router": "26.1", "destino": "8.8.8.8", "cantidad": 10}')
        fan = w.tools.plan(call)
        with trio.move_on_after(3.0):  # the caller hangs up 3 s into a 10 s ping
            await w.tools.run(call, fan)
        await trio.sleep(1)
        wire = w.wire("26.1")
        ping = next(s for s in wire if s[0] == "/ping")
        tag = next(word for word in ping if word.startswith(".tag="))[5:]
        assert ["/cancel", f"=tag={tag}"] == [word for word in wire[-1] if not word.startswith(".tag=")]
        # the connection keeps serving
        output, _ = await w.ask("estado_routers", routers=["26.1"])
        assert output["routers_que_respondieron"] == 1
        assert w.tools.fleet.pool.stats.connects == 1


async def test_a_password_outside_latin1_logs_in(autojump_clock: trio.testing.MockClock) -> None:
    fleet = routers("152.1")
    fleet[0].password = "contraseña€".encode().decode("latin-1")  # what RouterOS stored: the UTF-8 bytes
    async with world(fleet, passwords={"152.1": "contraseña€"}) as w:
        output, fan = await w.ask("estado_routers")
    assert fan.outcomes["152.1"].status != "unknown", fan.outcomes["152.1"]
