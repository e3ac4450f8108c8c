"""Every NOC tool against the fleet simulator: the answer matches the router's own data."""

import trio
import trio.testing

from mikrovoice.tools.optics import verdict
from tests.tools.harness import routers, world

NAMES = ("152.1", "152.2", "26.1", "46.3", "59.3")


def fleet() -> list:
    made = routers(*NAMES, latency_s=0.3)
    made[0].site = made[1].site = "Torre Norte"
    made[2].site = "Nodo Centro"
    return made


async def test_list_routers_and_sites(autojump_clock: trio.testing.MockClock) -> None:
    async with world(fleet()) as w:
        output, fan = await w.ask("listar_routers")
        site, _ = await w.ask("listar_routers", sitio="torre norte")
    assert fan.total == 0 and output["routers_en_inventario"] == 5
    assert output["sitios"]["Torre Norte"] == ["152.1", "152.2"]
    assert site["routers_en_inventario"] == 2 and site["resumen"].startswith("En torre norte hay 2 routers")


async def test_health_of_one_router_and_of_a_site(autojump_clock: trio.testing.MockClock) -> None:
    made = fleet()
    async with world(made) as w:
        one, _ = await w.ask("estado_routers", routers=["cuarenta y seis punto tres"])
        site, fan = await w.ask("estado_routers", routers=["el de la torre norte"])
    truth = made[3].table("/system/resource")[0]
    entry = one["routers"][0] if "routers" in one else None
    assert fan.routers == ("152.1", "152.2")
    assert one["routers_consultados"] == 1 and one["resumen"].startswith("El router 46.3 está en línea")
    assert f"CPU al {float(truth['cpu-load']):g}%" in one["resumen"]
    assert truth["version"].split(" ")[0] in one["resumen"]
    assert entry is None or entry["router"] == "46.3"
    assert site["routers_que_respondieron"] == 2


async def test_active_devices_are_the_bound_leases(autojump_clock: trio.testing.MockClock) -> None:
    made = fleet()
    async with world(made) as w:
        output, _ = await w.ask("dispositivos_activos", router="152 punto 1")
    bound = [lease for lease in made[0].table("/ip/dhcp-server/lease") if lease.get("status") == "bound"]
    assert output["router"] == "152.1" and output["dispositivos_activos"] == len(bound)
    assert {d["ip"] for d in output["dispositivos"]} <= {lease["address"] for lease in bound}


async def test_who_has_an_ip_finds_its_router_mac_and_name(autojump_clock: trio.testing.MockClock) -> None:
    made = fleet()
    lease = next(x for x in made[2].table("/ip/dhcp-server/lease") if x.get("status") == "bound")
    async with world(made) as w:
        by_ip, _ = await w.ask("quien_tiene", ip=lease["address"])
        by_mac, _ = await w.ask("quien_tiene", mac=lease["mac-address"].lower().replace(":", "-"))
        nobody, _ = await w.ask("quien_tiene", ip="10.255.255.254")
    found = by_ip["encontrado"][0]
    assert (found["router"], found["mac"]) == ("26.1", lease["mac-address"])
    assert by_ip["resumen"].startswith(f"La IP {lease['address']} la tiene {lease.get('host-name') or 'un equipo'}")
    assert by_mac["encontrado"][0]["ip"] == lease["address"] and by_mac["encontrado"][0]["router"] == "26.1"
    assert nobody["encontrado"] == [] and nobody["resumen"].startswith("Ninguno de los 5 routers que respondieron")


async def test_interface_traffic_by_pattern(autojump_clock: trio.testing.MockClock) -> None:
    made = fleet()
    async with world(made) as w:
        sfp, _ = await w.ask("trafico_interfaces", routers=["152.1"])
        ether1, _ = await w.ask("trafico_interfaces", routers=["152.1"], interfaces="ether1")
        stars, _ = await w.ask("trafico_interfaces", routers=["152.1"], interfaces="ether*")
    sfp_names = {i["name"] for i in made[0].interfaces if i["name"].startswith(("sfp", "qsfp", "combo"))
                 and i.get("disabled") != "true"}
    assert {r["interfaz"] for r in sfp["interfaces"]} == sfp_names
    assert [r["interfaz"] for r in ether1["interfaces"]] == ["ether1"]
    assert {r["interfaz"] for r in stars["interfaces"]} == {i["name"] for i in made[0].interfaces
                                                            if i["name"].startswith("ether") and i.get("disabled") != "true"}


async def test_optics_verdict_follows_the_readings(autojump_clock: trio.testing.MockClock) -> None:
    made = fleet()
    async with world(made) as w:
        output, fan = await w.ask("optica_sfp")
    compared = 0
    for name, outcome in fan.outcomes.items():
        for port in outcome.data.get("puertos", []):
            truth = made[NAMES.index(name)].optics_at(port["interfaz"], 0)
            expected, _ = verdict({"name": port["interfaz"], **truth})
            assert port["veredicto"] == expected["veredicto"], (name, port)
            compared += 1
    assert compared == sum(1 for r in made for i in r.interfaces if i["name"].startswith(("sfp", "qsfp", "combo"))
                           and i.get("disabled") != "true")
    assert output["puertos_revisados"] >= 1 and "resumen" in output


async def test_pppoe_session_found_on_its_router_and_not_found(autojump_clock: trio.testing.MockClock) -> None:
    made = fleet()
    owner = next(r for r in made if r.ppp_active)
    session = owner.ppp_active[0]
    async with world(made) as w:
        found, _ = await w.ask("sesion_pppoe", usuario=session["name"])
        missing, _ = await w.ask("sesion_pppoe", usuario="nadie.conocido")
    assert found["conectado"] and found["sesiones"][0]["router"] == owner.name
    assert found["sesiones"][0]["ip"] == session["address"]
    assert not missing["conectado"] and "en los 5 routers que respondieron" in missing["resumen"]


async def test_ping_takes_count_seconds_and_reports_loss(autojump_clock: trio.testing.MockClock) -> None:
    async with world(fleet()) as w:
        start = trio.current_time()
        ok, _ = await w.ask("ping", router="26.1", destino="8.8.8.8", cantidad=3)
        took = trio.current_time() - start
        dead, _ = await w.ask("ping", router="26.1", destino="192.0.2.77", cantidad=2)
    assert 3.0 <= took < 4.0
    assert (ok["enviados"], ok["recibidos"], ok["perdida_pct"]) == (3, 3, 0) and ok["rtt_promedio_ms"] > 0
    assert (dead["recibidos"], dead["perdida_pct"], dead["estado"]) == (0, 100, "degradado")


async def test_router_log_by_topic(autojump_clock: trio.testing.MockClock) -> None:
    made = fleet()
    async with world(made) as w:
        output, _ = await w.ask("log_router", router="59.3", tema="interfaz", lineas=3)
        everything, _ = await w.ask("log_router", router="59.3")
    lines = made[4].table("/log")
    about = [x for x in lines if "interface" in x.get("topics", "").split(",") or "interfaz" in x.get("message", "")]
    assert output["coincidencias"] >= len(about) and len(output["lineas"]) == min(3, output["coincidencias"])
    assert all("interface" in x["temas"] for x in output["lineas"])
    assert len(everything["lineas"]) == 8


async def test_problems_the_caller_hears_instead_of_a_query(autojump_clock: trio.testing.MockClock) -> None:
    async with world(fleet()) as w:
        assert w.problem("dispositivos_activos", router="torre norte") == "¿Cuál de ellos: el 152.1 (Torre Norte) o el 152.2 (Torre Norte)?"
        assert "No conozco el router '99.9'" in (w.problem("estado_routers", routers=["99.9"]) or "")
        assert "no es una dirección IP válida" in (w.problem("quien_tiene", ip="10.0.0.300") or "")
        assert w.problem("quien_tiene", ip="10.0.0.1", mac="AA:BB:CC:DD:EE:FF") == "dime una IP o una MAC (una sola)"
        assert "'cantidad' va de 1 a 10" == w.problem("ping", router="26.1", destino="8.8.8.8", cantidad=500)
        assert "sesion_pppoe no acepta" in (w.problem("sesion_pppoe", usuario="x", borrar=True) or "")
        assert "no existe la herramienta" in (w.problem("reiniciar_router", router="26.1") or "")


async def test_a_router_is_asked_its_tables_at_once_and_one_failure_fails_it_cleanly(
        autojump_clock: trio.testing.MockClock) -> None:
    made = routers("152.1", "26.1", latency_s=2.0)
    made[1].fault = "drops_mid_query"
    async with world(made) as w:
        start = trio.current_time()
        output, _ = await w.ask("dispositivos_activos", router="152.1")
        took = trio.current_time() - start
        broken, fan = await w.ask("dispositivos_activos", router="26.1")
    assert took < 2.5  # leases, ARP, wireless and wifi in parallel: one latency, not four
    assert output["estado"] == "ok"
    assert broken["estado"] == "desconocido" and broken["error"] == "el router 26.1 cortó la conexión a mitad de la respuesta"
    assert fan.outcomes["26.1"].reason is not None and fan.outcomes["26.1"].reason.value == "dropped"


async def test_the_operators_optics_thresholds_decide_the_verdict(autojump_clock: trio.testing.MockClock) -> None:
    made = fleet()
    async with world(made) as strict, world(routers(*NAMES, latency_s=0.3), optics_limits={
            "rx_low_dbm": -40.0, "rx_critical_dbm": -45.0, "tx_low_dbm": -40.0, "temperature_high_c": 200.0}) as lax:
        usual, _ = await strict.ask("optica_sfp")
        long_reach, _ = await lax.ask("optica_sfp")
    weak = [p for p in usual["puertos"] if "recepción" in p["veredicto"]]
    assert weak, "the seeded fleet has weak optics"
    assert not [p for p in long_reach["puertos"] if "recepción" in p["veredicto"] and "saturada" not in p["veredicto"]]
