"""`mikrovoice simulate` as an operator runs it: summary, JSON last line, exit status, shrunk failures."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mikrovoice.cli import main
from mikrovoice.simulation import invariants, runner
from mikrovoice.simulation.invariants import Invariant
from mikrovoice.simulation.world import CallObservation

KEYS = {"calls", "answered", "violations", "violations_by_invariant", "simulated_s", "wall_s", "p95_answer_s",
        "max_no_speech_during_query_s", "seed"}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, dict[str, object]]:
    status = main(["simulate", *args])
    out = capsys.readouterr().out
    return status, out, json.loads(out.strip().splitlines()[-1])


def test_a_clean_run_prints_the_table_and_a_json_last_line(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, summary = run(capsys, "--calls", "6", "--seed", "4", "--json")
    assert status == 0 and KEYS <= set(summary) and summary["calls"] == 6 and summary["violations"] == 0
    assert "llamadas" in out and "progress_cadence" in out and summary["seed"] == 4
    # The same seed gives the same calls.
    _, _, again = run(capsys, "--calls", "6", "--seed", "4", "--json")
    deterministic = {k: v for k, v in summary.items() if k not in ("wall_s", "simulation_speedup")}
    assert deterministic == {k: v for k, v in again.items() if k not in ("wall_s", "simulation_speedup")}


def test_a_change_is_compared_with_a_saved_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, before = run(capsys, "--calls", "4", "--seed", "9", "--json")
    saved = tmp_path / "before.txt"
    saved.write_text(out, encoding="utf-8")  # the whole output, as `simulate --json > before.txt` saves it
    config = tmp_path / "slower.toml"
    config.write_text('[query]\nprogress_silence_s = 3.0\n[[router]]\nname = "152.1"\nhost = "10.0.0.1"\n',
                      encoding="utf-8")
    status, out, after = run(capsys, "--calls", "4", "--seed", "9", "--json", "--config", str(config),
                             "--compare", str(saved))
    assert status == 0 and "antes / después" in out and "silencio máx. en consulta (s)" in out
    assert main(["simulate", "--calls", "1", "--compare", str(tmp_path / "missing.json")]) == 2
    assert "not the output of 'mikrovoice simulate --json'" in capsys.readouterr().err


def test_a_bad_configuration_is_exit_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[query]\ntimeout = 5\n", encoding="utf-8")
    assert main(["simulate", "--config", str(config)]) == 2
    assert "unknown key(s) ['timeout']" in capsys.readouterr().err
    config.write_text("[query]\ntimeout_s = 5.0\n", encoding="utf-8")
    assert main(["simulate", "--config", str(config)]) == 2
    assert "defines no [[router]]" in capsys.readouterr().err


def test_a_violation_is_shrunk_told_drawn_and_exit_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def never_ask_about_devices(obs: CallObservation) -> list[str]:
        return [f"asked {a.describe()}" for a in obs.scenario.asks if a.kind == "devices"]

    rule = Invariant("no_devices", "(a rule that fails on purpose)", never_ask_about_devices)
    monkeypatch.setattr(invariants, "INVARIANTS", (*invariants.INVARIANTS, rule))
    monkeypatch.setattr(runner, "INVARIANTS", invariants.INVARIANTS)
    config = tmp_path / "site.toml"
    config.write_text('[[router]]\nname = "152.1"\nhost = "10.0.0.1"\n[[router]]\nname = "26.1"\nhost = "10.0.0.2"\n',
                      encoding="utf-8")
    status, out, summary = run(capsys, "--calls", "25", "--config", str(config), "--json",
                               "--timeline-dir", str(tmp_path / "svg"))
    assert status == 1 and summary["violations_by_invariant"] == {"no_devices": summary["violations"]}
    (failure,) = summary["failures"]  # type: ignore[misc]
    # Shrunk: one question, about the first router, by a healthy patient caller on a healthy network.
    assert failure["shrunk"] and failure["story"] == "caller (line noise) asks the active devices of 152.1"
    assert "Escenario mínimo: caller (line noise) asks the active devices of 152.1" in out
    assert "llamante dice: «Dame la lista de dispositivos activos del router 152 punto 1»" in out
    svg = ET.parse(failure["timeline_svg"]).getroot()
    assert svg.tag.endswith("svg") and "no_devices" in ET.tostring(svg, encoding="unicode")
