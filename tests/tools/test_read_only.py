"""Read-only by construction, proven on the wire: every tool driven with hostile arguments, and
every sentence that reached a (simulated) router checked by rules independent of the allowlist."""

import json
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mikrovoice.routeros.protocol import Request
from tests.tools.harness import routers, world

#: What a read looks like, written without looking at commands.RULES.
READ_VERBS = {"print", "monitor-traffic", "monitor", "ping"}
SECRET_MENUS = ("/ppp/secret", "/user", "/file", "/system/script", "/certificate", "/ip/ipsec", "/radius")
HOSTILE = [
    "/system/reboot", "/interface/set", "=disabled=yes", "?#|", ".tag=5", "sfp1\n/interface/set", "sfp1\x00",
    "8.8.8.8\x00", "8.8.8.8;/system/reboot", "1000000", "-1", "ciento cincuenta y dos punto uno", "152.1", "26.1",
    "torre norte", "*", "sfp*", "sfp", "ether1,=.id=*1", "ether1=x", "juan.perez", "juan perez", "🙂", "contraseña€",
    "", " ", "AA:BB:CC:DD:EE:FF", "aa-bb-cc-dd-ee-ff", "10.0.0.1", "fe80::1%eth0", "::1", "a" * 300,
    "=.proplist=password", "?name=admin", "interfaz", "pppoe", "R-152-1",
]
TOOLS = ["listar_routers", "estado_routers", "dispositivos_activos", "quien_tiene", "trafico_interfaces",
         "optica_sfp", "sesion_pppoe", "ping", "log_router", "cancelar_consulta", "no_existe"]
KEYS = ["router", "routers", "interfaces", "ip", "mac", "usuario", "destino", "cantidad", "tema", "lineas", "sitio",
        "count", ".tag", "=once", "numbers"]
values = st.recursive(
    st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40), st.integers(-10**12, 10**12), st.none(), st.booleans(),
              st.floats(allow_nan=True)),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=6,
)
arguments = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), values, max_size=4).map(json.dumps),
    st.sampled_from(["", "null", "[]", "{", '"x"', "{}" + "x" * 10, '{"router": ' + '"a",' * 3000 + '"b"}']),
)


def check_sentence(words: list[str]) -> None:
    request = Request.parse(words)
    command = request.command
    if command in ("/login", "/cancel"):
        return
    verb = command.rsplit("/", 1)[-1]
    assert verb in READ_VERBS, words
    assert not command.startswith(SECRET_MENUS), words
    if verb.startswith("monitor"):
        assert request.attributes.get("once") in ("", "yes", "true"), words
    if verb == "ping":
        assert 1 <= int(request.attributes["count"]) <= 10, words
    assert all(not q.startswith("?#") for q in request.queries), words
    assert not {"follow", "follow-only", "interval", "duration", "file", "password"} & set(request.attributes), words
    for word in words:
        assert all(0x20 <= ord(c) < 0x7F for c in word), words


async def drive(tool: str, raw: str) -> list[list[str]]:
    fleet = routers("152.1", "152.2", "26.1", latency_s=0.2, site="Torre Norte")
    async with world(fleet) as w:
        call = w.tools.parse_call("hostile", tool, raw)  # never raises
        if call.problem is None and not call.cancels:
            fan = w.tools.plan(call)
            with trio.move_on_after(60):
                await w.tools.run(call, fan)
            output: Any = w.tools.report(call, fan, None)
            json.dumps(output)  # what the model is told is JSON
        return [words for r in fleet for _, words in r.journal]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tool=st.sampled_from(TOOLS), raw=arguments)
def test_hostile_arguments_never_put_anything_but_reads_on_the_wire(tool: str, raw: str) -> None:
    sentences = trio.run(drive, tool, raw, clock=trio.testing.MockClock(autojump_threshold=0))
    for words in sentences:
        check_sentence(words)


def test_the_checker_itself_refuses_writes() -> None:
    for words in (["/interface/set", "=numbers=ether1", "=disabled=yes"], ["/ppp/secret/print"],
                  ["/interface/monitor-traffic", "=interface=sfp1"], ["/ping", "=address=1.1.1.1", "=count=100"],
                  ["/interface/print", "?#|"], ["/log/print", "=follow="], ["/system/reboot"]):
        try:
            check_sentence(words)
        except AssertionError:
            continue
        raise AssertionError(f"the independent checker let {words} through")
