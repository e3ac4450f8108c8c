"""The read-only allowlist: what it builds, and what it refuses to build or send."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mikrovoice.routeros import commands
from mikrovoice.routeros.commands import CommandNotAllowed, check_allowed
from mikrovoice.routeros.protocol import Request

BUILT = [
    commands.identity(), commands.resource(), commands.health(), commands.interfaces(),
    commands.monitor_traffic(["sfp-sfpplus1", "sfp-sfpplus2"]), commands.ethernet_monitor(["sfp1"]),
    commands.bound_leases(), commands.leases_for(address="10.20.3.15"), commands.leases_for(mac="AA:BB:CC:DD:EE:FF"),
    commands.arp(), commands.arp(address="10.0.0.1"), commands.bridge_hosts(mac="AA:BB:CC:DD:EE:FF"),
    commands.wireless_registrations(), commands.wifi_registrations(), commands.ppp_active(name="juan.perez"),
    commands.log(), commands.ping("8.8.8.8", 4),
]


@pytest.mark.parametrize("command", BUILT, ids=lambda c: c.request.command)
def test_every_constructor_builds_an_allowed_read(command: commands.ReadCommand) -> None:
    check_allowed(command.request)
    verb = command.request.command.rsplit("/", 1)[-1]
    assert verb in ("print", "monitor-traffic", "monitor", "ping")
    if verb.startswith("monitor"):
        assert "once" in command.request.attributes  # a monitor without once never ends


def test_the_exact_words_of_a_few_commands() -> None:
    assert commands.ping("8.8.8.8", 4).request.encode() == Request("/ping", {"address": "8.8.8.8", "count": "4"}).encode()
    assert commands.leases_for(address="10.20.3.15").request.queries == ("?address=10.20.3.15",)
    assert commands.monitor_traffic(["sfp1"]).request.attributes["interface"] == "sfp1"
    assert commands.ping("8.8.8.8", 10).takes_s == 10.0 and commands.log().takes_s == 0.0
    assert commands.ping("8.8.8.8", 1).family is None and commands.monitor_traffic(["a"]).family == "traffic"


@pytest.mark.parametrize(
    "request_",
    [
        Request("/interface/set", {"numbers": "ether1", "disabled": "yes"}),
        Request("/system/reboot"),
        Request("/ppp/secret/print"),  # holds passwords
        Request("/file/print"),
        Request("/interface/monitor-traffic", {"interface": "sfp1"}),  # no once: streams forever
        Request("/interface/print", {"follow": ""}),
        Request("/interface/print", {}, ("?#|",)),
        Request("/interface/print", {}, ("?comment=x",)),
        Request("/ip/arp/print", {".proplist": "address"}, ("?address=not-an-ip",)),
        Request("/ping", {"address": "8.8.8.8", "count": "11"}),
        Request("/ping", {"address": "8.8.8.8"}),
        Request("/ping", {"address": "8.8.8.8; /system/reboot", "count": "1"}),
        Request("/interface/monitor-traffic", {"interface": "sfp1\n/system/reboot", "once": ""}),
        Request("/ppp/active/print", {}, ("?name=juan\x00",)),
        Request("/interface/print", {".proplist": "name", "=x": "y"}),
        Request("/cancel", {"tag": "x"}),
        Request("/login", {"name": "a", "password": "b", "response": "00"}),
        Request("/interface/print", tag="x"),
    ],
)
def test_what_is_refused(request_: Request) -> None:
    with pytest.raises(CommandNotAllowed):
        check_allowed(request_)


@given(st.text(max_size=80))
def test_hostile_values_never_build_a_command_outside_the_allowlist(text: str) -> None:
    for build in (lambda: commands.monitor_traffic([text]), lambda: commands.ethernet_monitor([text]),
                  lambda: commands.ppp_active(name=text), lambda: commands.leases_for(address=text),
                  lambda: commands.arp(mac=text), lambda: commands.ping(text, 1)):
        try:
            command = build()
        except ValueError:
            continue
        check_allowed(command.request)
        for value in (*command.request.attributes.values(), *command.request.queries):
            assert all(0x20 <= ord(c) < 0x7F for c in value)  # what passes is plain printable text


def test_a_password_that_is_not_latin1_logs_in_as_utf8_bytes() -> None:
    request = commands.login("noc", "contraseña€")
    raw = request.encode()
    assert "contraseña€".encode() in raw and b"=name=noc" in raw
