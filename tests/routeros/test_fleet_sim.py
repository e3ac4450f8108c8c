"""The RouterOS simulator against the reference client: librouteros (blocking, in a thread) over
real loopback TCP and TLS. What librouteros reads must be what the router's tables hold."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import librouteros
import pytest
import trio
import trustme
from librouteros.exceptions import MultiTrapError, TrapError
from librouteros.protocol import parse_word
from librouteros.query import Key

from mikrovoice.config import RouterConfig
from mikrovoice.sim.routeros import FleetProfile, SimRouter, make_fleet, serve_fleet

R = TypeVar("R")
QUICK = FleetProfile(count=12, seed=7, fast_s=(0.01, 0.02), slow=0)


def casted(row: dict[str, str]) -> dict[str, object]:
    """A row as librouteros returns it (``true`` -> True, ``"7"`` -> 7)."""
    return dict(parse_word(f"={k}={v}") for k, v in row.items())


def pick(routers: list[SimRouter], test: Callable[[SimRouter], bool]) -> SimRouter:
    found = [r for r in routers if test(r)]
    assert found, "the seed's fleet lacks the router this test needs"
    return found[0]


async def with_fleet(routers: list[SimRouter], client: Callable[[list[RouterConfig]], R],
                     **serve: Any) -> tuple[R, list[RouterConfig]]:
    """Serve ``routers`` on loopback, run the blocking ``client(configs)`` in a thread, stop serving."""
    async with trio.open_nursery() as nursery:
        configs: list[RouterConfig] = await nursery.start(partial(serve_fleet, routers, **serve))
        result = await trio.to_thread.run_sync(client, configs)
        nursery.cancel_scope.cancel()
    return result, configs


def connect(config: RouterConfig, password: str = "pw", **kwargs: Any) -> Any:
    return librouteros.connect(config.host, config.username, password, port=config.port, timeout=10,
                               encoding="latin-1", **kwargs)


async def test_login_identity_and_the_login_in_the_log() -> None:
    routers = make_fleet(QUICK, password="pw")

    def client(configs: list[RouterConfig]) -> tuple[list[Any], str]:
        api = connect(configs[0])
        identity = list(api("/system/identity/print"))
        api.close()
        with pytest.raises(TrapError) as refused:
            connect(configs[0], password="wrong")
        return identity, str(refused.value)

    (identity, refused), configs = await with_fleet(routers, client)
    assert identity == [{"name": "R-152-1"}]
    assert refused == "invalid user name or password (6)"
    messages = [m["message"] for m in routers[0].table("/log")[-3:]]
    assert messages == ["user admin logged in from 127.0.0.1 via api", "user admin logged out from 127.0.0.1 via api",
                        "login failure for user admin from 127.0.0.1 via api"]
    assert routers[0].sessions == 0


async def test_serve_fleet_hands_back_the_inventory() -> None:
    routers = make_fleet(QUICK)
    _, configs = await with_fleet(routers, lambda configs: 0)
    assert [c.name for c in configs] == [r.name for r in routers][:12] and configs[0].name == "152.1"
    assert configs[0].site == "Torre Norte" and configs[0].aliases == ("R-152-1",)
    assert all(c.site == r.site and c.aliases == (r.identity,) and not c.tls for c, r in zip(configs, routers, strict=True))
    assert len({c.port for c in configs}) == 12


async def test_every_menu_reads_as_the_tables_hold_it_with_proplist_and_query() -> None:
    routers = make_fleet(QUICK, password="pw")
    chosen = [pick(routers, lambda r: r.wireless_package == "wireless"), pick(routers, lambda r: r.wireless_package == "wifi"),
              pick(routers, lambda r: r.routerboard is None)]
    indexes = [routers.index(r) for r in chosen]

    def client(configs: list[RouterConfig]) -> dict[tuple[str, str], list[Any]]:
        seen: dict[tuple[str, str], list[Any]] = {}
        for index in indexes:
            router, api = routers[index], connect(configs[index])
            for menu in sorted(router.menus()):
                path = api.path(*menu.split("/")[1:])
                seen[router.name, menu] = list(path)
                rows = router.table(menu)
                if rows:
                    keys = [k for k in rows[0] if k != "uptime"][:3]
                    key = keys[min(1, len(keys) - 1)]  # the log's: time, a date for entries before today
                    seen[router.name, menu + "?"] = list(path.select(*map(Key, keys)).where(Key(key) == rows[0][key]))
            api.close()
        return seen

    seen, _ = await with_fleet(routers, client)
    for router in chosen:
        for menu in router.menus():
            rows = router.table(menu)
            if menu not in ("/system/resource", "/log"):  # uptime moves; the log grew by our login
                assert seen[router.name, menu] == [casted(r) for r in rows], menu
            else:
                assert len(seen[router.name, menu]) in (len(rows), len(rows) - 1), menu
            if rows:
                keys = [k for k in rows[0] if k != "uptime"][:3]
                key = keys[min(1, len(keys) - 1)]
                want = [casted({k: r[k] for k in keys if k in r}) for r in rows if r.get(key) == rows[0][key]]
                assert seen[router.name, menu + "?"] == want, menu
    assert len(seen[chosen[0].name, "/interface/wireless/registration-table"]) > 0
    assert seen[chosen[2].name, "/system/health"] == []  # a CHR has no sensors: !empty, which librouteros skips


async def test_traps_as_librouteros_raises_them() -> None:
    routers = make_fleet(QUICK, password="pw")
    wifi = routers.index(pick(routers, lambda r: r.wireless_package == "wifi"))
    chr_ = routers.index(pick(routers, lambda r: r.routerboard is None))
    routers[0].can_test = False

    def client(configs: list[RouterConfig]) -> list[tuple[str, str, object]]:
        out: list[tuple[str, str, object]] = []
        calls: list[tuple[int, str, dict[str, Any]]] = [
            (0, "/interface/print", {"bogus": "1"}), (0, "/ip/arp/set", {"numbers": "0", "disabled": True}),
            (0, "/system/reboot", {}), (0, "/interface/frobnicate", {}),
            (0, "/interface/monitor-traffic", {"interface": "sfp9", "once": True}),
            (0, "/interface/ethernet/monitor", {"numbers": "bridge-lan", "once": True}),
            (0, "/ping", {"address": "10.0.0.1", "count": 1}),
            (wifi, "/interface/wireless/registration-table/print", {}),
            (chr_, "/system/routerboard/print", {}), (0, "/caps-man/interface/print", {}),
        ]
        for index, command, args in calls:
            api = connect(configs[index])
            try:
                list(api(command, **args))
                out.append((command, "answered", None))
            except MultiTrapError as exc:
                out.append((command, str(exc), len(exc.traps)))
            except TrapError as exc:
                out.append((command, str(exc), exc.category))
            api.close()
        return out

    out, _ = await with_fleet(routers, client)
    assert out == [
        ("/interface/print", "unknown parameter bogus", None),
        ("/ip/arp/set", "not enough permissions (9)", None),
        ("/system/reboot", "not enough permissions (9)", None),
        ("/interface/frobnicate", "no such command", None),
        ("/interface/monitor-traffic", "input does not match any value of interface", 1),
        ("/interface/ethernet/monitor", "no such item", None),
        ("/ping", "not enough permissions (9)", None),
        ("/interface/wireless/registration-table/print", "no such command or directory (wireless), no such command prefix", 2),
        ("/system/routerboard/print", "no such command or directory (routerboard), no such command prefix", 2),
        ("/caps-man/interface/print", "no such command or directory (caps-man), no such command prefix", 2),
    ]


async def test_no_rows_is_an_empty_list_before_and_after_7_18() -> None:
    routers = make_fleet(QUICK, password="pw")
    routers[1].pre_7_18, routers[0].pre_7_18 = True, False

    def client(configs: list[RouterConfig]) -> list[list[Any]]:
        out = []
        for config in configs[:2]:
            api = connect(config)
            out.append(list(api.path("ip", "arp").select(Key("address")).where(Key("address") == "203.0.113.9")))
            out.append(list(api("/ip/arp/print", **{"count-only": True})))
            api.close()
        return out

    out, _ = await with_fleet(routers, client)
    assert out == [[], [{"ret": len(routers[0].arp)}], [], [{"ret": len(routers[1].arp)}]]


async def test_monitors_once() -> None:
    fleet = make_fleet(FleetProfile(count=40, seed=7, fast_s=(0.01, 0.02), slow=0), password="pw")
    router = pick(fleet, lambda r: any(o.get("sfp-module-present") == "false" for o in r.optics.values())
                  and any(o.get("sfp-rx-loss") == "true" for o in r.optics.values()))
    absent = next(n for n, o in router.optics.items() if o.get("sfp-module-present") == "false")
    lost = next(n for n, o in router.optics.items() if o.get("sfp-rx-loss") == "true")
    healthy = next(n for n, o in router.optics.items() if o.get("sfp-rx-loss") == "false")
    ports = [i["name"] for i in router.interfaces if i["type"] == "ether"]
    names = [healthy, "ether1", "bridge-lan"]

    def client(configs: list[RouterConfig]) -> tuple[list[Any], list[Any]]:
        api = connect(configs[0])
        traffic = list(api("/interface/monitor-traffic", interface=",".join(names), once=True))
        optics = list(api("/interface/ethernet/monitor", numbers=f"{healthy},{absent},{lost},0", once=True))
        api.close()
        return traffic, optics

    (traffic, optics), _ = await with_fleet([router], client)
    assert [row["name"] for row in traffic] == names
    assert [(row["rx-bits-per-second"], row["tx-bits-per-second"], row[".section"]) for row in traffic] == [
        (*router.traffic[n], 0) for n in names]
    rows = {row["name"]: row for row in optics[:3]}
    assert optics[3]["name"] == ports[0]  # print-order index 0
    assert rows[healthy]["status"] == "link-ok" and rows[healthy]["sfp-rx-power"] == router.optics[healthy]["sfp-rx-power"]
    assert rows[healthy]["rate"] in ("1Gbps", "10Gbps", "25Gbps") and -12.0 <= float(rows[healthy]["sfp-rx-power"]) <= -5.0
    assert rows[absent]["sfp-module-present"] is False and not any(
        k.startswith("sfp-") and k != "sfp-module-present" for k in rows[absent]) and "rate" not in rows[absent]
    assert rows[lost]["sfp-rx-loss"] is True and rows[lost]["status"] == "no-link" and "rate" not in rows[lost]
    copper = {i["name"] for i in router.interfaces if i["type"] == "ether" and not i["name"].startswith("sfp")}
    assert all(not any(k.startswith("sfp-") for k in router.optics[n]) for n in copper)


async def test_ping_takes_count_times_interval_of_wall_time() -> None:
    routers = make_fleet(QUICK, password="pw")
    router = routers[0]

    def client(configs: list[RouterConfig]) -> tuple[float, list[Any], list[Any]]:
        api = connect(configs[0])
        start = time.monotonic()
        rows = list(api("/ping", address="8.8.8.8", count=3, interval="0.2"))
        took = time.monotonic() - start
        dead = list(api("/ping", address="10.255.3.4", count=2, interval="100ms"))
        api.close()
        return took, rows, dead

    (took, rows, dead), _ = await with_fleet(routers, client)
    assert 0.6 <= took < 1.5
    rtts = [router.ping_rtt_us("8.8.8.8", seq) for seq in range(3)]
    assert all(rtts) and [r["seq"] for r in rows] == [0, 1, 2] and [r["sent"] for r in rows] == [1, 2, 3]
    assert rows[2]["received"] == 3 and rows[2]["packet-loss"] == 0 and rows[2]["size"] == 56
    assert dead == [{"seq": 0, "host": "10.255.3.4", "status": "timeout", "sent": 1, "received": 0, "packet-loss": 100},
                    {"seq": 1, "host": "10.255.3.4", "status": "timeout", "sent": 2, "received": 0, "packet-loss": 100}]


async def test_api_ssl(tmp_path: Path) -> None:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    ca_file = str(tmp_path / "ca.pem")
    ca.cert_pem.write_to_path(ca_file)
    routers = make_fleet(FleetProfile(count=2, seed=7, fast_s=(0.01, 0.02), slow=0), password="pw")

    def client(configs: list[RouterConfig]) -> list[Any]:
        with socket.create_connection(("127.0.0.1", configs[1].port), timeout=10) as plain:  # no TLS: dropped
            plain.sendall(b"\x06/login\x00")
            assert plain.recv(100) == b""
        api = connect(configs[1], ssl_wrapper=partial(trusting.wrap_socket, server_hostname="127.0.0.1"))
        rows = list(api("/system/identity/print"))
        api.close()
        return rows

    rows, configs = await with_fleet(routers, client, ssl_context=server, ca_file=ca_file)
    assert rows == [{"name": "R-26-1"}]
    assert (configs[1].tls, configs[1].tls_verify, configs[1].ca_file) == (True, True, ca_file)


async def test_three_hundred_routers_are_made_fast_and_served_on_loopback() -> None:
    start = time.perf_counter()
    routers = make_fleet(FleetProfile(count=300, seed=7, fast_s=(0.01, 0.02), slow=0), password="pw")
    assert time.perf_counter() - start < 1.0

    def client(configs: list[RouterConfig]) -> list[str]:
        out = []
        for config in (configs[0], configs[150], configs[-1]):
            api = connect(config)
            out.append(list(api("/system/identity/print"))[0]["name"])
            api.close()
        return out

    names, configs = await with_fleet(routers, client)
    assert len({c.port for c in configs}) == 300
    assert names == [routers[i].identity for i in (0, 150, 299)]
