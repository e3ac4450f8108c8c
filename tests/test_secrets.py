"""Secrets never leave: the OpenAI key, the router passwords and the operators' PINs appear in no
log line (text or JSON, at debug level), no traceback, no simulator transcript, no metric, no
``--json`` output and no ``check-config`` table.

One call is run with every secret in play (a PIN typed by DTMF, a key the model checks, a router
password the routers check), and a bug is injected so that a traceback is logged too; then
everything the service and the simulators wrote is scanned for each secret.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from mikrovoice import logs
from mikrovoice.call.session import CallSession
from mikrovoice.config import AuthSettings, Operator, Settings
from mikrovoice.demo import DEMO_FLEET, SEED_QUESTIONS
from mikrovoice.ops import Metrics
from mikrovoice.service import CallService, ServiceStats, serve_calls, start_simulated_peers
from mikrovoice.sim.asterisk import AsteriskCaller, CallerScript
from mikrovoice.sim.realtime import SimModelConfig, TranscriptFile

API_KEY = "sk-proj-SECRETKEY0123456789"
ROUTER_PASSWORD = "Rtr-S3cret-pw!"
PIN = "740219"
SECRETS = (API_KEY, ROUTER_PASSWORD, PIN)


def assert_clean(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret ({secret[:3]}...) in {where}"
    assert "Bearer" not in text and "Authorization" not in text, f"an Authorization header in {where}"


async def test_a_whole_call_leaks_no_secret_anywhere(autojump_clock: trio.testing.MockClock, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    text_log, json_log = io.StringIO(), io.StringIO()
    root = logging.getLogger("mikrovoice")
    handlers = [logging.StreamHandler(text_log), logging.StreamHandler(json_log)]
    handlers[0].setFormatter(logging.Formatter(logs.TEXT_FORMAT))
    handlers[1].setFormatter(logs.JsonFormatter())
    for handler in handlers:
        handler.addFilter(logs.CallIdFilter())
        root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.DEBUG)
    metrics = Metrics()
    logs.add_observer(metrics.observe)
    transcript = TranscriptFile(tmp_path / "model.jsonl", full_audio=False)
    # A bug in the second call: its traceback is logged (call.crashed) and must hold no secret.
    crash_in = ["second"]
    real_run = CallSession.run

    async def run_or_crash(self: CallSession) -> object:
        if len(crash_in) == 0:
            raise RuntimeError(f"injected bug (settings: {self.settings!r}, operator: {self.operator!r})")
        crash_in.pop()
        return await real_run(self)

    monkeypatch.setattr(CallSession, "run", run_or_crash)
    settings = Settings(api_key=API_KEY, auth=AuthSettings(
        require="pin", configured=True, operators=(Operator("Ana", numbers=("3001234567",), pin=PIN),)))
    stats = ServiceStats()
    try:
        async with trio.open_nursery() as nursery:
            settings = await start_simulated_peers(
                nursery, replace(settings, listen=("127.0.0.1", 0)), DEMO_FLEET,
                model_config=SimModelConfig(api_key=API_KEY, transcript=transcript), router_password=ROUTER_PASSWORD)
            service = CallService(settings, stats)
            port = await nursery.start(partial(serve_calls, settings, service=service))
            report = await AsteriskCaller(CallerScript((SEED_QUESTIONS[0],), pins=("111111", PIN))).call(
                "127.0.0.1", port)
            with trio.fail_after(10):
                await stats.calls[0].finished.wait()
            await AsteriskCaller(CallerScript((), greeting_timeout_s=2)).call("127.0.0.1", port)
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
    finally:
        for handler in handlers:
            root.removeHandler(handler)
        root.setLevel(previous)
        logs.remove_observer(metrics.observe)
        transcript.close()
    assert report.questions[0].answered and stats.calls[0].operator == "Ana"  # every secret was used
    assert "Traceback" in text_log.getvalue() and "injected bug" in text_log.getvalue()  # the bug was logged
    assert_clean("the text log", text_log.getvalue())
    assert_clean("the JSON log", json_log.getvalue())
    digits = [record["digit"] for record in map(json.loads, json_log.getvalue().splitlines()) if "digit" in record]
    # Every key was pressed while authorising (shown as "*"), but the "#" after the right PIN.
    assert digits and set(digits) <= {"*", "#"}, digits
    assert_clean("the model simulator's transcript", (tmp_path / "model.jsonl").read_text(encoding="utf-8"))
    assert_clean("the metrics", metrics.render()[0].decode())
    assert_clean("repr of the settings", repr(settings) + repr(settings.auth) + repr(settings.routers))


def _run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mikrovoice", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env}, cwd=cwd)


def test_the_json_outputs_and_check_config_leak_no_secret(tmp_path: Path) -> None:
    (tmp_path / "ana.pin").write_text(PIN + "\n", encoding="utf-8")
    (tmp_path / "ana.pin").chmod(0o600)
    config = tmp_path / "mikrovoice.toml"
    config.write_text(
        '[openai]\nurl = "ws://127.0.0.1:9/v1/realtime"\n'
        '[auth]\nrequire = "pin"\n[[operator]]\nname = "Ana"\npin_file = "ana.pin"\n'
        '[[router]]\nname = "152.1"\nhost = "127.0.0.1"\nport = 9\npassword_env = "RPW"\n', encoding="utf-8")
    env = {"OPENAI_API_KEY": API_KEY, "RPW": ROUTER_PASSWORD}
    simulate = _run("simulate", "--config", str(config), "--calls", "6", "--seed", "3", "--json", env=env, cwd=tmp_path)
    assert simulate.returncode == 0, simulate.stderr[-2000:]
    json.loads(simulate.stdout.strip().splitlines()[-1])
    assert_clean("simulate --json", simulate.stdout + simulate.stderr)
    demo = _run("demo", "--virtual-clock", "--json", env=env, cwd=tmp_path)
    assert demo.returncode == 0 and json.loads(demo.stdout.strip().splitlines()[-1])
    assert_clean("demo --json", demo.stdout + demo.stderr)
    check = _run("check-config", str(config), "--timeout", "1", env=env, cwd=tmp_path)
    assert check.returncode == 1 and "152.1" in check.stdout  # nothing listens there: a row each, no secret
    assert_clean("check-config", check.stdout + check.stderr)
    # A configuration error names the key, never the value.
    (tmp_path / "ana.pin").write_text("74021\n", encoding="utf-8")  # one digit short
    bad = _run("serve", "--config", str(config), env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "[[operator]] Ana" in bad.stderr and "74021" not in bad.stderr
