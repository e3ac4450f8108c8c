"""check-config: each router's login and the model's handshake, against the simulators; exit statuses."""

import socket
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import trio

from mikrovoice.checkconfig import CheckRow, check, main, render
from mikrovoice.config import RouterConfig, Settings
from mikrovoice.sim.realtime import ModelServer, SimModelConfig, serve_model
from mikrovoice.sim.routeros import FleetProfile, make_fleet, serve_fleet

QUICK = FleetProfile(count=2, seed=7, fast_s=(0.01, 0.02), slow=0)
KEY = "sk-test-right-key-0123456789"
WRONG_KEY = "sk-test-wrong-key-9876543210"


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def black_hole(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Accepts TCP and never says a word."""
    async def swallow(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(swallow, listeners)


async def test_each_router_and_the_model_gets_a_row(nursery: trio.Nursery) -> None:
    configs: list[RouterConfig] = await nursery.start(partial(serve_fleet, make_fleet(QUICK, password="pw")))
    model: ModelServer = await nursery.start(serve_model, "127.0.0.1", 0, SimModelConfig(api_key=KEY))
    silent_port = await nursery.start(black_hole)
    good, wrong_password = configs[0], replace(configs[1], password="not-the-password")
    nobody = RouterConfig("99.9", "127.0.0.1", closed_port())
    silent = RouterConfig("46.3", "127.0.0.1", silent_port)
    settings = Settings(routers=(good, wrong_password, nobody, silent),
                        realtime_url=f"ws://127.0.0.1:{model.port}/v1/realtime", api_key=WRONG_KEY)

    rows = await check(settings, timeout_s=1.0)

    assert [(r.what, r.where, r.ok) for r in rows] == [
        ("router 152.1", f"127.0.0.1:{good.port}", True),
        ("router 26.1", f"127.0.0.1:{wrong_password.port}", False),
        ("router 99.9", f"127.0.0.1:{nobody.port}", False),
        ("router 46.3", f"127.0.0.1:{silent_port}", False),
        ("model gpt-realtime-2.1", f"ws://127.0.0.1:{model.port}/v1/realtime", False),
    ]
    ok, login, unreachable, connect_timeout, refused = rows
    assert ok.result.startswith("logged in as admin; identity ")
    assert login.result.startswith("login: ")
    assert unreachable.result.startswith("unreachable: cannot connect to 127.0.0.1:")
    assert connect_timeout.result.startswith("connect_timeout: ") and 1000 <= connect_timeout.ms < 3000
    assert "HTTP 401 invalid_api_key" in refused.result
    table = render(rows)
    assert table.splitlines()[0].split() == ["check", "where", "status", "ms", "result"]
    assert [line.split()[3] for line in table.splitlines()[1:]] == ["ok", "FAILED", "FAILED", "FAILED", "FAILED"]
    for secret in (WRONG_KEY, WRONG_KEY[-4:], "not-the-password", "pw "):
        assert secret not in table

    rows = await check(replace(settings, routers=(good,), api_key=KEY), timeout_s=1.0)
    assert [(r.what, r.ok, r.result) for r in rows][1:] == [("model gpt-realtime-2.1", True, "session.created")]
    assert all(r.ok for r in rows)


async def test_a_model_without_a_key_is_not_dialled() -> None:
    rows = await check(Settings(api_key_env="NOC_OPENAI_KEY", realtime_url="wss://api.openai.com/v1/realtime"))
    assert rows == [CheckRow("model gpt-realtime-2.1", "wss://api.openai.com/v1/realtime", False,
                             "no API key: environment variable NOC_OPENAI_KEY is not set", 0)]


def test_an_invalid_file_is_exit_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[[router]]\nname = '152.1'\nhost = '10.0.152.1'\nport = 95036\n")
    assert main(str(path)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("mikrovoice: configuration error: [[router]] 152.1 port: expected an integer 1..65535, "
                   "got 95036\n")


def test_something_unreachable_is_exit_status_1(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", WRONG_KEY)
    monkeypatch.setenv("PW_152_1", "router-secret")
    path = tmp_path / "c.toml"
    path.write_text(f"[openai]\nurl = 'ws://127.0.0.1:{closed_port()}/v1/realtime'\n"
                    f"[[router]]\nname = '152.1'\nhost = '127.0.0.1'\nport = {closed_port()}\npassword_env = 'PW_152_1'\n"
                    "[[router]]\nname = 'lab'\nhost = '127.0.0.1'\nport = 1\npassword = 'inline-secret'\n")
    assert main(str(path), timeout_s=1.0) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == f"{path}: valid (2 router(s), 0 operator(s), no [auth])"
    assert [line.split()[:2] + line.split()[3:4] for line in lines[2:5]] == [
        ["router", "152.1", "FAILED"], ["router", "lab", "FAILED"], ["model", "gpt-realtime-2.1", "FAILED"]]
    assert "unreachable: cannot connect to 127.0.0.1:" in lines[2] and "cannot connect to" in lines[4]
    assert lines[5] == "0 of 3 checks work; 3 failed"
    assert lines[6].startswith("warning: no [auth] section")
    assert lines[7].startswith("warning: [[router]] lab password: written in the config file")
    for secret in (WRONG_KEY, "router-secret", "inline-secret"):
        assert secret not in out + err
