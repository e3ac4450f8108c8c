"""deploy/: the systemd unit runs commands this CLI accepts, gives the graceful stop the time it
needs, does not restart on a configuration error, and passes ``systemd-analyze verify``."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from mikrovoice.cli import build_parser
from mikrovoice.config import Settings
from mikrovoice.service import GOODBYE_S

UNIT = Path(__file__).parents[1] / "deploy" / "systemd" / "mikrovoice.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


@pytest.mark.parametrize("key", ["ExecStart", "ExecStartPre"])
def test_the_unit_runs_commands_the_cli_accepts(key: str) -> None:
    argv = shlex.split(_unit()["Service"][key].lstrip("-"))
    assert argv[0].endswith("/bin/mikrovoice")
    args = build_parser().parse_args(argv[1:])
    assert args.command in ("serve", "check-config")
    if args.command == "serve":
        assert args.config and not args.simulate and args.log_format == "json"


def test_the_unit_waits_for_the_graceful_stop_and_does_not_loop_on_a_bad_config() -> None:
    service = _unit()["Service"]
    assert service["KillSignal"] == "SIGTERM"
    # shutdown_grace_s, then the goodbye (the shutdown prompt, bounded by GOODBYE_S), with a margin
    assert int(service["TimeoutStopSec"]) >= Settings().shutdown_grace_s + GOODBYE_S + 5
    assert "2" in service["RestartPreventExitStatus"].split()  # exit 2: a configuration error
    assert service["UMask"] == "0077" and service["NoNewPrivileges"] == "yes"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_accepts_the_unit() -> None:
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(UNIT)], capture_output=True, text=True,
                            timeout=60)
    # Only the paths of the target machine may be missing here.
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if line.strip() and "is not executable: No such file or directory" not in line]
    assert not problems, problems
